"""Shared timm registration helpers for the BAS family files."""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg

from ._bas import BASModel
from ._official import checkpoint_filter_fn

__all__ = ["bas_cfg", "build_bas"]


def bas_cfg(**kwargs: Any) -> dict[str, Any]:
    """Default pretrained_cfg of a BAS model: whole resized image (crop_pct 1.0), both class heads."""
    return {
        "num_classes": 200,
        "input_size": (3, 224, 224),
        "pool_size": (14, 14),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "classifier": ("classifier", "generator"),
        "license": "apache-2.0",
        "paper_ids": "arXiv:2112.00580, arXiv:2309.12943",
        "paper_name": "Background Activation Suppression for Weakly Supervised Object Localization",
        **kwargs,
    }


def build_bas(variant: str, pretrained: bool = False, **kwargs: Any) -> BASModel:
    """build_model_with_cfg for BASModel with the official-checkpoint filter and flat features."""
    return build_model_with_cfg(
        BASModel,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )
