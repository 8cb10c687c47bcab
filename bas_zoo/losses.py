"""BAS training losses (METHOD.md): classification, foreground, background suppression, area."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .models import BASOutput

__all__ = ["BASLoss", "bas_ratio"]

Variant = Literal["ijcv", "cvpr"]


def bas_ratio(
    score: torch.Tensor, bg_score: torch.Tensor, variant: Variant, clamp_value: float
) -> torch.Tensor:
    """Per-image background-suppression term S_bg / stopgrad(S).

    cvpr: raw scores; where S_bg >= S the term is ``clamp_value`` (0 in that release).
    ijcv: both scores through ReLU first; where ReLU(S_bg) > ReLU(S) (strict) the term is
    ``clamp_value`` (1, or 0 in the VGG file), so two negative scores give 0.
    """
    s = score.detach()
    if variant == "ijcv":
        s, bg = F.relu(s), F.relu(bg_score)
        over = bg > s
    elif variant == "cvpr":
        bg = bg_score
        over = bg >= s
    else:
        raise ValueError(f"Unknown BAS variant {variant!r}; use 'ijcv' (journal) or 'cvpr' (conference).")
    ratio = bg / (s + 1e-8)
    return torch.where(over, torch.full_like(ratio, clamp_value), ratio)


class BASLoss(nn.Module):
    """L = L_cls + alpha * L_frg + L_bas + beta * L_ac; returns every term (bas, ac unweighted)."""

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 1.5,
        variant: Variant = "ijcv",
        clamp_value: float | None = None,
    ) -> None:
        super().__init__()
        if variant not in ("ijcv", "cvpr"):
            raise ValueError(f"Unknown BAS variant {variant!r}; use 'ijcv' (journal) or 'cvpr' (conference).")
        self.alpha = alpha
        self.beta = beta
        self.variant: Variant = variant
        self.clamp_value = (1.0 if variant == "ijcv" else 0.0) if clamp_value is None else float(clamp_value)

    def forward(self, out: BASOutput, target: torch.Tensor) -> dict[str, torch.Tensor]:
        cls = F.cross_entropy(out.logits, target)
        frg = F.cross_entropy(out.fg_logits, target)
        bas = bas_ratio(out.score, out.bg_score, self.variant, self.clamp_value).mean()
        ac = out.fg_map.flatten(1).mean(1).mean()
        loss = cls + self.alpha * frg + bas + self.beta * ac
        return {"loss": loss, "cls": cls, "frg": frg, "bas": bas, "ac": ac}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, variant={self.variant}, clamp_value={self.clamp_value}"
