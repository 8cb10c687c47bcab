"""Box- and mask-aware transforms (torchvision.transforms.v2) and the dataset -> tensor glue.

Boxes in the datasets use the inclusive pixel convention of the reference metrics (x1 = last covered
column). Geometric transforms work on continuous coordinates, so each box is turned into the half-open
extent it covers (``x1 + 1``) before the transform and back (``- 1``) after it: a box around a drawn
rectangle stays exactly around it through resize, crop and flip, and the output boxes are again
inclusive pixel boxes of the TRANSFORMED image, ready for ``WSOLMetrics`` (inclusive IoU). Boxes that
a crop removes entirely are dropped.

Typical use::

    ds = load_wsol_dataset("synthetic", "train")
    ds = with_transform(ds, train_transform())          # decoding happens lazily, in DataLoader workers
    loader = DataLoader(ds, batch_size=32, num_workers=2, collate_fn=collate)
    batch = next(iter(loader))   # pixel_values (B,3,H,W), labels (B,), bboxes [(N,4)], masks (B,H,W) ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import datasets
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .image import load_mask, load_rgb

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "train_transform",
    "eval_transform",
    "WSOLTransform",
    "with_transform",
    "collate",
    "IGNORE_INDEX",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]


def train_transform(
    resize: int = 256,
    crop: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    flip_p: float = 0.5,
) -> v2.Compose:
    """The BAS training recipe: resize to (resize, resize), random crop, horizontal flip, normalize."""
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize}).")
    return v2.Compose(
        [
            v2.Resize((resize, resize), antialias=True),
            v2.RandomCrop(crop),
            v2.RandomHorizontalFlip(flip_p),
            *_to_float(mean, std),
        ]
    )


def eval_transform(
    size: int = 224, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> v2.Compose:
    """Evaluation: resize to (size, size), no crop (boxes and masks, nearest, scale the same way)."""
    return v2.Compose([v2.Resize((size, size), antialias=True), *_to_float(mean, std)])


class WSOLTransform:
    """Batch transform for ``Dataset.with_transform``: rows of the common schema -> tensors.

    Per example it returns ``pixel_values`` (3, H, W) float, ``labels`` (int), ``bboxes`` (N, 4) float32
    (inclusive pixels of the transformed image), ``image_id``, and when present ``masks`` (H, W) uint8,
    ``label_vector`` (C,) multi-hot float, ``bbox_labels`` (N,) long. Images and masks arrive undecoded
    (``{"bytes", "path"}``) and are decoded here with :func:`load_rgb`, so errors name the file.
    """

    def __init__(self, transform: Callable, num_classes: int | None = None) -> None:
        self.transform = transform
        self.num_classes = num_classes

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"pixel_values": [], "labels": [], "bboxes": [], "image_id": []}
        size = len(batch["image"])
        for i in range(size):
            example = {key: values[i] for key, values in batch.items()}
            for key, value in self.example(example).items():
                out.setdefault(key, []).append(value)
        return out

    def example(self, example: dict) -> dict:
        """Transform one row (image, bboxes and optional mask stay aligned)."""
        image = tv_tensors.Image(F.pil_to_tensor(load_rgb(example["image"])))
        height, width = image.shape[-2:]
        boxes = torch.as_tensor(example.get("bboxes") or [], dtype=torch.float32).reshape(-1, 4).clone()
        boxes[:, 2:] += 1  # inclusive pixel box -> the half-open extent it covers
        inputs: list = [image, tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width))]
        has_mask = example.get("mask") is not None
        if has_mask:
            mask = torch.from_numpy(load_mask(example["mask"]).copy())
            if tuple(mask.shape) != (height, width):
                raise ValueError(
                    f"Mask of {example.get('image_id', '?')} is {tuple(mask.shape)} but its image is "
                    f"{(height, width)}; masks must match their image size."
                )
            inputs.append(tv_tensors.Mask(mask))
        outputs = self.transform(*inputs)
        boxes = outputs[1].as_subclass(torch.Tensor).clone()
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # drop boxes cropped away
        boxes = boxes[keep]
        boxes[:, 2:] = torch.maximum(boxes[:, 2:] - 1, boxes[:, :2])
        result = {
            "pixel_values": outputs[0].as_subclass(torch.Tensor),
            "labels": int(example["label"]),
            "bboxes": boxes,
            "image_id": example.get("image_id", ""),
        }
        if "bbox_labels" in example:
            result["bbox_labels"] = torch.as_tensor(example["bbox_labels"], dtype=torch.long).reshape(-1)[
                keep
            ]
        if has_mask:
            result["masks"] = outputs[2].as_subclass(torch.Tensor)
        if self.num_classes is not None:
            vector = torch.zeros(self.num_classes)
            vector[torch.as_tensor(example.get("labels") or [example["label"]], dtype=torch.long)] = 1.0
            result["label_vector"] = vector
        return result


def with_transform(ds: datasets.Dataset, transform: Callable | None = None) -> datasets.Dataset:
    """``ds`` with a lazy :class:`WSOLTransform` (``eval_transform()`` by default).

    Image and mask columns are switched to undecoded access (a metadata-only change) so that decoding
    happens inside the transform, in the DataLoader workers. ``label_vector`` is produced for
    multi-label datasets (a ``labels`` column).
    """
    transform = transform if transform is not None else eval_transform()
    for column in ("image", "mask"):
        if column in ds.column_names and isinstance(ds.features[column], datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    num_classes = None
    if "labels" in ds.column_names:
        num_classes = ds.features["label"].num_classes
    return ds.with_transform(WSOLTransform(transform, num_classes))


def collate(examples: list[dict]) -> dict:
    """Stack transformed examples: tensors where shapes agree, lists for per-image boxes and ids.

    Examples without a mask get an all-ignore (255) mask when others in the batch have one.
    """
    batch: dict = {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([e["labels"] for e in examples], dtype=torch.long),
        "bboxes": [e["bboxes"] for e in examples],
        "image_ids": [e.get("image_id", "") for e in examples],
    }
    if any(e.get("masks") is not None for e in examples):
        height, width = batch["pixel_values"].shape[-2:]
        blank = torch.full((height, width), IGNORE_INDEX, dtype=torch.uint8)
        batch["masks"] = torch.stack([e["masks"] if e.get("masks") is not None else blank for e in examples])
    if "label_vector" in examples[0]:
        batch["label_vector"] = torch.stack([e["label_vector"] for e in examples])
    if "bbox_labels" in examples[0]:
        batch["bbox_labels"] = [e["bbox_labels"] for e in examples]
    return batch
