"""Training configuration: the schema of ``hub_configs/**.yaml``, validated when loaded.

A config is a tree of dataclasses. Loading checks every key against the schema, so a typo fails at
once with the closest valid key (``unknown key 'loss.alpah'; did you mean 'loss.alpha'?``) instead of
being ignored for a 100-epoch run. ``key=value`` overrides (dotted for nested keys, values in YAML
syntax) are applied to the raw tree before validation, so they get the same checks.

``batch_size`` is the GLOBAL batch of one optimizer step (all processes x accumulation steps): a paper
recipe means the same thing on one CPU or on eight GPUs.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "ConfigError",
    "TrainConfig",
    "LossConfig",
    "LocalizationConfig",
    "ScheduleConfig",
    "LRMultipliers",
    "EvalConfig",
    "CheckpointConfig",
    "CardConfig",
    "SeedConfig",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "parse_override",
    "config_to_dict",
    "read_yaml",
]


class ConfigError(ValueError):
    """A config key is unknown, missing or of the wrong type; the message names the key and the fix."""


@dataclass
class LRMultipliers:
    """Learning-rate multipliers of the four parameter groups (METHOD.md: 1 / 2 / 10 / 20)."""

    backbone_weight: float = 1.0
    backbone_bias: float = 2.0
    head_weight: float = 10.0
    head_bias: float = 20.0


@dataclass
class ScheduleConfig:
    """Per-iteration learning-rate schedule: ``step`` (x gamma at each milestone epoch), ``cosine`` or
    ``poly`` ((1 - step / total) ** power, the WSSS recipe)."""

    name: Literal["step", "cosine", "poly"] = "step"
    milestones: list[int] = field(default_factory=list)  # epochs at which step decay multiplies by gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warm-up from 0, in (fractional) epochs
    power: float = 0.9  # poly: lr x (1 - step / total_steps) ** power (the WSSS recipe)


@dataclass
class LossConfig:
    """BASLoss settings; ``variant`` picks the release (ijcv journal, cvpr conference)."""

    variant: Literal["ijcv", "cvpr"] = "ijcv"
    alpha: float = 0.5
    beta: float = 1.5
    clamp_value: float | None = None  # None: the release's constant


@dataclass
class LocalizationConfig:
    """How maps are chosen and boxed at evaluation.

    ``gt_class`` uses the ground-truth class's map (ILSVRC and wsolevaluation protocol); otherwise the
    mean over the ``top_k`` predicted classes. ``threshold`` is the box threshold of Top-1 / GT-known
    Loc; with ``threshold_from_val`` it is replaced by the best MaxBoxAccV1 threshold on the validation
    split (a calibrated, test-free choice that is fair to methods whose maps peak differently).
    """

    top_k: int = 1
    gt_class: bool = False
    threshold: float = 0.1
    threshold_from_val: bool = False
    iou_strict: bool = False  # GT-known hit when IoU > 0.5 (cvpr code) instead of >= 0.5
    cam_curve_interval: float = 0.01


@dataclass
class SeedConfig:
    """WSSS seeds of multi-label models (bas_zoo.wsss): validation mIoU, test mIoU, the grid."""

    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 1.5, 2.0])
    flip: bool = True
    fuse_cam: bool = False  # add the model's own CAM to the BAS seeds
    bg_thresholds: list[float] = field(default_factory=lambda: [round(0.20 + 0.01 * i, 2) for i in range(25)])


@dataclass
class EvalConfig:
    """Validation during training; the best checkpoint by ``metric`` on ``val_split`` is kept."""

    every_epochs: int = 1
    metric: str = "maxboxacc_v2"
    val_split: str = "val"
    test_split: str = "test"
    batch_size: int = 64  # per process
    grid_images: int = 8  # images in the PNG grid (0: none)


@dataclass
class CheckpointConfig:
    """``accelerator.save_state`` every ``every_steps`` optimizer steps (0: only at epoch ends)."""

    every_steps: int = 500
    keep_last: int = 2


@dataclass
class CardConfig:
    """Model-card metadata written next to the exported weights."""

    license: str = "apache-2.0"
    tags: list[str] = field(default_factory=lambda: ["weakly-supervised-object-localization", "bas", "timm"])
    datasets: list[str] = field(default_factory=list)
    citation: str = ""
    description: str = ""


@dataclass
class TrainConfig:
    """One training run (see the module docstring for ``batch_size``)."""

    dataset: str  # a load_wsol_dataset spec; required
    model: str = "bas_resnet50"
    model_args: dict[str, Any] = field(default_factory=dict)  # BASModel kwargs (head_chs, head_relu, ...)
    init_from: str | None = None  # start weights: a save_pretrained folder or a .safetensors file
    method: Literal["bas", "cam", "both"] = "bas"
    train_split: str = "train"
    image_size: int = 224  # train crop and evaluation size
    resize_size: int = 256  # train images are resized to this, then randomly cropped
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    lr_mult: LRMultipliers = field(default_factory=LRMultipliers)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sync_batchnorm: bool = False  # SyncBatchNorm across processes (the journal's ILSVRC runs)
    loss: LossConfig = field(default_factory=LossConfig)
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seeds: SeedConfig = field(default_factory=SeedConfig)  # multi-label (WSSS) models only
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    card: CardConfig = field(default_factory=CardConfig)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 0.0  # 0: no clipping
    num_workers: int = 0
    seed: int = 0
    log_every_steps: int = 10

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs", "must be >= 1"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "must be >= 1"),
            (
                self.resize_size >= self.image_size,
                "resize_size",
                f"must be >= image_size ({self.image_size})",
            ),
            (self.lr > 0, "lr", "must be > 0"),
            (self.eval.every_epochs >= 1, "eval.every_epochs", "must be >= 1"),
            (self.checkpoint.keep_last >= 1, "checkpoint.keep_last", "must be >= 1"),
            (self.localization.top_k >= 1, "localization.top_k", "must be >= 1"),
            (
                bool(self.seeds.scales) and min(self.seeds.scales) > 0,
                "seeds.scales",
                "must list positive scales, e.g. [1.0, 0.5, 1.5, 2.0]",
            ),
            (
                bool(self.seeds.bg_thresholds)
                and all(
                    b > a
                    for a, b in zip(self.seeds.bg_thresholds[:-1], self.seeds.bg_thresholds[1:], strict=True)
                ),
                "seeds.bg_thresholds",
                "must be a non-empty increasing list",
            ),
            (0 <= self.localization.threshold <= 1, "localization.threshold", "must be in [0, 1]"),
        ]
        for ok, key, message in checks:
            if not ok:
                raise ConfigError(f"Config key {key!r} {message}.")
        if self.eval.val_split == self.eval.test_split:
            raise ConfigError(
                f"eval.val_split and eval.test_split are both {self.eval.test_split!r}: checkpoints are chosen "
                "on a validation split, never on the test split. Use a held-out split (e.g. 'val')."
            )
        _check_model_args(self.model_args)


def _check_model_args(model_args: dict[str, Any]) -> None:
    """``model_args`` go to the model constructor: catch misspelled ones now, not after data loading."""
    from .models import BASModel

    valid = [p for p in inspect.signature(BASModel.__init__).parameters if p != "self"]
    for key in model_args:
        if key not in valid:
            raise ConfigError(_unknown_message(f"model_args.{key}", key, valid, "model_args."))


# ------------------------------------------------------------------------------------------- loading
class _Loader(yaml.SafeLoader):
    """YAML loader that reads ``1e-3`` as a float (plain YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?(?:[eE][-+]?\d+)$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"),
    list("-+0123456789."),
)


