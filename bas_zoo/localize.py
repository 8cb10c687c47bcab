"""Localization maps -> normalized maps, foreground masks and boxes.

Pure helpers (numpy / scipy, no model code) shared by the pipeline, the CLI and the metrics. The
conventions are those of the published evaluation code, because reported numbers depend on them:

* ``normalize_map``: a map holding any NaN, or a constant map, becomes all zeros; otherwise
  ``(m - min) / max(m - min)`` in the map's floating dtype (wsolevaluation's ``normalize_scoremap``).
* ``mask_from_map``: normalized map ``> threshold`` (strict), as the official BAS test code.
* ``boxes_from_map``: 8-connected foreground components; box ``[min_col, min_row, max_col + 1,
  max_row + 1]`` (exclusive right/bottom edge, the official BAS box); no foreground gives the whole
  image ``[0, 0, W, H]``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy import ndimage

__all__ = ["boxes_from_map", "boxes_from_maps", "mask_from_map", "normalize_map", "normalize_maps"]

ArrayLike = np.ndarray | torch.Tensor

# 8-connectivity, the foreground connectivity of both references (cv2 contours and the BAS code).
_EIGHT = np.ones((3, 3), dtype=bool)


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _float(x: np.ndarray) -> np.ndarray:
    """Floating copy-free view where possible: float32 / float64 kept, anything else -> float32."""
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def normalize_maps(maps: ArrayLike) -> np.ndarray:
    """Per-map min-max normalization of a batch (..., H, W), reference convention, no pixel loop.

    A map with any NaN, or a constant map, becomes zeros (it then has no foreground at any
    threshold), else ``(m - min) / max(m - min)``; computed in float32 unless the input is float64.
    Maps are processed a few at a time so the passes stay in cache.
    """
    m = _float(_as_numpy(maps))
    if m.ndim < 2:
        raise ValueError(f"maps must have at least 2 dims (..., H, W), got shape {m.shape}")
    flat = m.reshape(-1, m.shape[-2] * m.shape[-1])
    out = np.empty_like(flat)
    step = max(1, (1 << 18) // max(1, flat.shape[1]))
    for s in range(0, len(flat), step):
        part, dst = flat[s : s + step], out[s : s + step]
        lo = part.min(axis=1, keepdims=True)
        # max(m - lo) == max(m) - lo exactly: float rounding is monotone
        hi = part.max(axis=1, keepdims=True) - lo
        np.subtract(part, lo, out=dst)
        with np.errstate(invalid="ignore", divide="ignore"):
            dst /= hi
        dst[~(hi > 0)[:, 0]] = 0  # NaN propagates through min / max; a constant map has hi == 0
    return out.reshape(m.shape)


def normalize_map(m: ArrayLike) -> np.ndarray:
    """One (H, W) map -> min-max normalized numpy map (NaN / constant -> zeros), see module doc."""
    m = _as_numpy(m)
    if m.ndim != 2:
        raise ValueError(f"normalize_map expects one (H, W) map, got shape {m.shape}; use normalize_maps")
    return normalize_maps(m)


def mask_from_map(map_hw: ArrayLike, threshold: float = 0.1) -> np.ndarray:
    """Boolean (H, W) foreground: normalized map ``> threshold`` (strict); NaN / constant -> empty."""
    m = _as_numpy(map_hw)
    if m.ndim != 2:
        raise ValueError(f"mask_from_map expects one (H, W) map, got shape {m.shape}")
    norm = normalize_maps(m)
    mask = norm > threshold
    if threshold < 0 and not norm.any():  # all zeros <=> NaN / constant map: never any foreground
        mask[:] = False
    return mask


def _component_boxes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) [x0, y0, x1 + 1, y1 + 1] and pixel counts of the 8-connected components of ``mask``.

    Components come in raster order of their first pixel (scipy numbers labels that way).
    """
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.int64)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
    return boxes, sizes


def boxes_from_map(
    map_hw: ArrayLike, threshold: float = 0.1, mode: Literal["largest", "all"] = "largest"
) -> np.ndarray:
    """Boxes ``(N, 4)`` int64 ``[x0, y0, x1, y1]`` in pixels from one (H, W) map.

    The map is min-max normalized (``normalize_map``) and binarized with ``> threshold`` (strict).
    Each 8-connected foreground component gives ``[min_col, min_row, max_col + 1, max_row + 1]``: the
    official BAS convention (right / bottom edges exclusive), so ``x1 - x0`` is the box width.

    * ``mode="largest"``: the component with the most pixels (ties: first in raster order), as the
      official BAS GT-known code; no foreground gives ``[[0, 0, W, H]]`` (the whole image).
    * ``mode="all"``: one box per component in raster order of its first pixel; no foreground gives
      an empty ``(0, 4)`` array.
    """
    if mode not in ("largest", "all"):
        raise ValueError(f"mode must be 'largest' or 'all', got {mode!r}")
    mask = mask_from_map(map_hw, threshold)
    boxes, sizes = _component_boxes(mask)
    if mode == "all":
        return boxes
    if len(sizes) == 0:
        h, w = mask.shape
        return np.array([[0, 0, w, h]], dtype=np.int64)
    return boxes[int(np.argmax(sizes))][None]


def boxes_from_maps(
    maps: ArrayLike, threshold: float = 0.1, mode: Literal["largest", "all"] = "largest"
) -> list[np.ndarray]:
    """``boxes_from_map`` over a batch (B, H, W); one ``(N_i, 4)`` array per map."""
    m = _as_numpy(maps)
    if m.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {m.shape}")
    return [boxes_from_map(x, threshold, mode) for x in m]
