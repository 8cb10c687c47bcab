"""BAS on any supported timm CNN: ``bas_zoo.create_bas_model("convnext_tiny", num_classes=10)``."""

from __future__ import annotations

import timm
from timm.models import generate_default_cfgs, register_model

from ._bas import BASModel
from ._registry import bas_cfg, build_bas

__all__ = ["create_bas_model"]

default_cfgs = generate_default_cfgs({"bas_generic.untrained": bas_cfg(first_conv=None, pool_size=None)})


@register_model
def bas_generic(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS on the timm backbone named by ``backbone=`` with the generic (stride-8 attach) layout."""
    if "backbone" not in kwargs:
        raise ValueError("bas_generic needs backbone=<timm model name>, e.g. backbone='convnext_tiny'.")
    kwargs.setdefault("layout", "generic")
    return build_bas("bas_generic", pretrained, **kwargs)


def create_bas_model(backbone: str, pretrained_backbone: bool = False, **kwargs) -> BASModel:
    """Wrap a timm backbone of a supported family (resnet/resnext, regnet, convnext, efficientnet,
    mobilenetv3, vgg) with BAS; the generator attaches at stride 8 (else 16), f2 is the rest."""
    return timm.create_model(
        "bas_generic", backbone=backbone, pretrained_backbone=pretrained_backbone, **kwargs
    )
