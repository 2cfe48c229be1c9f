"""Heads shared by methods: projection (and later prediction) MLPs."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, *, layers: int = 2,
        last_bn: bool = False, hidden_bn: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a final Linear (optionally followed by a BN without affine).

    SimCLR's projection head is `mlp(d, d, 128)`; BYOL-style heads use other widths. With
    `hidden_bn=False` the hidden blocks are Linear-ReLU (MoCo v2's and CC's heads).
    """
    if layers < 1:
        raise ValueError("an MLP needs at least one layer")
    blocks: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        if hidden_bn:
            blocks += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim)]
        else:
            blocks.append(nn.Linear(dim, hidden_dim))
        blocks.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    blocks.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        blocks.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*blocks)


def cluster_head(in_dim: int, hidden_dim: int, clusters: int, *,
                 batchnorm: bool = True) -> nn.Sequential:
    """A cluster head: Linear-(BN)-ReLU then Linear to `clusters` logits (CC, PICA, C2BIN);
    apply a softmax for assignment probabilities."""
    return mlp(in_dim, hidden_dim, clusters, hidden_bn=batchnorm)
