"""ImageNet (ILSVRC 2012) with its localization XML.

Spec: ``ilsvrc:DIR``.
ImageNet with its localization XML (PASCAL VOC format). ``DIR/LOC_synset_mapping.txt`` (or
``synset_words.txt``; lines ``n01440764 tench, Tinca tinca``, line order = class index), images under
``DIR/{train,val}`` or the Kaggle ``DIR/ILSVRC/Data/CLS-LOC/{train,val}``, XML under
``DIR/Annotations/{train,val}`` or ``DIR/ILSVRC/Annotations/CLS-LOC/{train,val}``. ``train/<wnid>/*``
takes its label from the folder and boxes from ``Annotations/train/<wnid>/<stem>.xml`` when present;
``val`` images (flat or in wnid folders) need ``Annotations/val/<stem>.xml``. Splits: ``test`` = the
official validation set (the WSOL test set), ``val`` = up to 10 box-annotated images per class held out
of train by a fixed hash, ``train`` = the rest, ``train_full`` = all of train. Class names are the
first synonym, with the wnid appended when two synsets share it.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import datasets

from ..cache import cached_build
from ..image import image_size
from ..schema import DatasetFormatError, check_box, where, wsol_features
from ._common import IMAGE_EXTENSIONS, file_signature, held_out, malformed, read_lines, split_error

ILSVRC_VAL_PER_CLASS = 10  # box-annotated train images per class held out as val


def _ilsvrc_dirs(root: Path, split: str) -> tuple[Path, Path]:
    kaggle = root / "ILSVRC"
    if (kaggle / "Data" / "CLS-LOC").is_dir():
        return kaggle / "Data" / "CLS-LOC" / split, kaggle / "Annotations" / "CLS-LOC" / split
    return root / split, root / "Annotations" / split


def _ilsvrc_classes(root: Path) -> tuple[list[str], list[str]]:
    """(wnids, unique readable names) from LOC_synset_mapping.txt or synset_words.txt."""
    for candidate in ("LOC_synset_mapping.txt", "synset_words.txt"):
        path = root / candidate
        if path.is_file():
            break
    else:
        raise DatasetFormatError(
            f"{root}: no LOC_synset_mapping.txt or synset_words.txt (lines 'n01440764 tench, Tinca tinca', "
            "one per class in index order). Copy it from the ImageNet devkit or the Kaggle release."
        )
    wnids, names = [], []
    for lineno, line in read_lines(path, path.name, ""):
        parts = line.split(maxsplit=1)
        if not re.fullmatch(r"n\d{8}", parts[0]):
            raise malformed(path, lineno, line, "'<wnid like n01440764> <names>'")
        wnids.append(parts[0])
        names.append(parts[1].split(",")[0].strip() if len(parts) > 1 else parts[0])
    counts = defaultdict(int)
    for n in names:
        counts[n] += 1
    names = [f"{n} ({w})" if counts[n] > 1 else n for n, w in zip(names, wnids, strict=True)]
    return wnids, names


def _parse_voc_xml(path: Path) -> tuple[tuple[int, int] | None, list[tuple[str, list[float]]]]:
    """((width, height) or None, [(object name, [xmin, ymin, xmax, ymax]), ...]) of a PASCAL VOC XML file."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        line = err.position[0] if err.position else None
        raise DatasetFormatError(
            f"{where(path, line)}: malformed XML ({err}). Re-extract the annotations."
        ) from err
    node = tree.getroot()
    size = None
    if node.find("size") is not None:
        try:
            size = (int(node.findtext("size/width")), int(node.findtext("size/height")))
        except (TypeError, ValueError):
            size = None
    objects = []
    for obj in node.iter("object"):
        try:
            box = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise DatasetFormatError(
                f"{path}: an <object> lacks a numeric <bndbox>. Fix the annotation."
            ) from None
        objects.append(((obj.findtext("name") or "").strip(), box))
    return size, objects


def load_ilsvrc(
    root: str | os.PathLike, split: str, cache_dir: str | os.PathLike | None = None
) -> datasets.Dataset:
    """Read one ImageNet split with localization XML (see the module docstring)."""
    root = Path(root)
    splits = ["train", "val", "test", "train_full"]
    if split not in splits:
        raise split_error(split, splits, f"ilsvrc:{root}")
    source = "val" if split == "test" else "train"
    image_dir, ann_dir = _ilsvrc_dirs(root, source)
    if not image_dir.is_dir():
        raise DatasetFormatError(
            f"{image_dir}: image folder not found. Expected {root}/{source}/ (see the docs)."
        )
    options = {
        "root": str(root.resolve()),
        "split": split,
        "version": 1,
        "files": file_signature(image_dir, ann_dir),
    }
    return cached_build("ilsvrc", options, lambda: _build_ilsvrc(root, split, image_dir, ann_dir), cache_dir)


def _build_ilsvrc(root: Path, split: str, image_dir: Path, ann_dir: Path) -> datasets.Dataset:
    wnids, names = _ilsvrc_classes(root)
    index = {w: i for i, w in enumerate(wnids)}
    entries: list[tuple[Path, str | None, Path]] = []  # image, folder wnid, xml
    for dirpath, _, files in os.walk(image_dir):
        rel = Path(dirpath).relative_to(image_dir)
        folder = rel.parts[0] if rel.parts else None
        for file in sorted(files):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                stem = Path(file).stem
                xml = ann_dir / rel / f"{stem}.xml"
                if not xml.is_file() and (ann_dir / f"{stem}.xml").is_file():
                    xml = ann_dir / f"{stem}.xml"
                entries.append((Path(dirpath) / file, folder, xml))
    entries.sort(key=lambda e: str(e[0]))
    if split != "test":
        if any(folder is None for _, folder, _ in entries):
            raise DatasetFormatError(f"{image_dir}: train images must sit in <wnid>/ folders.")
        by_class: dict[int, list[str]] = defaultdict(list)
        for image, folder, xml in entries:
            if folder in index and xml.is_file():
                by_class[index[folder]].append(str(image.relative_to(image_dir)))
        if split != "train_full":
            held = held_out(by_class, None, ILSVRC_VAL_PER_CLASS)
            entries = [e for e in entries if (str(e[0].relative_to(image_dir)) in held) == (split == "val")]

    rows: dict[str, list] = {"image": [], "label": [], "bboxes": [], "image_id": []}
    for image, folder, xml in entries:
        size, objects = _parse_voc_xml(xml) if xml.is_file() else (None, [])
        if folder is not None and folder in index:
            label = index[folder]
        elif folder is not None:
            raise DatasetFormatError(
                f"{image.parent}: unknown class folder {folder!r}; not in the synset mapping."
            )
        elif objects:
            if objects[0][0] not in index:
                raise DatasetFormatError(
                    f"{xml}: unknown class {objects[0][0]!r}; not in the synset mapping."
                )
            label = index[objects[0][0]]
        else:
            raise DatasetFormatError(
                f"{image}: no annotation {xml} to give its class. Validation images need their XML files."
            )
        width, height = size if size is not None else image_size(image)
        boxes = [check_box(b, width, height, str(xml)) for n, b in objects if index.get(n) == label]
        rows["image"].append(str(image))
        rows["label"].append(label)
        rows["bboxes"].append(boxes)
        rows["image_id"].append(str(image.relative_to(image_dir.parent)))
    return datasets.Dataset.from_dict(rows, features=wsol_features(names), split=split)
