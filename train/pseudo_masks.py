#!/usr/bin/env python
"""Pseudo masks for WSSS from a multi-label BAS model: seeds, threshold sweep, PNGs and a Hub dataset.

    python train/pseudo_masks.py --model runs/voc-bas_resnet50_wsss/model --dataset voc:data/VOC2012 \\
        --split train_aug --eval-split train --output-dir runs/voc-pseudo [--fuse-cam] [--method cam]

1. Seeds per image at its own size (bas_zoo.wsss): sigmoid generator maps summed over the scales
   (1.0, 0.5, 1.5, 2.0) and mirrors, per-class max normalization, only the image's positive classes;
   ``--fuse-cam`` adds the model's own class activation maps (the journal's fused seeds).
2. The background threshold is swept (0.20-0.44) on ``--eval-split`` (a split with masks) and the best
   one kept; mIoU per class and overall go to ``OUTPUT/seed_metrics.json`` (``--bg-threshold`` skips it).
3. Masks of ``--split`` are written as VOC-palette PNGs (``OUTPUT/masks/<image_id>.png``: pixel values are
   the ids, 0 background, c + 1 class c) and gathered into a ``datasets`` dataset (image, mask, labels,
   image_id) saved at ``OUTPUT/dataset`` (``datasets.load_from_disk``), ready to train a segmentation
   network; ``--push-to-hub ORG/NAME`` uploads it.

Resumable: masks already written are skipped, the sweep's confusion matrices are checkpointed every
``--save-every`` images, and every file is written to a temporary name and renamed, so an interrupted
run leaves complete files only. A rerun with different settings into the same folder is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import timm
import torch
from tqdm.auto import tqdm

import bas_zoo
from bas_zoo._io import atomic_target, write_text_atomic
from bas_zoo.data import load_mask, load_rgb, load_wsol_dataset
from bas_zoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from bas_zoo.metrics import SegMetrics
from bas_zoo.wsss import (
    DEFAULT_BG_THRESHOLDS,
    DEFAULT_SCALES,
    save_palette_png,
    seed_scores,
    seeds_to_mask,
    seg_results,
)

SETTINGS = "pseudo_masks.json"
SWEEP_STATE = "sweep_state.npz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        required=True,
        help="trained model: folder saved by train.py (DIR/model), Hub id or timm name",
    )
    parser.add_argument(
        "--dataset", required=True, help="dataset spec, e.g. voc:data/VOC2012 or synthetic:multilabel=1"
    )
    parser.add_argument("--split", default="train_aug", help="split to write pseudo masks for")
    parser.add_argument(
        "--eval-split", default="train", help="split with masks on which the threshold is chosen"
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument(
        "--method", choices=["bas", "cam"], default="bas", help="bas: generator maps; cam: classifier maps"
    )
    parser.add_argument("--fuse-cam", action="store_true", help="fuse the BAS seeds with the model's own CAM")
    parser.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--no-flip", action="store_true", help="skip the mirrored pass")
    parser.add_argument(
        "--bg-threshold", type=float, default=None, help="fixed background threshold (no sweep)"
    )
    parser.add_argument(
        "--bg-thresholds", type=float, nargs="+", default=list(DEFAULT_BG_THRESHOLDS), help="sweep grid"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="first N images of each split only (quick runs)"
    )
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--save-every", type=int, default=50, help="checkpoint the sweep every N images")
    parser.add_argument(
        "--push-to-hub", default=None, metavar="ORG/NAME", help="upload the dataset to the Hub"
    )
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------- inputs
def load_model(name: str, device: torch.device) -> bas_zoo.BASModel:
    """A saved folder or Hub id through BASModel.from_pretrained; a registered name through timm."""
    if timm.is_model(name) and not Path(name).exists():
        model = timm.create_model(name, pretrained=True)
    else:
        model = bas_zoo.BASModel.from_pretrained(name)
    if not hasattr(model, "generator"):
        raise SystemExit(f"error: {name} is not a BAS model (bas_zoo.BASModel).")
    return model.to(device).eval()


def rows(ds: datasets.Dataset, limit: int | None) -> Iterator[dict[str, Any]]:
    """Undecoded rows (images and masks stay bytes / paths until needed)."""
    for column in ("image", "mask"):
        if column in ds.column_names:
            ds = ds.cast_column(column, datasets.Image(decode=False))
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(n):
        yield ds[i]


def present_vector(row: dict[str, Any], num_classes: int) -> torch.Tensor:
    vector = torch.zeros(1, num_classes)
    vector[0, torch.as_tensor(row.get("labels") or [row["label"]], dtype=torch.long)] = 1.0
    return vector


class SeedMaker:
    """One image -> seed scores (C, H, W) at its own size, as bas_zoo.wsss.seed_scores defines them."""

    def __init__(self, model: bas_zoo.BASModel, args: argparse.Namespace, device: torch.device) -> None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = torch.tensor(cfg.get("mean", IMAGENET_MEAN), device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", IMAGENET_STD), device=device).view(1, 3, 1, 1)
        self.model, self.args, self.device = model, args, device

    def __call__(self, row: dict[str, Any]) -> torch.Tensor:
        rgb = np.array(load_rgb(row["image"]))  # writable copy for torch.from_numpy
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        x = (x - self.mean) / self.std
        present = present_vector(row, self.model.num_classes).to(self.device)
        a = self.args
        return seed_scores(self.model, x, present, a.method, a.scales, not a.no_flip, a.fuse_cam)[0]


# ------------------------------------------------------------------------------------------- files
def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume into a folder written with other settings (its masks would not match)."""
    path = out / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text()).get("settings", {})
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise SystemExit(
                f"error: {out} holds pseudo masks made with other settings ({', '.join(diff)}); "
                "use a new --output-dir or delete that folder."
            )


