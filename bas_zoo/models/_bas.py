"""The BAS wrapper: a timm-style classifier with a foreground-map generator beside it.

Implements METHOD.md: A = f1(x); F = head(f2(A)); logits = GAP(F); M = sigmoid(generator(A));
the background branch re-runs f2 + head on stopgrad(A) * (1 - M[y]) with the *same* weights,
detached, and batch-statistics BatchNorm whose running-stat updates are discarded.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.func import functional_call

from ._trunk import build_trunk, probe_shapes

__all__ = ["BASModel", "BASOutput", "normalize_maps"]


class BASOutput(NamedTuple):
    """Everything the BAS losses need from one training forward pass."""

    logits: torch.Tensor  # (B, C) GAP of the extractor maps
    fg_logits: torch.Tensor  # (B, C) GAP(F * pooled M_fg)
    cam: torch.Tensor  # (B, C, h, w) extractor maps F
    fpm: torch.Tensor  # (B, C, H, W) generator maps in [0, 1]
    score: torch.Tensor  # (B,) target-class logit S
    bg_score: torch.Tensor  # (B,) target-class logit of the background branch S_bg
    fg_map: torch.Tensor  # (B, H, W) M_fg = fpm[target]


def normalize_maps(maps: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Min-max normalize each (H, W) map; constant or non-finite maps become zeros, never NaN."""
    flat = maps.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    valid = torch.isfinite(flat).all(-1, keepdim=True) & (span > 0)
    out = torch.where(valid, (flat - lo) / (span + eps).clamp_min(1e-12), torch.zeros_like(flat))
    return out.view_as(maps)


