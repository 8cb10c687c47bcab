"""Readers for the raw dataset layouts, each returning one split in the common schema (see schema.py).

Layouts (``DIR`` is what follows the prefix in the spec):

``cub:DIR``
    The official ``CUB_200_2011`` folder (``DIR`` or ``DIR/CUB_200_2011``): ``images.txt``,
    ``image_class_labels.txt``, ``train_test_split.txt``, ``bounding_boxes.txt`` (``id x y w h``),
    ``classes.txt`` and ``images/``. Splits: ``train_full`` (the official train set), ``val`` (10 % of
    every class of it, at least one image, chosen by a fixed hash with seed 0, so it never changes),
    ``train`` (``train_full`` minus ``val``) and ``test``. Boxes become ``[x, y, x + w, y + h]``.

``wsolevaluation:METADATA_DIR:DATA_DIR:NAME``
    The clovaai/wsolevaluation metadata: ``METADATA_DIR/NAME/<split>/`` with ``image_ids.txt``,
    ``class_labels.txt`` (``path,label``), optional ``image_sizes.txt`` (``path,w,h``) and
    ``localization.txt``: ``path,x0,y0,x1,y1`` lines (CUB, ILSVRC) or ``path,mask,ignore`` lines
    (OpenImages: one line per instance mask, the first one naming the ignore mask). Images and masks are
    read from ``DATA_DIR/NAME/<path>`` (as the reference code does), or ``DATA_DIR/<path>`` when
    ``DATA_DIR/NAME`` does not exist. OpenImages masks are merged into one ``mask`` (1 foreground,
    255 ignore box minus foreground) and give one box per instance. Class names come from
    ``METADATA_DIR/NAME/class_names.txt`` (one per line) when present, else from the image folders
    (``001.Black_footed_Albatross`` -> ``Black_footed_Albatross``, ``train/n01440764/..`` -> ``n01440764``),
    else ``class_<i>``.

``ilsvrc:DIR``
    ImageNet with its localization XML (PASCAL VOC format). ``DIR/LOC_synset_mapping.txt`` (or
    ``synset_words.txt``; lines ``n01440764 tench, Tinca tinca``, line order = class index), images under
    ``DIR/{train,val}`` or the Kaggle ``DIR/ILSVRC/Data/CLS-LOC/{train,val}``, XML under
    ``DIR/Annotations/{train,val}`` or ``DIR/ILSVRC/Annotations/CLS-LOC/{train,val}``. ``train/<wnid>/*``
    takes its label from the folder and boxes from ``Annotations/train/<wnid>/<stem>.xml`` when present;
    ``val`` images (flat or in wnid folders) need ``Annotations/val/<stem>.xml``. Splits: ``test`` = the
    official validation set (the WSOL test set), ``val`` = up to 10 box-annotated images per class held out
    of train by a fixed hash, ``train`` = the rest, ``train_full`` = all of train. Class names are the
    first synonym, with the wnid appended when two synsets share it.

``voc:DIR``
    PASCAL VOC 2012 (``DIR`` or ``DIR/VOC2012``): ``JPEGImages``, ``SegmentationClass`` (palette PNG),
    ``ImageSets/Segmentation/{train,val}.txt``; ``train_aug`` reads ``ImageSets/Segmentation/train_aug.txt``
    (or ``DIR/train_aug.txt``) with masks from ``SegmentationClassAug`` when that folder exists. Image
    labels are the classes present in the mask (not 0, not 255); ``label`` is the one with the most pixels;
    one box per class (bbox of its pixels); the mask keeps 255 boundaries as ignore.

``imagefolder:DIR``
    ``DIR/<split>/metadata.jsonl`` with one JSON object per image: ``file_name`` (relative to the split
    folder), ``label`` (name or index), ``bboxes`` (xyxy pixels, may be empty), optional
    ``mask_file_name``, ``labels`` (multi-label), ``bbox_labels``, ``image_id``. Class names come from
    ``DIR/classes.txt`` (one per line) or, when absent, from the labels of every split (sorted names, or
    ``0..max`` for integer labels).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import PIL.Image

from .cache import cached_build
from .image import ImageLoadError, image_size, load_mask
from .schema import DatasetFormatError, check_box, where, wsol_features

__all__ = ["load_cub", "load_wsolevaluation", "load_ilsvrc", "load_voc", "load_imagefolder", "VOC_CLASSES"]

VAL_FRACTION = 0.1  # CUB: share of each class's train images held out as val
VAL_SEED = 0
ILSVRC_VAL_PER_CLASS = 10
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


# --------------------------------------------------------------------------------------------- helpers
def _lines(path: Path, what: str, fix: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, stripped line) of a text file, skipping blank lines."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: {what} not found. {fix}")
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.strip()
            if line:
                yield lineno, line


def _malformed(path: Path, lineno: int, line: str, expected: str) -> DatasetFormatError:
    return DatasetFormatError(
        f"{where(path, lineno)}: malformed line {line!r}; expected {expected}. Fix or remove it."
    )


def _split_error(split: str, available: list[str], spec: str) -> DatasetFormatError:
    return DatasetFormatError(f"Unknown split {split!r} for {spec}; available splits: {available}.")


def _held_out(keys_by_class: dict[int, list[str]], fraction: float | None, per_class: int | None) -> set[str]:
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


def _mask_boxes(mask: np.ndarray, values: list[int]) -> list[list[float]]:
    """Inclusive bbox [min_col, min_row, max_col, max_row] of the pixels equal to each value."""
    boxes = []
    for value in values:
        rows, cols = np.nonzero(mask == value)
        boxes.append([float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())])
    return boxes


def _png_bytes(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _signature(*paths: Path) -> list:
    """File sizes and modification times: a cache key that changes when the annotations change."""
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else (str(p), None) for p in paths]


def _strip_index(name: str) -> str:
    return re.sub(r"^\d+\.", "", name)


# ------------------------------------------------------------------------------------------------- CUB
def _cub_root(root: Path) -> Path:
    if not (root / "images.txt").is_file() and (root / "CUB_200_2011" / "images.txt").is_file():
        return root / "CUB_200_2011"
    return root


def load_cub(root: str | os.PathLike, split: str) -> datasets.Dataset:
    """Read one split of the official CUB_200_2011 folder (see the module docstring)."""
    root = _cub_root(Path(root))
    spec = f"cub:{root}"
    if split not in ("train", "val", "test", "train_full"):
        raise _split_error(split, ["train", "val", "test", "train_full"], spec)
    fix = "Point cub: at the CUB_200_2011 folder of the official release."

    classes: list[str] = []
    path = root / "classes.txt"
    for lineno, line in _lines(path, "class list", fix):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise _malformed(path, lineno, line, f"'<class id {len(classes) + 1}> <name>'")
        classes.append(_strip_index(parts[1]))

    def table(name: str, n: int, expected: str) -> dict[int, tuple[int, list[str]]]:
        out: dict[int, tuple[int, list[str]]] = {}
        path = root / name
        for lineno, line in _lines(path, name, fix):
            parts = line.split(maxsplit=n - 1) if n == 2 else line.split()
            if len(parts) != n or not parts[0].isdigit():
                raise _malformed(path, lineno, line, expected)
            out[int(parts[0])] = (lineno, parts[1:])
        return out

    images = table("images.txt", 2, "'<image id> <relative path>'")
    labels = table("image_class_labels.txt", 2, "'<image id> <class id>'")
    flags = table("train_test_split.txt", 2, "'<image id> <1 train | 0 test>'")
    boxes = table("bounding_boxes.txt", 5, "'<image id> <x> <y> <width> <height>'")

    selected: list[int] = []
    for image_id in sorted(images):
        for name, tab in (("image_class_labels.txt", labels), ("train_test_split.txt", flags)):
            if image_id not in tab:
                raise DatasetFormatError(
                    f"{root / name}: no line for image id {image_id} (listed in images.txt)."
                )
        lineno, (flag,) = flags[image_id]
        if flag not in ("0", "1"):
            raise _malformed(
                root / "train_test_split.txt", lineno, f"{image_id} {flag}", "flag 1 (train) or 0 (test)"
            )
        if (flag == "1") == (split != "test"):
            selected.append(image_id)

    def class_of(image_id: int) -> int:
        lineno, (value,) = labels[image_id]
        if not value.isdigit() or not 1 <= int(value) <= len(classes):
            raise DatasetFormatError(
                f"{where(root / 'image_class_labels.txt', lineno)}: unknown class id {value!r}; "
                f"classes.txt defines 1..{len(classes)}. Fix the label or the class list."
            )
        return int(value) - 1

    if split in ("train", "val"):
        by_class: dict[int, list[str]] = defaultdict(list)
        for image_id in selected:
            by_class[class_of(image_id)].append(images[image_id][1][0])
        held = _held_out(by_class, VAL_FRACTION, None)
        selected = [i for i in selected if (images[i][1][0] in held) == (split == "val")]

    rows: dict[str, list] = {"image": [], "label": [], "bboxes": [], "image_id": []}
    for image_id in selected:
        relpath = images[image_id][1][0]
        file = root / "images" / relpath
        try:
            width, height = image_size(file)
        except ImageLoadError as err:
            raise DatasetFormatError(f"{where(root / 'images.txt', images[image_id][0])}: {err}") from err
        if image_id not in boxes:
            raise DatasetFormatError(
                f"{root / 'bounding_boxes.txt'}: no box for image id {image_id} ({relpath})."
            )
        lineno, values = boxes[image_id]
        try:
            x, y, w, h = (float(v) for v in values)
        except ValueError:
            raise _malformed(
                root / "bounding_boxes.txt", lineno, " ".join(values), "four numbers x y w h"
            ) from None
        box = check_box([x, y, x + w, y + h], width, height, where(root / "bounding_boxes.txt", lineno))
        rows["image"].append(str(file))
        rows["label"].append(class_of(image_id))
        rows["bboxes"].append([box])
        rows["image_id"].append(relpath)
    return datasets.Dataset.from_dict(rows, features=wsol_features(classes), split=split)


# -------------------------------------------------------------------------------------- wsolevaluation
WSOLEVAL_NAMES = ("CUB", "ILSVRC", "OpenImages")


def _csv(path: Path, n: int, expected: str, fix: str) -> Iterator[tuple[int, str, list[str]]]:
    for lineno, line in _lines(path, path.name, fix):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != n or not parts[0]:
            raise _malformed(path, lineno, line, expected)
        yield lineno, line, parts


def _wsoleval_labels(meta: Path, fix: str) -> dict[str, tuple[int, int]]:
    out = {}
    path = meta / "class_labels.txt"
    for lineno, line, (image_id, value) in _csv(path, 2, "'<image path>,<class index>'", fix):
        if not value.lstrip("-").isdigit() or int(value) < 0:
            raise _malformed(path, lineno, line, "a non-negative integer class index")
        out[image_id] = (lineno, int(value))
    return out


def _wsoleval_class_names(meta_root: Path, split_labels: dict[str, tuple[int, int]], fix: str) -> list[str]:
    """Class names: class_names.txt, else consistent parent folders (split, then train), else class_<i>."""
    names_file = meta_root / "class_names.txt"
    if names_file.is_file():
        return [line for _, line in _lines(names_file, "class names", fix)]
    candidates = [split_labels]
    train_labels = meta_root / "train" / "class_labels.txt"
    if train_labels.is_file():
        candidates.append(_wsoleval_labels(meta_root / "train", fix))
    num = 1 + max((v for labels in candidates for _, v in labels.values()), default=-1)
    for labels in candidates:
        folders: dict[int, set[str]] = defaultdict(set)
        for image_id, (_, value) in labels.items():
            parent = Path(image_id).parent.name
            folders[value].add(_strip_index(parent) if parent else "")
        names = [next(iter(folders[c])) if len(folders.get(c, ())) == 1 else "" for c in range(num)]
        if all(names) and len(set(names)) == num:
            return names
    return [f"class_{i}" for i in range(num)]


def load_wsolevaluation(
    metadata_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    name: str,
    split: str,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Read one split described by clovaai/wsolevaluation metadata (see the module docstring)."""
    spec = f"wsolevaluation:{metadata_dir}:{data_dir}:{name}"
    if name not in WSOLEVAL_NAMES:
        raise DatasetFormatError(
            f"{spec}: unknown dataset name {name!r}; expected one of {list(WSOLEVAL_NAMES)}."
        )
    meta_root = Path(metadata_dir) / name
    meta = meta_root / split
    if not meta.is_dir():
        available = sorted(p.name for p in meta_root.iterdir() if p.is_dir()) if meta_root.is_dir() else []
        raise DatasetFormatError(
            f"{meta}: metadata folder not found (available splits: {available}). Point METADATA_DIR at the "
            "wsolevaluation 'metadata' folder."
        )
    loc = meta / "localization.txt"
    options = {
        "spec": spec,
        "split": split,
        "version": 1,
        "files": _signature(meta / "image_ids.txt", meta / "class_labels.txt", meta / "image_sizes.txt", loc),
    }

    def build() -> datasets.Dataset:
        return _build_wsolevaluation(meta_root, Path(data_dir), name, split, spec)

    if name == "OpenImages" and loc.is_file():  # merging instance masks is slow: cache it
        return cached_build("wsolevaluation", options, build, cache_dir)
    return build()


