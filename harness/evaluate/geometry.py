"""Alignment and uniformity of L2-normalised features (Wang & Isola 2020, "Understanding
Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere").

- alignment: E |f(x) - f(x+)|^alpha over positive pairs (two augmented views), alpha = 2;
- uniformity: log E exp(-t |f(x) - f(y)|^2) over distinct pairs, t = 2.

Both are differentiable (methods use them as losses, e.g. RCC); lower is better for both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from crlbench.precision import full_precision


@full_precision
def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """E |z1 - z2|^alpha over rows, after L2-normalising both."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"alignment needs two [N, D] tensors of one shape, got {z1.shape}, "
                         f"{z2.shape}")
    a = F.normalize(z1.float(), dim=1)
    b = F.normalize(z2.float(), dim=1)
    return (a - b).norm(dim=1).pow(alpha).mean()


@full_precision
def uniformity(z: Tensor, t: float = 2.0) -> Tensor:
    """log of the mean over distinct pairs of exp(-t |x - y|^2), after L2-normalising rows."""
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"uniformity needs [N, D] with N >= 2, got {tuple(z.shape)}")
    x = F.normalize(z.float(), dim=1)
    sq = torch.pdist(x).pow(2)
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())
