"""WSOL evaluation of a model on a dataset split: localization maps -> streaming metrics, and a PNG grid.

Shared by ``train/train.py`` (validation during training, final test), ``train/evaluate.py`` and the
``bas-zoo evaluate`` command. Two localization methods run through the same code, so comparisons are
fair: ``bas`` uses the generator's foreground maps M, ``cam`` the classifier's class activation maps F
(the extractor output, the baseline of every WSOL paper). Both pick the ground-truth class or the
top-k predicted classes, min-max normalize at their own resolution and resize to the image.

Multi-process evaluation shards the split by index (process i takes images i, i + P, ...) instead of
using a prepared DataLoader: that one pads the last batches with repeated images, which a streaming
metric would count twice. Each process updates its own metric state and the states are summed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ._io import atomic_target
from .data.transforms import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, collate
from .localize import boxes_from_map
from .metrics import WSOLMetrics
from .models import BASModel, normalize_maps

__all__ = [
    "Method",
    "GridColumn",
    "denormalize",
    "eval_autocast",
    "eval_batches",
    "evaluate_wsol",
    "localization_maps",
    "metrics_markdown",
    "save_grid",
]

Method = Literal["bas", "cam"]


@torch.no_grad()
def localization_maps(
    model: BASModel,
    pixel_values: torch.Tensor,
    method: Method = "bas",
    top_k: int | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C) and maps (B, H, W) in [0, 1] at the input size.

    ``labels`` selects the ground-truth class's map; otherwise the mean over the ``top_k`` predicted
    classes. ``cam`` takes the extractor maps F instead of the generator maps M.
    """
    if method not in ("bas", "cam"):
        raise ValueError(f"Unknown localization method {method!r}; use 'bas' or 'cam'.")
    attach = model.f1(pixel_values)
    cam = model.forward_cam(model.f2(attach))
    logits = cam.float().mean((2, 3))
    if labels is not None:
        index = labels.view(-1, 1)
    else:
        index = logits.topk(min(top_k or model.loc_top_k, logits.shape[1]), dim=1).indices
    if method == "bas":
        maps = model.class_maps(attach, index).mean(1)
    else:
        maps = cam.gather(1, index[:, :, None, None].expand(-1, -1, *cam.shape[-2:])).mean(1)
    # Normalize at the map's own resolution, then resize (half-pixel centres, as cv2.resize).
    maps = normalize_maps(maps.float(), model.norm_eps)
    maps = F.interpolate(maps[:, None], size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
    return logits, maps[:, 0]


def _shard(dataset: Dataset, process_index: int, num_processes: int) -> Dataset:
    if num_processes == 1:
        return dataset
    return Subset(dataset, range(process_index, len(dataset), num_processes))


def eval_batches(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    accelerator=None,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> Iterator[tuple[dict, torch.Tensor]]:
    """This process's shard of a transformed split as ``(batch, pixel_values on the device)``.

    The model is in eval mode while the batches are consumed and gets its mode back after. With an
    ``accelerate.Accelerator`` the device is its device and the shard is its process's (see the module
    docstring); the progress bar shows on the main process only.
    """
    process_index = accelerator.process_index if accelerator is not None else 0
    num_processes = accelerator.num_processes if accelerator is not None else 1
    if accelerator is not None:
        device = accelerator.device
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loader = DataLoader(
        _shard(dataset, process_index, num_processes),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
    )
    was_training = model.training
    model.eval()
    show = progress and process_index == 0
    try:
        for batch in tqdm(loader, desc=desc, disable=not show, leave=False, dynamic_ncols=True):
            yield batch, batch["pixel_values"].to(device, non_blocking=True)
    finally:
        model.train(was_training)


def eval_autocast(accelerator, device: torch.device) -> contextlib.AbstractContextManager:
    """The accelerator's mixed precision, or full precision without one."""
    return accelerator.autocast() if accelerator is not None else torch.autocast(device.type, enabled=False)


def evaluate_wsol(
    model: BASModel,
    dataset: Dataset,
    *,
    method: Method = "bas",
    top_k: int = 1,
    gt_class: bool = False,
    threshold: float = 0.1,
    iou_strict: bool = False,
    cam_curve_interval: float = 0.01,
    batch_size: int = 64,
    num_workers: int = 0,
    accelerator=None,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> dict[str, float]:
    """All WSOL metrics of ``model`` on a transformed split (items as ``bas_zoo.data.with_transform``).

    With an ``accelerate.Accelerator`` the split is sharded over its processes and the metric states
    are reduced, so every process returns the metrics of the whole split.
    """
    metrics = WSOLMetrics(
        cam_curve_interval=cam_curve_interval, loc_threshold=threshold, loc_iou_strict=iou_strict
    )
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
        labels = batch["labels"].to(pixel_values.device)
        with eval_autocast(accelerator, pixel_values.device):
            logits, maps = localization_maps(
                model, pixel_values, method, top_k=top_k, labels=labels if gt_class else None
            )
        masks = batch.get("masks")
        metrics.update(
            maps.cpu(),
            [b.cpu() for b in batch["bboxes"]],
            gt_masks=None if masks is None else masks == 1,
            ignore_masks=None if masks is None else masks == IGNORE_INDEX,
            logits=logits.cpu(),
            labels=batch["labels"],
        )
    if accelerator is not None and accelerator.num_processes > 1:
        metrics.sync(accelerator)
    return {k: float(v) for k, v in metrics.compute().items()}


def metrics_markdown(columns: dict[str, dict[str, float]], title: str = "metric") -> str:
    """A markdown table: one row per metric key, one column per run (e.g. ``{"BAS": ..., "CAM": ...}``)."""
    names = list(columns)
    keys = [k for k in next(iter(columns.values())) if all(k in c for c in columns.values())]
    lines = [f"| {title} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{columns[n][key]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- grid
@dataclass
class GridColumn:
    """One localizer shown in the grid: a model, its method and the box threshold it uses."""

    title: str
    model: BASModel
    method: Method
    threshold: float
    colour: tuple[int, int, int]


def denormalize(pixel_values: torch.Tensor) -> np.ndarray:
    """(3, H, W) ImageNet-normalized tensor -> (H, W, 3) uint8."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    image = (pixel_values.detach().cpu().float() * std + mean).clamp(0, 1)
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _heat(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (0.45 * image + 0.55 * colour).astype(np.uint8)


def _draw_boxes(draw: PIL.ImageDraw.ImageDraw, boxes: Sequence, colour, scale: float, offset: int) -> None:
    """Inclusive pixel boxes, drawn around the covered pixels of an image scaled by ``scale``."""
    for x0, y0, x1, y1 in boxes:
        draw.rectangle(
            [offset + x0 * scale, y0 * scale, offset + (x1 + 1) * scale - 1, (y1 + 1) * scale - 1],
            outline=colour,
            width=2,
        )


@torch.no_grad()
def save_grid(
    path: str | Path,
    dataset: Dataset,
    columns: Sequence[GridColumn],
    num_images: int = 8,
    top_k: int = 1,
    gt_class: bool = False,
    device: torch.device | str = "cpu",
    cell: int = 160,
) -> Path:
    """PNG grid: per image, the image with the GT box (green) and each column's predicted box, then
    each column's map with its box. Maps and boxes are computed as in :func:`evaluate_wsol`."""
    items = [dataset[i] for i in range(min(num_images, len(dataset)))]
    batch = collate(items)
    pixel_values = batch["pixel_values"].to(device)
    labels = batch["labels"].to(device) if gt_class else None
    per_column = []
    for column in columns:
        was_training = column.model.training
        column.model.eval()
        _, maps = localization_maps(column.model, pixel_values, column.method, top_k=top_k, labels=labels)
        column.model.train(was_training)
        maps = maps.cpu().numpy()
        boxes = [boxes_from_map(m, threshold=column.threshold, mode="largest").tolist() for m in maps]
        per_column.append((maps, boxes))

    header = 18
    width = cell * (1 + len(columns))
    canvas = PIL.Image.new("RGB", (width, header + cell * len(items)), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    titles = ["image, GT (green)"] + [f"{c.title} (t={c.threshold:.2f})" for c in columns]
    for j, title in enumerate(titles):
        draw.text((j * cell + 4, 3), title, fill=(0, 0, 0))
    for i, item in enumerate(items):
        image = denormalize(item["pixel_values"])
        scale = cell / image.shape[1]
        panels = [image] + [_heat(image, maps[i]) for maps, _ in per_column]
        row = PIL.Image.fromarray(
            np.concatenate([cv2.resize(p, (cell, cell), interpolation=cv2.INTER_NEAREST) for p in panels], 1)
        )
        row_draw = PIL.ImageDraw.Draw(row)
        gt = item["bboxes"].tolist()
        for j in range(len(panels)):
            _draw_boxes(row_draw, gt, (0, 220, 0), scale, j * cell)
        for j, (column, (_, boxes)) in enumerate(zip(columns, per_column, strict=True)):
            _draw_boxes(row_draw, boxes[i], column.colour, scale, 0)
            _draw_boxes(row_draw, boxes[i], column.colour, scale, (j + 1) * cell)
        canvas.paste(row, (0, header + i * cell))
    with atomic_target(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
