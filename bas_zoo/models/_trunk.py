"""Split a timm backbone into f1 (stem .. attach point) and f2 (the rest).

A *layout* turns a timm model name into a :class:`Trunk`: two ordered lists of modules and the
name each module had in the timm model, so timm's own ImageNet weights can be mapped onto the
split. ``generic`` attaches at the stride-8 stage (stride 16 when there is none); the paper
layouts (``paper``) apply the per-backbone changes of the BAS papers and live in the family files.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import timm
import torch
from torch import nn

__all__ = ["Trunk", "register_layout", "build_trunk", "SUPPORTED_FAMILIES", "family_of"]


@dataclass
class Trunk:
    """f1 / f2 modules keyed by their Sequential name, plus where they came from in timm."""

    f1: OrderedDict[str, nn.Module]
    f2: OrderedDict[str, nn.Module]
    # Sequential key -> dotted name in the source timm model (for weight remapping).
    source_names: dict[str, str] = field(default_factory=dict)
    # Sequential keys whose output is a stage output worth exposing through features_only.
    stage_keys: list[str] = field(default_factory=list)


# timm model class name -> family shown to users. Keeping this explicit makes the error for an
# unsupported backbone list exactly what works.
SUPPORTED_FAMILIES: dict[str, str] = {
    "ResNet": "resnet / resnext",
    "RegNet": "regnet",
    "ConvNeXt": "convnext",
    "EfficientNet": "efficientnet (incl. tf_ and lite)",
    "MobileNetV3": "mobilenetv3",
    "VGG": "vgg",
}

# Children that belong to the classification head, not the trunk (applied after pooling).
_HEAD_CHILDREN = {"global_pool", "fc", "head", "classifier", "pre_logits", "flatten", "head_drop"}
_HEAD_CHILDREN_BY_FAMILY = {"MobileNetV3": {"conv_head", "norm_head", "act2"}}

LayoutFn = Callable[..., Trunk]
_LAYOUTS: dict[tuple[str, str], LayoutFn] = {}


def register_layout(layout: str, backbone: str) -> Callable[[LayoutFn], LayoutFn]:
    """Register a layout builder for ``(layout, backbone)``; ``backbone='*'`` matches any name."""

    def wrap(fn: LayoutFn) -> LayoutFn:
        _LAYOUTS[(layout, backbone)] = fn
        return fn

    return wrap


def family_of(model: nn.Module, name: str) -> str:
    cls = type(model).__name__
    if cls not in SUPPORTED_FAMILIES:
        families = ", ".join(sorted(set(SUPPORTED_FAMILIES.values())))
        raise ValueError(
            f"Backbone {name!r} (timm class {cls}) is not supported by bas_zoo. "
            f"Supported families: {families}; or use a registered model (bas_zoo.list_models())."
        )
    return cls


def create_timm_backbone(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Create the plain timm classifier that a layout splits; ``pretrained`` loads ImageNet weights."""
    if not timm.is_model(name):
        raise ValueError(f"Unknown timm model {name!r}; see timm.list_models() for valid names.")
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def trunk_from_names(
    model: nn.Module, f1_names: list[str], f2_names: list[str], stage_names: list[str]
) -> Trunk:
    """Build a Trunk from dotted module names of ``model`` (dots become underscores in the keys)."""

    def collect(names: list[str]) -> OrderedDict[str, nn.Module]:
        return OrderedDict((n.replace(".", "_"), model.get_submodule(n)) for n in names)

    trunk = Trunk(f1=collect(f1_names), f2=collect(f2_names))
    trunk.source_names = {n.replace(".", "_"): n for n in f1_names + f2_names}
    trunk.stage_keys = [n.replace(".", "_") for n in stage_names]
    return trunk


def _trunk_children(model: nn.Module, family: str) -> list[str]:
    """Ordered dotted names of the trunk, expanding containers that hold stage boundaries."""
    stage_modules = {info["module"] for info in model.feature_info}
    skip = _HEAD_CHILDREN | _HEAD_CHILDREN_BY_FAMILY.get(family, set())
    names: list[str] = []
    for child_name, child in model.named_children():
        if child_name in skip:
            continue
        if any(m.startswith(child_name + ".") for m in stage_modules):
            names.extend(f"{child_name}.{i}" for i, _ in child.named_children())
        else:
            names.append(child_name)
    return names


@register_layout("generic", "*")
def generic_layout(backbone: str, pretrained_backbone: bool = False, **kwargs) -> Trunk:
    """Attach at the stride-8 stage (else stride 16); f2 is everything after it in the trunk."""
    model = create_timm_backbone(backbone, pretrained=pretrained_backbone, **kwargs)
    family = family_of(model, backbone)
    infos = model.feature_info
    attach = next((i for i in infos if i["reduction"] == 8), None) or next(
        (i for i in infos if i["reduction"] == 16), None
    )
    if attach is None:
        raise ValueError(
            f"Backbone {backbone!r} has no stride-8 or stride-16 stage to attach the generator to."
        )
    names = _trunk_children(model, family)
    cut = names.index(attach["module"]) + 1
    stage_names = [i["module"] for i in infos if i["module"] in names]
    return trunk_from_names(model, names[:cut], names[cut:], stage_names)


def build_trunk(backbone: str, layout: str, pretrained_backbone: bool = False, **kwargs) -> Trunk:
    fn = _LAYOUTS.get((layout, backbone)) or _LAYOUTS.get((layout, "*"))
    if fn is None:
        known = sorted(b for (lay, b) in _LAYOUTS if lay == layout) or sorted({lay for lay, _ in _LAYOUTS})
        raise ValueError(f"No {layout!r} layout for backbone {backbone!r}; known: {', '.join(known)}.")
    return fn(backbone, pretrained_backbone=pretrained_backbone, **kwargs)


@torch.no_grad()
def probe_shapes(f1: nn.Module, f2: nn.Module, in_chans: int, size: int = 64) -> list[tuple[str, int, int]]:
    """(key, channels, stride) after every trunk module, from one tiny eval-mode pass.

    Strides and widths depend on the layout's surgery (e.g. the paper's ResNet strides), so
    measuring them is simpler and safer than bookkeeping them per family.
    """
    param = next(f1.parameters())
    x = torch.zeros(1, in_chans, size, size, device=param.device, dtype=param.dtype)
    modes = [(m, m.training) for m in (f1, f2)]
    shapes = []
    try:
        f1.eval(), f2.eval()
        for prefix, seq in (("f1", f1), ("f2", f2)):
            for key, module in seq.named_children():
                x = module(x)
                shapes.append((f"{prefix}.{key}", x.shape[1], 2 ** round(math.log2(size / x.shape[-1]))))
    finally:
        for m, mode in modes:
            m.train(mode)
    return shapes
