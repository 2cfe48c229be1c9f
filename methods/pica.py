"""PICA: maximise partition confidence by making each cluster's assignments agree across views.

Huang, Gong, Zhu. "Deep Semantic Clustering by Partition Confidence Maximisation", CVPR 2020. A
cluster head gives each image a softmax over K clusters; for a batch this is a [B, K] matrix
whose column k (the "assignment statistics vector" of cluster k) says which images cluster k
takes. The partition uncertainty index (PUI) is the K x K matrix of cosine similarities between
the columns of one view and those of the other; the loss treats each row of the PUI as logits and
asks for its own cluster (the diagonal), a K-way cross-entropy averaged over the K rows, plus
lambda times the balance regulariser log K - H(cluster mass), which is 0 for balanced clusters
and log K when every image lands in one cluster.

Defaults and details follow the authors' code (Raymond-sci/PICA, pica/losses.py, main.py,
pica/networks.py): lambda = 2.0 (`--pica-lamda`, "weight of negative entropy regularisation");
the cosines enter the cross-entropy unscaled (no temperature); the regulariser uses the cluster
mass of the first view only (the original image there, an augmented view here); the head is one
linear layer and a softmax on the pooled features. The loss is asymmetric in the views as in that
code; both of our views are augmented the same way, so in expectation it is symmetric.

Differences: both views are augmented (the paper pairs each image with perturbed copies, the code
with three of them, `data_nrepeat`); PICA's auxiliary over-clustering heads, trained alternately
with the main head, and its Sobel input are not implemented (the suite fixes the input and the
optimiser steps once per batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.heads import cluster_head
from crlbench.methods.losses import cluster_mass_entropy
from crlbench.precision import full_precision
from crlbench.protocol import Batch, Method


@full_precision
def partition_uncertainty_loss(probs1: Tensor, probs2: Tensor) -> Tensor:
    """PICA's PUI loss (Huang et al. 2020): with the columns of the [B, K] assignment matrices
    L2-normalised, PUI = Q1^T Q2 is the K x K matrix of column cosines; the loss is the mean over
    its rows i of -log softmax(PUI_i)_i. Its minimum, for one-hot assignments that agree across
    views and use every cluster, is log(e + K - 1) - 1 (PUI = identity)."""
    if probs1.shape != probs2.shape or probs1.ndim != 2:
        raise ValueError(f"partition_uncertainty_loss needs two [B, K] tensors of one shape, "
                         f"got {probs1.shape}, {probs2.shape}")
    q1 = F.normalize(probs1.float(), dim=0)
    q2 = F.normalize(probs2.float(), dim=0)
    pui = q1.T @ q2
    return F.cross_entropy(pui, torch.arange(len(pui), device=pui.device))


def balance_regulariser(probs: Tensor) -> Tensor:
    """log K - H(m), m the cluster mass (mean of the [B, K] probabilities over the batch): 0 for
    balanced clusters, log K when every sample is in one cluster (PICA's negative entropy)."""
    return math.log(probs.shape[1]) - cluster_mass_entropy(probs)


class PICA(Method):
    """PICA (Huang et al. 2020): cluster columns agree across views (PUI) + balance regulariser."""

    name = "pica"
    kept_state = ("backbone", "head")  # cluster_logits
    num_views = 2
    data_parallel = True  # PUI's columns and the cluster mass over the global batch

    @dataclass
    class Config:
        entropy_weight: float = 2.0  # lambda
        head_hidden_dim: int = 0  # 0: one linear layer as in the authors' code; > 0: an MLP head

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        k = ctx.num_clusters
        self.head = (cluster_head(ctx.feature_dim, cfg.head_hidden_dim, k)
                     if cfg.head_hidden_dim > 0 else nn.Linear(ctx.feature_dim, k))

    def cluster_logits(self, feats: Tensor) -> Tensor:
        with torch.autocast(feats.device.type, enabled=False):  # the logits feed a softmax
            return self.head(feats.float())

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        p1, p2 = (gather(self.cluster_logits(self.backbone(v)).softmax(dim=1)) for v in views)
        pui = partition_uncertainty_loss(p1, p2)
        balance = balance_regulariser(p1)
        loss = pui + self.cfg.entropy_weight * balance
        return {"loss": loss, "pui": pui.detach(), "balance": balance.detach()}
