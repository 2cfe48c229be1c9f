"""CueCo: momentum contrast plus online centroids that pull each query towards its cluster.

Giakoumoglou & Stathaki, "Cluster Contrast for Unsupervised Visual Representation Learning",
arXiv:2507.12359, 2025. From the abstract (the only part of the paper we could reach): a query
network and a key network updated as a slow-moving average of the query network; a contrastive
loss that pushes dissimilar features apart (inter-class separation) and a clustering objective
that pulls features of one cluster together (intra-class compactness); ResNet-18 results on
CIFAR-10/100 and ImageNet-100. The equations and hyper-parameters below are therefore ours,
written from that description:

- Query network: backbone + projector (MoCo v2's head, Linear-ReLU-Linear); key network: an
  EMA copy of both with a constant momentum.
- Instance term: InfoNCE of each view's queries against the other view's keys with the other
  keys of the batch as negatives (no queue), averaged over the two directions.
- K centroids (K = ctx.num_clusters) on the unit sphere and one variance per cluster, both
  buffers. Every key is assigned to its nearest centroid (largest cosine). After each optimiser
  step, each cluster that received keys moves as c <- normalise(beta_1 c + (1 - beta_1) mean of
  its keys) and its variance as v <- beta_2 v + (1 - beta_2) mean of ||key - c_old||^2;
  clusters without keys in the batch keep both, unless they are dead (below). The update runs
  in `after_step` from keys that `loss` kept in train mode: `loss` itself has no side effect
  (calling it twice gives the same value), this step's loss uses the centroids its keys were
  assigned with, and evaluation-mode calls never move the centroids.
- Dead clusters: random unit vectors in the projection space are nearly orthogonal to every
  key, and the keys of a young network all lie close together, so most centroids would never
  receive a key (on the quickstart suite, 2 of 10 stayed in use for all 30 epochs). Each
  cluster's usage, its share of the batch's keys, is tracked with momentum beta_1 from 0; a
  cluster that gets no key in a batch while its usage is below relocate_below / K is moved onto
  one of the batch's keys least similar to their own centroids, and its variance restarts.
  This is scikit-learn's relocation of empty k-means clusters to the points farthest from their
  centres, made online; the first batch thereby seeds the clusters it did not reach.
  `relocate_below=0` turns it off (the description as written).
- Centroid contrast: softmax cross-entropy of each query's cosines to the K centroids divided by
  a temperature, the target being its key's centroid (ProtoNCE-like, Li et al. 2021, PCL, with
  hard assignments and one temperature).
- Variance term: ||q - c||^2 / (v + eps) for each query and its key's centroid, averaged: a
  query is pulled towards its centroid in units of that cluster's spread (the data term of an
  isotropic Gaussian likelihood), so a tight cluster pulls harder.
- Total: InfoNCE + lambda_centroid * centroid contrast + lambda_variance * variance term.

Defaults and where they come from: temperature 0.2 and the 2048-128 head are MoCo v2's
(Chen et al. 2020); momentum 0.99 (constant) is a common CIFAR setting of MoCo v2
re-implementations with ResNet-18; centroid_temperature 0.2 (as the instance term), beta_1 =
beta_2 = 0.99, lambda_centroid 1.0, lambda_variance 0.1, variance_eps 0.01, relocate_below
0.05 and variances (re)starting at 2 (the mean squared distance of two independent random unit
vectors, which is what a random centroid is to the keys) are our choices. Centroids start as
random unit vectors drawn from torch's global generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.methods.ema import EMATarget
from crlbench.methods.heads import mlp
from crlbench.methods.losses import info_nce
from crlbench.precision import full_precision
from crlbench.protocol import Batch, Method

INITIAL_VARIANCE = 2.0


@full_precision
def centroid_cosines(embeddings: Tensor, centroids: Tensor) -> Tensor:
    """[N, K] cosines of the embeddings to the centroids (rows of unit length), in float32."""
    return F.normalize(embeddings.float(), dim=1) @ centroids.float().T


def nearest_centroid(embeddings: Tensor, centroids: Tensor) -> Tensor:
    """Index of the centroid with the largest cosine to each embedding."""
    return centroid_cosines(embeddings, centroids).argmax(dim=1)


@full_precision
def centroid_contrast(query: Tensor, centroids: Tensor, assignments: Tensor,
                      temperature: float) -> Tensor:
    """Cross-entropy of each query's cosines to the K centroids (rows of unit length) divided
    by the temperature, with target `assignments` (its key's centroid), averaged."""
    return F.cross_entropy(centroid_cosines(query, centroids) / temperature, assignments)


@full_precision
def variance_pull(query: Tensor, centroids: Tensor, variances: Tensor, assignments: Tensor,
                  eps: float) -> Tensor:
    """Mean of ||q/|q| - c_a||^2 / (v_a + eps): each query's squared distance to its assigned
    centroid in units of that cluster's variance (treated as a constant)."""
    q = F.normalize(query.float(), dim=1)
    d2 = (q - centroids.float()[assignments]).pow(2).sum(dim=1)
    return (d2 / (variances.float()[assignments] + eps)).mean()


class CueCo(Method):
    """CueCo (Giakoumoglou & Stathaki 2025): InfoNCE plus momentum centroids for tight clusters."""

    name = "cueco"
    num_views = 2

    @dataclass
    class Config:
        temperature: float = 0.2
        momentum: float = 0.99  # constant
        proj_dim: int = 128
        proj_hidden_dim: int = 2048
        centroid_temperature: float = 0.2
        beta_centroid: float = 0.99  # beta_1
        beta_variance: float = 0.99  # beta_2
        lambda_centroid: float = 1.0
        lambda_variance: float = 0.1
        variance_eps: float = 0.01
        relocate_below: float = 0.05  # usage, as a fraction of 1/K, below which empty clusters move

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim, hidden_bn=False)
        self.key_encoder = EMATarget(self._query_net(), cfg.momentum, ctx.total_steps,
                                     cosine=False)
        centroids = F.normalize(torch.randn(ctx.num_clusters, cfg.proj_dim), dim=1)
        self.register_buffer("centroids", centroids)
        self.register_buffer("variances", torch.full((ctx.num_clusters,), INITIAL_VARIANCE))
        self.register_buffer("usage", torch.zeros(ctx.num_clusters))
        self._new_keys: Tensor | None = None

    def _query_net(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def cluster_logits(self, feats: Tensor) -> Tensor:
        """Cosine of the projected features to each of the K centroids."""
        return centroid_cosines(self.projector(feats), self.centroids)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        q1, q2 = (self.projector(self.backbone(v)) for v in views)
        with torch.no_grad():
            k1, k2 = (self.key_encoder(v) for v in views)
        instance = 0.5 * (info_nce(q1, k2, cfg.temperature) + info_nce(q2, k1, cfg.temperature))
        queries, keys = torch.cat([q1, q2]), torch.cat([k2, k1])
        assignments = nearest_centroid(keys, self.centroids)
        centroid = centroid_contrast(queries, self.centroids, assignments,
                                     cfg.centroid_temperature)
        variance = variance_pull(queries, self.centroids, self.variances, assignments,
                                 cfg.variance_eps)
        if self.training:
            self._new_keys = keys.detach()
        loss = instance + cfg.lambda_centroid * centroid + cfg.lambda_variance * variance
        used = F.one_hot(assignments, len(self.centroids)).amax(dim=0).sum()
        return {"loss": loss, "instance": instance.detach(), "centroid": centroid.detach(),
                "variance": variance.detach(), "clusters_used": used.float()}

    @torch.no_grad()
    @full_precision
    def update_clusters(self, keys: Tensor) -> None:
        """Move the centroids and variances of the clusters these keys are assigned to, and
        relocate dead clusters onto the keys their centroids represent worst."""
        k = F.normalize(keys.float(), dim=1)
        num_clusters = len(self.centroids)
        cosines = centroid_cosines(k, self.centroids)
        best, assignments = cosines.max(dim=1)
        onehot = F.one_hot(assignments, num_clusters).float()  # [B, K]
        counts = onehot.sum(dim=0)
        present = counts > 0
        mean_key = onehot.T @ k / counts.clamp_min(1)[:, None]
        d2 = (k - self.centroids[assignments]).pow(2).sum(dim=1)
        mean_d2 = onehot.T @ d2 / counts.clamp_min(1)
        b1, b2 = self.cfg.beta_centroid, self.cfg.beta_variance
        centroids = torch.where(present[:, None],
                                F.normalize(b1 * self.centroids + (1 - b1) * mean_key, dim=1),
                                self.centroids)
        variances = torch.where(present, b2 * self.variances + (1 - b2) * mean_d2,
                                self.variances)
        self.usage.mul_(b1).add_((1 - b1) * counts / len(k))

        # The i-th dead cluster takes the i-th worst represented key; no host synchronisation.
        dead = ~present & (self.usage < self.cfg.relocate_below / num_clusters)
        rank = dead.long().cumsum(0) - 1
        worst = torch.sort(best, stable=True).indices
        relocate = dead & (rank < len(k))
        take = worst[rank.clamp(0, len(k) - 1)]
        self.centroids.copy_(torch.where(relocate[:, None], k[take], centroids))
        self.variances.copy_(torch.where(relocate, INITIAL_VARIANCE, variances))

    def after_step(self, step: int) -> None:
        self.key_encoder.update(self._query_net(), step)
        if self._new_keys is not None:
            self.update_clusters(self._new_keys)
            self._new_keys = None
