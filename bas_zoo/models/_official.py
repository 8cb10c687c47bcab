"""Map checkpoints of the official BAS releases onto bas_zoo keys.

Both releases (github.com/wpy1999/BAS, conference; github.com/wpy1999/BAS-Extension, journal) save
their own module names: VGG ``conv4_3``, MobileNet ``model.<n>.<i>``, heads ``classifier_cls.<i>`` /
``classifier_loc.0``. Conversion is two table look-ups: official name -> timm name (per backbone,
below) or -> our head name, then timm name -> our ``f1.<key>`` / ``f2.<key>`` through
``model.source_names``. Keys that are already ours (a bas_zoo safetensors file) pass through. The
result is validated against the model so that a wrong architecture or class count fails with a
message that says what to do, instead of timm's generic strict-load error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "OFFICIAL_BACKBONES",
    "checkpoint_filter_fn",
    "convert_official_state_dict",
    "load_official_checkpoint",
    "unwrap_state_dict",
]

# ---- mapping tables ------------------------------------------------------------------------

# Extractor / generator heads, shared by every backbone: official module -> bas_zoo module.
# The conference InceptionV3 calls its extractor ``classifier`` instead of ``classifier_cls``.
_HEAD_TABLE: dict[str, str] = {
    "classifier_cls.0": "extractor.conv1",
    "classifier_cls.2": "extractor.conv2",
    "classifier_cls.4": "classifier",
    "classifier.0": "extractor.conv1",
    "classifier.2": "extractor.conv2",
    "classifier.4": "classifier",
    "classifier_loc.0": "generator",
}

# VGG16: named convs -> index in timm's ``features`` (ReLUs and pools sit between them).
_VGG16_TABLE: dict[str, str] = {
    f"conv{name}": f"features.{index}"
    for name, index in {
        "1_1": 0, "1_2": 2,
        "2_1": 5, "2_2": 7,
        "3_1": 10, "3_2": 12, "3_3": 14,
        "4_1": 17, "4_2": 19, "4_3": 21,
        "5_1": 24, "5_2": 26, "5_3": 28,
    }.items()
}  # fmt: skip

# MobileNetV1: ``model.0`` is conv_bn (conv, bn, relu); ``model.1..13`` are conv_dw blocks
# (dw conv, bn, relu, pw conv, bn, relu). timm groups the 13 blocks into stages of these depths.
_MOBILENETV1_STAGE_DEPTHS: tuple[int, ...] = (1, 2, 2, 6, 2)
_MOBILENETV1_STEM: dict[str, str] = {"0": "conv_stem", "1": "bn1"}
_MOBILENETV1_BLOCK: dict[str, str] = {"0": "conv_dw", "1": "bn1", "3": "conv_pw", "4": "bn2"}


def _mobilenetv1_table() -> dict[str, str]:
    """Expand the stage depths into ``model.<n>.<i>`` -> ``blocks.<stage>.<block>.<layer>``."""
    table = {f"model.0.{i}": name for i, name in _MOBILENETV1_STEM.items()}
    n = 1
    for stage, depth in enumerate(_MOBILENETV1_STAGE_DEPTHS):
        for block in range(depth):
            for i, name in _MOBILENETV1_BLOCK.items():
                table[f"model.{n}.{i}"] = f"blocks.{stage}.{block}.{name}"
            n += 1
    return table


@dataclass(frozen=True)
class OfficialBackbone:
    """How one official BAS backbone names its trunk, and how to recognise its checkpoints."""

    arch: str  # name shown in messages
    model_name: str  # the bas_zoo entrypoint to use for it
    signature: str  # a key prefix that only this backbone's official checkpoints have
    trunk: Mapping[str, str] | None  # official module -> timm module; None: names are timm's


# timm backbone name -> official release naming.
OFFICIAL_BACKBONES: dict[str, OfficialBackbone] = {
    "vgg16": OfficialBackbone("VGG16", "bas_vgg16", "conv5_3.", _VGG16_TABLE),
    "resnet50": OfficialBackbone("ResNet50", "bas_resnet50", "layer4.2.conv3.", None),
    "inception_v3": OfficialBackbone("InceptionV3", "bas_inception_v3", "Mixed_7c.", None),
    "mobilenetv1_100": OfficialBackbone(
        "MobileNetV1", "bas_mobilenetv1_100", "model.13.", _mobilenetv1_table()
    ),
}

# Registered copies of f2 and the head in the conference ImageNet models (``conv_copy_5_1``,
# ``layer4_copy``, ``Mixed_7a_copy``, ``classifier_cls_copy``, ``erase_branch``): stale duplicates
# of weights that are also saved under their real names, so they are dropped.
_DROPPED = re.compile(r"^(?:[^.]*_copy[^.]*|erase_branch)\.")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_WRAPPER_KEYS = ("state_dict", "model")
_HEAD_MODULES = ("classifier", "generator")
# Our head keys, recognised even when the model has no such head (num_classes=0: timm drops them).
_OWN_HEAD_KEYS = frozenset(f"{m}.{p}" for m in _HEAD_MODULES for p in ("weight", "bias"))


# ---- reading -------------------------------------------------------------------------------


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: descend ``state_dict`` / ``model`` wrappers, strip ``module.``.

    The journal script saves ``{'model': sd, 'best_thr', 'epoch'}``; DataParallel / DDP (ImageNet
    runs) prefix every key with ``module.``.
    """
    sd: Any = checkpoint
    while isinstance(sd, Mapping):
        inner = next((sd[k] for k in _WRAPPER_KEYS if isinstance(sd.get(k), Mapping)), None)
        if inner is None:
            break
        sd = inner
    if not isinstance(sd, Mapping):
        raise ValueError(f"Expected a state dict (a mapping of names to tensors), got {type(sd).__name__}.")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"Checkpoint entry {key!r} is a {type(value).__name__}, not a tensor: pass the state dict "
                "(or a dict wrapping it under 'state_dict' / 'model')."
            )
        name = key
        while name.startswith(_WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise ValueError(f"Checkpoint has {name!r} twice (with and without a 'module.' prefix).")
        out[name] = value
    return out


def load_official_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read an official ``.pth.tar`` (either release, legacy or zip format) or a ``.safetensors`` file.

    Uses ``weights_only=True``: the official files hold only tensors, floats and ints.
    """
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return unwrap_state_dict(load_file(str(path), device="cpu"))
    return unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))


# ---- conversion ----------------------------------------------------------------------------


def _longest_prefix(name: str, table: Mapping[str, str]) -> tuple[str, str] | None:
    """(prefix, rest) for the longest table key that is ``name`` or a module prefix of it."""
    best = None
    for prefix in table:
        if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else (best, name[len(best) :])


def _model_label(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or f"BAS model on {getattr(model, 'backbone_name', type(model).__name__)}"


def _detect_official(keys: list[str]) -> list[OfficialBackbone]:
    return [spec for spec in OFFICIAL_BACKBONES.values() if any(k.startswith(spec.signature) for k in keys)]


def _fmt(keys: list[str], limit: int = 8) -> str:
    """First few names, parameters before buffers (they say more about what went wrong)."""
    keys = sorted(keys, key=lambda k: k.endswith(_BUFFER_SUFFIXES))
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _trunk_targets(model: nn.Module) -> dict[str, str]:
    """timm dotted module name -> our module name (``f1.<key>`` / ``f2.<key>``)."""
    source_names = getattr(model, "source_names", {})
    targets = {}
    for part in ("f1", "f2"):
        seq = getattr(model, part, None)
        for key, _ in seq.named_children() if seq is not None else ():
            targets[source_names.get(key, key)] = f"{part}.{key}"
    return targets


def _class_count(sd: Mapping[str, torch.Tensor]) -> int | None:
    """Classes of the checkpoint's heads; ValueError when classifier and generator disagree."""
    counts = {m: sd[f"{m}.weight"].shape[0] for m in _HEAD_MODULES if f"{m}.weight" in sd}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"Checkpoint heads disagree on the class count ({counts}); it is not a BAS checkpoint."
        )
    return next(iter(counts.values()), None)


