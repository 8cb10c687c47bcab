"""A PNG contact sheet of dataset rows with their boxes and mask outlines, to eyeball a dataset."""

from __future__ import annotations

import os

import cv2
import datasets
import numpy as np

from .image import load_mask, load_rgb

__all__ = ["preview_grid", "save_preview"]

BOX_COLOUR = (255, 40, 40)  # object boxes: red
PART_COLOUR = (255, 220, 0)  # synthetic head boxes: yellow
MASK_COLOUR = (40, 255, 90)  # mask outlines: green


def _raw(ds: datasets.Dataset) -> datasets.Dataset:
    for column in ("image", "mask"):
        if column in ds.column_names and isinstance(ds.features[column], datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def _tile(row: dict, cell: int, names: list[str] | None) -> np.ndarray:
    image = np.asarray(load_rgb(row["image"]))
    height, width = image.shape[:2]
    scale = cell / max(height, width)
    tile = np.zeros((cell, cell, 3), np.uint8)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    tile[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    if row.get("mask") is not None:
        mask = load_mask(row["mask"])
        mask = cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        for value in np.unique(mask):
            if value in (0, 255):
                continue
            contours, _ = cv2.findContours(
                (mask == value).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE
            )
            cv2.drawContours(tile[:new_h, :new_w], contours, -1, MASK_COLOUR, 1)
    for key, colour in (("part_bboxes", PART_COLOUR), ("bboxes", BOX_COLOUR)):
        for x0, y0, x1, y1 in row.get(key) or []:
            p0 = (int(x0 * scale), int(y0 * scale))
            p1 = (int((x1 + 1) * scale) - 1, int((y1 + 1) * scale) - 1)
            cv2.rectangle(tile, p0, p1, colour, 1)
    if names is not None:
        text = names[row["label"]]
        cv2.putText(
            tile, text, (2, cell - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA
        )
    return tile


def preview_grid(ds: datasets.Dataset, n: int = 32, cols: int = 8, cell: int = 192) -> np.ndarray:
    """An RGB uint8 grid of the first ``n`` rows: red boxes, green mask outlines, yellow part boxes."""
    names = getattr(ds.features.get("label"), "names", None)
    raw = _raw(ds)
    count = min(n, len(raw))
    rows = (count + cols - 1) // cols
    grid = np.full((rows * (cell + 2), cols * (cell + 2), 3), 255, np.uint8)
    for i in range(count):
        r, c = divmod(i, cols)
        grid[r * (cell + 2) : r * (cell + 2) + cell, c * (cell + 2) : c * (cell + 2) + cell] = _tile(
            raw[i], cell, names
        )
    return grid


def save_preview(
    ds: datasets.Dataset, path: str | os.PathLike, n: int = 32, cols: int = 8, cell: int = 192
) -> str:
    """Write :func:`preview_grid` as a PNG and return its path."""
    grid = preview_grid(ds, n=n, cols=cols, cell=cell)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(os.fspath(path), grid[..., ::-1]):
        raise OSError(f"could not write {path}")
    return os.fspath(path)
