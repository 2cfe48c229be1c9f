"""Seeds: one run seed, derived into independent streams for each use.

`derive_seed(run_seed, *parts)` names a stream by integers (epoch and purpose, say), stable
across processes and Python versions, so that resuming at an epoch replays the same data
order and augmentation draws. Method plugins use it for their own streams.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of integers (FNV-1a over their 64-bit values)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global generators (for code that draws from them)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
