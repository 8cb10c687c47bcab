"""BAS Inception-V3 (Szegedy et al. 2016) in the BAS papers' layout.

Changes to timm's ``inception_v3`` so that a 224 input gives 28 x 28 at Mixed_6e and 14 x 14 after
Mixed_7c: Conv2d_1a gets padding 1; both stem max-pools use padding 1 and ceil mode; Mixed_6a runs
at stride 1 with padding 1; Mixed_7a's stride-2 convs and pool get padding 1. Keys are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import generate_default_cfgs, register_model
from torch import nn

from ._bas import BASModel
from ._registry import bas_cfg, build_bas
from ._trunk import Trunk, create_timm_backbone, register_layout, trunk_from_names

__all__: list[str] = []


def _set_conv(block: nn.Module, stride: int, padding: int) -> None:
    block.conv.stride = (stride, stride)
    block.conv.padding = (padding, padding)


class PaddedReductionA(nn.Module):
    """Mixed_6a (timm InceptionB) with a configurable stride and padding 1 on every 3x3 branch."""

    def __init__(self, block: nn.Module, stride: int = 1) -> None:
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        _set_conv(self.branch3x3, stride, 1)
        _set_conv(self.branch3x3dbl_3, stride, 1)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = F.max_pool2d(x, kernel_size=3, stride=self.stride, padding=1)
        return torch.cat([self.branch3x3(x), dbl, pool], 1)


class PaddedReductionB(nn.Module):
    """Mixed_7a (timm InceptionD) whose stride-2 convs and pool use padding 1."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        _set_conv(self.branch3x3_2, 2, 1)
        _set_conv(self.branch7x7x3_4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        pool = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return torch.cat([b3, b7, pool], 1)


@register_layout("paper", "inception_v3")
def inception_v3_paper_layout(backbone: str, pretrained_backbone: bool = False, **kwargs) -> Trunk:
    model = create_timm_backbone(backbone, pretrained=pretrained_backbone, **kwargs)
    model.Conv2d_1a_3x3.conv.padding = (1, 1)
    model.Pool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    model.Pool2 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    model.Mixed_6a = PaddedReductionA(model.Mixed_6a, stride=1)
    model.Mixed_7a = PaddedReductionB(model.Mixed_7a)
    f1 = [
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Pool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Pool2",
        "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    ]  # fmt: skip
    f2 = ["Mixed_7a", "Mixed_7b", "Mixed_7c"]
    return trunk_from_names(
        model, f1, f2, ["Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"]
    )


default_cfgs = generate_default_cfgs(
    {"bas_inception_v3.untrained": bas_cfg(first_conv="f1.Conv2d_1a_3x3.conv")}
)


@register_model
def bas_inception_v3(pretrained: bool = False, **kwargs) -> BASModel:
    """BAS Inception-V3 (attach: Mixed_6e, 768 ch; f2: Mixed_7a-7c, 2048 ch). CUB: top-k 200, t 0.1."""
    args = dict(backbone="inception_v3", layout="paper", loc_top_k=200, loc_threshold=0.1)
    return build_bas("bas_inception_v3", pretrained, **dict(args, **kwargs))
