"""Save, load and publish BAS models in timm's Hub layout, with model cards.

One folder layout serves every loader: ``config.json`` (timm's: ``architecture``, ``num_classes``,
``label_names``, ``model_args``, ``pretrained_cfg``), ``model.safetensors`` and a ``README.md`` card.
The same folder loads through :meth:`bas_zoo.BASModel.from_pretrained`,
``timm.create_model("hf-hub:ORG/NAME", pretrained=True)`` and ``timm.create_model("local-dir:DIR",
pretrained=True)``. Only safetensors are written, every file atomically; loading is strict.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from timm.models import PretrainedCfg, filter_pretrained_cfg, get_pretrained_cfg

from ._io import atomic_target, write_text_atomic

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

    from .models import BASModel

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "CheckpointMismatchError",
    "build_config",
    "build_model_card",
    "from_pretrained",
    "load_state_dict_strict",
    "push_folder",
    "push_to_hub",
    "save_pretrained",
    "write_model_card",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
# Legacy pickle weights we can *read* (always with weights_only=True); never written.
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.pth", "model.pth")
# The files a Hub repo of this layout holds; anything else in a folder is not uploaded.
UPLOAD_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
# Stands in for the repo id in card snippets until the repo is known (replaced by push).
REPO_PLACEHOLDER = "<org>/<name>"

TAGS = ["bas_zoo", "timm", "weakly-supervised-object-localization", "image-classification"]
# Constructor arguments that never go to config.json: loading must not download ImageNet weights.
_NOT_SAVED = {"self", "pretrained_backbone"}
_PRETRAINED_CFG_FIELDS = {f.name for f in dataclasses.fields(PretrainedCfg)}


class CheckpointMismatchError(RuntimeError):
    """The weights file does not hold exactly the tensors the model expects."""


# ---- config.json ---------------------------------------------------------------------------------
def model_architecture(model: BASModel) -> str:
    """timm registry name that rebuilds ``model`` (``bas_generic`` when it was built by hand)."""
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return arch if arch and timm.is_model(arch) else "bas_generic"


def _jsonable(name: str, value: Any) -> Any:
    """Plain JSON value of a constructor argument (numpy / tensor scalars become Python numbers)."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        value = value.item()
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise ValueError(f"Model argument {name}={value!r} cannot be written to config.json.") from e


def model_args(model: BASModel) -> dict[str, Any]:
    """Every constructor argument needed to rebuild the saved tensors (never ``pretrained_backbone``).

    Read from the live model (``reset_classifier`` changes ``num_classes``), so new constructor
    arguments are saved without touching this module; values the model does not keep as
    attributes (``backbone_args``) come from what the constructor was called with.
    """
    recorded = dict(getattr(model, "_model_args", None) or {})
    recorded.update(getattr(model, "_hub_mixin_config", None) or {})
    args: dict[str, Any] = {}
    for name, param in inspect.signature(type(model).__init__).parameters.items():
        if name in _NOT_SAVED or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        attr = "backbone_name" if name == "backbone" else name
        value = getattr(model, attr, None) if attr in vars(model) else recorded.get(name)
        if value is not None and not isinstance(value, torch.nn.Module):
            args[name] = _jsonable(name, value)
    return args