def _build_wsolevaluation(
    meta_root: Path, data_dir: Path, name: str, split: str, spec: str
) -> datasets.Dataset:
    meta = meta_root / split
    fix = "Use the metadata folder of clovaai/wsolevaluation (or files in its format)."
    base = data_dir / name if (data_dir / name).is_dir() else data_dir
    ids = [(lineno, line) for lineno, line in _lines(meta / "image_ids.txt", "image_ids.txt", fix)]
    labels = _wsoleval_labels(meta, fix)
    class_names = _wsoleval_class_names(meta_root, labels, fix)
    sizes: dict[str, tuple[int, int]] = {}
    if (meta / "image_sizes.txt").is_file():
        path = meta / "image_sizes.txt"
        for lineno, line, (image_id, w, h) in _csv(path, 3, "'<image path>,<width>,<height>'", fix):
            if not (w.isdigit() and h.isdigit()):
                raise _malformed(path, lineno, line, "integer width and height")
            sizes[image_id] = (int(w), int(h))
    loc = meta / "localization.txt"
    boxes: dict[str, list[tuple[int, list[float]]]] = defaultdict(list)
    masks: dict[str, list[tuple[int, str]]] = defaultdict(list)
    ignores: dict[str, str] = {}
    if loc.is_file():
        for lineno, line in _lines(loc, "localization.txt", fix):
            parts = [p.strip() for p in line.split(",")]
            if name == "OpenImages":
                if len(parts) != 3 or not parts[1]:
                    raise _malformed(loc, lineno, line, "'<image path>,<mask path>,<ignore path or empty>'")
                masks[parts[0]].append((lineno, parts[1]))
                if parts[2]:
                    ignores[parts[0]] = parts[2]
            else:
                try:
                    if len(parts) != 5:
                        raise ValueError
                    boxes[parts[0]].append((lineno, [float(v) for v in parts[1:]]))
                except ValueError:
                    raise _malformed(loc, lineno, line, "'<image path>,<x0>,<y0>,<x1>,<y1>'") from None

    with_mask = bool(masks)
    rows: dict[str, list] = {"image": [], "label": [], "bboxes": [], "image_id": []}
    if with_mask:
        rows["mask"] = []
    for lineno, image_id in ids:
        if image_id not in labels:
            raise DatasetFormatError(
                f"{where(meta / 'image_ids.txt', lineno)}: {image_id} has no line in class_labels.txt. "
                "Add its label or remove it from image_ids.txt."
            )
        label = labels[image_id][1]
        if label >= len(class_names):
            raise DatasetFormatError(
                f"{where(meta / 'class_labels.txt', labels[image_id][0])}: unknown class {label}; the class list "
                f"has {len(class_names)} classes. Fix the label or add class_names.txt."
            )
        file = base / image_id
        if not file.is_file():
            raise DatasetFormatError(
                f"{where(meta / 'image_ids.txt', lineno)}: image {file} not found. DATA_DIR must contain "
                f"{name}/{image_id} (or {image_id})."
            )
        if image_id in sizes:
            width, height = sizes[image_id]
        else:
            try:
                width, height = image_size(file)
            except ImageLoadError as err:
                raise DatasetFormatError(f"{where(meta / 'image_ids.txt', lineno)}: {err}") from err
        image_boxes = [check_box(b, width, height, where(loc, ln)) for ln, b in boxes.get(image_id, [])]
        if with_mask:
            mask, mask_boxes = _merge_masks(
                base, masks.get(image_id, []), ignores.get(image_id), (width, height), loc
            )
            rows["mask"].append({"bytes": _png_bytes(mask), "path": None} if mask is not None else None)
            image_boxes = image_boxes + mask_boxes
        rows["image"].append(str(file))
        rows["label"].append(label)
        rows["bboxes"].append(image_boxes)
        rows["image_id"].append(image_id)
    features = wsol_features(class_names, with_mask=with_mask)
    return datasets.Dataset.from_dict(rows, features=features, split=split)


