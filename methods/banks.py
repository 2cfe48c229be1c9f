"""Stores of past embeddings: MoCo's queue of negatives and NPID's memory bank.

Both are registered buffers, so they travel with `state_dict` (checkpoints resume them exactly)
and with `.to(device)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _random_unit_rows(rows: int, dim: int) -> Tensor:
    return F.normalize(torch.randn(rows, dim), dim=1)


class FeatureQueue(nn.Module):
    """A FIFO queue of L2-normalised keys (He et al. 2020, MoCo): the newest batch replaces the
    oldest entries. It starts filled with random unit vectors."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", _random_unit_rows(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        keys = keys.detach().to(self.keys.dtype)
        size, n = len(self.keys), len(keys)
        if n >= size:
            self.keys.copy_(keys[-size:])
            self.ptr.zero_()
            return
        idx = (self.ptr + torch.arange(n, device=self.keys.device)) % size
        self.keys[idx] = keys
        self.ptr.copy_((self.ptr + n) % size)


class MemoryBank(nn.Module):
    """One L2-normalised embedding per training sample (Wu et al. 2018, NPID), updated by
    momentum: v_i <- normalise(m * v_i + (1 - m) * f_i)."""

    def __init__(self, size: int, dim: int, momentum: float = 0.5):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("bank", _random_unit_rows(size, dim))

    @torch.no_grad()
    def update(self, indices: Tensor, feats: Tensor) -> None:
        mixed = self.momentum * self.bank[indices] + (1 - self.momentum) * feats.detach().float()
        self.bank[indices] = F.normalize(mixed, dim=1)

    def sample(self, count: int, rows: int) -> Tensor:
        """`count` random bank entries for each of `rows` anchors: [rows, count, dim]."""
        idx = torch.randint(0, len(self.bank), (rows, count), device=self.bank.device)
        return self.bank[idx]
