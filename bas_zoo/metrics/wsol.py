"""Streaming WSOL metrics: Top-1 / Top-5 / GT-known Loc, MaxBoxAcc (V1, V2), PxAP and PIoU.

``WSOLMetrics`` keeps only fixed-size integer state (hit counts per CAM threshold and IoU, score
histograms), never the maps, so it streams over any split and reduces across processes by a sum.
Each metric reproduces the code its published numbers come from:

* GT-known / Top-1 / Top-5 Loc: the official BAS test code (``loc_threshold`` on the float32 min-max
  map, largest 8-connected component, box ``[x0, y0, x1 + 1, y1 + 1]``, no foreground -> whole image).
* MaxBoxAcc V1 / V2 and PxAP: clovaai/wsolevaluation (uint8 binarization, OpenCV contour boxes,
  inclusive IoU, histogram AP). See ``_boxes`` and ``_pixels`` for how they are computed fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..localize import boxes_from_map, normalize_maps
from ._arrays import ArrayLike, to_numpy
from ._boxes import box_hits, cam_thresholds, inclusive_iou
from ._pixels import pixel_histograms, pxap_edges, pxap_from_histograms

__all__ = ["WSOLMetrics"]


def _gt_array(boxes: ArrayLike | Sequence) -> np.ndarray:
    b = (
        to_numpy(boxes)
        if isinstance(boxes, torch.Tensor | np.ndarray)
        else np.asarray(boxes, dtype=np.float64)
    )
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return b


class WSOLMetrics:
    """Streaming WSOL localization metrics over batches of raw localization maps.

    Args:
        cam_curve_interval: spacing of the CAM thresholds ``np.arange(0, 1, interval)`` used by
            MaxBoxAcc and PxAP / PIoU (wsolevaluation uses 0.01 for boxes, 0.001 for masks).
        iou_thresholds: IoU thresholds in percent averaged by MaxBoxAccV2.
        loc_threshold: map threshold of GT-known / Top-1 / Top-5 Loc (official BAS code).
        loc_iou_strict: ``True`` counts a GT-known hit at IoU > 0.5 (cvpr code), else >= 0.5 (ijcv).

    ``update`` takes raw maps (any range; each metric normalizes as its reference does) and GT
    boxes as inclusive ``[x0, y0, x1, y1]`` pixels of the map. ``compute`` returns percentages.
    """

    _STATE = (
        "num_images",
        "num_cls",
        "num_mask_images",
        "gt_known_hits",
        "top1_hits",
        "top5_hits",
        "top1_cls",
        "top5_cls",
        "box_v2_hits",
        "box_v1_hits",
        "pos_hist",
        "neg_hist",
    )

    def __init__(
        self,
        cam_curve_interval: float = 0.01,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        loc_threshold: float = 0.15,
        loc_iou_strict: bool = False,
    ) -> None:
        self.cam_curve_interval = float(cam_curve_interval)
        self.iou_thresholds = tuple(int(d) for d in iou_thresholds)
        if not self.iou_thresholds:
            raise ValueError(
                "iou_thresholds must name at least one IoU threshold (percent), e.g. (30, 50, 70)"
            )
        self.loc_threshold = float(loc_threshold)
        self.loc_iou_strict = bool(loc_iou_strict)
        self.thresholds = cam_thresholds(self.cam_curve_interval)
        self.edges = pxap_edges(self.thresholds)
        self.reset()

    # ---- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero every counter."""
        n = len(self.thresholds)
        for name in ("num_images", "num_cls", "num_mask_images", "gt_known_hits", "top1_hits", "top5_hits"):
            setattr(self, name, np.zeros((), dtype=np.int64))
        self.top1_cls = np.zeros((), dtype=np.int64)
        self.top5_cls = np.zeros((), dtype=np.int64)
        self.box_v2_hits = np.zeros((len(self.iou_thresholds), n), dtype=np.int64)
        self.box_v1_hits = np.zeros(n, dtype=np.int64)
        self.pos_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.neg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The whole state as int64 tensors (fixed shapes): sum them across processes to reduce."""
        return {name: torch.from_numpy(np.array(getattr(self, name), dtype=np.int64)) for name in self._STATE}

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the state with ``state`` (as returned by ``state_tensors``, possibly reduced)."""
        for name in self._STATE:
            value = np.asarray(to_numpy(state[name]), dtype=np.int64)
            if value.shape != np.shape(getattr(self, name)):
                raise ValueError(
                    f"state {name!r} has shape {value.shape}, expected {np.shape(getattr(self, name))}: "
                    "the metric objects were built with different arguments"
                )
            setattr(self, name, value.copy())

    def reduce(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply ``fn`` (e.g. an all-reduce sum) to every state tensor and keep the results."""
        self.load_state_tensors({k: fn(v) for k, v in self.state_tensors().items()})

    def sync(self, accelerator: Any) -> None:
        """Sum the state over the processes of an ``accelerate.Accelerator`` (call on every process)."""
        device = accelerator.device
        self.reduce(lambda t: accelerator.reduce(t.to(device), "sum").cpu())

    def merge(self, other: WSOLMetrics) -> None:
        """Add another metric's state to this one (same arguments), e.g. to combine shards."""
        same = self.iou_thresholds == other.iou_thresholds and np.array_equal(
            self.thresholds, other.thresholds
        )
        if not same:
            raise ValueError(
                "cannot merge WSOLMetrics built with different arguments "
                f"(cam_curve_interval {self.cam_curve_interval} vs {other.cam_curve_interval}, "
                f"iou_thresholds {self.iou_thresholds} vs {other.iou_thresholds})"
            )
        theirs = other.state_tensors()
        self.load_state_tensors({k: v + theirs[k] for k, v in self.state_tensors().items()})

    # ---- update ---------------------------------------------------------------------------------
    def update(
        self,
        maps: ArrayLike,
        gt_boxes: Sequence[ArrayLike | Sequence],
        gt_masks: ArrayLike | None = None,
        ignore_masks: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        labels: ArrayLike | None = None,
    ) -> None:
        """Accumulate one batch.

        Args:
            maps: (B, H, W) raw localization maps.
            gt_boxes: B arrays (N_i, 4) of inclusive ``[x0, y0, x1, y1]`` pixel boxes.
            gt_masks: optional (B, H, W) foreground masks (bool, or 0 / 1 with 255 = ignore) for PxAP.
            ignore_masks: optional (B, H, W) bool, pixels left out of PxAP / PIoU.
            logits: optional (B, C) class scores; with ``labels`` (B,) enables Top-1 / Top-5 Loc.
        """
        m = to_numpy(maps)
        if m.ndim != 3:
            raise ValueError(f"maps must be (B, H, W), got shape {m.shape}")
        b = m.shape[0]
        if len(gt_boxes) != b:
            raise ValueError(f"got {len(gt_boxes)} GT box arrays for {b} maps")
        # the references run on float32 maps
        m = m.astype(np.float32, copy=False)
        norm = normalize_maps(m)
        gts = [_gt_array(g) for g in gt_boxes]

        v2_hits, v1_hits = box_hits(m, gts, self.thresholds, self.iou_thresholds)
        self.box_v2_hits += v2_hits
        self.box_v1_hits += v1_hits

        known = self._gt_known(norm, gts)
        self.gt_known_hits += int(known.sum())
        self.num_images += b

        if (logits is None) != (labels is None):
            raise ValueError("pass both logits and labels (Top-1 / Top-5 Loc) or neither")
        if logits is not None:
            lg = to_numpy(logits).astype(np.float64, copy=False).reshape(b, -1)
            lb = to_numpy(labels).astype(np.int64).reshape(b)
            k = min(5, lg.shape[1])
            top5 = np.argsort(-lg, axis=1, kind="stable")[:, :k]
            top1_ok = lg.argmax(axis=1) == lb
            top5_ok = (top5 == lb[:, None]).any(axis=1)
            self.top1_cls += int(top1_ok.sum())
            self.top5_cls += int(top5_ok.sum())
            self.top1_hits += int((top1_ok & known).sum())
            self.top5_hits += int((top5_ok & known).sum())
            self.num_cls += b

        if gt_masks is not None:
            gm = to_numpy(gt_masks)
            if gm.shape != m.shape:
                raise ValueError(f"gt_masks shape {gm.shape} does not match maps {m.shape}")
            classes = gm.astype(np.uint8) if gm.dtype == bool else np.where((gm == 0) | (gm == 1), gm, 255)
            classes = classes.astype(np.uint8, copy=False)
            if ignore_masks is not None:
                ig = to_numpy(ignore_masks).astype(bool)
                if ig.shape != m.shape:
                    raise ValueError(f"ignore_masks shape {ig.shape} does not match maps {m.shape}")
                classes = np.where(ig, np.uint8(255), classes)
            pos, neg = pixel_histograms(norm, classes, self.edges)
            self.pos_hist += pos
            self.neg_hist += neg
            self.num_mask_images += b
        elif ignore_masks is not None:
            raise ValueError("ignore_masks given without gt_masks")

    def _gt_known(self, norm: np.ndarray, gts: list[np.ndarray]) -> np.ndarray:
        """Official BAS GT-known hit per image (largest component box vs every GT box)."""
        hits = np.zeros(len(gts), dtype=bool)
        for i, gt in enumerate(gts):
            if len(gt) == 0:
                continue
            box = boxes_from_map(norm[i], self.loc_threshold, mode="largest")
            iou = inclusive_iou(box, gt).max()
            hits[i] = iou > 0.5 if self.loc_iou_strict else iou >= 0.5
        return hits

    # ---- compute --------------------------------------------------------------------------------
    def compute(self) -> dict[str, float]:
        """Metrics in percent (and best thresholds) over everything seen since the last ``reset``.

        Top-1 / Top-5 Loc and classification accuracies are over the images that came with logits
        and labels; PxAP / PIoU over those that came with masks; the rest over every image.
        """
        n = int(self.num_images)
        if n == 0:
            raise RuntimeError("WSOLMetrics.compute() called before any update()")
        out: dict[str, float] = {}
        if int(self.num_cls) > 0:
            nc = int(self.num_cls)
            out["top1_loc"] = 100.0 * int(self.top1_hits) / nc
            out["top5_loc"] = 100.0 * int(self.top5_hits) / nc
            out["top1_cls"] = 100.0 * int(self.top1_cls) / nc
            out["top5_cls"] = 100.0 * int(self.top5_cls) / nc
        out["gt_known_loc"] = 100.0 * int(self.gt_known_hits) / n
        accs = 100.0 * self.box_v2_hits / n
        per_delta = {}
        for d, acc in zip(self.iou_thresholds, accs, strict=True):
            k = int(np.argmax(acc))
            per_delta[d] = (float(acc[k]), float(self.thresholds[k]))
        out["maxboxacc_v2"] = float(np.mean([v for v, _ in per_delta.values()]))
        for d, (v, _) in per_delta.items():
            out[f"maxboxacc_v2@{d}"] = v
        for d, (_, t) in per_delta.items():
            out[f"best_threshold_v2@{d}"] = t
        acc1 = 100.0 * self.box_v1_hits / n
        k = int(np.argmax(acc1))
        out["maxboxacc_v1"] = float(acc1[k])
        out["best_threshold_v1"] = float(self.thresholds[k])
        if int(self.num_mask_images) > 0:
            out.update(pxap_from_histograms(self.pos_hist, self.neg_hist, self.thresholds))
        return out
