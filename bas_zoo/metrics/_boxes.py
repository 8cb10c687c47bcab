"""MaxBoxAcc (V1 / V2) at every CAM threshold, identical to wsolevaluation, without tracing contours.

The published definition (Choe et al., CVPR 2020, clovaai/wsolevaluation) normalizes each map to
uint8, thresholds it at every CAM threshold, runs ``cv2.findContours(RETR_TREE)`` and takes the
bounding rectangle of every contour (V2) or of the contour of largest polygon area (V1).

V2 needs no contours: RETR_TREE's rectangles are the boxes of the 8-connected foreground components
and, grown by one pixel, of the 4-connected background components off the border (holes). The
compiled ``_levelsets`` module finds them for all thresholds of a map in one pass, from the
foreground's row runs at each level (see ``_levelsets.c``), and returns the best IoU and the number
of contours per threshold. It also does the reference normalization, so Python only sees results.

V1 needs the contour of largest polygon area, which components do not give. It is settled without
contours where no box reaches IoU 0.5, where every box does, or where a lower bound of a hitting
contour's area beats an upper bound of every missing one (bounds from the components' boxes and
2 x 2 windows); the remaining thresholds are traced with OpenCV exactly as the reference does.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import cv2
import numpy as np
import torch

try:
    from ._levelsets import contour_box_ious as _contour_box_ious
except ImportError as err:  # a source tree that was never built
    raise ImportError(
        "bas_zoo's compiled MaxBoxAcc module (bas_zoo/metrics/_levelsets.c) is not built. Install the "
        "package with `pip install -e .` (or `pip install .`) from the repository root; it needs a C "
        "compiler such as gcc or clang."
    ) from err

__all__ = [
    "ContourScores",
    "box_hits",
    "cam_thresholds",
    "contour_box_ious",
    "inclusive_iou",
    "largest_contour_box",
]


def cam_thresholds(interval: float) -> np.ndarray:
    """CAM thresholds ``np.arange(0, 1, interval)`` (float64), as wsolevaluation builds them."""
    if not 0 < interval <= 1:
        raise ValueError(f"cam_curve_interval must be in (0, 1], got {interval}")
    return np.arange(0, 1, interval)


class ContourScores(NamedTuple):
    """Per map and CAM threshold, what the reference's contours give (see ``contour_box_ious``)."""

    u8: np.ndarray  # (B, H, W) the reference uint8 maps
    best: np.ndarray  # (B, T) float64 best IoU of any contour box with any GT box
    count: np.ndarray  # (B, T) int64 number of contours
    v1: np.ndarray  # (B, T) int8 V1 hit at IoU 0.5: 0 no, 1 yes, 2 unknown until traced


def contour_box_ious(
    maps: np.ndarray, gt_boxes: list[np.ndarray], thresholds: np.ndarray, threads: int | None = None
) -> ContourScores:
    """Best contour-box IoU, number of contours and V1's hit per map and CAM threshold.

    ``maps`` (B, H, W) are raw maps, normalized here as the reference does (float32 min-max, NaN or
    constant -> zeros, ``uint8(m * 255)``). ``best`` is the largest inclusive IoU of any RETR_TREE
    contour box with any of the image's GT boxes (``-inf`` without GT boxes); a threshold without
    foreground has the reference's single box ``[0, 0, 0, 0]``. ``v1`` is V1's hit where the contour
    areas' bounds settle which contour is largest, else 2. Maps are split over ``threads`` (default:
    torch's intra-op thread count); the compiled code releases the GIL.
    """
    m = np.ascontiguousarray(maps, dtype=np.float32)
    if m.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {m.shape}")
    b, h, w = m.shape
    if len(gt_boxes) != b:
        raise ValueError(f"got {len(gt_boxes)} GT box arrays for {b} maps")
    gts = [np.asarray(g, dtype=np.float64).reshape(-1, 4) for g in gt_boxes]
    offsets = np.zeros(b + 1, dtype=np.int64)
    np.cumsum([len(g) for g in gts], out=offsets[1:])
    flat_gt = np.ascontiguousarray(np.concatenate(gts) if b else np.zeros((0, 4)), dtype=np.float64)
    thr = np.ascontiguousarray(thresholds, dtype=np.float64)
    t = len(thr)
    out = ContourScores(
        np.empty((b, h, w), np.uint8), np.empty((b, t)), np.empty((b, t), np.int64), np.empty((b, t), np.int8)
    )

    def run(lo: int, hi: int) -> None:
        gt_part = flat_gt[offsets[lo] : offsets[hi]]
        _contour_box_ious(
            m[lo:hi],
            thr,
            gt_part,
            offsets[lo : hi + 1] - offsets[lo],
            *(o[lo:hi] for o in out),
            hi - lo,
            h,
            w,
        )

    n_threads = max(1, min(threads or torch.get_num_threads(), b))
    bounds = np.linspace(0, b, n_threads + 1).astype(int)
    if n_threads == 1:
        run(0, b)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, bounds[:-1], bounds[1:]))
    out.best[offsets[1:] == offsets[:-1]] = -np.inf
    return out


