"""Map official BAS release checkpoints onto bas_zoo keys (placeholder: our own keys pass through)."""

from __future__ import annotations

import torch
from torch import nn


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return state_dict