def _merge_masks(
    base: Path, instances: list[tuple[int, str]], ignore: str | None, size: tuple[int, int], loc: Path
) -> tuple[np.ndarray | None, list[list[float]]]:
    """Union of instance masks (1) plus ignore-box-minus-foreground (255); one box per instance."""
    if not instances:
        return None, []
    width, height = size

    def read(lineno: int, relpath: str) -> np.ndarray:
        try:
            array = load_mask(base / relpath) > 0
        except ImageLoadError as err:
            raise DatasetFormatError(f"{where(loc, lineno)}: {err}") from err
        if array.shape != (height, width):
            resized = PIL.Image.fromarray(array.astype(np.uint8)).resize((width, height), PIL.Image.NEAREST)
            array = np.asarray(resized) > 0
        return array

    foreground = np.zeros((height, width), dtype=bool)
    boxes = []
    for lineno, relpath in instances:
        instance = read(lineno, relpath)
        if instance.any():
            boxes.append(_mask_boxes(instance.astype(np.uint8), [1])[0])
        foreground |= instance
    merged = foreground.astype(np.uint8)
    if ignore:
        merged[read(instances[0][0], ignore) & ~foreground] = 255
    return merged, boxes


# ---------------------------------------------------------------------------------------------- ILSVRC
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
    for lineno, line in _lines(path, path.name, ""):
        parts = line.split(maxsplit=1)
        if not re.fullmatch(r"n\d{8}", parts[0]):
            raise _malformed(path, lineno, line, "'<wnid like n01440764> <names>'")
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
        raise _split_error(split, splits, f"ilsvrc:{root}")
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
        "files": _signature(image_dir, ann_dir),
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
            held = _held_out(by_class, None, ILSVRC_VAL_PER_CLASS)
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


# ------------------------------------------------------------------------------------------------- VOC
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
        "files": _signature(list_file, mask_dir),
    }
    return cached_build("voc", options, lambda: _build_voc(root, split, list_file, mask_dir), cache_dir)


def _build_voc(root: Path, split: str, list_file: Path, mask_dir: Path) -> datasets.Dataset:
    rows: dict[str, list] = {
        k: [] for k in ("image", "label", "labels", "bboxes", "bbox_labels", "mask", "image_id")
    }
    num = len(VOC_CLASSES)
    for lineno, line in _lines(list_file, "split list", ""):
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
        rows["bboxes"].append(_mask_boxes(mask, ids))
        rows["bbox_labels"].append([v - 1 for v in ids])
        rows["mask"].append(str(mask_file))
        rows["image_id"].append(image_id)
    features = wsol_features(VOC_CLASSES, multilabel=True, with_mask=True)
    return datasets.Dataset.from_dict(rows, features=features, split=split)


# ---------------------------------------------------------------------------------------- imagefolder
def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(path, "metadata.jsonl", "Each split folder needs a metadata.jsonl."):
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
        return [line for _, line in _lines(classes_file, "classes.txt", "")]
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
