"""The localization pipeline as a transformers pipeline task (``bas-localization``).

Imported only by :func:`bas_zoo.register_transformers_pipeline`, so that ``import bas_zoo`` neither needs
nor imports transformers. One implementation: :class:`BASLocalizationPipeline`'s stages delegate to a
:class:`bas_zoo.pipeline.LocalizationPipeline`, so both return the same results for the same inputs.

What transformers' ``Pipeline`` asks of the model, and how a BAS model (a timm model, not a
``PreTrainedModel``) meets it:

- ``model.device`` (to place the model): :attr:`bas_zoo.BASModel.device`;
- a model id (``pipeline(task, model="ORG/NAME" or DIR)``) is read by ``AutoConfig`` (our timm-layout
  ``config.json`` is a ``TimmWrapperConfig`` to it), then loaded by the task's registered class:
  :class:`BASModelLoader`, which maps transformers' loading kwargs onto ``BASModel.from_pretrained``;
- batching: transformers' collate pads per-image tensors and needs a tokenizer or image processor;
  :meth:`BASLocalizationPipeline.get_iterator` instead hands each batch of raw images to bas_zoo's
  preprocess, which resizes and stacks them itself (mixed sizes, unreadable files kept in place).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from transformers import Pipeline
    from transformers.pipelines import PIPELINE_REGISTRY
except ImportError as err:  # the message names the extra that installs it
    raise ImportError(
        'The transformers pipeline integration needs transformers: pip install "bas-zoo[transformers]"'
    ) from err

from . import wsss
from .models import BASModel
from .pipeline import _MODES, LocalizationPipeline, _check_choice, _check_model, _check_segment

__all__ = ["TASK", "BASLocalizationPipeline", "BASModelLoader", "register"]

TASK = "bas-localization"


class BASModelLoader:
    """What ``pipeline(TASK, model="ORG/NAME" or DIR)`` loads a model id with: ``BASModel.from_pretrained``.

    transformers calls the registered class's ``from_pretrained`` with its own loading kwargs. ``config``
    (its read of the same ``config.json``) and ``trust_remote_code`` (no code is downloaded: bas_zoo is
    installed) are not needed; ``dtype`` other than ``"auto"`` casts the model; ``revision``, ``token``,
    ``cache_dir``, ``local_files_only``, ``force_download`` go to ``BASModel.from_pretrained``.
    """

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | Path,
        *,
        config: Any = None,
        trust_remote_code: bool | None = None,
        dtype: str | torch.dtype | None = None,
        device_map: Any = None,
        _from_pipeline: str | None = None,
        **kwargs: Any,
    ) -> BASModel:
        if device_map is not None:
            raise ValueError(
                "device_map is not supported for bas_zoo models (no accelerate big-model loading); "
                "pass device= to pipeline() instead."
            )
        model = BASModel.from_pretrained(model_id, **kwargs)
        if dtype not in (None, "auto"):
            model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        return model


class BASLocalizationPipeline(Pipeline):
    """transformers ``Pipeline`` of a BAS model: per image ``label``, ``label_id``, ``score``, ``map``,
    ``boxes``, ``mask``, at each image's own size, exactly as :func:`bas_zoo.pipeline`.

    Built by ``transformers.pipeline("bas-localization", model=...)`` after
    :func:`bas_zoo.register_transformers_pipeline`. ``threshold``, ``top_k`` and ``mode`` set defaults at
    construction and can be overridden per call; ``errors`` and ``source`` are fixed at construction
    (see :class:`bas_zoo.LocalizationPipeline`). ``device`` follows transformers: ``None`` is the first
    accelerator if any (else CPU), ``-1`` keeps the model where it is.
    """

    # No tokenizer / image processor: bas_zoo's preprocess reads the model's pretrained_cfg.
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(
        self,
        model: BASModel,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        mode: str = "largest",
        errors: str = "raise",
        source: str = "generator",
        **kwargs: Any,
    ) -> None:
        _check_model(model)  # a clear TypeError before transformers reads model.device
        super().__init__(model, **kwargs)
        self.localizer = LocalizationPipeline(
            self.model,
            device=self.device,
            threshold=threshold,
            top_k=top_k,
            mode=mode,
            errors=errors,
            source=source,
        )

    def _sanitize_parameters(
        self,
        threshold: float | None = None,
        top_k: int | None = None,
        target: int | Sequence[int] | None = None,
        mode: str | None = None,
        segment: bool | None = None,
        scales: Sequence[float] | None = None,
        errors: str | None = None,
        source: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if errors is not None or source is not None:
            raise ValueError(
                "errors= and source= are set when the pipeline is built: "
                "pipeline('bas-localization', model=..., errors='skip', source='cam')."
            )
        forward: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if target is not None:
            forward["target"] = target  # per batch in get_iterator
        if top_k is not None:
            forward["top_k"] = int(top_k)
        if segment:
            _check_segment(self.model)
            forward["segment"] = True
        if scales is not None:
            forward["scales"] = tuple(scales)
        if threshold is not None:
            forward["threshold"] = postprocess["threshold"] = float(threshold)
        if mode is not None:
            _check_choice("mode", mode, _MODES)
            postprocess["mode"] = mode
        return {}, forward, postprocess

    # ---- the stages: bas_zoo's, on one batch of raw images ---------------------------------------
    def preprocess(self, images: list[Any], start: int = 0) -> dict[str, Any]:
        return self.localizer.preprocess(images, start=start)

    def _forward(
        self,
        model_inputs: dict[str, Any],
        target: Sequence[int] | None = None,
        top_k: int | None = None,
        segment: bool = False,
        scales: Sequence[float] = wsss.DEFAULT_SCALES,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        outputs = self.localizer.forward(model_inputs, target=target, top_k=top_k)
        if segment:
            outputs["segments"] = self.localizer.segment(model_inputs, target, scales, threshold)
        del outputs["pixel_values"]  # postprocess does not read it: spare the device -> CPU copy
        return outputs

    def postprocess(
        self, model_outputs: dict[str, Any], mode: str | None = None, threshold: float | None = None
    ) -> list[dict[str, Any]]:
        return self.localizer.postprocess(model_outputs, mode=mode, threshold=threshold)

    # ---- the call ------------------------------------------------------------------------------
    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """Localize one image (a dict), a list of images (a list of dicts) or a dataset / generator
        (an iterator of dicts).

        Images: paths, PIL images or arrays, of any size. Keyword arguments: ``batch_size`` (default 1,
        as in transformers), ``threshold``, ``top_k``, ``mode``, ``target`` (one class for all images, or
        one per image of a list or dataset), ``segment`` and ``scales`` (multi-label models), as in
        :meth:`bas_zoo.LocalizationPipeline.__call__`.
        """
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        return super().__call__(inputs, **kwargs)

    def run_single(
        self,
        inputs: Any,
        preprocess_params: dict[str, Any],
        forward_params: dict[str, Any],
        postprocess_params: dict[str, Any],
    ) -> dict[str, Any]:
        return next(self.get_iterator([inputs], 0, 1, preprocess_params, forward_params, postprocess_params))

    def get_iterator(
        self,
        inputs: Any,
        num_workers: int,
        batch_size: int,
        preprocess_params: dict[str, Any],
        forward_params: dict[str, Any],
        postprocess_params: dict[str, Any],
    ) -> Iterator[dict[str, Any]]:
        """Batches of raw images through preprocess -> forward -> postprocess, one result per image.

        Replaces transformers' DataLoader + pad-collate (per-image tensors, padded): bas_zoo's
        preprocess batches images itself. Arguments are checked here, before the first image is read.
        """
        if num_workers:
            raise ValueError(
                "num_workers is not supported: images are read in the calling process; use batch_size."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        forward_params = dict(forward_params)
        targets = self._targets(forward_params.pop("target", None), inputs)
        return self._iterate(
            inputs, batch_size, targets, preprocess_params, forward_params, postprocess_params
        )

    def _targets(self, target: Any, inputs: Any) -> Callable[[int], int] | None:
        """Image position -> forced class (checked by bas_zoo), or None when the model predicts."""
        if target is None:
            return None
        if isinstance(inputs, Sized):
            return self.localizer._targets(target, len(inputs)).__getitem__
        if not isinstance(target, (int, np.integer)):
            raise ValueError(
                "A target per image needs a list or dataset of images, not a generator; "
                "pass one int for all images."
            )
        value = self.localizer._targets(target, 1)[0]
        return lambda _: value

    def _iterate(
        self,
        inputs: Any,
        batch_size: int,
        targets: Callable[[int], int] | None,
        preprocess_params: dict[str, Any],
        forward_params: dict[str, Any],
        postprocess_params: dict[str, Any],
    ) -> Iterator[dict[str, Any]]:
        items = (inputs[i] for i in range(len(inputs))) if isinstance(inputs, Sized) else iter(inputs)
        start = 0
        while chunk := list(itertools.islice(items, batch_size)):
            model_inputs = self.preprocess(chunk, start=start, **preprocess_params)
            if targets is not None:
                forward_params["target"] = [targets(start + k) for k in model_inputs["index"]]
            model_outputs = self.forward(model_inputs, **forward_params)
            yield from self.postprocess(model_outputs, **postprocess_params)
            start += len(chunk)

    # ---- transformers Pipeline methods that assume a PreTrainedModel -----------------------------
    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Any:
        """The model's bas_zoo folder (config.json, model.safetensors, card), which
        ``pipeline(TASK, model=DIR)`` loads back once the task is registered."""
        return self.model.save_pretrained(save_directory, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.localizer!r})"


def register(task: str = TASK) -> type[BASLocalizationPipeline]:
    """Register ``task`` with transformers' pipeline registry; idempotent."""
    registered = PIPELINE_REGISTRY.supported_tasks.get(task)
    if registered is None or registered["impl"] is not BASLocalizationPipeline:
        PIPELINE_REGISTRY.register_pipeline(
            task, pipeline_class=BASLocalizationPipeline, pt_model=BASModelLoader, type="image"
        )
    return BASLocalizationPipeline
