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

_BLOCK = 1 << 24  # elements of one [rows, N] block of the uniformity's pairwise products


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
    n = len(x)
    # |x - y|^2 = 2 - 2 x.y on the unit sphere: a matrix product per block of rows against
    # the rows from the block on (torch's pdist is several times slower), each pair i < j
    # counted once, the pairs j <= i of the block's own columns masked to -inf
    rows = max(1, _BLOCK // n)
    index = torch.arange(n, device=x.device)
    blocks = []
    for start in range(0, n, rows):
        sq = (2.0 - 2.0 * (x[start:start + rows] @ x[start:].T)).clamp_min(0.0)
        later = index[None, start:] > index[start:start + rows, None]
        blocks.append(torch.logsumexp((-t * sq).masked_fill(~later, -math.inf).flatten(), dim=0))
    return torch.logsumexp(torch.stack(blocks), dim=0) - math.log(n * (n - 1) / 2)
