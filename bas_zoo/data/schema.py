"""The one schema every WSOL / WSSS dataset is converted to, and the checks that guard it.

Columns (a ``datasets.Dataset``):

- ``image``: ``datasets.Image``. Pixels are read with :func:`bas_zoo.data.load_rgb` (RGB, EXIF applied).
- ``label``: ``ClassLabel`` with the class names; for multi-label data the PRIMARY class, i.e. the
  class covering the most mask pixels (VOC, synthetic multi-label).
- ``labels`` (multi-label only): ``List(ClassLabel)``, every class present, ascending.
- ``bboxes``: ``List(List(float32, 4))``, one ``[x0, y0, x1, y1]`` per object, in pixels of the
  stored image. Boxes follow the inclusive pixel convention of the reference metrics (x1 is the last
  covered column): mask-derived boxes are ``[min_col, min_row, max_col, max_row]``; source boxes are
  kept as the references read them (CUB ``x + w``, ImageNet XML ``xmax``).
- ``bbox_labels`` (multi-label only): ``List(ClassLabel)``, the class of each box.
- ``mask`` (optional): ``datasets.Image``, 8-bit ids: 0 background, 1 foreground (WSOL) or class id + 1
  (multi-label / VOC), 255 ignore. Palette PNGs (VOC) are stored as is: their indices are the ids, read
  them with :func:`bas_zoo.data.load_mask` or ``np.asarray`` (never ``.convert("L")``).
- ``image_id``: string, unique within the split.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import datasets

__all__ = [
    "DatasetFormatError",
    "wsol_features",
    "check_box",
    "parse_options",
    "parse_columns",
    "REQUIRED_COLUMNS",
]

REQUIRED_COLUMNS = ("image", "label", "bboxes")
BOX_TOLERANCE = 1.0  # pixels a source box may overshoot the image before it is an error (then clipped)


class DatasetFormatError(ValueError):
    """A dataset file is missing or malformed; the message names the file, the line and the fix."""


def where(path: str | os.PathLike, line: int | None = None) -> str:
    """``file:line`` prefix for error messages."""
    return f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)


def box_feature() -> datasets.List:
    return datasets.List(datasets.List(datasets.Value("float32"), length=4))


def wsol_features(
    class_names: Sequence[str],
    multilabel: bool = False,
    with_mask: bool = False,
    extra: dict | None = None,
) -> datasets.Features:
    """Features of the common schema (column order: image, label, [labels], bboxes, ..., image_id)."""
    names = list(class_names)
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DatasetFormatError(f"Class names must be unique; duplicated: {dupes[:5]}.")
    feats: dict = {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    if multilabel:
        feats["labels"] = datasets.List(datasets.ClassLabel(names=names))
    feats["bboxes"] = box_feature()
    if multilabel:
        feats["bbox_labels"] = datasets.List(datasets.ClassLabel(names=names))
    if with_mask:
        feats["mask"] = datasets.Image()
    feats.update(extra or {})
    feats["image_id"] = datasets.Value("string")
    return datasets.Features(feats)


def check_box(
    box: Sequence[float],
    width: int,
    height: int,
    source: str,
    fix: str = "Fix or remove this annotation.",
) -> list[float]:
    """Validate an xyxy box against the image size; clip overshoots up to ``BOX_TOLERANCE`` pixels.

    ``x1 == width`` is accepted: CUB-style ``x + w`` boxes end one past the last column.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise DatasetFormatError(f"{source}: box {list(box)} has a non-finite coordinate. {fix}")
    if x1 < x0 or y1 < y0:
        raise DatasetFormatError(
            f"{source}: box {list(box)} has x1 < x0 or y1 < y0 (expected x0, y0, x1, y1). {fix}"
        )
    tol = BOX_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise DatasetFormatError(
            f"{source}: box {[round(v, 2) for v in (x0, y0, x1, y1)]} lies outside the {width}x{height} image. "
            f"{fix}"
        )
    return [max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)]


def _parse_value(text: str) -> int | float | str | bool:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_options(text: str, what: str = "options") -> dict:
    """Parse ``"a=1,b=0.5,c=x"`` into ``{"a": 1, "b": 0.5, "c": "x"}`` (ints, floats, bools, strings)."""
    out: dict = {}
    for piece in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = piece.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"Malformed {what} {piece!r} in {text!r}: expected key=value pairs separated by commas."
            )
        out[key.strip()] = _parse_value(value)
    return out


def parse_columns(text: str | dict | None) -> dict[str, str]:
    """Parse a column mapping ``"image=img,bboxes=objects.bbox"`` (schema name = source column).

    Dicts pass through (values as strings); ``None`` and ``""`` give ``{}``. The special key
    ``box_format`` (``xyxy`` or ``xywh``) says how the source stores boxes.
    """
    if text is None:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for piece in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = piece.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"Malformed column mapping {piece!r} in {text!r}: expected schema=source pairs, "
                "e.g. --columns image=img,bboxes=objects.bbox"
            )
        out[key.strip()] = value.strip()
    return out
