"""Robust image and mask decoding shared by the datasets, the transforms and the pipeline.

Real datasets hold every kind of file: grayscale and CMYK JPEGs, palette and 16-bit PNGs, RGBA product
shots, phone photos rotated by an EXIF tag. A model wants one thing, an RGB image whose pixels match the
boxes, so every image goes through :func:`load_rgb`:

- EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): boxes and masks refer to the image as
  it is displayed, so the stored pixels are rotated the same way.
- Transparency (RGBA, LA, palette with a transparent index) is composited on WHITE, not dropped:
  transparent pixels often hold black or garbage colour, and a white backdrop is what a viewer shows.
- 16-bit and 32-bit integer images are rescaled from the 16-bit range (``/ 257``) instead of clipped,
  unless they never exceed 255; float images in [0, 1] are scaled by 255.
- CMYK, YCbCr, 1-bit, grayscale and palette images are converted with PIL.

A file that is empty, truncated or not an image raises :class:`ImageLoadError` naming the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

__all__ = ["ImageLoadError", "load_rgb", "load_mask", "open_image", "to_rgb", "image_size"]

ImageSource = str | os.PathLike | bytes | dict | PIL.Image.Image | np.ndarray

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_INT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


class ImageLoadError(OSError):
    """An image or mask file could not be read; the message names the file and the fix."""


def _describe(source: Any) -> str:
    if isinstance(source, dict):
        return str(source.get("path") or "<image bytes>")
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def open_image(source: ImageSource) -> PIL.Image.Image:
    """Open and fully decode ``source`` (path, bytes, ``{"bytes", "path"}`` dict, PIL image or array).

    Decoding happens here (``Image.load``) so that corrupt or truncated files fail now, with the file
    named, rather than later inside a transform.
    """
    if isinstance(source, PIL.Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    name = _describe(source)
    data: bytes | None = None
    path: str | None = None
    if isinstance(source, dict):
        data, path = source.get("bytes"), source.get("path")
        if data is None and path is None:
            raise ImageLoadError("Image entry has neither 'bytes' nor 'path'; the dataset row is broken.")
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
    else:
        raise TypeError(
            f"Cannot read an image from {type(source).__name__}; pass a path, bytes or PIL image."
        )
    if data is None:
        if not os.path.exists(path):
            raise ImageLoadError(f"{path}: image file not found. Check the dataset root and the file list.")
        if os.path.getsize(path) == 0:
            raise ImageLoadError(
                f"{path}: image file is empty (0 bytes). Re-download it or remove it from the list."
            )
        opener: Any = path
    else:
        if len(data) == 0:
            raise ImageLoadError(f"{name}: image data is empty (0 bytes). Re-create this dataset row.")
        opener = io.BytesIO(data)
    try:
        image = PIL.Image.open(opener)
        image.load()
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as err:
        raise ImageLoadError(
            f"{name}: cannot decode image ({err}). The file is corrupt, truncated or not an image; "
            "re-download it or remove it from the dataset."
        ) from err
    return image


def _from_array(array: np.ndarray) -> PIL.Image.Image:
    """Build a PIL image from an HxW, HxWx1, HxWx3 or HxWx4 array (uint8, uint16 or float)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(f"Expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}.")
    if array.dtype != np.uint8:
        array = _to_uint8(array)
    return PIL.Image.fromarray(np.ascontiguousarray(array))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Map integer or float pixel values to uint8 (16-bit range rescaled, [0, 1] floats scaled)."""
    if np.issubdtype(values.dtype, np.floating):
        finite = values[np.isfinite(values)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        return np.clip(np.nan_to_num(values) * scale, 0, 255).round().astype(np.uint8)
    if values.size and values.max() > 255:
        return np.clip(values.astype(np.float64) / 257.0, 0, 255).round().astype(np.uint8)
    return np.clip(values, 0, 255).astype(np.uint8)


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Return an RGB copy of ``image`` with EXIF orientation applied and alpha composited on white."""
    if image.getexif().get(PIL.Image.ExifTags.Base.Orientation, 1) != 1:
        image = PIL.ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _INT_MODES or mode == "F":
        gray = _to_uint8(np.asarray(image))
        return PIL.Image.fromarray(gray, mode="L").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ImageLoadError(
            f"Cannot convert a {mode!r} image to RGB ({err}); save it as an RGB PNG or JPEG."
        ) from err


def load_rgb(source: ImageSource) -> PIL.Image.Image:
    """Load ``source`` as an RGB PIL image (see the module docstring for the conversions)."""
    name = _describe(source)
    image = open_image(source)
    try:
        return to_rgb(image)
    except ImageLoadError:
        raise
    except (OSError, ValueError) as err:
        raise ImageLoadError(f"{name}: cannot convert image to RGB ({err}).") from err


def load_mask(source: ImageSource) -> np.ndarray:
    """Load a label mask as an (H, W) uint8 array of ids (0 background, 255 ignore).

    Palette ('P') and grayscale ('L') PNGs keep their stored indices: a VOC palette mask gives class
    ids, not colours. Other modes are converted to grayscale. EXIF orientation is applied as for images.
    """
    image = open_image(source) if not isinstance(source, np.ndarray) else None
    if image is None:
        array = np.asarray(source)
        if array.ndim == 3:
            array = array[..., 0]
        return _to_uint8(array) if array.dtype != np.uint8 else array
    if image.getexif().get(PIL.Image.ExifTags.Base.Orientation, 1) != 1:
        image = PIL.ImageOps.exif_transpose(image)
    if image.mode in ("P", "L"):
        return np.asarray(image, dtype=np.uint8)
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in _INT_MODES:
        return np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file after EXIF orientation, reading only its header."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageLoadError(f"{path}: image file not found. Check the dataset root and the file list.")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(
            f"{path}: image file is empty (0 bytes). Re-download it or remove it from the list."
        )
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(PIL.Image.ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(
            f"{path}: cannot read image header ({err}). The file is corrupt or not an image."
        ) from err
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the displayed image is transposed
        width, height = height, width
    return width, height
