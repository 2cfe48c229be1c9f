"""Long-tailed (class-imbalanced) training splits, as in Cui et al. 2019, "Class-Balanced Loss
Based on Effective Number of Samples" (the CIFAR-LT protocol that C2BIN's imbalance study uses).

Class i keeps n_i = int(n_max * rho^(-i / (C - 1))) samples: class 0 is the head with n_max,
class C-1 the tail with n_max / rho. n_max is the size of the smallest class, so that every
class can supply its count (on balanced datasets every class has n_max). Which samples a class
keeps is drawn with a generator seeded by the run's seed: deterministic per seed. Test splits
stay balanced.
"""

from __future__ import annotations

import torch
from torch import Tensor


def long_tail_counts(n_max: int, num_classes: int, rho: float) -> list[int]:
    """Samples kept per class: int(n_max * rho^(-i / (C - 1))) for i = 0..C-1."""
    if rho < 1:
        raise ValueError(f"the imbalance ratio rho must be at least 1, got {rho}")
    if num_classes < 2:
        return [n_max] * num_classes
    return [int(n_max * rho ** (-i / (num_classes - 1))) for i in range(num_classes)]


def long_tail_indices(labels: Tensor, num_classes: int, rho: float, seed: int) -> Tensor:
    """Sorted indices of a long-tailed subset of `labels` (class i keeps its n_i samples)."""
    labels = labels.cpu()
    per_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    n_max = min(len(idx) for idx in per_class)
    gen = torch.Generator().manual_seed(seed)
    keep = [idx[torch.randperm(len(idx), generator=gen)[:n]]
            for idx, n in zip(per_class, long_tail_counts(n_max, num_classes, rho), strict=True)]
    return torch.cat(keep).sort().values