def save_sweep(path: Path, metrics: SegMetrics, done: list[str]) -> None:
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, confusion=metrics.confusion, done=np.asarray(done, dtype=str))


# ------------------------------------------------------------------------------------------- steps
def sweep(make: SeedMaker, ds: datasets.Dataset, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Stream the eval split's seeds into one confusion matrix per threshold; resumable."""
    if "mask" not in ds.column_names:
        raise SystemExit(
            f"error: --eval-split {args.eval_split} has no masks; pick a split with masks or give --bg-threshold."
        )
    metrics = SegMetrics(make.model.num_classes, bg_thresholds=args.bg_thresholds)
    state_path = out / SWEEP_STATE
    done: list[str] = []
    if state_path.is_file():
        with np.load(state_path) as state:
            metrics.load_state_tensors({"confusion": torch.from_numpy(state["confusion"])})
            done = [str(v) for v in state["done"]]
    seen = set(done)
    total = len(ds) if args.limit is None else min(args.limit, len(ds))
    progress = tqdm(total=total, initial=len(seen), desc=f"sweep {args.eval_split}", dynamic_ncols=True)
    for row in rows(ds, args.limit):
        if row["image_id"] in seen:
            continue
        scores = make(row)
        metrics.update(
            scores[None].cpu(), present_vector(row, metrics.num_classes), load_mask(row["mask"])[None]
        )
        done.append(row["image_id"])
        seen.add(row["image_id"])
        progress.update(1)
        if len(done) % args.save_every == 0:
            save_sweep(state_path, metrics, done)
    progress.close()
    save_sweep(state_path, metrics, done)
    names = ds.features["label"].names
    result = seg_results(metrics, names)
    return {
        **result,
        "miou_curve": dict(
            zip([f"{t:.2f}" for t in metrics.bg_thresholds], metrics.compute()["miou_curve"], strict=True)
        ),
        "images": len(done),
    }


def write_masks(
    make: SeedMaker, ds: datasets.Dataset, args: argparse.Namespace, out: Path, threshold: float
) -> int:
    """PNG per image of ``--split``; images whose PNG exists are skipped. Returns how many were made."""
    mask_dir = out / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    total = len(ds) if args.limit is None else min(args.limit, len(ds))
    made = 0
    progress = tqdm(total=total, desc=f"masks {args.split}", dynamic_ncols=True)
    for row in rows(ds, args.limit):
        path = mask_dir / f"{row['image_id']}.png"
        if not path.is_file():
            mask = seeds_to_mask(make(row)[None], threshold)[0].cpu().numpy()
            save_palette_png(path, mask)
            made += 1
        progress.update(1)
    progress.close()
    return made


def build_dataset(
    ds: datasets.Dataset, args: argparse.Namespace, out: Path, description: str
) -> datasets.Dataset:
    """(image, mask, labels, image_id) with the image and PNG bytes embedded, saved to OUTPUT/dataset."""
    names = ds.features["label"].names
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "mask": datasets.Image(),
            "labels": datasets.List(datasets.ClassLabel(names=names)),
            "image_id": datasets.Value("string"),
        }
    )
    entries = [
        (
            row["image"],
            str(out / "masks" / f"{row['image_id']}.png"),
            row.get("labels") or [row["label"]],
            row["image_id"],
        )
        for row in rows(ds.remove_columns([c for c in ("mask",) if c in ds.column_names]), args.limit)
    ]

    def generate(entries: list) -> Iterator[dict[str, Any]]:
        for image, mask, labels, image_id in entries:
            data = image.get("bytes") or Path(image["path"]).read_bytes()
            suffix = Path(image.get("path") or "x.png").suffix or ".png"
            yield {
                "image": {"bytes": data, "path": f"{image_id}{suffix}"},
                "mask": {"bytes": Path(mask).read_bytes(), "path": f"{image_id}.png"},
                "labels": labels,
                "image_id": image_id,
            }

    cache = out / ".cache"
    built = datasets.Dataset.from_generator(
        generate, features=features, gen_kwargs={"entries": entries}, cache_dir=str(cache),
        info=datasets.DatasetInfo(description=description), split=datasets.Split(args.split),
    )  # fmt: skip
    final, tmp = out / "dataset", out / ".dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    built.save_to_disk(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    del built
    shutil.rmtree(cache, ignore_errors=True)
    return datasets.load_from_disk(str(final))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.method == "cam" and args.fuse_cam:
        raise SystemExit("error: --fuse-cam adds the CAM to the BAS seeds; it needs --method bas.")
    settings = {
        "model": args.model, "dataset": args.dataset, "split": args.split, "eval_split": args.eval_split,
        "method": args.method, "fuse_cam": args.fuse_cam, "scales": args.scales, "flip": not args.no_flip,
        "bg_threshold": args.bg_threshold, "bg_thresholds": args.bg_thresholds, "limit": args.limit,
    }  # fmt: skip
    check_settings(out, settings)
    write_json(out / SETTINGS, {"settings": settings})
    model = load_model(args.model, device)
    make = SeedMaker(model, args, device)

    summary: dict[str, Any] = {"settings": settings}
    threshold = args.bg_threshold
    if threshold is None:
        metrics = sweep(make, load_wsol_dataset(args.dataset, args.eval_split), args, out)
        threshold = metrics["best_bg_threshold"]
        write_json(out / "seed_metrics.json", metrics)
        summary["seed_metrics"] = metrics
        lines = [
            f"seeds on {args.eval_split} ({metrics['images']} images): mIoU {metrics['miou']:.2f} at bg threshold {threshold:.2f}"
        ]
        lines += [f"  {k[4:]:>16s} {v:6.2f}" for k, v in metrics.items() if k.startswith("iou_")]
        print("\n".join(lines))
    summary["bg_threshold"] = threshold

    target = load_wsol_dataset(args.dataset, args.split)
    summary["masks_written"] = write_masks(make, target, args, out, threshold)
    description = (
        f"Pseudo masks of {args.dataset} ({args.split}) from {args.model}: {args.method} seeds"
        f"{' fused with CAM' if args.fuse_cam else ''}, scales {args.scales}, flip {not args.no_flip}, "
        f"background threshold {threshold:.2f}. mask: 0 background, c + 1 class c (labels' names)."
    )
    dataset = build_dataset(target, args, out, description)
    summary["dataset"] = str(out / "dataset")
    summary["images"] = len(dataset)
    write_json(out / SETTINGS, summary)
    if args.push_to_hub:
        dataset.push_to_hub(args.push_to_hub, split=args.split)
    print(
        f"{len(dataset)} pseudo masks (bg threshold {threshold:.2f}) -> {out / 'masks'}; dataset -> {out / 'dataset'}"
    )
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