def _pretrained_cfg(model: BASModel, arch: str) -> dict[str, Any]:
    """timm's pretrained_cfg of ``model`` without weight sources, matching the current heads."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if not cfg:
        registered = get_pretrained_cfg(arch)
        cfg = registered.to_dict() if registered is not None else {}
    cfg = filter_pretrained_cfg(cfg, remove_source=True, remove_null=True)
    cfg = {k: v for k, v in cfg.items() if k in _PRETRAINED_CFG_FIELDS}
    for key in ("state_dict", "tag", "architecture", "label_offset"):
        cfg.pop(key, None)
    input_size = tuple(cfg.get("input_size") or (3, 224, 224))
    cfg["input_size"] = (int(model.in_chans), *input_size[1:])
    cfg["custom_load"] = False
    if cfg.get("num_classes") != model.num_classes:
        for key in ("label_names", "label_descriptions"):
            cfg.pop(key, None)
    cfg["num_classes"] = int(model.num_classes)
    return cfg


def _label_names(model: BASModel, label_names: Sequence[str] | None) -> list[str] | None:
    """Explicit names, else the ones the model was loaded with, if they match its classes."""
    names = label_names
    if names is None:
        names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    if names is None:
        return None
    names = [str(n) for n in names]
    if len(names) != model.num_classes:
        raise ValueError(f"{len(names)} label names given for a model with {model.num_classes} classes.")
    return names


def build_config(model: BASModel, label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """timm's ``config.json`` for ``model``; the pipeline's threshold and top-k live in ``model_args``."""
    arch = model_architecture(model)
    config: dict[str, Any] = {"architecture": arch, "num_classes": int(model.num_classes)}
    config["num_features"] = int(model.num_features)
    names = _label_names(model, label_names)
    if names:
        config["label_names"] = names
    config["model_args"] = model_args(model)
    config["pretrained_cfg"] = _pretrained_cfg(model, arch)
    from . import __version__

    config["bas_zoo"] = {
        "version": __version__,
        "loc_threshold": float(model.loc_threshold),
        "loc_top_k": int(model.loc_top_k),
    }
    return config


def save_weights(model: torch.nn.Module, save_directory: str | Path) -> Path:
    """Write ``model.safetensors`` (never pickle)."""
    from safetensors.torch import save_model

    path = Path(save_directory) / WEIGHTS_NAME
    with atomic_target(path) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt"})
    return path


def write_model_card(card: ModelCard, save_directory: str | Path) -> Path:
    """Write ``README.md`` atomically."""
    path = Path(save_directory) / CARD_NAME
    write_text_atomic(path, str(card))
    return path


def save_config(
    model: BASModel, save_directory: str | Path, label_names: Sequence[str] | None = None
) -> Path:
    path = Path(save_directory) / CONFIG_NAME
    write_text_atomic(path, json.dumps(build_config(model, label_names), indent=2) + "\n")
    return path


def save_pretrained(
    model: BASModel,
    save_directory: str | Path,
    metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    *,
    label_names: Sequence[str] | None = None,
    push_to_hub: bool = False,
    repo_id: str | None = None,
    **push_kwargs: Any,
) -> Path | str:
    """Write the Hub-ready folder: config.json, model.safetensors and the README.md card.

    ``metrics`` (as WSOLMetrics computes them) and the training ``config`` go into the card;
    ``dataset`` is the dataset spec (default: ``config["dataset"]``). With ``push_to_hub`` the
    folder is also uploaded to ``repo_id`` and the commit URL is returned.
    """
    model = _unwrap(model)
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder)
    save_config(model, folder, label_names)
    write_model_card(build_model_card(model, metrics, dataset, config, repo_id=repo_id), folder)
    if push_to_hub:
        if repo_id is None:
            raise ValueError("push_to_hub=True needs repo_id='ORG/NAME'.")
        return push_folder(folder, repo_id, **push_kwargs).commit_url
    return folder


def _unwrap(model: Any) -> BASModel:
    """The BASModel inside DDP / DataParallel (``.module``) or torch.compile (``._orig_mod``) wrappers."""
    from .models import BASModel

    while not isinstance(model, BASModel):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            raise TypeError(f"Expected a bas_zoo BASModel, got {type(model).__name__}.")
        model = inner
    return model


# ---- loading -------------------------------------------------------------------------------------
def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith((".", "/", "~")) or "\\" in model_id or model_id.count("/") > 1


def _download_kwargs(
    revision: str | None,
    cache_dir: str | Path | None,
    force_download: bool,
    local_files_only: bool,
    token: str | bool | None,
) -> dict[str, Any]:
    return dict(
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )


def _resolve_local(folder: Path) -> tuple[Path, Path]:
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {CONFIG_NAME}; expected a folder written by bas_zoo save_pretrained."
        )
    for name in (WEIGHTS_NAME, *PICKLE_WEIGHTS):
        if (folder / name).is_file():
            return config_path, folder / name
    raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME} (nor {', '.join(PICKLE_WEIGHTS)}).")


def _resolve_hub(repo_id: str, **download: Any) -> tuple[Path, Path]:
    config_path = Path(hf_hub_download(repo_id, CONFIG_NAME, **download))
    for name in (WEIGHTS_NAME, *PICKLE_WEIGHTS):
        try:
            return config_path, Path(hf_hub_download(repo_id, name, **download))
        except EntryNotFoundError:
            continue
    where = f"{repo_id}@{download.get('revision') or 'main'}"
    raise FileNotFoundError(f"{where} has no {WEIGHTS_NAME} (nor {', '.join(PICKLE_WEIGHTS)}).")


def read_state_dict(path: str | Path, model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: safetensors, or a pickle read with ``weights_only=True``.

    A pickle may be an official BAS release: with ``model`` given it goes through the same
    checkpoint filter as timm's ``pretrained=True`` path. Our safetensors are already native.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        from timm.models import load_state_dict

        # timm's reader unwraps {'model'|'state_dict': ...} and strips DataParallel's 'module.'.
        state_dict = load_state_dict(str(path), weights_only=True)
    except (OSError, ValueError):
        raise
    except Exception as e:  # corrupt or truncated file: SafetensorError, UnpicklingError, zip errors
        raise ValueError(f"Cannot read weights file {path}: {e}") from e
    return state_dict if model is None else _filter_official(state_dict, model)


def _filter_official(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint filter timm's ``pretrained=True`` path applies (maps official BAS keys)."""
    from .models._official import checkpoint_filter_fn

    return checkpoint_filter_fn(state_dict, model)


