"""A Hugging Face style image folder with boxes in metadata.jsonl.

Spec: ``imagefolder:DIR``.
``DIR/<split>/metadata.jsonl`` with one JSON object per image: ``file_name`` (relative to the split
folder), ``label`` (name or index), ``bboxes`` (xyxy pixels, may be empty), optional
``mask_file_name``, ``labels`` (multi-label), ``bbox_labels``, ``image_id``. Class names come from
``DIR/classes.txt`` (one per line) or, when absent, from the labels of every split (sorted names, or
``0..max`` for integer labels).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import datasets

from ..image import ImageLoadError, image_size
from ..schema import DatasetFormatError, check_box, where, wsol_features
from ._common import read_lines


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in read_lines(path, "metadata.jsonl", "Each split folder needs a metadata.jsonl."):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(
                f"{where(path, lineno)}: malformed JSON ({err.msg}). Fix the line."
            ) from None
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{where(path, lineno)}: expected a JSON object per line.")
        yield lineno, record


def _imagefolder_classes(root: Path) -> list[str]:
    classes_file = root / "classes.txt"
    if classes_file.is_file():
        return [line for _, line in read_lines(classes_file, "classes.txt", "")]
    seen: set = set()
    for meta in sorted(root.glob("*/metadata.jsonl")):
        for _, record in _read_jsonl(meta):
            for key in ("label", "labels", "bbox_labels"):
                value = record.get(key)
                seen.update(value if isinstance(value, list) else [] if value is None else [value])
    if all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
        return [str(i) for i in range(max(seen, default=-1) + 1)]
    if any(not isinstance(v, str) for v in seen):
        raise DatasetFormatError(f"{root}: labels mix names and indices; use one kind or add classes.txt.")
    return sorted(seen)


def load_imagefolder(root: str | os.PathLike, split: str) -> datasets.Dataset:
    """Read ``DIR/<split>/metadata.jsonl`` (see the module docstring)."""
    root = Path(root)
    split_dir = root / split
    meta = split_dir / "metadata.jsonl"
    if not meta.is_file():
        available = sorted(p.parent.name for p in root.glob("*/metadata.jsonl"))
        raise DatasetFormatError(f"{meta}: not found; available splits: {available}.")
    names = _imagefolder_classes(root)
    index = {n: i for i, n in enumerate(names)}
    records = list(_read_jsonl(meta))
    multilabel = any("labels" in r for _, r in records)
    with_mask = any(r.get("mask_file_name") for _, r in records)

    def class_id(value, lineno: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DatasetFormatError(f"{where(meta, lineno)}: label {value!r} must be a class name or index.")
        if isinstance(value, int):
            if not 0 <= value < len(names):
                raise DatasetFormatError(
                    f"{where(meta, lineno)}: unknown class index {value}; there are {len(names)} classes "
                    "(classes.txt or the labels seen). Fix the label."
                )
            return value
        if value not in index:
            raise DatasetFormatError(
                f"{where(meta, lineno)}: unknown class {value!r}; known: {names[:10]}{'...' if len(names) > 10 else ''}. "
                "Fix the label or add it to classes.txt."
            )
        return index[value]

    rows: dict[str, list] = defaultdict(list)
    for lineno, record in records:
        src = where(meta, lineno)
        file_name = record.get("file_name")
        if not isinstance(file_name, str):
            raise DatasetFormatError(f"{src}: missing 'file_name'. Every line needs the image path.")
        file = split_dir / file_name
        try:
            width, height = image_size(file)
        except ImageLoadError as err:
            raise DatasetFormatError(f"{src}: {err}") from err
        labels = [class_id(v, lineno) for v in record.get("labels", [])]
        if "label" in record:
            label = class_id(record["label"], lineno)
        elif labels:
            label = labels[0]
        else:
            raise DatasetFormatError(f"{src}: missing 'label'. Add the image's class.")
        raw_boxes = record.get("bboxes", [])
        if not isinstance(raw_boxes, list) or any(not isinstance(b, list) or len(b) != 4 for b in raw_boxes):
            raise DatasetFormatError(f"{src}: 'bboxes' must be a list of [x0, y0, x1, y1] lists.")
        try:
            boxes = [check_box(b, width, height, src) for b in raw_boxes]
        except (TypeError, ValueError) as err:
            if isinstance(err, DatasetFormatError):
                raise
            raise DatasetFormatError(f"{src}: 'bboxes' must hold numbers ({err}).") from None
        rows["image"].append(str(file))
        rows["label"].append(label)
        if multilabel:
            rows["labels"].append(sorted(set(labels) | {label}))
            box_labels = [class_id(v, lineno) for v in record.get("bbox_labels", [label] * len(boxes))]
            if len(box_labels) != len(boxes):
                raise DatasetFormatError(f"{src}: 'bbox_labels' must have one entry per box.")
            rows["bbox_labels"].append(box_labels)
        rows["bboxes"].append(boxes)
        if with_mask:
            mask_name = record.get("mask_file_name")
            if mask_name and not (split_dir / mask_name).is_file():
                raise DatasetFormatError(f"{src}: mask {split_dir / mask_name} not found.")
            rows["mask"].append(str(split_dir / mask_name) if mask_name else None)
        rows["image_id"].append(str(record.get("image_id", file_name)))
    features = wsol_features(names, multilabel=multilabel, with_mask=with_mask)
    return datasets.Dataset.from_dict({k: rows[k] for k in features}, features=features, split=split)