def convert_official_state_dict(
    state_dict: Mapping[str, Any],
    model: nn.Module,
    pretrained_num_classes: int | None = None,
) -> dict[str, torch.Tensor]:
    """Rename an official BAS (or bas_zoo) state dict to ``model``'s keys and validate it.

    Args:
        state_dict: a checkpoint as loaded (wrappers and ``module.`` prefixes are removed here).
        model: the target BASModel (paper layout for official checkpoints).
        pretrained_num_classes: class count the caller declares for the checkpoint (timm's
            ``pretrained_cfg['num_classes']``). When it equals the checkpoint's but not the model's,
            the heads are returned unchecked for timm to drop (fine-tuning to new classes).

    Raises:
        ValueError: another architecture, another class count, or any tensor left unmapped /
        missing / of the wrong shape; the message names the keys and the fix.
    """
    sd = unwrap_state_dict(state_dict)
    label = _model_label(model)
    expected = model.state_dict()
    backbone = getattr(model, "backbone_name", None)
    spec = OFFICIAL_BACKBONES.get(backbone) if getattr(model, "layout", "paper") == "paper" else None
    trunk_table = spec.trunk if spec is not None and spec.trunk is not None else {}
    trunk_targets = _trunk_targets(model)

    # A checkpoint of another official backbone: say which model it belongs to.
    detected = _detect_official([k for k in sd if k not in expected])
    if detected and (spec is None or spec not in detected):
        other = detected[0]
        layout_note = (
            f" (official checkpoints use the paper layout; this model has layout {model.layout!r})"
            if backbone in OFFICIAL_BACKBONES and spec is None
            else ""
        )
        raise ValueError(
            f"Keys look like an official BAS {other.arch} checkpoint, model is {label}{layout_note}: "
            f"load it into timm.create_model({other.model_name!r}, ...)."
        )

    out: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    unmapped: list[str] = []
    for key, value in sd.items():
        if key in expected or key in _OWN_HEAD_KEYS:  # already a bas_zoo key
            target = key
        elif _DROPPED.match(key):
            continue
        elif hit := _longest_prefix(key, _HEAD_TABLE):
            target = _HEAD_TABLE[hit[0]] + hit[1]
        else:
            hit = _longest_prefix(key, trunk_table)
            timm_name = trunk_table[hit[0]] + hit[1] if hit else key
            hit = _longest_prefix(timm_name, trunk_targets)
            if hit is None:
                unmapped.append(key)
                continue
            target = trunk_targets[hit[0]] + hit[1]
        if target in source_of:
            raise ValueError(f"Checkpoint keys {source_of[target]!r} and {key!r} both map to {target!r}.")
        source_of[target] = key
        out[target] = value

    n_ckpt = _class_count(out)
    n_model = getattr(model, "num_classes", None)
    n_cfg = n_model if pretrained_num_classes is None else pretrained_num_classes
    # timm discards the heads (and re-initialises them) when the declared count is not the model's.
    heads_dropped = n_cfg != n_model and n_ckpt in (None, n_cfg)
    if n_ckpt is not None and not heads_dropped:
        if n_ckpt != n_model:
            raise ValueError(
                f"Checkpoint has {n_ckpt} classes, model {label} has {n_model}: pass num_classes={n_ckpt} "
                f"(and pretrained_cfg_overlay=dict(..., num_classes={n_ckpt})); to fine-tune on {n_model} "
                f"classes instead, keep num_classes={n_model} and set pretrained_cfg_overlay num_classes="
                f"{n_ckpt} so that timm re-initialises the heads."
            )
        if n_cfg != n_model:
            raise ValueError(
                f"Checkpoint and model have {n_ckpt} classes but pretrained_cfg says {n_cfg}, so timm would "
                f"discard the loaded heads: pass pretrained_cfg_overlay=dict(..., num_classes={n_ckpt})."
            )

    def is_head(name: str) -> bool:
        return name.split(".", 1)[0] in _HEAD_MODULES

    unexpected = [source_of[k] for k in out if k not in expected and not (heads_dropped and is_head(k))]
    missing = [k for k in expected if k not in out and not (heads_dropped and is_head(k))]
    shapes = [
        f"{source_of[k]} {tuple(v.shape)} -> {k} {tuple(expected[k].shape)}"
        for k, v in out.items()
        if k in expected
        and v.shape != expected[k].shape
        and not (heads_dropped and is_head(k))
        and not _stem_adapted(model, k, v, expected[k])
    ]
    problems = []
    if unmapped or unexpected:
        problems.append(f"unmapped checkpoint tensors: {_fmt(unmapped + unexpected)}")
    if missing:
        problems.append(f"model tensors missing from the checkpoint: {_fmt(missing)}")
    if shapes:
        problems.append(f"shape mismatches: {_fmt(shapes, 4)}")
    if problems:
        theirs, ours = _trunk_modules(sd), _trunk_modules(expected)
        if theirs and set(theirs) != set(ours):
            hint = (
                f"Keys look like a bas_zoo checkpoint of another backbone or layout (trunk {_fmt(theirs, 4)}; "
                f"this model: {_fmt(ours, 4)}): load it into the model it was saved from."
            )
        else:
            hint = (
                "Is it a checkpoint of another architecture or layout? Official BAS checkpoints load into "
                f"{', '.join(s.model_name for s in OFFICIAL_BACKBONES.values())}."
            )
        raise ValueError(f"Checkpoint does not fit {label}: " + "; ".join(problems) + ". " + hint)
    return out


def _trunk_modules(keys: Mapping[str, Any]) -> list[str]:
    """Ordered ``f1.<key>`` / ``f2.<key>`` modules named by bas_zoo-style keys."""
    return list(dict.fromkeys(".".join(k.split(".", 2)[:2]) for k in keys if k.startswith(("f1.", "f2."))))


def _stem_adapted(model: nn.Module, key: str, value: torch.Tensor, target: torch.Tensor) -> bool:
    """timm adapts the first conv to ``in_chans`` after the filter: let that shape difference pass."""
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    return (
        first is not None
        and key == f"{first}.weight"
        and value.ndim == 4
        and value.shape[0] == target.shape[0]
        and value.shape[2:] == target.shape[2:]
    )


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: official or bas_zoo checkpoints -> ``model``'s keys, validated."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return convert_official_state_dict(state_dict, model, pretrained_num_classes=cfg.get("num_classes"))
