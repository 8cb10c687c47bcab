"""PxAP / PIoU from streaming score histograms (wsolevaluation's MaskEvaluator, batched).

The reference histograms positive and negative pixel scores of every image with ``np.histogram``
and bin edges ``thresholds + [1, 2, 3]``; the AP comes from reverse cumulative sums. Histograms
add up, so a whole batch is binned at once and counted with ``cv2.calcHist`` (positives and
negatives through masks), with the exact ``np.histogram`` bin of every score:

* fast path, thresholds ``k / N`` (``interval = 1 / N``) and scores in [0, 1] (normalized maps):
  the bin is ``floor(v * N)``. The float64 product of a float32 score and ``N`` is exact, and a
  float32 score is never closer to a threshold ``t_k`` than ``|t_k - k / N|`` (~1e-16) unless it is
  exactly ``k / N``; the few ``k`` where that exact value sits below ``t_k`` are corrected;
* otherwise a guess corrected against the float64 edges (``score_bins``) and ``np.bincount``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["pxap_edges", "score_bins", "pixel_histograms", "pxap_from_histograms"]


def pxap_edges(thresholds: np.ndarray) -> np.ndarray:
    """Bin edges of the reference: the CAM thresholds then 1, 2, 3 (last bin closed)."""
    return np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])


def score_bins(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram`` bin index of every score (int64, same shape); -1 outside [edges[0], edges[-1]].

    Bins are ``[e_i, e_i+1)`` except the last, ``[e_-2, e_-1]``; comparisons are in float64 like
    ``np.histogram`` against float64 edges.
    """
    v = np.asarray(scores).astype(np.float64, copy=False).ravel()
    n_bins = len(edges) - 1
    n_thr = n_bins - 2
    # the thresholds are k * step (np.arange), so floor(v / step) is right up to one rounding step
    step = edges[1] - edges[0] if n_thr > 1 else 1.0
    guess = np.floor(v * (1.0 / step))
    np.clip(guess, 0, n_thr, out=guess)  # NaN stays NaN and is fixed below
    idx = np.nan_to_num(guess, nan=0.0).astype(np.int64)
    idx -= v < edges[idx]
    np.clip(idx, 0, n_bins - 1, out=idx)
    idx += (v >= edges[idx + 1]) & (idx < n_bins - 1)
    ok = (edges[idx] <= v) & ((v < edges[idx + 1]) | ((idx == n_bins - 1) & (v <= edges[-1])))
    if not ok.all():  # anything the guess missed (values >= 2, odd spacings, out of range, NaN)
        bad = np.flatnonzero(~ok)
        fixed = np.searchsorted(edges, v[bad], side="right") - 1
        fixed[v[bad] == edges[-1]] = n_bins - 1
        fixed[(fixed < 0) | (fixed >= n_bins) | np.isnan(v[bad])] = -1
        idx[bad] = fixed
    return idx.reshape(np.shape(scores))


_PLAN_CACHE: dict[bytes, tuple[int | None, list[tuple[int, np.float32]]]] = {}


def _unit_plan(edges: np.ndarray) -> tuple[int | None, list[tuple[int, np.float32]]]:
    """(N, exact-multiple fix-ups) for these edges, computed once per distinct edge array."""
    key = np.ascontiguousarray(edges, dtype=np.float64).tobytes()
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        n = _unit_divisor(edges)
        plan = (n, _exact_fixups(edges, n) if n is not None else [])
        if len(_PLAN_CACHE) > 32:
            _PLAN_CACHE.clear()
        _PLAN_CACHE[key] = plan
    return plan


def _unit_divisor(edges: np.ndarray) -> int | None:
    """N when the thresholds are ``k / N`` (up to float rounding), else None."""
    thresholds = edges[:-3]
    n_thr = len(thresholds)
    if n_thr < 1 or n_thr > 60000:
        return None
    n = round(1.0 / (edges[1] - edges[0])) if n_thr > 1 else 1
    k = np.arange(n_thr)
    if n != n_thr or np.abs(thresholds * n - k).max() > 1e-6 or edges[n_thr] != 1.0:
        return None
    return n


def _exact_fixups(edges: np.ndarray, n: int) -> list[tuple[int, np.float32]]:
    """(k, value) where the float32 score ``value == k / N`` exactly lies below the edge ``t_k``."""
    out = []
    for k in range(1, n + 1):
        v = np.float32(k / n)
        if float(v) * n == k and float(v) < edges[k]:
            out.append((k, v))
    return out


