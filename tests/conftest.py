"""Test-session settings shared by every test module."""

from __future__ import annotations

import torch

# Tests run tiny tensors: one thread avoids OpenMP spin-waiting against the other core's work,
# which makes a small forward tens of times slower on a busy 2-core machine.
torch.set_num_threads(1)
