"""CueCo: momentum contrast plus online centroids that pull each query towards its cluster.

Giakoumoglou & Stathaki, "Cluster Contrast for Unsupervised Visual Representation Learning"
(CueCo), section 2. A query network (backbone + projector) and a key network, a momentum copy
of it, embed two views of each image; z is a view's L2-normalised query and z' the other
view's key. The paper prints three losses and two momentum updates:

- L1, InfoNCE: -log(exp(z . z' / tau) / (exp(z . z' / tau) + sum_{k=1}^K exp(z . z_k / tau))),
  with K negatives z_k. `negatives="queue"` (the default) takes them from a MoCo queue of past
  keys (K is the queue's length, MoCo's notation, which the paper's "K" follows);
  `negatives="batch"` takes the batch's other keys instead.
- L2, centroid contrast: -log(exp(z . c_i[z] / tau) / (exp(z . c_i[z] / tau) + sum_{l=1}^L
  exp(z . c_l / tau))), the cross-entropy of z's dot products with the centroids, over the
  same tau, with its own cluster i[z] as the target. We read the L centroids of the sum as the
  other clusters (so the positive is counted once, as in L1).
- L3, variance loss: ||z - c_i[z]||^2 / (2 sigma^2_i[z] + eps), averaged over the batch (the
  variance is a statistic, not differentiated).
- L = lambda_1 L1 + lambda_2 L2 + lambda_3 L3.
- After each step, for every cluster i whose set S_i (the images assigned to it, i[z] = i) is
  not empty: c_i <- beta_1 c_i + (1 - beta_1) mean_{z in S_i} z', and sigma_i^2 <- beta_2
  sigma_i^2 + (1 - beta_2) mean_{z in S_i} (z' - mu_i)^2.

Our readings where the text leaves room: i[z], the cluster of the image whose query is z, is
the centroid nearest (Euclidean, as k-means assigns) to that image's key z': the centroids are
means of keys, and the target comes from the momentum network, as in PCL and SwAV. Taking it
from the query itself makes L2 and L3 pull each query towards the centroid it is already
nearest to, which fed on itself on `clustering_cpu`: one centroid took every image within 3
epochs (head ACC 10.2%, NMI 0), against 29.3% / 37.7% with the key's assignment. mu_i, which
the paper does not define, is the mean of S_i's keys z'; and (z' - mu_i)^2 is the squared
distance ||z' - mu_i||^2, one variance per cluster as in the scalar sigma^2 of L3. Centroids
are not renormalised after an update (the paper does not); `normalize_centroids=true` keeps
them on the unit sphere (version 1 did).

Our deviation, and why: dead clusters are relocated. Random initial centroids are far from the
keys of a young network, which all lie close together, so most clusters never receive an image
(2 of 10 stayed in use for 30 epochs on the quickstart suite). Each cluster's usage, its share
of the batch, is tracked with momentum beta_1 from 0; a cluster that gets no image in a batch
while its usage is below relocate_below / K moves onto one of the batch's keys farthest from
its own centroid, and its variance restarts. This is scikit-learn's relocation of empty
k-means clusters, made online; `relocate_below=0` turns it off (the paper as printed).

The paper gives no hyper-parameters. Ours, and where they come from: the 2048-128 head
(Linear-ReLU-Linear), temperature 0.2 and a queue of 4,096 keys from MoCo v2 (Chen et al. 2020)
and MoCo's CIFAR-10 demo (the queue; cut to what the training set allows, see
`banks.queue_length`); key-network momentum 0.99 (constant), the common CIFAR setting of MoCo v2
with ResNet-18; lambda_1 = lambda_2 = 1, lambda_3 = 0.1, beta_1 = beta_2 = 0.99, eps = 0.01,
relocate_below 0.05, variances (re)starting at 1 (the spread of random unit vectors around
their mean) and centroids starting as random unit vectors from torch's generator: our choices.

Version 2 follows the printed equations (version 1, written from the abstract, divided by
sigma^2 without the 2, renormalised the centroids, contrasted against in-batch negatives only
and measured the variance around the old centroid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.banks import FeatureQueue, queue_length
from crlbench.methods.ema import EMATarget
from crlbench.methods.heads import mlp
from crlbench.methods.losses import info_nce
from crlbench.precision import full_precision
from crlbench.protocol import Batch, Method, check_choice, check_positive

INITIAL_VARIANCE = 1.0
NEGATIVES = ("queue", "batch")


@full_precision
def squared_distances(embeddings: Tensor, centroids: Tensor) -> Tensor:
    """[N, K] squared Euclidean distances of the L2-normalised embeddings to the centroids."""
    z = F.normalize(embeddings.float(), dim=1)
    return torch.cdist(z, centroids.float()).pow(2)


def nearest_centroid(embeddings: Tensor, centroids: Tensor) -> Tensor:
    """i[z]: the index of the centroid nearest to each L2-normalised embedding."""
    return squared_distances(embeddings, centroids).argmin(dim=1)


@full_precision
def centroid_contrast(query: Tensor, centroids: Tensor, assignments: Tensor,
                      temperature: float) -> Tensor:
    """L2: cross-entropy of each normalised query's dot products with the K centroids divided by
    the temperature, with target `assignments` (its own cluster), averaged."""
    z = F.normalize(query.float(), dim=1)
    return F.cross_entropy(z @ centroids.float().T / temperature, assignments)


@full_precision
def variance_pull(query: Tensor, centroids: Tensor, variances: Tensor, assignments: Tensor,
                  eps: float) -> Tensor:
    """L3: mean of ||z - c_a||^2 / (2 sigma^2_a + eps) for normalised queries z and their
    centroids c_a; the variances are treated as constants."""
    z = F.normalize(query.float(), dim=1)
    d2 = (z - centroids.float()[assignments]).pow(2).sum(dim=1)
    return (d2 / (2 * variances.float()[assignments].detach() + eps)).mean()


class CueCo(Method):
    """CueCo (Giakoumoglou & Stathaki 2025): InfoNCE plus momentum centroids for tight clusters."""

    name = "cueco"
    kept_state = ("backbone", "projector", "centroids")  # cluster_logits
    num_views = 2
    version = "2"
    data_parallel = True  # queries and keys gathered: the same centroid and queue updates

    @dataclass
    class Config:
        temperature: float = 0.2  # tau of L1 and L2 (MoCo v2's)
        momentum: float = 0.99  # key network, constant
        negatives: str = "queue"  # queue (MoCo's K keys) | batch
        queue_size: int = 4096  # MoCo's CIFAR-10 demo; at most what the training set allows
        symmetric: bool = False  # also use view 2 as the query (the two L1 terms averaged)
        proj_dim: int = 128
        proj_hidden_dim: int = 2048
        beta_centroid: float = 0.99  # beta_1
        beta_variance: float = 0.99  # beta_2
        lambda_instance: float = 1.0  # lambda_1
        lambda_centroid: float = 1.0  # lambda_2
        lambda_variance: float = 0.1  # lambda_3
        variance_eps: float = 0.01  # epsilon of L3
        normalize_centroids: bool = False
        relocate_below: float = 0.05  # usage, as a fraction of 1/K, below which empty clusters move

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_choice("negatives", cfg.negatives, NEGATIVES)
        check_positive(cfg, "temperature", "queue_size", "proj_dim", "variance_eps")

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.check_config(cfg)
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim, hidden_bn=False)
        self.key_encoder = EMATarget(self._query_net(), cfg.momentum, ctx.total_steps,
                                     cosine=False)
        self.queue = None
        if cfg.negatives == "queue":
            length = queue_length(cfg.queue_size, ctx.dataset_size, ctx.steps_per_epoch)
            self.queue = FeatureQueue(length, cfg.proj_dim)
        centroids = F.normalize(torch.randn(ctx.num_clusters, cfg.proj_dim), dim=1)
        self.register_buffer("centroids", centroids)
        self.register_buffer("variances", torch.full((ctx.num_clusters,), INITIAL_VARIANCE))
        self.register_buffer("usage", torch.zeros(ctx.num_clusters))
        self._pending: tuple[Tensor, Tensor] | None = None

    def _query_net(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def describe(self) -> dict[str, Any]:
        return {"queue_length": None if self.queue is None else len(self.queue.keys)}

    def cluster_logits(self, feats: Tensor) -> Tensor:
        """Minus the squared distance of the normalised projection to each centroid: the
        argmax is the assignment i[z]."""
        return -squared_distances(self.projector(feats), self.centroids)

    def _instance(self, q: Tensor, k: Tensor) -> Tensor:
        negatives = None if self.queue is None else self.queue.keys
        return info_nce(q, k, self.cfg.temperature, negatives=negatives)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        q1, q2 = (gather(self.projector(self.backbone(v))) for v in views)
        with torch.no_grad():
            k1, k2 = (gather(self.key_encoder(v)) for v in views)
        if cfg.symmetric:
            instance = 0.5 * (self._instance(q1, k2) + self._instance(q2, k1))
            queries, keys = torch.cat([q1, q2]), torch.cat([k2, k1])
        else:
            instance = self._instance(q1, k2)
            queries, keys = q1, k2
        assignments = nearest_centroid(keys, self.centroids)  # i[z], by the image's key z'
        centroid = centroid_contrast(queries, self.centroids, assignments, cfg.temperature)
        variance = variance_pull(queries, self.centroids, self.variances, assignments,
                                 cfg.variance_eps)
        if self.training:  # centroids and queue move in after_step, once the step is taken
            self._pending = (assignments, F.normalize(keys.float(), dim=1))
        loss = (cfg.lambda_instance * instance + cfg.lambda_centroid * centroid
                + cfg.lambda_variance * variance)
        used = F.one_hot(assignments, len(self.centroids)).amax(dim=0).sum()
        return {"loss": loss, "instance": instance.detach(), "centroid": centroid.detach(),
                "variance": variance.detach(), "clusters_used": used.float()}

    @torch.no_grad()
    @full_precision
    def update_clusters(self, assignments: Tensor, keys: Tensor) -> None:
        """The momentum updates of section 2 for the clusters S_i that `assignments` (i[z] of
        each image) fill, from the images' keys z' (L2-normalised); then dead clusters are
        relocated onto the keys farthest from their own centroids."""
        k = keys.float()
        num_clusters = len(self.centroids)
        onehot = F.one_hot(assignments, num_clusters).float()  # [B, K]
        counts = onehot.sum(dim=0)
        present = counts > 0
        mu = onehot.T @ k / counts.clamp_min(1)[:, None]  # mean of each S_i's keys
        spread = onehot.T @ (k - mu[assignments]).pow(2).sum(dim=1) / counts.clamp_min(1)
        b1, b2 = self.cfg.beta_centroid, self.cfg.beta_variance
        moved = b1 * self.centroids + (1 - b1) * mu
        if self.cfg.normalize_centroids:
            moved = F.normalize(moved, dim=1)
        centroids = torch.where(present[:, None], moved, self.centroids)
        variances = torch.where(present, b2 * self.variances + (1 - b2) * spread, self.variances)
        self.usage.mul_(b1).add_((1 - b1) * counts / len(k))

        # The i-th dead cluster takes the i-th worst represented key; no host synchronisation.
        dead = ~present & (self.usage < self.cfg.relocate_below / num_clusters)
        rank = dead.long().cumsum(0) - 1
        distance = (k - self.centroids[assignments]).pow(2).sum(dim=1)
        worst = torch.sort(distance, descending=True, stable=True).indices
        relocate = dead & (rank < len(k))
        take = worst[rank.clamp(0, len(k) - 1)]
        self.centroids.copy_(torch.where(relocate[:, None], k[take], centroids))
        self.variances.copy_(torch.where(relocate, INITIAL_VARIANCE, variances))

    def after_step(self, step: int) -> None:
        self.key_encoder.update(self._query_net(), step)
        if self._pending is not None:
            assignments, keys = self._pending
            self.update_clusters(assignments, keys)
            if self.queue is not None:
                self.queue.push(keys)
            self._pending = None