def _frozen_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` with its own weights detached and throwaway BatchNorm statistics.

    Equivalent to running a fresh deep copy (the official code), without copying parameters:
    detach() shares storage, only the small running-stat buffers are cloned so that the
    train-mode BatchNorm update lands in tensors that are then dropped.
    """
    tensors = {name: p.detach() for name, p in module.named_parameters()}
    tensors.update({name: b.clone() for name, b in module.named_buffers()})
    return functional_call(module, tensors, (x,), strict=True)


class BASModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="timm",
    license="apache-2.0",
    tags=["bas_zoo", "weakly-supervised-object-localization", "image-classification"],
    paper_url="https://arxiv.org/abs/2112.00580",
):
    """BAS on a timm backbone.

    Args:
        backbone: timm model name of the backbone (e.g. ``resnet50``).
        layout: ``paper`` (the BAS papers' per-backbone changes) or ``generic`` (stride-8 attach).
        num_classes: number of classes of both the classifier and the generator.
        head_relu: end the extractor with a ReLU (the conference release's head).
        head_chs: width of the extractor's two 3x3 convs (1024 in the papers); 0 drops the
            extractor so the 1x1 classifier reads the backbone features (the WSSS network).
        head_bias: give the classifier and generator convs a bias (the WSSS network has none).
        multilabel: the WSSS variant: L_frg reads stopgrad(F), so only the generator learns from it.
        loc_top_k / loc_threshold: localization defaults stored with the model for the pipeline.
        pretrained_backbone: start the backbone from timm's ImageNet weights (needs the Hub).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        layout: str = "paper",
        num_classes: int = 1000,
        in_chans: int = 3,
        head_relu: bool = False,
        head_chs: int = 1024,
        head_bias: bool = True,
        multilabel: bool = False,
        loc_top_k: int = 1,
        loc_threshold: float = 0.1,
        pretrained_backbone: bool = False,
        backbone_args: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.layout = layout
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.head_relu = head_relu
        self.head_chs = head_chs
        self.head_bias = head_bias
        self.multilabel = multilabel
        self.loc_top_k = loc_top_k
        self.loc_threshold = loc_threshold
        # ijcv normalizes maps with a 1e-5 guard in the denominator, cvpr with none.
        self.norm_eps = 0.0 if head_relu else 1e-5

        trunk = build_trunk(
            backbone,
            layout,
            pretrained_backbone=pretrained_backbone,
            in_chans=in_chans,
            **(backbone_args or {}),
        )
        self.f1 = nn.Sequential(trunk.f1)
        self.f2 = nn.Sequential(trunk.f2)
        self.source_names = trunk.source_names
        shapes = probe_shapes(self.f1, self.f2, in_chans)
        self.attach_chs = shapes[len(trunk.f1) - 1][1]
        self.trunk_chs = shapes[-1][1]
        self.feature_info = [
            dict(num_chs=chs, reduction=red, module=key)
            for key, chs, red in shapes
            if key.split(".", 1)[1] in trunk.stage_keys or key == f"f1.{next(reversed(trunk.f1))}"
        ]
        if self.feature_info[-1]["module"] != shapes[-1][0]:
            key, chs, red = shapes[-1]
            self.feature_info.append(dict(num_chs=chs, reduction=red, module=key))

        if head_chs > 0:
            self.extractor = nn.Sequential(
                OrderedDict(
                    conv1=nn.Conv2d(self.trunk_chs, head_chs, 3, padding=1),
                    act1=nn.ReLU(inplace=True),
                    conv2=nn.Conv2d(head_chs, head_chs, 3, padding=1),
                    act2=nn.ReLU(inplace=True),
                )
            )
        else:
            self.extractor = nn.Sequential()
        self.num_features = self.head_hidden_size = head_chs or self.trunk_chs
        self.head_act = nn.ReLU() if head_relu else nn.Identity()
        self.classifier, self.generator = self._make_class_heads(num_classes)
        self._init_new_layers()

    def _make_class_heads(self, num_classes: int) -> tuple[nn.Module, nn.Conv2d | None]:
        """The two per-class heads: the 1x1 classifier on F's features and the 3x3 generator on A."""
        if num_classes <= 0:
            return nn.Identity(), None
        classifier = nn.Conv2d(self.num_features, num_classes, 1, bias=self.head_bias)
        generator = nn.Conv2d(self.attach_chs, num_classes, 3, padding=1, bias=self.head_bias)
        return classifier, generator

    def _init_new_layers(self) -> None:
        for m in [*self.extractor, self.classifier, self.generator]:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    __jit_unused_properties__ = ["device"]  # torch.jit.script cannot compile next(); it skips this

    @property
    def device(self) -> torch.device:
        """Device of the weights; transformers' ``Pipeline`` reads ``model.device`` to place the model."""
        return next(self.parameters()).device

    # ---- timm classifier API -------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace both class heads (the classifier conv and the per-class generator)."""
        self.num_classes = num_classes
        self.classifier, self.generator = self._make_class_heads(num_classes)
        self._init_new_layers()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features f2(f1(x)), before the extractor head."""
        return self.f2(self.f1(x))

    def forward_cam(self, features: torch.Tensor) -> torch.Tensor:
        """Extractor maps F (B, C, h, w) from backbone features."""
        return self.head_act(self.classifier(self.extractor(features)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return self.extractor(x).mean((2, 3))
        return self.forward_cam(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ---- BAS -----------------------------------------------------------------------------
    def _require_generator(self) -> nn.Conv2d:
        if self.generator is None:
            raise RuntimeError(
                "This model has num_classes=0; call reset_classifier(num_classes) before BAS use."
            )
        return self.generator

    def forward_bas(self, x: torch.Tensor, target: torch.Tensor) -> BASOutput:
        """One training pass: logits, foreground logits, maps and the background-branch score."""
        generator = self._require_generator()
        attach = self.f1(x)
        cam = self.forward_cam(self.f2(attach))
        logits = cam.mean((2, 3))
        fpm = torch.sigmoid(generator(attach))
        index = target.view(-1, 1)
        fg_map = fpm.gather(1, index[:, :, None, None].expand(-1, 1, *fpm.shape[-2:]))
        # Background branch: same weights, no gradient into them; gradient reaches the generator.
        erased = attach.detach() * (1.0 - fg_map)
        bg_cam = self.head_act(
            _frozen_call(self.classifier, _frozen_call(self.extractor, _frozen_call(self.f2, erased)))
        )
        bg_logits = bg_cam.mean((2, 3))
        fg_cam = cam.detach() if self.multilabel else cam
        fg_logits = (fg_cam * F.adaptive_avg_pool2d(fg_map, cam.shape[-2:])).mean((2, 3))
        return BASOutput(
            logits=logits,
            fg_logits=fg_logits,
            cam=cam,
            fpm=fpm,
            score=logits.gather(1, index).squeeze(1),
            bg_score=bg_logits.gather(1, index).squeeze(1),
            fg_map=fg_map.squeeze(1),
        )

    def forward_maps(
        self, x: torch.Tensor, with_logits: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Logits (or None) and generator maps (B, C, H, W) for inference."""
        attach = self.f1(x)
        fpm = torch.sigmoid(self._require_generator()(attach))
        logits = self.forward_head(self.f2(attach)) if with_logits else None
        return logits, fpm

    def class_maps(self, attach: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Generator maps (B, k, H, W) of the classes ``index`` (B, k) only.

        With k well below C, one grouped conv over the selected filters costs k/C of the full
        generator, which keeps top-k and GT-known localization close to a plain forward.
        """
        generator = self._require_generator()
        b, k = index.shape
        if 2 * k >= generator.out_channels:
            fpm = torch.sigmoid(generator(attach))
            return fpm.gather(1, index[:, :, None, None].expand(-1, -1, *fpm.shape[-2:]))
        flat = index.reshape(-1)
        out = F.conv2d(
            attach.reshape(1, -1, *attach.shape[-2:]),
            generator.weight[flat],
            generator.bias[flat] if generator.bias is not None else None,
            padding=generator.padding,
            groups=b,
        )
        return torch.sigmoid(out.view(b, k, *out.shape[-2:]))

    def forward_localize(
        self, x: torch.Tensor, top_k: int | None = None, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Logits (None when ``target`` is given) and normalized maps at the generator resolution."""
        attach = self.f1(x)
        logits = None
        if target is None:
            logits = self.forward_head(self.f2(attach))
            index = logits.topk(min(top_k or self.loc_top_k, logits.shape[1]), dim=1).indices
        else:
            index = target.view(x.shape[0], -1)
        return logits, normalize_maps(self.class_maps(attach, index).mean(1), self.norm_eps)

    def localize(
        self, x: torch.Tensor, top_k: int | None = None, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Localization maps (B, H, W) in [0, 1] at the input size.

        ``target`` (B,) gives GT-known maps; otherwise the mean over the ``top_k`` predicted
        classes (``top_k >= num_classes`` averages all classes). Maps are normalized at the
        generator resolution, then resized bilinearly with half-pixel centres (as cv2.resize).
        """
        _, maps = self.forward_localize(x, top_k=top_k, target=target)
        return F.interpolate(maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def extra_repr(self) -> str:
        return f"backbone={self.backbone_name}, layout={self.layout}, head_relu={self.head_relu}"

    # ---- Hugging Face Hub: timm's repo layout, implemented in bas_zoo/hub.py ----------------
    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Path | str:
        """config.json + model.safetensors + README.md card; see ``bas_zoo.hub.save_pretrained``."""
        from .. import hub

        return hub.save_pretrained(self, save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Save and upload in one commit; see ``bas_zoo.hub.push_to_hub``."""
        from .. import hub

        return hub.push_to_hub(self, repo_id, **kwargs)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        from .. import hub

        return hub.build_model_card(self, *args, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        from .. import hub

        hub.save_weights(self, save_directory)
        hub.save_config(self, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> BASModel:
        """Hub id, folder or HF cache -> model built by timm's registry, strictly loaded.

        kwargs: revision, token, cache_dir, local_files_only, force_download, map_location,
        num_classes; see ``bas_zoo.hub.from_pretrained``.
        """
        from .. import hub

        return hub.from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, **kwargs: Any) -> BASModel:
        from .. import hub

        return hub.from_pretrained(model_id, **kwargs)