def _histograms_unit(
    scores: np.ndarray, classes: np.ndarray, edges: np.ndarray, n: int, fixups: list[tuple[int, np.float32]]
) -> tuple[np.ndarray, np.ndarray]:
    """Fast path: key = floor(v * N) + class block, one calcHist of uint16 keys per chunk."""
    n_bins = len(edges) - 1
    width = scores.shape[-1] if scores.ndim >= 2 else max(1, scores.size)
    v = scores.reshape(-1, width)
    cls = np.ascontiguousarray(classes, dtype=np.uint8).reshape(-1, width)
    block = np.full(256, 2 * n_bins, dtype=np.uint16)  # ignored pixels land in a third block
    block[1], block[0] = 0, n_bins
    counts = np.zeros(3 * n_bins, dtype=np.int64)
    # ~256k pixels per step: the four passes stay in cache, and float32 counts stay exact (< 2**24)
    step = max(1, (1 << 18) // width)
    for r in range(0, len(v), step):
        rows = v[r : r + step]
        key = np.empty(rows.shape, dtype=np.uint16)
        # the float64 product of a float32 score and N is exact; the cast truncates, i.e. floors
        np.multiply(rows, np.float64(n), out=key, dtype=np.float64, casting="unsafe")
        np.add(key, cv2.LUT(cls[r : r + step], block), out=key)
        counts += cv2.calcHist([key], [0], None, [3 * n_bins], [0, 3 * n_bins]).ravel().astype(np.int64)
    pos, neg = counts[:n_bins], counts[n_bins : 2 * n_bins]
    for k, value in fixups:  # rare exact multiples k / N lying below the edge t_k
        hit = v == value
        for hist, c in ((pos, 1), (neg, 0)):
            moved = int(np.count_nonzero(hit & (cls == c)))
            hist[k] -= moved
            hist[k - 1] += moved
    return pos, neg


def pixel_histograms(
    scores: np.ndarray, classes: np.ndarray, edges: np.ndarray, unit_range: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms (positive, negative) of ``scores`` where ``classes`` is 1 (positive) / 0 (negative).

    Any other class value (255 = ignore) is skipped. Identical to summing per-image ``np.histogram``.
    ``unit_range=True`` promises float32 scores in [0, 1] (normalized maps) and skips checking it.
    """
    scores = np.asarray(scores)
    cls = np.asarray(classes)
    if cls.shape != scores.shape:
        raise ValueError(f"classes shape {cls.shape} does not match scores {scores.shape}")
    if cls.dtype == bool:
        cls = cls.view(np.uint8)
    n, fixups = _unit_plan(edges)
    if (
        n is not None
        and scores.dtype == np.float32
        and scores.size
        and cls.dtype == np.uint8
        and (unit_range or (scores.min() >= 0.0 and scores.max() <= 1.0))
    ):
        return _histograms_unit(np.ascontiguousarray(scores), cls, edges, n, fixups)
    n_bins = len(edges) - 1
    idx = score_bins(scores, edges).ravel()
    c = cls.ravel()
    group = np.where(c == 1, 0, np.where(c == 0, 1, 2))
    key = np.where(idx < 0, 2 * n_bins, idx + group * n_bins)
    counts = np.bincount(key, minlength=3 * n_bins)
    return counts[:n_bins].astype(np.int64), counts[n_bins : 2 * n_bins].astype(np.int64)


def pxap_from_histograms(
    pos_hist: np.ndarray, neg_hist: np.ndarray, thresholds: np.ndarray
) -> dict[str, float]:
    """PxAP (%), PIoU (%) and the threshold of the best PIoU from the two histograms.

    PxAP follows the reference exactly: ``tp, fp`` are reverse cumulative sums,
    ``precision = tp / (tp + fp)``, ``recall = tp / P`` and
    ``PxAP = 100 * sum(precision[1:] * diff(recall))`` over bins with ``tp + fp != 0``.
    PIoU is the best ``tp / (tp + fp + fn)`` over the CAM thresholds, a pixel being foreground when
    its score is ``>= t`` (the same left-closed bins).
    """
    pos = np.asarray(pos_hist, dtype=np.float64)
    neg = np.asarray(neg_hist, dtype=np.float64)
    n_pos = pos.sum()
    if n_pos <= 0:
        return {"pxap": float("nan"), "piou": float("nan"), "best_threshold_piou": float("nan")}
    tp = pos[::-1].cumsum()
    fp = neg[::-1].cumsum()
    fn = n_pos - tp
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        pxap = float((precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100)
        # thresholds ascending: counts of scores >= t_k are the reverse sums at position n_bins-1-k
        n_thr = len(thresholds)
        k_pos = len(pos) - 1 - np.arange(n_thr)
        iou = tp[k_pos] / (tp[k_pos] + fp[k_pos] + fn[k_pos])
    best = int(np.nanargmax(iou)) if np.isfinite(iou).any() else 0
    return {
        "pxap": pxap,
        "piou": float(iou[best] * 100) if np.isfinite(iou[best]) else float("nan"),
        "best_threshold_piou": float(thresholds[best]),
    }
