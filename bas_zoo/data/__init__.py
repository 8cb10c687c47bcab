"""Datasets in one schema, box/mask-aware transforms and the synthetic default dataset.

    from bas_zoo.data import load_wsol_dataset, train_transform, with_transform, collate
    ds = with_transform(load_wsol_dataset("synthetic", "train"), train_transform())

See :mod:`bas_zoo.data.schema` for the columns, :mod:`bas_zoo.data.loading` for the spec grammar,
:mod:`bas_zoo.data.sources` for the raw layouts and :mod:`bas_zoo.data.synthetic` for the generated data.
"""

from .image import ImageLoadError, image_size, load_mask, load_rgb, to_rgb
from .loading import conform_columns, load_wsol_dataset
from .preview import preview_grid, save_preview
from .schema import DatasetFormatError, parse_columns, parse_options, wsol_features
from .synthetic import SyntheticOptions, generate_split, make_synthetic
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WSOLTransform,
    collate,
    eval_transform,
    train_transform,
    with_transform,
)

__all__ = [
    "load_wsol_dataset",
    "conform_columns",
    "parse_columns",
    "parse_options",
    "wsol_features",
    "DatasetFormatError",
    "ImageLoadError",
    "load_rgb",
    "load_mask",
    "to_rgb",
    "image_size",
    "train_transform",
    "eval_transform",
    "with_transform",
    "collate",
    "WSOLTransform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "make_synthetic",
    "generate_split",
    "SyntheticOptions",
    "preview_grid",
    "save_preview",
]
