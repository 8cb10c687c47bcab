"""BAS training losses (METHOD.md): classification, foreground, background suppression, area.

``BASLoss`` is the single-label WSOL loss; ``BASMultiLabelLoss`` the journal's WSSS loss, trained with
one positive class per image drawn by :func:`sample_positive` before ``forward_bas``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .models import BASOutput

__all__ = ["BASLoss", "BASMultiLabelLoss", "bas_ratio", "multilabel_ce", "sample_positive"]

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


# ------------------------------------------------------------------------------------------- WSSS
def sample_positive(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One positive class per image, uniformly among the image's positives, from ``generator``.

    ``labels`` is (B, C) multi-hot. BAS needs a single target class p for its generator map and
    background score, so the training loop draws p here and passes it to ``forward_bas``. Images
    without a positive class get class 0 (any valid index, so ``forward_bas`` can run);
    :class:`BASMultiLabelLoss` leaves them out of every per-image term. The draw happens on the
    generator's device (CPU by default) and the result is moved to ``labels``' device.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be (B, C) multi-hot, got shape {tuple(labels.shape)}.")
    device = generator.device if generator is not None else torch.device("cpu")
    positive = labels.detach().to(device) > 0.5
    noise = torch.rand(positive.shape, generator=generator, device=device)
    # argmax of uniform noise restricted to the positives = a uniform draw among them
    choice = torch.where(positive, noise + 1.0, torch.zeros_like(noise)).argmax(1)
    return choice.to(labels.device)


def multilabel_ce(
    logits: torch.Tensor, labels: torch.Tensor, reduction: Literal["none", "mean"] = "none"
) -> torch.Tensor:
    """L_mcls per image (B,): sum over positive classes c of -log(e^s_c / (e^s_c + sum_neg e^s_n)).

    Each positive competes only with the negatives, never with the other positives (the journal's
    WSSS classification loss). An image whose classes are all positive scores 0; one without
    positives scores 0 too. Finite everywhere, gradients included (no -inf reaches logsumexp).
    ``reduction="mean"`` averages over the images with a positive class (the CAM baseline's loss).
    """
    positive = labels > 0.5
    has_negative = (~positive).any(1, keepdim=True)
    masked = logits.masked_fill(positive, float("-inf"))
    masked = torch.where(has_negative, masked, torch.zeros_like(logits))
    negatives = torch.logsumexp(masked, dim=1, keepdim=True)  # log sum_neg e^s_n
    per_class = F.softplus(negatives - logits)  # -log(e^s / (e^s + e^neg))
    per_class = torch.where(has_negative & positive, per_class, torch.zeros_like(per_class))
    if reduction == "mean":
        return per_class.sum() / positive.any(1).sum().clamp_min(1)
    return per_class.sum(1)


class BASMultiLabelLoss(BASLoss):
    """L = L_mcls + alpha * L_frg + L_bas + beta * L_ac for multi-label (WSSS) training.

    ``forward(out, labels, positive)``: ``out`` from ``model.forward_bas(x, target=positive)``,
    ``labels`` (B, C) multi-hot, ``positive`` (B,) the drawn class p (:func:`sample_positive`).
    L_frg is the cross-entropy of the foreground logits (from stopgrad(F) * M_p) against p; L_bas and
    L_ac read p's map and scores. Every term is a mean over the images with at least one positive
    class (the official reduction, sum over images / batch, when all have one); images without a
    positive drop out, and a batch without any gives zero terms that still backpropagate (no NaN).
    ``generator`` is the default source of :meth:`sample_positive`.
    """

    def __init__(
        self,
        alpha: float = 0.2,
        beta: float = 1.2,
        variant: Variant = "ijcv",
        clamp_value: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, variant=variant, clamp_value=clamp_value)
        self.generator = generator

    def sample_positive(self, labels: torch.Tensor) -> torch.Tensor:
        """Draw p with this loss's generator (see :func:`sample_positive`)."""
        return sample_positive(labels, self.generator)

    def forward(
        self, out: BASOutput, labels: torch.Tensor, positive: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        labels = labels.to(out.logits.dtype)
        valid = (labels > 0.5).any(1)
        chosen = labels.gather(1, positive.view(-1, 1)).squeeze(1) > 0.5
        if bool((valid & ~chosen).any()):
            raise ValueError(
                "positive holds a class that is not positive in labels; draw it with sample_positive."
            )
        weight = valid.to(out.logits.dtype) / valid.sum().clamp_min(1)
        cls = (multilabel_ce(out.logits, labels) * weight).sum()
        frg = (F.cross_entropy(out.fg_logits, positive, reduction="none") * weight).sum()
        bas = (bas_ratio(out.score, out.bg_score, self.variant, self.clamp_value) * weight).sum()
        ac = (out.fg_map.flatten(1).mean(1) * weight).sum()
        loss = cls + self.alpha * frg + bas + self.beta * ac
        return {"loss": loss, "cls": cls, "frg": frg, "bas": bas, "ac": ac}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, variant={self.variant}, clamp_value={self.clamp_value}"
