"""BAS EfficientNet-Lite0 (Tan & Le 2019) with the generic layout.

Attaches at the stride-8 stage (40 ch); f2 is the remaining blocks plus the 1280-ch head conv.
Key names follow timm's ``tf_efficientnet_lite0``.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model

from ._bas import BASModel
from ._registry import bas_cfg, build_bas

__all__: list[str] = []

default_cfgs = generate_default_cfgs(
    {"bas_efficientnet_lite0.untrained": bas_cfg(first_conv="f1.conv_stem", pool_size=(7, 7))}
)


@register_model
def bas_efficientnet_lite0(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS EfficientNet-Lite0 (attach: blocks.2, 40 ch; f2: blocks 3-6 + conv_head, 1280 ch)."""
    args = dict(backbone="tf_efficientnet_lite0", layout="generic", loc_top_k=1, loc_threshold=0.1)
    return build_bas("bas_efficientnet_lite0", pretrained, **dict(args, **kwargs))
