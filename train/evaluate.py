#!/usr/bin/env python
"""Evaluate a BAS model (or a CAM baseline) on a dataset split: every WSOL metric, JSON and markdown.

    python train/evaluate.py --model runs/synthetic-bas_resnet18/bas/model --dataset synthetic
    python train/evaluate.py --model ORG/NAME --dataset cub:data/CUB_200_2011 --grid 8 --output out/
    python train/evaluate.py --model runs/x/checkpoints/step_000000100 --dataset synthetic --method cam
    accelerate launch --num_processes 2 train/evaluate.py --model ... --dataset ...   # sharded

``--model`` is a Hub id, a Hub-layout folder (config.json + model.safetensors), a training checkpoint
folder (``checkpoints/step_*``) or a ``.safetensors`` file inside a run; the last two are rebuilt from
the run's ``train_config.yaml``. Top-k, threshold and image size default to what the model (or run)
stores; flags override them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import timm
import yaml
from accelerate import Accelerator
from safetensors.torch import load_file

import bas_zoo
from bas_zoo import hub
from bas_zoo.config import config_from_dict
from bas_zoo.data.loading import load_wsol_dataset
from bas_zoo.data.transforms import eval_transform, with_transform
from bas_zoo.evaluation import GridColumn, evaluate_wsol, metrics_markdown, save_grid

RUN_CONFIG = "train_config.yaml"


def _find_run_config(path: Path) -> Path:
    for folder in [path, *path.parents][:4]:
        if (folder / RUN_CONFIG).is_file():
            return folder / RUN_CONFIG
    raise FileNotFoundError(
        f"{path} is not a Hub-layout folder and no {RUN_CONFIG} was found above it; pass a model folder "
        "(config.json + model.safetensors), a Hub id, or a checkpoint inside a train.py run."
    )


def load_model(name: str) -> tuple[bas_zoo.BASModel, dict]:
    """A model and the defaults it carries (method, image size, top-k, threshold, gt_class)."""
    path = Path(name).expanduser()
    if path.is_dir() and (path / hub.CONFIG_NAME).is_file():
        model = hub.from_pretrained(path)
    elif path.exists():
        run = yaml.safe_load(_find_run_config(path).read_text())
        config = config_from_dict({k: v for k, v in run.items() if k not in ("num_classes", "threshold")})
        weights = path / "model.safetensors" if path.is_dir() else path
        state = load_file(str(weights))
        # Training checkpoints hold the TrainStep wrapper: strip its "model." prefix.
        state = {k.removeprefix("model."): v for k, v in state.items() if not k.startswith("criterion.")}
        model = timm.create_model(config.model, num_classes=run["num_classes"], **config.model_args)
        model.load_state_dict(state)
        loc = config.localization
        defaults = {
            "method": config.method if config.method != "both" else "bas",
            "image_size": config.image_size,
            "top_k": loc.top_k,
            "gt_class": loc.gt_class,
            "threshold": run.get("threshold", loc.threshold),
        }
        return model.eval(), defaults
    else:
        model = hub.from_pretrained(name)
    size = int((model.pretrained_cfg.get("input_size") or (3, 224, 224))[-1])
    defaults = {"method": "bas", "image_size": size, "top_k": model.loc_top_k, "gt_class": False}
    return model, defaults | {"threshold": model.loc_threshold}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", required=True, help="Hub id, model folder, checkpoint folder or .safetensors"
    )
    parser.add_argument("--dataset", required=True, help="dataset spec, e.g. synthetic or cub:DIR")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--method", choices=["bas", "cam"], help="maps: generator (bas) or class activation (cam)"
    )
    parser.add_argument("--image-size", type=int, help="evaluation size (default: the model's)")
    parser.add_argument("--top-k", type=int, help="mean map over the top-k predicted classes")
    parser.add_argument(
        "--gt-class", action=argparse.BooleanOptionalAction, default=None, help="GT class maps"
    )
    parser.add_argument("--threshold", type=float, help="box threshold for Top-1 / GT-known Loc")
    parser.add_argument("--iou-strict", action="store_true", help="GT-known hit at IoU > 0.5 (cvpr code)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--output", type=Path, help="folder for metrics.json, metrics.md and grid.png")
    parser.add_argument("--grid", type=int, default=0, metavar="N", help="PNG grid of the first N images")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision=args.mixed_precision)
    model, defaults = load_model(args.model)
    model.to(accelerator.device)
    opts = {k: getattr(args, k) for k in defaults if getattr(args, k, None) is not None}
    opts = defaults | opts
    data = with_transform(load_wsol_dataset(args.dataset, args.split), eval_transform(opts["image_size"]))
    metrics = evaluate_wsol(
        model,
        data,
        method=opts["method"],
        top_k=opts["top_k"],
        gt_class=opts["gt_class"],
        threshold=opts["threshold"],
        iou_strict=args.iou_strict,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        accelerator=accelerator,
        desc=f"{args.split}",
    )
    if accelerator.is_main_process:
        table = metrics_markdown({f"{opts['method'].upper()} ({args.split})": metrics})
        print(json.dumps(metrics, indent=2))
        print(table, file=sys.stderr)
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
            (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            (args.output / "metrics.md").write_text(table)
            if args.grid:
                column = GridColumn(
                    opts["method"].upper(), model, opts["method"], opts["threshold"], (255, 40, 40)
                )
                save_grid(
                    args.output / "grid.png",
                    data,
                    [column],
                    args.grid,
                    top_k=opts["top_k"],
                    gt_class=opts["gt_class"],
                    device=accelerator.device,
                )
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
