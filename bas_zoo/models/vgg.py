"""BAS VGG-16 (Simonyan & Zisserman 2015) in the BAS papers' layout.

The generator attaches after conv4_3's ReLU (stride 8); f2 is pool4 and the conv5 block. pool5 is
not used, so the extractor sees a 14 x 14 map at 224.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model

from ._bas import BASModel
from ._registry import bas_cfg, build_bas
from ._trunk import Trunk, create_timm_backbone, register_layout, trunk_from_names

__all__: list[str] = []

# Index of conv4_3's ReLU and of the last conv5_3 ReLU in timm's vgg16 `features`.
_VGG16_ATTACH, _VGG16_LAST = 22, 29


@register_layout("paper", "vgg16")
def vgg16_paper_layout(backbone: str, pretrained_backbone: bool = False, **kwargs) -> Trunk:
    model = create_timm_backbone(backbone, pretrained=pretrained_backbone, **kwargs)
    f1 = [f"features.{i}" for i in range(_VGG16_ATTACH + 1)]
    f2 = [f"features.{i}" for i in range(_VGG16_ATTACH + 1, _VGG16_LAST + 1)]
    stages = [
        "features.3",
        "features.8",
        "features.15",
        f"features.{_VGG16_ATTACH}",
        f"features.{_VGG16_LAST}",
    ]
    return trunk_from_names(model, f1, f2, stages)


default_cfgs = generate_default_cfgs({"bas_vgg16.untrained": bas_cfg(first_conv="f1.features_0")})


@register_model
def bas_vgg16(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS VGG-16 (attach: conv4_3, 512 ch; f2: pool4 + conv5, 512 ch). ijcv CUB: top-k 80, t 0.1."""
    args = dict(backbone="vgg16", layout="paper", loc_top_k=80, loc_threshold=0.1)
    return build_bas("bas_vgg16", pretrained, **dict(args, **kwargs))
