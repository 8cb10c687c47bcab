"""Weakly supervised semantic segmentation: seeds (pseudo-mask scores) from a multi-label BAS model.

The journal's protocol (METHOD.md, WSSS), shared by validation during training, ``train/pseudo_masks.py``
and the pipeline, so that every number comes from the same maps:

1. For each scale in (1.0, 0.5, 1.5, 2.0) and for the image and its mirror, take the sigmoid generator
   maps M (``bas``) or the ReLU class activation maps F of the classifier (``cam``, the baseline), resize
   them to the image and SUM them (the mirror's maps flipped back).
2. Keep the image's positive classes only (ground-truth image labels for seeds; predicted ones in the
   pipeline) and divide each class map by its maximum (+1e-5).
3. Optionally fuse with the model's own CAM: both normalized, added, normalized again.
4. A pixel takes the best kept class when its score beats the background threshold, else background;
   the threshold is swept (0.20-0.44) on a split with masks (:class:`bas_zoo.metrics.SegMetrics`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._io import atomic_target
from .data.transforms import collate
from .evaluation import denormalize, eval_autocast, eval_batches
from .metrics import SegMetrics
from .models import BASModel
from .models._trunk import register_layout
from .models.resnet import resnet_wsss_layout

__all__ = [
    "DEFAULT_SCALES",
    "DEFAULT_BG_THRESHOLDS",
    "Source",
    "multiscale_maps",
    "max_normalize",
    "seed_scores",
    "seeds_to_mask",
    "predict_present",
    "class_probabilities",
    "segment",
    "evaluate_seeds",
    "voc_palette",
    "save_palette_png",
    "colorize",
    "SeedColumn",
    "save_seed_grid",
]

Source = Literal["bas", "cam"]
DEFAULT_SCALES: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
DEFAULT_BG_THRESHOLDS: tuple[float, ...] = tuple(round(0.20 + 0.01 * i, 2) for i in range(25))  # 0.20..0.44

# The journal's WSSS layout (output stride 16, generator on layer3) for the small ResNets too: the
# synthetic multi-label demo trains a narrow ResNet-18 in it.
for _name in ("resnet18", "resnet34"):
    register_layout("wsss", _name)(resnet_wsss_layout)


# ------------------------------------------------------------------------------------------- maps
def _stride(model: BASModel, source: Source) -> int:
    """Output stride of the maps of ``source`` (generator: attach point; cam: end of the trunk)."""
    infos = getattr(model, "feature_info", None) or []
    if source == "bas":
        infos = [i for i in infos if str(i.get("module", "")).startswith("f1.")]
    return int(infos[-1]["reduction"]) if infos else 1


def _to_image(maps: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """Resize maps to the image as the official code does: to the stride-padded size, then crop.

    A map of an image of height H has ceil(H / stride) cells, each covering ``stride`` pixels, so it is
    stretched to ceil(H / stride) * stride and the padding is cut off (bilinear, half-pixel centres).
    """
    h, w = size
    padded = (math.ceil(h / stride) * stride, math.ceil(w / stride) * stride)
    return F.interpolate(maps, size=padded, mode="bilinear", align_corners=False)[..., :h, :w]


@torch.no_grad()
def multiscale_maps(
    model: BASModel,
    pixel_values: torch.Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    sources: Sequence[Source] = ("bas",),
) -> dict[str, torch.Tensor]:
    """Per source, the sum over scales (and mirrors) of the class maps, (B, C, H, W) at the input size.

    ``bas``: sigmoid generator maps M; ``cam``: ReLU of the classifier's maps F. One trunk pass per scale
    serves both sources. The input is rescaled by bicubic interpolation with antialiasing (as the
    official PIL resize) to round(H * s) x round(W * s).
    """
    if not scales:
        raise ValueError("scales must name at least one scale, e.g. (1.0,).")
    unknown = set(sources) - {"bas", "cam"}
    if unknown:
        raise ValueError(
            f"Unknown map source(s) {sorted(unknown)}; use 'bas' (generator) or 'cam' (classifier)."
        )
    size = tuple(pixel_values.shape[-2:])
    batch = pixel_values.shape[0]
    totals: dict[str, torch.Tensor] = {}
    strides = {s: _stride(model, s) for s in sources}
    for scale in scales:
        x = pixel_values
        if scale != 1.0:
            scaled = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            x = F.interpolate(x, size=scaled, mode="bicubic", align_corners=False, antialias=True)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        attach = model.f1(x)
        outputs: dict[str, torch.Tensor] = {}
        if "bas" in sources:
            outputs["bas"] = torch.sigmoid(model._require_generator()(attach))
        if "cam" in sources:
            outputs["cam"] = F.relu(model.forward_cam(model.f2(attach)))
        for source, maps in outputs.items():
            maps = maps.float()
            if flip:
                maps = maps[:batch] + maps[batch:].flip(-1)
            maps = _to_image(maps, size, strides[source])
            totals[source] = totals[source] + maps if source in totals else maps
    return totals


def max_normalize(maps: torch.Tensor, present: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Divide each (H, W) class map by its maximum (+ eps); classes not ``present`` (B, C) become 0.

    Maps are non-negative sums of sigmoids or ReLUs, so this puts every kept class in [0, 1) while
    keeping the relative strength inside a map (unlike min-max, a flat map stays low).
    """
    out = maps / (maps.flatten(-2).amax(-1)[..., None, None] + eps)
    if present is not None:
        out = out * (present.to(out.device) > 0.5).to(out.dtype)[..., None, None]
    return out


