"""CUB-200-2011 in its official layout.

Spec: ``cub:DIR``.
The official ``CUB_200_2011`` folder (``DIR`` or ``DIR/CUB_200_2011``): ``images.txt``,
``image_class_labels.txt``, ``train_test_split.txt``, ``bounding_boxes.txt`` (``id x y w h``),
``classes.txt`` and ``images/``. Splits: ``train_full`` (the official train set), ``val`` (10 % of
every class of it, at least one image, chosen by a fixed hash with seed 0, so it never changes),
``train`` (``train_full`` minus ``val``) and ``test``. Boxes become ``[x, y, x + w, y + h]``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import datasets

from ..image import ImageLoadError, image_size
from ..schema import DatasetFormatError, check_box, where, wsol_features
from ._common import held_out, malformed, read_lines, split_error, strip_index

VAL_FRACTION = 0.1  # share of each class's train images held out as val


def _cub_root(root: Path) -> Path:
    if not (root / "images.txt").is_file() and (root / "CUB_200_2011" / "images.txt").is_file():
        return root / "CUB_200_2011"
    return root


def load_cub(root: str | os.PathLike, split: str) -> datasets.Dataset:
    """Read one split of the official CUB_200_2011 folder (see the module docstring)."""
    root = _cub_root(Path(root))
    spec = f"cub:{root}"
    if split not in ("train", "val", "test", "train_full"):
        raise split_error(split, ["train", "val", "test", "train_full"], spec)
    fix = "Point cub: at the CUB_200_2011 folder of the official release."

    classes: list[str] = []
    path = root / "classes.txt"
    for lineno, line in read_lines(path, "class list", fix):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise malformed(path, lineno, line, f"'<class id {len(classes) + 1}> <name>'")
        classes.append(strip_index(parts[1]))

    def table(name: str, n: int, expected: str) -> dict[int, tuple[int, list[str]]]:
        out: dict[int, tuple[int, list[str]]] = {}
        path = root / name
        for lineno, line in read_lines(path, name, fix):
            parts = line.split(maxsplit=n - 1) if n == 2 else line.split()
            if len(parts) != n or not parts[0].isdigit():
                raise malformed(path, lineno, line, expected)
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
            raise malformed(
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
        held = held_out(by_class, VAL_FRACTION, None)
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
            raise malformed(
                root / "bounding_boxes.txt", lineno, " ".join(values), "four numbers x y w h"
            ) from None
        box = check_box([x, y, x + w, y + h], width, height, where(root / "bounding_boxes.txt", lineno))
        rows["image"].append(str(file))
        rows["label"].append(class_of(image_id))
        rows["bboxes"].append([box])
        rows["image_id"].append(relpath)
    return datasets.Dataset.from_dict(rows, features=wsol_features(classes), split=split)
