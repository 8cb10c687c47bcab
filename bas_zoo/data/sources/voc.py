"""PASCAL VOC 2012 segmentation as multi-label WSSS data.

Spec: ``voc:DIR``.
PASCAL VOC 2012 (``DIR`` or ``DIR/VOC2012``): ``JPEGImages``, ``SegmentationClass`` (palette PNG),
``ImageSets/Segmentation/{train,val}.txt``; ``train_aug`` reads ``ImageSets/Segmentation/train_aug.txt``
(or ``DIR/train_aug.txt``) with masks from ``SegmentationClassAug`` when that folder exists. Image
labels are the classes present in the mask (not 0, not 255); ``label`` is the one with the most pixels;
one box per class (bbox of its pixels); the mask keeps 255 boundaries as ignore.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np

from ..cache import cached_build
from ..image import ImageLoadError, image_size, load_mask
from ..schema import DatasetFormatError, where, wsol_features
from ._common import file_signature, mask_boxes, read_lines

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _voc_root(root: Path) -> Path:
    if not (root / "JPEGImages").is_dir() and (root / "VOC2012" / "JPEGImages").is_dir():
        return root / "VOC2012"
    return root


def load_voc(
    root: str | os.PathLike, split: str, cache_dir: str | os.PathLike | None = None
) -> datasets.Dataset:
    """Read a VOC 2012 segmentation split as multi-label data (see the module docstring)."""
    root = _voc_root(Path(root))
    sets = root / "ImageSets" / "Segmentation"
    list_file = sets / f"{split}.txt"
    if split == "train_aug" and not list_file.is_file() and (root / "train_aug.txt").is_file():
        list_file = root / "train_aug.txt"
    if not list_file.is_file():
        available = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
        raise DatasetFormatError(
            f"{list_file}: split list not found (available: {available}). For train_aug put the SBD list "
            "there and the SBD masks in SegmentationClassAug/."
        )
    mask_dir = root / "SegmentationClass"
    if split == "train_aug" and (root / "SegmentationClassAug").is_dir():
        mask_dir = root / "SegmentationClassAug"
    options = {
        "root": str(root.resolve()),
        "split": split,
        "version": 1,
        "files": file_signature(list_file, mask_dir),
    }
    return cached_build("voc", options, lambda: _build_voc(root, split, list_file, mask_dir), cache_dir)


def _build_voc(root: Path, split: str, list_file: Path, mask_dir: Path) -> datasets.Dataset:
    rows: dict[str, list] = {
        k: [] for k in ("image", "label", "labels", "bboxes", "bbox_labels", "mask", "image_id")
    }
    num = len(VOC_CLASSES)
    for lineno, line in read_lines(list_file, "split list", ""):
        parts = line.split()
        image_id = Path(parts[0]).stem  # also accepts 'JPEGImages/x.jpg SegmentationClassAug/x.png' lines
        image = root / "JPEGImages" / f"{image_id}.jpg"
        mask_file = mask_dir / f"{image_id}.png"
        for file in (image, mask_file):
            if not file.is_file():
                raise DatasetFormatError(
                    f"{where(list_file, lineno)}: {file} not found. Add it or drop the line."
                )
        try:
            mask = load_mask(mask_file)
        except ImageLoadError as err:
            raise DatasetFormatError(f"{where(list_file, lineno)}: {err}") from err
        values, counts = np.unique(mask, return_counts=True)
        bad = [int(v) for v in values if num < v < 255]
        if bad:
            raise DatasetFormatError(
                f"{mask_file}: unknown class ids {bad}; VOC masks hold 0 (background), 1..{num} and 255 (ignore)."
            )
        present = [(int(v), int(c)) for v, c in zip(values, counts, strict=True) if 0 < v <= num]
        if not present:
            raise DatasetFormatError(
                f"{mask_file}: no object class in the mask; remove {image_id} from {list_file}."
            )
        if image_size(image) != (mask.shape[1], mask.shape[0]):
            raise DatasetFormatError(
                f"{mask_file}: mask size {mask.shape[::-1]} differs from its image {image}."
            )
        ids = [v for v, _ in present]
        rows["image"].append(str(image))
        rows["label"].append(max(present, key=lambda vc: vc[1])[0] - 1)
        rows["labels"].append([v - 1 for v in ids])
        rows["bboxes"].append(mask_boxes(mask, ids))
        rows["bbox_labels"].append([v - 1 for v in ids])
        rows["mask"].append(str(mask_file))
        rows["image_id"].append(image_id)
    features = wsol_features(VOC_CLASSES, multilabel=True, with_mask=True)
    return datasets.Dataset.from_dict(rows, features=features, split=split)