@torch.no_grad()
def seed_scores(
    model: BASModel,
    pixel_values: torch.Tensor,
    present: torch.Tensor | None = None,
    source: Source = "bas",
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    fuse_cam: bool = False,
) -> torch.Tensor:
    """Seed scores (B, C, H, W) in [0, 1] at the input size; zero outside the ``present`` classes.

    ``present`` (B, C) multi-hot: the image-level labels (None keeps every class). ``source`` picks the
    generator (``bas``) or the classifier's CAM (``cam``); ``fuse_cam`` adds the model's own CAM to the
    BAS maps (both max-normalized, summed, normalized again), the journal's fused seeds.
    """
    sources: tuple[Source, ...] = ("bas", "cam") if (source == "bas" and fuse_cam) else (source,)
    maps = multiscale_maps(model, pixel_values, scales=scales, flip=flip, sources=sources)
    scores = max_normalize(maps[source], present)
    if source == "bas" and fuse_cam:
        scores = max_normalize(scores + max_normalize(maps["cam"], present), present)
    return scores


def seeds_to_mask(scores: torch.Tensor, bg_threshold: float) -> torch.Tensor:
    """Label map (B, H, W) uint8: 0 background, c + 1 where class c is best and its score > threshold.

    Same rule as :class:`SegMetrics` (ties go to background); absent classes have score 0.
    """
    best, index = scores.max(1)
    return torch.where(best > bg_threshold, index + 1, torch.zeros_like(index)).to(torch.uint8)


def predict_present(logits: torch.Tensor) -> torch.Tensor:
    """Image-level classes (B, C) bool predicted by a model trained with the multi-label loss.

    The loss makes every positive class beat the log-sum-exp of the negatives, so classes are taken
    in decreasing logit order while each one beats the log-sum-exp of all classes ranked below it;
    the top class is always kept.
    """
    ordered, order = logits.float().sort(1, descending=True)
    below = ordered.flip(1).logcumsumexp(1).flip(1)  # below[:, k] = LSE(ordered[:, k:])
    beats = torch.ones_like(ordered, dtype=torch.bool)
    beats[:, 1:-1] = ordered[:, 1:-1] > below[:, 2:]
    beats[:, -1] = logits.shape[1] == 1  # nothing ranks below the last class
    keep = beats.long().cumprod(1).bool()
    keep[:, 0] = True
    return torch.zeros_like(keep).scatter(1, order, keep)


