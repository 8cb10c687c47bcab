"""Streaming mIoU of WSSS pseudo masks over a sweep of background thresholds.

Pseudo masks come from per-class foreground scores in [0, 1]: a pixel takes the best present class
when its score beats the background threshold, else background (the usual CAM / BAS seed protocol,
swept over thresholds 0.20-0.44 in the BAS journal). One confusion matrix per threshold is kept.

All thresholds are accumulated in one pass: a pixel's prediction only switches from its best class
to background once the threshold reaches its best score, so a single ``bincount`` over (switch
index, GT class, best class) followed by cumulative sums gives every confusion matrix exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._arrays import ArrayLike, to_numpy

__all__ = ["SegMetrics"]


class SegMetrics:
    """Confusion matrices ``(C + 1) x (C + 1)`` (0 = background) per background threshold.

    Args:
        num_classes: number of foreground classes C (20 for VOC).
        bg_thresholds: background scores to sweep.
        ignore_index: GT value left out (255 in VOC).

    Prediction at threshold ``t``: ``argmax([t, s_1, ..., s_C])`` over the present classes (absent
    classes never win), ties going to background, i.e. class ``c`` when ``s_c > t``. Scores and
    thresholds are compared in float64.
    """

    def __init__(
        self,
        num_classes: int,
        bg_thresholds: Sequence[float] | np.ndarray = np.arange(0.20, 0.45, 0.01),
        ignore_index: int = 255,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.bg_thresholds = np.asarray(bg_thresholds, dtype=np.float64).ravel()
        if len(self.bg_thresholds) == 0 or np.any(np.diff(self.bg_thresholds) <= 0):
            raise ValueError("bg_thresholds must be a non-empty increasing sequence")
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Zero the confusion matrices."""
        k = self.num_classes + 1
        self.confusion = np.zeros((len(self.bg_thresholds), k, k), dtype=np.int64)

    def update(self, class_scores: ArrayLike, present_classes: ArrayLike | None, gt: ArrayLike) -> None:
        """Accumulate a batch.

        Args:
            class_scores: (B, C, H, W) foreground scores in [0, 1] (max-normalized per class).
            present_classes: (B, C) bool image-level labels, or None to let every class compete.
            gt: (B, H, W) int labels, 0 = background, 1..C = classes, ``ignore_index`` ignored.
        """
        s = to_numpy(class_scores)
        g = to_numpy(gt).astype(np.int64)
        if s.ndim != 4 or s.shape[1] != self.num_classes:
            raise ValueError(f"class_scores must be (B, {self.num_classes}, H, W), got {s.shape}")
        if g.shape != (s.shape[0], *s.shape[2:]):
            raise ValueError(f"gt shape {g.shape} does not match scores {s.shape}")
        s = s.astype(np.float64, copy=False)
        if present_classes is not None:
            p = to_numpy(present_classes).astype(bool).reshape(s.shape[0], self.num_classes)
            s = np.where(p[:, :, None, None], s, -np.inf)
        best = s.argmax(axis=1) + 1  # best class (1..C), first on ties
        score = s.max(axis=1)
        valid = (g != self.ignore_index) & (g >= 0) & (g <= self.num_classes)
        best, score, g = best[valid], score[valid], g[valid]
        # number of thresholds strictly below the score: the pixel is `best` for those, bg after
        switch = np.searchsorted(self.bg_thresholds, score, side="left")
        k = self.num_classes + 1
        n_t = len(self.bg_thresholds)
        table = np.bincount((switch * k + g) * k + best, minlength=(n_t + 1) * k * k).reshape(n_t + 1, k, k)
        # fg predictions at threshold j: pixels with switch > j
        fg = np.cumsum(table[::-1], axis=0)[::-1][1:]
        # bg predictions at threshold j: pixels with switch <= j, whatever their best class
        bg = np.cumsum(table.sum(axis=2), axis=0)[:n_t]
        conf = fg
        conf[:, :, 0] += bg
        self.confusion += conf

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """State as int64 tensors (sum across processes to reduce)."""
        return {"confusion": torch.from_numpy(self.confusion.copy())}

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the state (e.g. with reduced tensors)."""
        value = np.asarray(to_numpy(state["confusion"]), dtype=np.int64)
        if value.shape != self.confusion.shape:
            raise ValueError(f"confusion has shape {value.shape}, expected {self.confusion.shape}")
        self.confusion = value.copy()

    def reduce(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply ``fn`` (e.g. an all-reduce sum) to the state tensors and keep the results."""
        self.load_state_tensors({k: fn(v) for k, v in self.state_tensors().items()})

    def sync(self, accelerator: Any) -> None:
        """Sum the confusion matrices over the processes of an ``accelerate.Accelerator``."""
        device = accelerator.device
        self.reduce(lambda t: accelerator.reduce(t.to(device), "sum").cpu())

    def compute(self) -> dict:
        """Best mIoU (%) over the thresholds, that threshold, per-class IoU (%) there and the curve.

        Classes that never occur in GT nor prediction are left out of the mean (NaN in the list).
        """
        c = self.confusion.astype(np.float64)
        inter = np.diagonal(c, axis1=1, axis2=2)
        union = c.sum(axis=2) + c.sum(axis=1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, inter / union, np.nan)
        seen = (union > 0).any(axis=1)
        curve = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in iou]) * 100
        if not seen.any():
            raise RuntimeError("SegMetrics.compute() called before any valid pixel was seen")
        best = int(np.nanargmax(curve))
        return {
            "miou": float(curve[best]),
            "best_bg_threshold": float(self.bg_thresholds[best]),
            "per_class_iou": [float(v) for v in iou[best] * 100],
            "miou_curve": [float(v) for v in curve],
        }
