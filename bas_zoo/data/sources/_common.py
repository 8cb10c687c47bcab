"""Shared helpers of the raw-layout readers: line reading with file:line errors, hold-out splits, masks."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image

from ..schema import DatasetFormatError, where

VAL_SEED = 0  # seed of the fixed-hash val hold-outs
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_lines(path: Path, what: str, fix: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, stripped line) of a text file, skipping blank lines."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: {what} not found. {fix}")
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.strip()
            if line:
                yield lineno, line


def malformed(path: Path, lineno: int, line: str, expected: str) -> DatasetFormatError:
    return DatasetFormatError(
        f"{where(path, lineno)}: malformed line {line!r}; expected {expected}. Fix or remove it."
    )


def split_error(split: str, available: list[str], spec: str) -> DatasetFormatError:
    return DatasetFormatError(f"Unknown split {split!r} for {spec}; available splits: {available}.")


def held_out(keys_by_class: dict[int, list[str]], fraction: float | None, per_class: int | None) -> set[str]:
    """Deterministic per-class hold-out: the keys with the smallest sha1(seed:key) in each class."""
    held: set[str] = set()
    for keys in keys_by_class.values():
        if len(keys) < 2:
            continue
        count = per_class if per_class is not None else max(1, round(fraction * len(keys)))
        count = min(count, len(keys) - 1)
        ranked = sorted(keys, key=lambda k: hashlib.sha1(f"{VAL_SEED}:{k}".encode()).hexdigest())
        held.update(ranked[:count])
    return held


def mask_boxes(mask: np.ndarray, values: list[int]) -> list[list[float]]:
    """Inclusive bbox [min_col, min_row, max_col, max_row] of the pixels equal to each value."""
    boxes = []
    for value in values:
        rows, cols = np.nonzero(mask == value)
        boxes.append([float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())])
    return boxes


def png_bytes(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def file_signature(*paths: Path) -> list:
    """File sizes and modification times: a cache key that changes when the annotations change."""
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else (str(p), None) for p in paths]


def strip_index(name: str) -> str:
    return re.sub(r"^\d+\.", "", name)
