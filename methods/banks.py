"""Stores of past embeddings (MoCo's queue of negatives, NPID's memory bank) and NCE's
partition-function estimate, which is kept once it is made.

Both are registered buffers, so they travel with `state_dict` (checkpoints resume them exactly)
and with `.to(device)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.methods.losses import nce_normaliser


def _random_unit_rows(rows: int, dim: int) -> Tensor:
    return F.normalize(torch.randn(rows, dim), dim=1)


def queue_length(requested: int, dataset_size: int, steps_per_epoch: int) -> int:
    """The queue length a training set allows: `requested`, but at most N - B keys for N
    training images in batches of B (here N // steps_per_epoch, which is at least B).

    A longer queue (MoCo v2's ImageNet 65536 on CIFAR's 50,000 images) holds a key of every
    image, the anchor's own included, some of them twice, and keys more than an epoch old. At
    most N - B it never reaches past one epoch. Images are reshuffled every epoch, so an anchor
    can still meet an older key of its own image: a queue close to N - B does so for about half
    of the anchors, one of about 8% of N (MoCo's CIFAR-10 demo: 4,096 of 50,000) rarely; the
    CIFAR-size suites set 4,096.
    """
    if requested < 1:
        raise ValueError(f"the queue needs at least one key, got {requested}")
    batch = dataset_size // max(1, steps_per_epoch)
    return max(1, min(requested, dataset_size - batch))


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


class NCENormaliser(nn.Module):
    """NCE's normalising constant Z, estimated once from the first training batch's noise and
    then held fixed, as NPID's code does (lemniscate.pytorch, NCEAverage: `if Z < 0: Z =
    out.mean() * outputSize`) and CMC's after it. A buffer, so a resumed run keeps its Z."""

    def __init__(self):
        super().__init__()
        self.register_buffer("value", torch.zeros(()))  # 0: not estimated yet

    def forward(self, noise: Tensor, temperature: float, num_data: int) -> Tensor:
        """The fixed Z, or, before the first training step, this noise's estimate (kept when
        the module is in training mode); no host synchronisation."""
        estimate = nce_normaliser(noise, temperature, num_data)
        z = torch.where(self.value > 0, self.value, estimate)
        if self.training:
            self.value.copy_(z)
        return z

