"""CC: contrastive learning on the rows (instances) and the columns (clusters) of two views.

Li, Hu, Liu, Peng, Zhou, Peng. "Contrastive Clustering", AAAI 2021 (whose losses the RCC paper,
Khan et al., "Robust Contrastive Learning", restates in its sec. 3.1: L_ins, L_clu, L_cont). The
backbone feeds two heads (the paper's "Instance-level" and "Cluster-level Contrastive Head").
The instance projector's embeddings of the two views are contrasted by NT-Xent over the 2N rows.
The cluster projector ends in a softmax over K = ctx.num_clusters clusters; column k of a view's
[N, K] assignment matrix is cluster k's representation, contrasted with column k of the other
view against the other 2K - 2 columns. Against the trivial solution of one cluster taking every
sample, the cluster loss subtracts the entropy of each view's cluster mass m_k = mean_i p(k |
x_i). The paper writes -H(Y) with H(Y) the sum of both views' entropies; the authors' code
(Yunfan-Li/Contrastive-Clustering, modules/contrastive_loss.py, ClusterLoss) adds log K - H per
view instead. We follow the code: the loss is

    instance + cluster + (2 log K - entropy),    entropy = H(m^a) + H(m^b),

which has the paper's gradient and is 0 in its last term for balanced clusters. Each of the
three terms is logged. Cluster assignments for scoring are the argmax of the cluster head.

Defaults, from the paper's section "Implementation details" and the code (config/config.yaml,
modules/network.py):

- instance projector: Linear-ReLU-Linear to 128 dimensions (`feature_dim: 128`);
- cluster projector: Linear-ReLU-Linear to K, then softmax;
- both hidden layers as wide as the backbone's output (`rep_dim`) and without batch norm (the
  code has none; `batchnorm=True` uses the suite's shared heads, which have it);
- temperatures tau_I = 0.5 (`instance_temperature`) and tau_C = 1.0 (`cluster_temperature`).

The paper's optimiser (Adam, lr 3e-4, no weight decay, batch 256) belongs to the suite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from crlbench.distributed import gather
from crlbench.methods.heads import cluster_head, mlp
from crlbench.methods.losses import cluster_contrast, cluster_mass_entropy, nt_xent
from crlbench.protocol import Batch, Method


class CC(Method):
    """CC (Li et al. 2021): instance NT-Xent on rows, cluster contrast on columns, entropy."""

    name = "cc"
    kept_state = ("backbone", "cluster_projector")  # cluster_logits
    num_views = 2
    data_parallel = True  # instance and cluster contrast, and entropy, of the global batch

    @dataclass
    class Config:
        instance_dim: int = 128
        instance_temperature: float = 0.5
        cluster_temperature: float = 1.0
        hidden_dim: int | None = None  # None: the backbone's feature width
        batchnorm: bool = False  # BN in the projectors' hidden layer (CC's code has none)

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        hidden = cfg.hidden_dim or ctx.feature_dim
        # CC's code builds both projectors as Linear-ReLU-Linear, without batch norm
        self.instance_projector = mlp(ctx.feature_dim, hidden, cfg.instance_dim,
                                      hidden_bn=cfg.batchnorm)
        self.cluster_projector = cluster_head(ctx.feature_dim, hidden, ctx.num_clusters,
                                              batchnorm=cfg.batchnorm)

    def heads(self, views: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Backbone features, instance embeddings and cluster logits of each view, of the
        global batch (gathered over the workers of a data-parallel run)."""
        feats = [self.backbone(v) for v in views]
        return ([gather(h) for h in feats], [gather(self.instance_projector(h)) for h in feats],
                [gather(self.cluster_projector(h)) for h in feats])

    def cc_terms(self, z: list[Tensor], logits: list[Tensor]) -> dict[str, Tensor]:
        """CC's loss and its terms from the two views' instance embeddings and cluster logits."""
        probs = [c.float().softmax(dim=1) for c in logits]
        instance = nt_xent(z[0], z[1], self.cfg.instance_temperature)
        cluster = cluster_contrast(probs[0], probs[1], self.cfg.cluster_temperature)
        entropy = cluster_mass_entropy(probs[0]) + cluster_mass_entropy(probs[1])
        k = probs[0].shape[1]
        loss = instance + cluster + (2 * math.log(k) - entropy)
        return {"loss": loss, "instance": instance.detach(), "cluster": cluster.detach(),
                "entropy": entropy.detach()}

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        _, z, logits = self.heads(views)
        return self.cc_terms(z, logits)

    def cluster_logits(self, feats: Tensor) -> Tensor:
        return self.cluster_projector(feats)