def class_probabilities(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(B, C) probability of each class against the classes NOT present, the quantity L_mcls trains:
    e^s_c / (e^s_c + sum over absent n of e^s_n) (1 when every class is present)."""
    absent = present.to(logits.device) <= 0.5
    masked = logits.float().masked_fill(~absent, float("-inf"))
    has_absent = absent.any(1, keepdim=True)
    rest = torch.logsumexp(torch.where(has_absent, masked, torch.zeros_like(masked)), 1, keepdim=True)
    return torch.where(has_absent, torch.sigmoid(logits.float() - rest), torch.ones_like(masked))


@torch.no_grad()
def segment(
    model: BASModel,
    pixel_values: torch.Tensor,
    sizes: Sequence[tuple[int, int]],
    present: torch.Tensor | None = None,
    bg_threshold: float = 0.3,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    fuse_cam: bool = False,
) -> list[dict]:
    """Semantic segmentation of a batch by a multi-label model's seeds, at each image's own size.

    ``present`` (B, C) fixes the classes (e.g. known image labels); by default they are predicted from
    the logits (:func:`predict_present`). Per image: ``segmentation`` (H, W) uint8 (0 background,
    c + 1 class c), ``classes`` (the kept class ids), ``scores`` (their :func:`class_probabilities`)
    and ``masks`` (k, H, W) bool, one per kept class. Seeds are resized to (H, W) bilinearly before
    the background threshold is applied, so masks follow the smooth seed boundary.
    """
    logits = model.forward_head(model.f2(model.f1(pixel_values))).float()
    present = predict_present(logits) if present is None else present.to(logits.device) > 0.5
    scores = seed_scores(model, pixel_values, present.float(), "bas", scales, flip, fuse_cam)
    probs = class_probabilities(logits, present)
    results = []
    for i, (h, w) in enumerate(sizes):
        ids = present[i].nonzero()[:, 0]
        label_np = np.zeros((h, w), np.uint8)
        if len(ids):
            kept = F.interpolate(scores[i : i + 1, ids], size=(h, w), mode="bilinear", align_corners=False)[0]
            best, index = kept.max(0)
            label_np = torch.where(best > bg_threshold, ids[index] + 1, 0).to(torch.uint8).cpu().numpy()
        results.append(
            {
                "segmentation": label_np,
                "classes": ids.tolist(),
                "scores": probs[i, ids].tolist(),
                "masks": label_np[None] == (ids.cpu().numpy() + 1)[:, None, None],
            }
        )
    return results


# ------------------------------------------------------------------------------------- evaluation
def seg_results(
    metrics: SegMetrics, class_names: Sequence[str] | None = None, bg_threshold: float | None = None
) -> dict[str, float]:
    """Flat float metrics (percent): ``miou`` (best over the sweep), ``best_bg_threshold``, per-class
    ``iou_<name>`` there, and ``miou_fixed`` at ``bg_threshold`` when given (it must be in the sweep)."""
    result = metrics.compute()
    names = ["background", *(class_names or [str(i) for i in range(metrics.num_classes)])]
    out = {"miou": result["miou"], "best_bg_threshold": result["best_bg_threshold"]}
    out.update({f"iou_{n}": v for n, v in zip(names, result["per_class_iou"], strict=True)})
    if bg_threshold is not None:
        index = int(np.argmin(np.abs(metrics.bg_thresholds - bg_threshold)))
        out["miou_fixed"] = result["miou_curve"][index]
        out["fixed_bg_threshold"] = float(metrics.bg_thresholds[index])
    return out


def evaluate_seeds(
    model: BASModel,
    dataset: Dataset,
    *,
    method: Source = "bas",
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    fuse_cam: bool = False,
    bg_thresholds: Sequence[float] = DEFAULT_BG_THRESHOLDS,
    bg_threshold: float | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    accelerator=None,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "seeds",
) -> dict[str, float]:
    """mIoU of the seeds on a transformed split with masks (items as ``bas_zoo.data.with_transform``).

    Seeds use each image's ground-truth classes (``label_vector``), as the WSSS protocol does. The
    background threshold is swept over ``bg_thresholds``; ``bg_threshold`` (e.g. chosen on validation)
    is added to the sweep and reported as ``miou_fixed``. With an ``accelerate.Accelerator`` the split is
    sharded over processes (no padded duplicates) and the confusion matrices are summed.
    """
    thresholds = np.asarray(bg_thresholds, dtype=np.float64)
    if bg_threshold is not None:
        thresholds = np.unique(np.append(thresholds, bg_threshold))
    metrics = SegMetrics(model.num_classes, bg_thresholds=thresholds)
    for batch, pixel_values in eval_batches(
        model,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        accelerator=accelerator,
        device=device,
        progress=progress,
        desc=desc,
    ):
        if "masks" not in batch or "label_vector" not in batch:
            raise ValueError(
                "evaluate_seeds needs a multi-label split with masks (columns 'labels' and 'mask'), "
                "e.g. voc:DIR or synthetic:multilabel=1."
            )
        present = batch["label_vector"].to(pixel_values.device)
        with eval_autocast(accelerator, pixel_values.device):
            scores = seed_scores(model, pixel_values, present, method, scales, flip, fuse_cam)
        metrics.update(scores.cpu(), batch["label_vector"], batch["masks"])
    if accelerator is not None and accelerator.num_processes > 1:
        metrics.sync(accelerator)
    return seg_results(metrics, class_names, bg_threshold)


# ------------------------------------------------------------------------------------------ output
def voc_palette(num: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (num, 3) uint8: bits of the index spread over R, G, B (255 = white-ish)."""
    index = np.arange(num)
    palette = np.zeros((num, 3), np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def save_palette_png(path: str | os.PathLike, mask: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Write a uint8 label map as a palette PNG atomically (temporary file, then one rename).

    Readers that open the PNG with ``np.asarray(PIL.Image.open(p))`` get the label ids back.
    """
    image = PIL.Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    image.putpalette((voc_palette() if palette is None else palette).reshape(-1).tolist())
    with atomic_target(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def colorize(mask: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """RGB (H, W, 3) picture of a label map with the VOC palette."""
    return (voc_palette() if palette is None else palette)[np.asarray(mask, dtype=np.uint8)]


@dataclass
class SeedColumn:
    """One seed maker shown in :func:`save_seed_grid`: a model, its map source and its threshold."""

    title: str
    model: BASModel
    method: Source
    bg_threshold: float
    fuse_cam: bool = False


@torch.no_grad()
def save_seed_grid(
    path: str | os.PathLike,
    dataset: Dataset,
    columns: Sequence[SeedColumn],
    num_images: int = 6,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    device: torch.device | str = "cpu",
    cell: int = 128,
    alpha: float = 0.6,
) -> Path:
    """PNG grid, one row per image: the image, its ground truth, then each column's seed mask, masks
    drawn in the VOC palette over the image. Seeds are made exactly as :func:`evaluate_seeds` makes them."""
    items = [dataset[i] for i in range(min(num_images, len(dataset)))]
    batch = collate(items)
    pixel_values = batch["pixel_values"].to(device)
    present = batch["label_vector"].to(device)
    seeds = []
    for column in columns:
        was_training = column.model.training
        column.model.eval()
        scores = seed_scores(
            column.model, pixel_values, present, column.method, scales, flip, column.fuse_cam
        )
        column.model.train(was_training)
        seeds.append(seeds_to_mask(scores, column.bg_threshold).cpu().numpy())
    header = 18
    titles = ["image", "ground truth"] + [f"{c.title} (bg {c.bg_threshold:.2f})" for c in columns]
    canvas = PIL.Image.new("RGB", (cell * len(titles), header + cell * len(items)), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    for j, title in enumerate(titles):
        draw.text((j * cell + 4, 3), title, fill=(0, 0, 0))
    for i, item in enumerate(items):
        image = denormalize(item["pixel_values"])
        gt = item["masks"].numpy()
        panels = [image] + [_blend(image, m, alpha) for m in [gt, *(s[i] for s in seeds)]]
        row = np.concatenate(
            [cv2.resize(p, (cell, cell), interpolation=cv2.INTER_NEAREST) for p in panels], 1
        )
        canvas.paste(PIL.Image.fromarray(row), (0, header + i * cell))
    with atomic_target(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def _blend(image: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """Label colours over the image where the mask is not background (ignore, 255, in its palette colour)."""
    colour = colorize(mask).astype(np.float32)
    fg = (np.asarray(mask) > 0)[..., None]
    return np.where(fg, (1 - alpha) * image + alpha * colour, image).round().astype(np.uint8)