def largest_contour_box(u8: np.ndarray, cut: int) -> list[int]:
    """V1's box at one cut (foreground ``u8 > cut``, ``cut = int(threshold * max(u8))``): the contour
    of largest ``cv2.contourArea`` (first on ties), traced with wsolevaluation's calls.

    No foreground gives ``[0, 0, 0, 0]``.
    """
    h, w = u8.shape
    binary = cv2.threshold(u8, cut, 255, cv2.THRESH_BINARY)[1]
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return [0, 0, 0, 0]
    x, y, bw, bh = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]


def inclusive_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU (M, G) with inclusive pixel areas ``(x1 - x0 + 1) * (y1 - y0 + 1)``; degenerate pairs -> 0.

    Same arithmetic as wsolevaluation's ``calculate_multiple_iou`` (float64 quotient).
    """
    b = np.asarray(boxes, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    bx0, by0, bx1, by1 = (b[:, i, None] for i in range(4))
    gx0, gy0, gx1, gy1 = g.T
    inter = np.maximum(np.minimum(bx1, gx1) - np.maximum(bx0, gx0) + 1, 0.0)
    inter *= np.maximum(np.minimum(by1, gy1) - np.maximum(by0, gy0) + 1, 0.0)
    denom = (bx1 - bx0 + 1) * (by1 - by0 + 1) + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter
    ok = denom > 0
    return np.where(ok, inter / np.where(ok, denom, 1.0), 0.0)


def box_hits(
    maps: np.ndarray,
    gt_boxes: list[np.ndarray],
    thresholds: np.ndarray,
    iou_thresholds: tuple[int, ...],
    largest: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """MaxBoxAcc hit counts of a batch: V2 (n_iou, n_thresholds) and V1 at IoU 0.5 (n_thresholds,).

    ``maps`` (B, H, W) are raw maps, ``gt_boxes`` B arrays (N_i, 4) of inclusive pixel boxes. A hit
    is ``best IoU >= delta / 100`` as in wsolevaluation. ``largest=False`` skips V1 (returns None).
    """
    scores = contour_box_ious(maps, gt_boxes, thresholds, threads)
    deltas = np.asarray(iou_thresholds, dtype=np.float64)[:, None, None] / 100
    v2_hits = (scores.best[None] >= deltas).sum(axis=1)
    if not largest:
        return v2_hits, None
    # trace the thresholds where bounds on the contour areas leave V1 open, once per cut level
    v1 = scores.v1.astype(bool)
    open_ = scores.v1 == 2
    for i in np.flatnonzero(open_.any(axis=1)):
        ks = np.flatnonzero(open_[i])
        u8 = scores.u8[i]
        cuts = (thresholds[ks] * np.float64(u8.max())).astype(np.int64)
        for cut in np.unique(cuts):
            box = np.array([largest_contour_box(u8, int(cut))])
            v1[i, ks[cuts == cut]] = inclusive_iou(box, gt_boxes[i]).max() >= 0.5
    return v2_hits, v1.sum(axis=0)
