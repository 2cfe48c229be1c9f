"""Contrastive losses as pure functions of embeddings.

Each function takes embeddings (any dtype; computed in float32) and returns a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

    For 2N embeddings of N positive pairs, each embedding's positive is its partner and its
    negatives are the other 2N - 2; similarities are cosines divided by the temperature. The
    loss is the mean over all 2N anchors of -log softmax(positive).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"nt_xent needs two [N, D] tensors of one shape, got {z1.shape}, {z2.shape}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)
