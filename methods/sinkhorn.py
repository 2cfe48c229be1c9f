"""Sinkhorn-Knopp: equipartitioned soft assignments of a batch to prototypes.

Cuturi 2013; as used by SwAV (Caron et al. 2020, section 3.1): Q = Diag(u) exp(S / eps) Diag(v)
rescaled so that every prototype receives 1/K of the batch's mass and every sample has mass 1/B,
then returned with rows summing to 1 (one code per sample).
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def sinkhorn(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Codes [B, K] from prototype scores [B, K]; rows sum to 1, columns to B/K."""
    q = (scores.float() / epsilon)
    q = torch.exp(q - q.max())  # a global shift cancels in the normalisations below
    q = q.T  # [K, B]
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).T
