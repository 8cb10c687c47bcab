"""Datasets described by clovaai/wsolevaluation metadata (CUB, ILSVRC, OpenImages).

Spec: ``wsolevaluation:METADATA_DIR:DATA_DIR:NAME``.
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
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import PIL.Image

from ..cache import cached_build
from ..image import ImageLoadError, image_size, load_mask
from ..schema import DatasetFormatError, check_box, where, wsol_features
from ._common import file_signature, malformed, mask_boxes, png_bytes, read_lines, strip_index

WSOLEVAL_NAMES = ("CUB", "ILSVRC", "OpenImages")


def _csv(path: Path, n: int, expected: str, fix: str) -> Iterator[tuple[int, str, list[str]]]:
    for lineno, line in read_lines(path, path.name, fix):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != n or not parts[0]:
            raise malformed(path, lineno, line, expected)
        yield lineno, line, parts


def _wsoleval_labels(meta: Path, fix: str) -> dict[str, tuple[int, int]]:
    out = {}
    path = meta / "class_labels.txt"
    for lineno, line, (image_id, value) in _csv(path, 2, "'<image path>,<class index>'", fix):
        if not value.lstrip("-").isdigit() or int(value) < 0:
            raise malformed(path, lineno, line, "a non-negative integer class index")
        out[image_id] = (lineno, int(value))
    return out


def _wsoleval_class_names(meta_root: Path, split_labels: dict[str, tuple[int, int]], fix: str) -> list[str]:
    """Class names: class_names.txt, else consistent parent folders (split, then train), else class_<i>."""
    names_file = meta_root / "class_names.txt"
    if names_file.is_file():
        return [line for _, line in read_lines(names_file, "class names", fix)]
    candidates = [split_labels]
    train_labels = meta_root / "train" / "class_labels.txt"
    if train_labels.is_file():
        candidates.append(_wsoleval_labels(meta_root / "train", fix))
    num = 1 + max((v for labels in candidates for _, v in labels.values()), default=-1)
    for labels in candidates:
        folders: dict[int, set[str]] = defaultdict(set)
        for image_id, (_, value) in labels.items():
            parent = Path(image_id).parent.name
            folders[value].add(strip_index(parent) if parent else "")
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
        "files": file_signature(
            meta / "image_ids.txt", meta / "class_labels.txt", meta / "image_sizes.txt", loc
        ),
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
    ids = [(lineno, line) for lineno, line in read_lines(meta / "image_ids.txt", "image_ids.txt", fix)]
    labels = _wsoleval_labels(meta, fix)
    class_names = _wsoleval_class_names(meta_root, labels, fix)
    sizes: dict[str, tuple[int, int]] = {}
    if (meta / "image_sizes.txt").is_file():
        path = meta / "image_sizes.txt"
        for lineno, line, (image_id, w, h) in _csv(path, 3, "'<image path>,<width>,<height>'", fix):
            if not (w.isdigit() and h.isdigit()):
                raise malformed(path, lineno, line, "integer width and height")
            sizes[image_id] = (int(w), int(h))
    loc = meta / "localization.txt"
    boxes: dict[str, list[tuple[int, list[float]]]] = defaultdict(list)
    masks: dict[str, list[tuple[int, str]]] = defaultdict(list)
    ignores: dict[str, str] = {}
    if loc.is_file():
        for lineno, line in read_lines(loc, "localization.txt", fix):
            parts = [p.strip() for p in line.split(",")]
            if name == "OpenImages":
                if len(parts) != 3 or not parts[1]:
                    raise malformed(loc, lineno, line, "'<image path>,<mask path>,<ignore path or empty>'")
                masks[parts[0]].append((lineno, parts[1]))
                if parts[2]:
                    ignores[parts[0]] = parts[2]
            else:
                try:
                    if len(parts) != 5:
                        raise ValueError
                    boxes[parts[0]].append((lineno, [float(v) for v in parts[1:]]))
                except ValueError:
                    raise malformed(loc, lineno, line, "'<image path>,<x0>,<y0>,<x1>,<y1>'") from None

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
            rows["mask"].append({"bytes": png_bytes(mask), "path": None} if mask is not None else None)
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
            boxes.append(mask_boxes(instance.astype(np.uint8), [1])[0])
        foreground |= instance
    merged = foreground.astype(np.uint8)
    if ignore:
        merged[read(instances[0][0], ignore) & ~foreground] = 255
    return merged, boxes
