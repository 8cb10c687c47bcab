"""BAS MobileNet-V1 (Howard et al. 2017) in the BAS papers' layout.

Built on timm's ``mobilenetv1_100`` with ReLU (the official model's activation). The 256 -> 512
depthwise-separable block runs at stride 1, so all but the last two blocks give a 512-channel
stride-8 map for the generator; the last two blocks (1024 ch, stride 16) feed the extractor.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model

from ._bas import BASModel
from ._registry import bas_cfg, build_bas
from ._trunk import Trunk, create_timm_backbone, register_layout, trunk_from_names

__all__: list[str] = []


@register_layout("paper", "mobilenetv1_100")
def mobilenetv1_paper_layout(backbone: str, pretrained_backbone: bool = False, **kwargs) -> Trunk:
    kwargs.setdefault("act_layer", "relu")
    model = create_timm_backbone(backbone, pretrained=pretrained_backbone, **kwargs)
    model.blocks[3][0].conv_dw.stride = (1, 1)
    f1 = ["conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2", "blocks.3"]
    return trunk_from_names(
        model, f1, ["blocks.4"], ["blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4"]
    )


default_cfgs = generate_default_cfgs({"bas_mobilenetv1_100.untrained": bas_cfg(first_conv="f1.conv_stem")})


@register_model
def bas_mobilenetv1_100(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS MobileNet-V1 (attach: 512 ch at stride 8; f2: last two blocks, 1024 ch). ijcv CUB: k 80, t 0.1."""
    args = dict(backbone="mobilenetv1_100", layout="paper", loc_top_k=80, loc_threshold=0.1)
    return build_bas("bas_mobilenetv1_100", pretrained, **dict(args, **kwargs))