def _unknown_message(dotted: str, key: str, valid: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = (
        f"did you mean {prefix + close[0]!r}?" if close else f"valid keys here: {', '.join(sorted(valid))}."
    )
    return f"Unknown config key {dotted!r}; {hint}"


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " | ".join(repr(v) for v in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a type hint; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(
                f"Config key {key!r} must be a mapping of {hint.__name__} fields, got {value!r}."
            )
        return _build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        return _coerce(value, next(o for o in options if o is not type(None)), key)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint_text = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Config key {key!r} must be one of {list(allowed)}, got {value!r}{hint_text}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"Config key {key!r} must be a list, got {value!r}.")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"Config key {key!r} must be a mapping, got {value!r}.")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise ConfigError(
        f"Config key {key!r} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})."
    )


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_message(prefix + str(key), str(key), list(fields), prefix))
    missing = [
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        example = "dataset: synthetic" if "dataset" in missing else f"{missing[0]}: ..."
        raise ConfigError(
            f"Missing required config key {prefix + missing[0]!r}; add it to the YAML (e.g. '{example}') "
            f"or pass {prefix + missing[0]}=... on the command line."
        )
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validate a raw config tree (as read from YAML) into a :class:`TrainConfig`."""
    if not isinstance(data, dict):
        raise ConfigError(f"A config must be a mapping of keys to values, got {type(data).__name__}.")
    return _build(TrainConfig, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"loss.alpha=0.5"`` -> (["loss", "alpha"], 0.5); the value is read as YAML (lists, bools, null)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Malformed override {text!r}: expected key=value, e.g. loss.alpha=0.5.")
    return key.strip().split("."), yaml.load(value, Loader=_Loader) if value.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a raw config tree (a copy); nested keys are dotted."""
    out = _deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"Override {text!r}: {'.'.join(path[: i + 1])!r} is not a mapping.")
            node = child
        node[path[-1]] = value
    return out


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} not found.")
    data = yaml.load(path.read_text(), Loader=_Loader) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values.")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read, override and validate a config; errors name the file and the key."""
    data = read_yaml(path) if path is not None else {}
    try:
        return config_from_dict(apply_overrides(data, list(overrides)))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path is not None else str(err)) from None


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain-dict form of a config (for YAML / JSON dumps and model cards)."""
    return dataclasses.asdict(config)