def _key_list(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_state_dict_strict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load every tensor; a missing, unexpected or mis-shaped key raises, naming the keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k!r} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_key_list(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches (file vs model): {'; '.join(shapes[:10])}")
    if problems:
        raise CheckpointMismatchError(
            f"{source} does not match the model built from its config.json: " + "; ".join(problems)
        )
    model.load_state_dict(state_dict, strict=True)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    for key in ("architecture", "model_args"):
        if key not in config:
            raise ValueError(f"{path} has no {key!r}; it was not written by bas_zoo save_pretrained.")
    if not timm.is_model(config["architecture"]):
        raise ValueError(
            f"{path} names architecture {config['architecture']!r}, which is not a registered timm model "
            "(is bas_zoo imported and up to date?)."
        )
    return config


def _runtime_pretrained_cfg(config: Mapping[str, Any], source: dict[str, str]) -> dict[str, Any]:
    """The pretrained_cfg timm itself would attach when loading this config (cf. _parse_model_cfg)."""
    cfg = {k: v for k, v in dict(config.get("pretrained_cfg") or {}).items() if k in _PRETRAINED_CFG_FIELDS}
    cfg.update(source)
    cfg["num_classes"] = config.get("num_classes", cfg.get("num_classes"))
    if config.get("label_names"):
        cfg["label_names"] = config["label_names"]
    return cfg


def from_pretrained(
    model_id: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
    map_location: str | torch.device = "cpu",
    num_classes: int | None = None,
    loc_threshold: float | None = None,
    loc_top_k: int | None = None,
) -> BASModel:
    """Build the model named by ``config.json`` through timm's registry, then load it strictly.

    ``model_id`` is a folder or a Hub id (``ORG/NAME``; the HF cache is used as usual). A
    different ``num_classes`` loads the saved heads, then replaces them (fine-tuning start).
    """
    name = str(model_id)
    folder = Path(name).expanduser()
    if folder.is_dir():
        config_path, weights_path = _resolve_local(folder)
        source = {"file": str(folder), "source": "local-dir"}
    elif folder.exists():
        raise NotADirectoryError(f"{name} is a file; pass the model folder (with {CONFIG_NAME}) instead.")
    elif _looks_like_path(name):
        raise FileNotFoundError(f"No model folder at {name}.")
    else:
        download = _download_kwargs(revision, cache_dir, force_download, local_files_only, token)
        config_path, weights_path = _resolve_hub(name, **download)
        source = {"hf_hub_id": f"{name}@{revision}" if revision else name, "source": "hf-hub"}

    config = _read_config(config_path)
    args = dict(config["model_args"])
    args.pop("pretrained_backbone", None)
    args.update(
        {k: v for k, v in dict(loc_threshold=loc_threshold, loc_top_k=loc_top_k).items() if v is not None}
    )
    state_dict = read_state_dict(weights_path)  # before building: a bad file fails fast
    model = timm.create_model(
        config["architecture"],
        pretrained=False,
        pretrained_cfg=_runtime_pretrained_cfg(config, source),
        **args,
    )
    if weights_path.suffix != ".safetensors":
        state_dict = _filter_official(state_dict, model)
    load_state_dict_strict(model, state_dict, source=str(weights_path))
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    return model.to(map_location).eval()


# ---- model card ----------------------------------------------------------------------------------
# metric key -> (task type, task name, metric name); the keys are those of bas_zoo.metrics.WSOLMetrics.
_LOC_TASK = ("object-detection", "Weakly Supervised Object Localization")
_PIXEL_TASK = ("image-segmentation", "Weakly Supervised Object Localization (pixel level)")
_CLS_TASK = ("image-classification", "Image Classification")
METRIC_INFO: dict[str, tuple[str, str, str]] = {
    "top1_loc": (*_LOC_TASK, "Top-1 Loc"),
    "top5_loc": (*_LOC_TASK, "Top-5 Loc"),
    "gt_known_loc": (*_LOC_TASK, "GT-known Loc"),
    "maxboxacc_v1": (*_LOC_TASK, "MaxBoxAcc"),
    "maxboxacc_v2": (*_LOC_TASK, "MaxBoxAccV2"),
    "maxboxacc_v2@30": (*_LOC_TASK, "MaxBoxAccV2 @ IoU 0.3"),
    "maxboxacc_v2@50": (*_LOC_TASK, "MaxBoxAccV2 @ IoU 0.5"),
    "maxboxacc_v2@70": (*_LOC_TASK, "MaxBoxAccV2 @ IoU 0.7"),
    "pxap": (*_PIXEL_TASK, "PxAP"),
    "piou": (*_PIXEL_TASK, "PIoU"),
    "top1_cls": (*_CLS_TASK, "Top-1 Accuracy"),
    "top5_cls": (*_CLS_TASK, "Top-5 Accuracy"),
}

# dataset spec prefix (or wsolevaluation NAME) -> (pretty name, dataset id)
_DATASETS = {
    "synthetic": ("bas_zoo synthetic shapes", "synthetic"),
    "cub": ("CUB-200-2011", "cub-200-2011"),
    "ilsvrc": ("ImageNet-1k (ILSVRC 2012)", "imagenet-1k"),
    "imagenet": ("ImageNet-1k (ILSVRC 2012)", "imagenet-1k"),
    "openimages": ("OpenImages30k", "openimages30k"),
    "voc": ("PASCAL VOC 2012", "voc2012"),
    "imagefolder": ("Image folder", "imagefolder"),
}


def describe_dataset(spec: str | None) -> tuple[str, str, str | None]:
    """(pretty name, dataset id, Hub dataset id or None) for a dataset spec; no local paths leak."""
    if not spec:
        return ("unspecified", "unspecified", None)
    kind, _, rest = str(spec).partition(":")
    kind = kind.lower()
    if kind == "wsolevaluation":
        kind = rest.rsplit(":", 1)[-1].lower()
    if kind in _DATASETS:
        return (*_DATASETS[kind], None)
    return (str(spec), str(spec), str(spec))  # a Hub dataset id


def _metric_value(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return round(value, 4) if math.isfinite(value) else None


def eval_results(metrics: Mapping[str, Any], dataset: str | None, split: str = "test") -> list[EvalResult]:
    """EvalResult entries for the known metrics (thresholds and unknown keys stay out)."""
    name, dataset_type, _ = describe_dataset(dataset)
    results = []
    for key, (task_type, task_name, metric_name) in METRIC_INFO.items():
        value = _metric_value(metrics.get(key))
        if value is None:
            continue
        results.append(
            EvalResult(
                task_type=task_type,
                task_name=task_name,
                dataset_type=dataset_type,
                dataset_name=name,
                dataset_split=split,
                metric_type=key,
                metric_name=metric_name,
                metric_value=value,
            )
        )
    return results


_METHOD = """\
Background Activation Suppression (BAS) learns to localize objects from image-level labels only.
Beside the classifier, a small generator predicts a foreground map per class from mid-level
features. The features are multiplied by the predicted *background* (one minus the map) and run
again through the classifier's own (frozen) layers: the loss pushes that background activation
down relative to the full-image activation, so the map must cover the whole object, not just its
most discriminative part as a class activation map (CAM) does. An area constraint keeps the map
tight and a foreground-guided classification term keeps it on the object. At test time the maps of
the top-k predicted classes are averaged, thresholded and turned into boxes.
"""

_CITATION = """\
```bibtex
@inproceedings{wu2022background,
  title     = {Background Activation Suppression for Weakly Supervised Object Localization},
  author    = {Wu, Pingyu and Zhai, Wei and Cao, Yang},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {14248--14257},
  year      = {2022},
  eprint    = {2112.00580},
  archivePrefix = {arXiv}
}

@article{zhai2024background,
  title   = {Background Activation Suppression for Weakly Supervised Object Localization and Semantic Segmentation},
  author  = {Zhai, Wei and Wu, Pingyu and Zhu, Kai and Cao, Yang and Wu, Feng and Zha, Zheng-Jun},
  journal = {International Journal of Computer Vision},
  year    = {2024},
  eprint  = {2309.12943},
  archivePrefix = {arXiv}
}
```
"""

_LIMITATIONS = """\
- Trained with image-level labels only: the maps are localization *cues*, not instance
  segmentations. Touching objects of one class usually merge into one region; `mode="all"` in the
  pipeline returns every region but cannot split instances.
- The box threshold and top-k stored with the model were chosen for the dataset above; other
  image domains may need a different `threshold=` (the pipeline takes it as an argument).
- The classifier only knows the classes it was trained on; on other images it still produces a
  map for its best guess.
- Numbers are single-crop and single-run; the papers report ten-crop classification.
"""


_CAM_NOTE = """\
> **CAM baseline.** These weights were trained with the classification loss only (`method: cam`), as
> the class activation map baseline BAS is compared with: its metrics come from the classifier's
> activation maps, and its generator is untrained, so the BAS maps of the pipeline are not meaningful.
"""


def _usage(repo_id: str, arch: str) -> str:
    return f"""\
With timm (importing `bas_zoo` registers the architecture `{arch}`):

```python
import bas_zoo, timm, torch
model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()
logits = model(torch.randn(1, 3, 224, 224))          # class logits
maps = model.localize(torch.randn(1, 3, 224, 224))   # (1, 224, 224) localization map in [0, 1]
```

With `from_pretrained` (Hub id, local folder or the HF cache):

```python
from bas_zoo import BASModel
model = BASModel.from_pretrained("{repo_id}")
```

Boxes, masks and overlays on your own images with the pipeline (or `bas-zoo localize`):

```python
import bas_zoo
pipe = bas_zoo.pipeline("{repo_id}")
result = pipe("photo.jpg")              # label, score, map, boxes, mask
bas_zoo.overlay("photo.jpg", result).save("overlay.png")
```
"""


def _details(model: BASModel, arch: str) -> str:
    params = sum(p.numel() for p in model.parameters()) / 1e6
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = tuple(cfg.get("input_size") or (model.in_chans, 224, 224))
    rows = [
        ("Architecture (timm)", f"`{arch}`"),
        ("Backbone", f"`{model.backbone_name}` ({model.layout} layout)"),
        ("Head", "conference (trailing ReLU)" if model.head_relu else "journal (no trailing ReLU)"),
        ("Classes", str(model.num_classes)),
        ("Parameters", f"{params:.1f} M"),
        ("Input size", " x ".join(str(s) for s in size[1:])),
        ("Box threshold", f"{model.loc_threshold:g}"),
        ("Map top-k classes", str(model.loc_top_k)),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = [(k, _metric_value(v)) for k, v in metrics.items()]
    rows = [(METRIC_INFO.get(k, (None, None, k))[2], v) for k, v in rows if v is not None]
    if not rows:
        return "No metrics were recorded for this model.\n"
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:g} |" for k, v in rows) + "\n"


def _config_block(config: Mapping[str, Any] | None) -> str:
    if not config:
        return "The training configuration was not recorded.\n"
    import yaml

    text = yaml.safe_dump(json.loads(json.dumps(dict(config), default=str)), sort_keys=False)
    return f"```yaml\n{text}```\n"


def build_model_card(
    model: BASModel,
    metrics: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    repo_id: str | None = None,
) -> ModelCard:
    """The README.md card: metadata with a model-index, method, usage, config, limitations, citation."""
    model = _unwrap(model)
    metrics = dict(metrics or {})
    config = dict(config or {})
    dataset = dataset or config.get("dataset")
    card_meta = dict(config.get("card") or {}) if isinstance(config.get("card"), Mapping) else {}
    arch = model_architecture(model)
    ds_name, _, hub_dataset = describe_dataset(dataset)
    split = metrics.get("split") if isinstance(metrics.get("split"), str) else "test"
    title = (
        f"{arch} ({model.backbone_name}) on {ds_name}" if arch == "bas_generic" else f"{arch} on {ds_name}"
    )
    license_ = card_meta.get("license") or (getattr(model, "pretrained_cfg", None) or {}).get("license")
    results = eval_results(metrics, dataset, split)
    data = ModelCardData(
        library_name="timm",
        license=license_ or "apache-2.0",
        tags=sorted(set(TAGS) | set(card_meta.get("tags") or [])),
        pipeline_tag="image-classification",
        datasets=[hub_dataset] if hub_dataset else None,
        model_name=title,
        eval_results=results or None,
    )
    repo = repo_id or REPO_PLACEHOLDER
    body = "\n".join(
        [
            f"# {title}\n",
            f"A Background Activation Suppression (BAS) model from `bas_zoo` for weakly "
            f"supervised object localization: a `{model.backbone_name}` classifier with a foreground-map "
            f"generator, trained on {ds_name} with image-level labels only.\n",
            _CAM_NOTE if config.get("method") == "cam" else "",
            "## Method\n",
            _METHOD,
            "## Model details\n",
            _details(model, arch),
            f"## Results ({ds_name}, {split} split)\n",
            _metrics_table(metrics),
            "## Usage\n",
            _usage(repo, arch),
            "## Training configuration\n",
            _config_block(config),
            "## Limitations\n",
            _LIMITATIONS,
            "## Citation\n",
            "BAS was introduced at CVPR 2022 and extended (with semantic segmentation) in IJCV:\n",
            _CITATION,
            "## License\n",
            f"The weights and this card are released under `{data.license}`. Weights converted from an "
            "official BAS release keep the terms of that release (research use).\n",
        ]
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


# ---- push ----------------------------------------------------------------------------------------
def _check_folder(folder: Path) -> None:
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a Hub-ready folder: missing {', '.join(missing)} "
            "(write it with bas_zoo.save_pretrained)."
        )


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
) -> CommitInfo:
    """Upload a Hub-ready folder in one commit: config.json, model.safetensors, README.md only.

    ``revision`` names the branch (created when missing); the card's repo placeholder is filled in.
    """
    folder = Path(folder)
    _check_folder(folder)
    card = folder / CARD_NAME
    if card.is_file() and REPO_PLACEHOLDER in (text := card.read_text(encoding="utf-8")):
        write_text_atomic(card, text.replace(REPO_PLACEHOLDER, repo_id))
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=list(UPLOAD_FILES),
        commit_message=commit_message or f"Upload {repo_id.split('/')[-1]} with bas_zoo",
        revision=revision,
        create_pr=create_pr,
    )


def push_to_hub(
    model: BASModel,
    repo_id: str,
    *,
    metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    label_names: Sequence[str] | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
) -> CommitInfo:
    """Save ``model`` (with its card) to a temp folder and upload it as one commit."""
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, metrics, config, dataset, label_names=label_names, repo_id=repo_id)
        return push_folder(
            tmp,
            repo_id,
            private=private,
            token=token,
            revision=revision or branch,
            commit_message=commit_message,
            create_pr=create_pr,
        )
