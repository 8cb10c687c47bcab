"""BAS ResNets (He et al. 2016) in the BAS papers' layout.

layer3 runs at stride 1 so the generator sees a stride-8 map (28 x 28 at 224); a 2x2 max-pool
before layer4 (also stride 1) gives the extractor a 14 x 14 map. Key names match timm's and the
official release's ResNets, so ImageNet and official BAS weights load without renaming.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model
from torch import nn

from ._bas import BASModel
from ._registry import bas_cfg, build_bas
from ._trunk import Trunk, create_timm_backbone, register_layout, trunk_from_names

__all__: list[str] = []


def _set_first_block_stride(layer: nn.Sequential, stride: int) -> None:
    """Change a stage's downsampling stride in place (conv with stride > 1 and the shortcut)."""
    block = layer[0]
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if isinstance(conv, nn.Conv2d) and conv.stride != (1, 1):
            conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


@register_layout("paper", "resnet18")
@register_layout("paper", "resnet34")
@register_layout("paper", "resnet50")
@register_layout("paper", "resnet101")
def resnet_paper_layout(backbone: str, pretrained_backbone: bool = False, **kwargs) -> Trunk:
    model = create_timm_backbone(backbone, pretrained=pretrained_backbone, **kwargs)
    _set_first_block_stride(model.layer3, 1)
    _set_first_block_stride(model.layer4, 1)
    model.pool4 = nn.MaxPool2d(2)
    stem = ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3"]
    return trunk_from_names(
        model, stem, ["pool4", "layer4"], ["act1", "layer1", "layer2", "layer3", "layer4"]
    )


@register_layout("wsss", "resnet50")
@register_layout("wsss", "resnet101")
def resnet_wsss_layout(backbone: str, pretrained_backbone: bool = False, **kwargs) -> Trunk:
    """The journal's WSSS network: layer3 keeps stride 2, layer4 runs at stride 1 (output stride 16);
    the generator reads layer3 and f2 is layer4 alone."""
    model = create_timm_backbone(backbone, pretrained=pretrained_backbone, **kwargs)
    _set_first_block_stride(model.layer4, 1)
    stem = ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3"]
    return trunk_from_names(model, stem, ["layer4"], ["act1", "layer1", "layer2", "layer3", "layer4"])


default_cfgs = generate_default_cfgs(
    {
        "bas_resnet50.untrained": bas_cfg(first_conv="f1.conv1"),
        "bas_resnet18.untrained": bas_cfg(first_conv="f1.conv1"),
        "bas_resnet50_wsss.untrained": bas_cfg(
            first_conv="f1.conv1", num_classes=20, input_size=(3, 448, 448), pool_size=(28, 28)
        ),
    }
)


@register_model
def bas_resnet50(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS ResNet-50 (attach: layer3, 1024 ch; f2: pool + layer4, 2048 ch). CUB: top-k 200, t 0.1."""
    args = dict(backbone="resnet50", layout="paper", loc_top_k=200, loc_threshold=0.1)
    return build_bas("bas_resnet50", pretrained, **dict(args, **kwargs))


@register_model
def bas_resnet18(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS ResNet-18 in the paper layout: a small model for quick runs and the synthetic default."""
    args = dict(backbone="resnet18", layout="paper", loc_top_k=1, loc_threshold=0.1)
    return build_bas("bas_resnet18", pretrained, **dict(args, **kwargs))


@register_model
def bas_resnet50_wsss(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS ResNet-50 for WSSS (journal): 1x1 bias-free classifier on layer4 (2048 -> C), bias-free
    generator on layer3 (1024 ch), output stride 16, multi-label training; VOC12: 20 classes."""
    args = dict(backbone="resnet50", layout="wsss", head_chs=0, head_bias=False, multilabel=True, loc_top_k=1)
    return build_bas("bas_resnet50_wsss", pretrained, **dict(args, **kwargs))
