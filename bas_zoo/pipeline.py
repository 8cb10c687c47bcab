"""The localization pipeline: images in, label + map + boxes out, in each image's own pixels.

Shaped like a transformers pipeline (``preprocess`` -> ``forward`` -> ``postprocess``) so that it reads
the same and can be registered as one. The choices that matter for speed and correctness:

- preprocess resizes each image ONCE, straight to the model's input size (crop_pct 1.0: the whole image,
  no crop, so every box maps back by a plain scale), stacks the uint8 pixels and normalizes the batch
  as one tensor op on the model's device (a quarter of the bytes of a float transfer);
- forward runs under ``torch.inference_mode`` on an inference copy of the model built once by the
  constructor (``optimize=True``; ``bas_zoo.models._inference``: BatchNorm folded into the
  convolutions, the wide 3 x 3 convolutions as Winograd F(2x2, 3x3) on CPU: the same outputs up to
  float rounding, the model itself untouched): logits, then only the selected classes' generator maps
  (``model.class_maps``: top-k, or the forced ``target``; k/C of the full generator's cost), averaged and
  min-max normalized at the generator's resolution (28 x 28 at 224), as ``model.forward_localize``
  does, but keeping the logits when a target is forced, for its score;
- postprocess resizes each small map to ITS original image size (bilinear, half-pixel centres,
  cv2.resize) and takes boxes and the mask there, so boxes come out in original pixels and no
  (B, C, H, W) or full-size batch tensor is ever materialized.

``source="cam"`` reads the classifier's own class activation maps (the extractor head's F) instead of
the generator: the CAM baseline of the same network, and the only meaningful map of a model whose
generator has not been trained (e.g. ImageNet classifier weights loaded into a BAS model).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import timm
import torch
from torch import nn

from . import wsss
from .data import ImageLoadError, load_rgb
from .localize import boxes_from_map, mask_from_map
from .models import BASModel, normalize_maps
from .models._inference import inference_copy

__all__ = ["LocalizationPipeline", "pipeline", "overlay", "register_transformers_pipeline", "ImageInput"]

ImageInput = str | os.PathLike | PIL.Image.Image | np.ndarray

_RESAMPLE = {
    "nearest": PIL.Image.Resampling.NEAREST,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "lanczos": PIL.Image.Resampling.LANCZOS,
    "box": PIL.Image.Resampling.BOX,
    "hamming": PIL.Image.Resampling.HAMMING,
}
_MODES = ("largest", "all")
_ERRORS = ("raise", "skip")
_SOURCES = ("generator", "cam")


def _describe(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, np.ndarray):
        return f"<ndarray shape={item.shape} dtype={item.dtype}>"
    if isinstance(item, PIL.Image.Image):
        return f"<PIL {item.mode} {item.width}x{item.height}>"
    return f"<{type(item).__name__}>"


def _load(item: Any) -> PIL.Image.Image:
    """Decode one input to RGB; everything the model cannot use becomes an ImageLoadError naming it."""
    if isinstance(item, (str, os.PathLike)) and os.path.isdir(item):
        raise ImageLoadError(
            f"{os.fspath(item)}: is a directory, not an image; pass its files, "
            "e.g. sorted(pathlib.Path(dir).glob('*.jpg'))."
        )
    if isinstance(item, np.ndarray) and item.size == 0:
        raise ImageLoadError(f"{_describe(item)}: the image array is empty (a 0-size image).")
    try:
        image = load_rgb(item)
    except ImageLoadError:
        raise
    except (OSError, ValueError, TypeError) as err:
        raise ImageLoadError(f"{_describe(item)}: cannot read image ({err}).") from err
    if image.width == 0 or image.height == 0:
        raise ImageLoadError(f"{_describe(item)}: the image has zero size ({image.width}x{image.height}).")
    return image


def _label_names(model: nn.Module) -> list[str] | None:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    return list(names) if names else None


class LocalizationPipeline:
    """Weakly supervised localization of a BAS model on arbitrary images.

    Args:
        model: a BAS model (``f1`` / ``f2`` / ``forward_head`` / ``class_maps``), put in eval mode.
        device: where to run; ``None`` keeps the model where it already is.
        threshold / top_k: map threshold and number of top classes averaged into the map;
            ``None`` takes the values stored with the model (``loc_threshold`` / ``loc_top_k``).
        mode: ``largest`` (one box: the largest region, as the papers' Top-1 Loc) or ``all``.
        errors: ``raise`` stops at the first unreadable image; ``skip`` returns
            ``{"error": message, "input": description}`` for it and goes on with the rest.
        source: ``generator`` (the BAS foreground maps) or ``cam`` (the classifier's CAM).
        optimize: run an inference copy built here (BatchNorm folded; on CPU, Winograd 3 x 3
            convolutions): the same results up to float rounding, 1.4x faster for bas_resnet50 on CPU,
            for a second set of weights in memory. The copy snapshots the weights and drops hooks; ``False``
            runs the model itself (its hooks, its later weight changes).

    ``inference_model`` is what ``forward`` and ``segment`` run (the copy, or ``model``);
    ``optimizations`` lists what the copy changed.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        threshold: float | None = None,
        top_k: int | None = None,
        mode: str = "largest",
        errors: str = "raise",
        source: str = "generator",
        optimize: bool = True,
    ) -> None:
        _check_model(model)
        _check_choice("mode", mode, _MODES)
        _check_choice("errors", errors, _ERRORS)
        _check_choice("source", source, _SOURCES)
        self.source = source
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.inference_model, self.optimizations = self.model, []
        if optimize:
            try:
                self.inference_model, self.optimizations = inference_copy(self.model)
            except (RuntimeError, TypeError) as err:  # e.g. a tensor or attribute deepcopy refuses
                warnings.warn(
                    f"optimize=True: cannot copy this model for inference ({err}); running it as is.",
                    stacklevel=2,
                )
        self.threshold = float(model.loc_threshold if threshold is None else threshold)
        self.top_k = int(model.loc_top_k if top_k is None else top_k)
        self.mode, self.errors = mode, errors
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        self.input_size: tuple[int, int] = tuple(cfg.get("input_size", (3, 224, 224))[-2:])  # (H, W)
        interpolation = cfg.get("interpolation", "bilinear")
        if interpolation not in _RESAMPLE:
            raise ValueError(
                f"Unknown interpolation {interpolation!r} in pretrained_cfg; use one of {list(_RESAMPLE)}."
            )
        self.resample = _RESAMPLE[interpolation]
        # Normalization folded into one affine op on uint8 input: (x - 255 mean) / (255 std).
        mean = torch.tensor(cfg.get("mean", timm.data.IMAGENET_DEFAULT_MEAN), dtype=torch.float32) * 255
        std = torch.tensor(cfg.get("std", timm.data.IMAGENET_DEFAULT_STD), dtype=torch.float32) * 255
        self._mean = mean.view(1, -1, 1, 1).to(self.device)
        self._inv_std = (1.0 / std).view(1, -1, 1, 1).to(self.device)
        self.label_names = _label_names(model)

    # ---- the three stages ---------------------------------------------------------------------
    def preprocess(self, images: Sequence[ImageInput], start: int = 0) -> dict[str, Any]:
        """Load, resize once to the input size, stack and normalize. Unreadable entries go to ``errors``.

        ``start`` is the position of ``images[0]`` in the caller's list, so that an error names the input.
        """
        height, width = self.input_size
        arrays: list[np.ndarray] = []
        sizes: list[tuple[int, int]] = []
        index: list[int] = []
        errors: dict[int, str] = {}
        for i, item in enumerate(images):
            try:
                image = _load(item)
            except ImageLoadError as err:
                if self.errors == "raise":
                    raise ImageLoadError(f"images[{start + i}]: {err}") from err
                errors[i] = str(err)
                continue
            sizes.append((image.height, image.width))
            if image.size != (width, height):
                image = image.resize((width, height), self.resample)
            arrays.append(np.asarray(image))
            index.append(i)
        pixel_values = None
        if arrays:
            batch = torch.from_numpy(np.stack(arrays)).to(self.device, non_blocking=True)
            pixel_values = batch.permute(0, 3, 1, 2).float().sub_(self._mean).mul_(self._inv_std)
            pixel_values = pixel_values.to(self.dtype)
        return {"pixel_values": pixel_values, "sizes": sizes, "index": index, "errors": errors,
                "inputs": [_describe(x) for x in images]}  # fmt: skip

    def forward(
        self, model_inputs: dict[str, Any], target: Sequence[int] | None = None, top_k: int | None = None
    ) -> dict[str, Any]:
        """Logits, class ids and normalized maps (B, h, w) at the generator's resolution.

        ``target`` (one class per loaded image) replaces the top-k classes for the map, the label and
        the score; ``top_k`` overrides the pipeline's for this batch.
        """
        out = dict(model_inputs)
        x = model_inputs["pixel_values"]
        if x is None:
            out["logits"] = out["label_ids"] = out["maps"] = None
            return out
        model = self.inference_model
        with torch.inference_mode():
            attach = model.f1(x)
            cam = model.forward_cam(model.f2(attach)) if self.source == "cam" else None
            logits = cam.mean((2, 3)) if cam is not None else model.forward_head(model.f2(attach))
            if target is None:
                k = self.top_k if top_k is None else int(top_k)
                index = logits.topk(min(k, logits.shape[1]), dim=1).indices
                label_ids = index[:, 0]
            else:
                label_ids = torch.as_tensor(list(target), dtype=torch.long, device=logits.device)
                index = label_ids[:, None]
            if cam is not None:
                maps = cam.gather(1, index[:, :, None, None].expand(-1, -1, *cam.shape[-2:])).mean(1)
            else:
                maps = model.class_maps(attach, index).mean(1)
            out["maps"] = normalize_maps(maps.float(), getattr(model, "norm_eps", 0.0))
        out["logits"], out["label_ids"] = logits, label_ids
        return out

    def segment(
        self,
        model_inputs: dict[str, Any],
        target: Sequence[int] | None = None,
        scales: Sequence[float] = wsss.DEFAULT_SCALES,
        threshold: float | None = None,
    ) -> list[dict[str, Any]] | None:
        """The WSSS segmentation of the loaded images (bas_zoo.wsss.segment), for ``postprocess``.

        A second model pass (seeds at ``scales`` + flips), so it runs beside ``forward`` on the model's
        device; the background threshold is the pipeline's unless ``threshold`` is given. The classes
        are predicted, or ``target``'s.
        """
        _check_segment(self.model)
        if model_inputs["pixel_values"] is None:
            return None
        present = None
        if target is not None:
            present = torch.zeros(len(target), self.model.num_classes, device=self.device)
            present[torch.arange(len(target)), torch.as_tensor(target)] = 1.0
        bg_threshold = self.threshold if threshold is None else float(threshold)
        with torch.inference_mode():
            return wsss.segment(
                self.inference_model,
                model_inputs["pixel_values"],
                model_inputs["sizes"],
                present,
                bg_threshold,
                scales,
            )

    def postprocess(
        self, model_outputs: dict[str, Any], mode: str | None = None, threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """Per image, in input order: label, score, the map at the image's own size, boxes and mask.

        The map is the normalized generator map resized (not re-normalized); ``mask`` and ``boxes``
        come from ``bas_zoo.localize`` at the pipeline's threshold (or ``threshold``), in original
        pixels. ``model_outputs["segments"]`` (from :meth:`segment`), when there, adds ``segments``
        and ``segmentation``.
        """
        mode = self.mode if mode is None else mode
        threshold = self.threshold if threshold is None else float(threshold)
        results: list[dict[str, Any]] = [
            {"error": msg, "input": model_outputs["inputs"][i]} for i, msg in model_outputs["errors"].items()
        ]
        slots: dict[int, dict[str, Any]] = dict(zip(model_outputs["errors"], results, strict=True))
        if model_outputs["logits"] is not None:
            label_ids = model_outputs["label_ids"]
            with torch.inference_mode():
                scores = model_outputs["logits"].float().softmax(-1).gather(1, label_ids[:, None])[:, 0]
            maps_np = model_outputs["maps"].cpu().numpy()
            ids, scores_l = label_ids.tolist(), scores.tolist()
            for j, (i, (h, w)) in enumerate(zip(model_outputs["index"], model_outputs["sizes"], strict=True)):
                full = cv2.resize(maps_np[j], (w, h), interpolation=cv2.INTER_LINEAR)
                full = np.ascontiguousarray(full, dtype=np.float32).reshape(h, w)
                boxes = np.asarray(boxes_from_map(full, threshold, mode=mode)).reshape(-1, 4)
                slots[i] = {
                    "label": self._name(ids[j]),
                    "label_id": int(ids[j]),
                    "score": float(scores_l[j]),
                    "map": full,
                    "boxes": [[_num(v) for v in box] for box in boxes.tolist()],
                    "mask": np.asarray(mask_from_map(full, threshold), dtype=bool),
                }
            if model_outputs.get("segments") is not None:
                for i, seg in zip(model_outputs["index"], model_outputs["segments"], strict=True):
                    slots[i]["segmentation"] = seg["segmentation"]
                    slots[i]["segments"] = [
                        {"label": self._name(c), "label_id": c, "score": float(p), "mask": m}
                        for c, p, m in zip(seg["classes"], seg["scores"], seg["masks"], strict=True)
                    ]
        return [slots[i] for i in sorted(slots)]

    # ---- the call -----------------------------------------------------------------------------
    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        batch_size: int = 8,
        target: int | Sequence[int] | None = None,
        mode: str | None = None,
        segment: bool = False,
        scales: Sequence[float] = wsss.DEFAULT_SCALES,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Localize one image (returns a dict) or a list of images (returns a list of dicts).

        ``target`` forces the class (one int for all images, or one per image); ``mode`` overrides the
        pipeline's ``largest`` / ``all`` for this call. ``segment=True`` (multi-label WSSS models) adds
        ``segments`` (per present class: ``label``, ``label_id``, ``score``, ``mask``) and
        ``segmentation`` (H x W uint8, 0 background, c + 1 class c) from the seeds at ``scales`` +
        flips, background threshold = the pipeline's threshold (bas_zoo.wsss.segment); the classes
        are predicted, or ``target``'s.
        """
        if segment:
            _check_segment(self.model)
        single = not isinstance(images, (list, tuple))
        items: list[ImageInput] = [images] if single else list(images)  # type: ignore[list-item]
        if mode is not None:
            _check_choice("mode", mode, _MODES)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        targets = self._targets(target, len(items))
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            inputs = self.preprocess(chunk, start=start)
            chunk_target = None if targets is None else [targets[start + k] for k in inputs["index"]]
            outputs = self.forward(inputs, target=chunk_target)
            if segment:
                outputs["segments"] = self.segment(inputs, chunk_target, scales)
            results.extend(self.postprocess(outputs, mode=mode))
        return results[0] if single else results

    # ---- helpers ------------------------------------------------------------------------------
    def _name(self, label_id: int) -> str:
        if self.label_names is not None and 0 <= label_id < len(self.label_names):
            return str(self.label_names[label_id])
        return str(label_id)

    def _targets(self, target: int | Sequence[int] | None, n: int) -> list[int] | None:
        if target is None:
            return None
        values = [int(target)] * n if isinstance(target, (int, np.integer)) else [int(t) for t in target]
        if len(values) != n:
            raise ValueError(
                f"target has {len(values)} classes for {n} images; pass one int or one per image."
            )
        num_classes = int(getattr(self.model, "num_classes", 0) or 0)
        bad = [t for t in values if not 0 <= t < num_classes]
        if bad:
            raise ValueError(f"target class {bad[0]} is out of range for a model with {num_classes} classes.")
        return values

    def __repr__(self) -> str:
        name = getattr(self.model, "pretrained_cfg", {}).get("architecture", type(self.model).__name__)
        return (
            f"LocalizationPipeline(model={name}, device={self.device}, input_size={self.input_size}, "
            f"threshold={self.threshold}, top_k={self.top_k}, mode={self.mode!r}, errors={self.errors!r}, "
            f"source={self.source!r})"
        )


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _check_model(model: Any) -> None:
    if not all(hasattr(model, a) for a in ("f1", "f2", "forward_head", "forward_cam", "class_maps")):
        raise TypeError(
            f"pipeline needs a BAS model (bas_zoo.BASModel), got {type(model).__name__}; create one with "
            "timm.create_model('bas_resnet50', ...) or BASModel.from_pretrained(...)."
        )


def _check_segment(model: nn.Module) -> None:
    if not getattr(model, "multilabel", False):
        raise ValueError(
            "segment=True needs a multi-label (WSSS) model, e.g. bas_resnet50_wsss trained on VOC; "
            "this model is single-label: use mask / boxes instead."
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")


def _resolve_model(model_or_id: nn.Module | str | os.PathLike) -> nn.Module:
    """A model object as is; a Hub id / folder through BASModel.from_pretrained; else a timm name."""
    if isinstance(model_or_id, nn.Module):
        return model_or_id
    if not isinstance(model_or_id, (str, os.PathLike)):
        raise TypeError(f"pipeline expects a model or a model id, got {type(model_or_id).__name__}.")
    name = os.fspath(model_or_id)
    if name.startswith(("hf-hub:", "local-dir:")):
        return timm.create_model(name, pretrained=True)
    if timm.is_model(name):
        cfg = timm.models.get_pretrained_cfg(name)
        has_weights = cfg is not None and any(getattr(cfg, k, None) for k in ("hf_hub_id", "url", "file"))
        if not has_weights:
            warnings.warn(
                f"{name!r} has no pretrained weights: the pipeline runs an UNTRAINED model. Pass a trained "
                "model object or a Hub id / folder saved with save_pretrained.",
                stacklevel=3,
            )
        return timm.create_model(name, pretrained=has_weights)
    if os.path.isdir(name) or "/" in name:
        from_pretrained = getattr(BASModel, "from_pretrained", None)
        if from_pretrained is None:
            from .hub import from_pretrained  # the Hub layout loader; imported lazily (huggingface_hub)
        return from_pretrained(name)
    raise ValueError(
        f"Cannot resolve model {name!r}: not a registered timm/bas_zoo model, a Hub id or a saved folder "
        "(see bas_zoo.list_models() or timm.list_models('bas_*'))."
    )


def pipeline(
    model_or_id: nn.Module | str | os.PathLike,
    device: str | torch.device | None = None,
    threshold: float | None = None,
    top_k: int | None = None,
    mode: str = "largest",
    errors: str = "raise",
    source: str = "generator",
    optimize: bool = True,
) -> LocalizationPipeline:
    """Build a :class:`LocalizationPipeline` from a BAS model, a Hub id, a saved folder or a timm name."""
    model = _resolve_model(model_or_id)
    return LocalizationPipeline(
        model,
        device=device,
        threshold=threshold,
        top_k=top_k,
        mode=mode,
        errors=errors,
        source=source,
        optimize=optimize,
    )


def register_transformers_pipeline(task: str = "bas-localization") -> type:
    """Make ``transformers.pipeline(task, model=...)`` build a BAS localization pipeline.

    Imports transformers here, not with bas_zoo (an ImportError naming ``bas-zoo[transformers]`` if it
    is missing). ``model`` may be a BAS model, a folder or a Hub id saved by bas_zoo; returns the
    pipeline class, :class:`bas_zoo.transformers_pipeline.BASLocalizationPipeline`.
    """
    from . import transformers_pipeline

    return transformers_pipeline.register(task)


# ---- drawing ------------------------------------------------------------------------------------
def _font(size: int) -> PIL.ImageFont.ImageFont | PIL.ImageFont.FreeTypeFont:
    try:
        return PIL.ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: fixed bitmap font
        return PIL.ImageFont.load_default()


def overlay(
    image: ImageInput,
    result: dict[str, Any],
    alpha: float = 0.5,
    colormap: str | int = "jet",
    draw_boxes: bool = True,
) -> PIL.Image.Image:
    """The image with its map blended in as a colour heat map, boxes and a label; RGB, same size.

    ``result`` is one entry returned by the pipeline. The label sits on a dark background so that it is
    readable on any photo; the box has a dark outline for the same reason.
    """
    if "error" in result:
        raise ValueError(f"Cannot draw a failed result: {result['error']}")
    rgb = np.asarray(_load(image))
    h, w = rgb.shape[:2]
    heat_map = np.asarray(result["map"], dtype=np.float32)
    if heat_map.shape != (h, w):
        heat_map = cv2.resize(heat_map, (w, h), interpolation=cv2.INTER_LINEAR)
    if isinstance(colormap, str):
        code = getattr(cv2, f"COLORMAP_{colormap.upper()}", None)
        if code is None:
            raise ValueError(
                f"Unknown colormap {colormap!r}; use an OpenCV name such as 'jet', 'turbo', 'viridis'."
            )
    else:
        code = int(colormap)
    heat_u8 = (np.clip(heat_map, 0.0, 1.0) * 255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(heat_u8, code), cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)
    canvas = PIL.Image.fromarray(blended, mode="RGB")
    if not draw_boxes:
        return canvas
    draw = PIL.ImageDraw.Draw(canvas)
    width = max(2, round(min(h, w) / 160))
    font = _font(max(12, round(min(h, w) / 22)))
    text = f"{result.get('label', '')} {result.get('score', 0.0):.2f}".strip()
    for x0, y0, x1, y1 in result.get("boxes", []):
        draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], outline=(0, 0, 0), width=width + 2)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=width)
    if text:
        boxes = result.get("boxes") or [[0, 0, w, h]]
        x0, y0 = boxes[0][0], boxes[0][1]
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th, pad = right - left, bottom - top, max(2, width)
        # Above the box when there is room, else just inside it; never outside the image.
        ty = y0 - th - 2 * pad if y0 - th - 2 * pad >= 0 else y0 + width
        tx = min(max(0, x0), max(0, w - tw - 2 * pad))
        draw.rectangle([tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad], fill=(20, 20, 20))
        draw.text((tx + pad - left, ty + pad - top), text, fill=(255, 255, 255), font=font)
    return canvas
