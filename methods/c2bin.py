"""C2BIN: a BYOL-style runner and follower with cluster heads of several sizes at once.

The paper could not be found (no copy of it was reachable when this file was written), so the
method is built from its description: a runner (online network: backbone, projector,
predictor) and a follower (an EMA copy of backbone + projector) aligned without negatives, plus
several cluster heads on the runner's backbone features, each trained by cluster-level contrast.

- Instance alignment: 2 - 2 cos(runner prediction of one view, follower projection of the
  other), summed over both directions (BYOL, Grill et al. 2020, eq. 2).
- Cluster heads: one per entry s of `cluster_scales`, with s * K outputs (K = ctx.num_clusters),
  in that order (the K head first by default). For each head, column k of the softmax [B, sK]
  matrix of one view is contrasted with column k of the other (CC, Li et al. 2021, eq. 4-5:
  NT-Xent over the 2sK columns) and the entropy of each view's cluster mass is subtracted (CC,
  eq. 5-6).
- Total: align + lambda_cluster * mean_heads(contrast) - lambda_entropy * mean_heads(H(m1) +
  H(m2)). With both lambdas 1, each head's term is exactly CC's cluster loss.

Defaults and where they come from (none from the C2BIN paper, which we could not read):
- momentum_base 0.996 rising to 1 along a cosine; projector and predictor 4096-256: BYOL's.
- cluster_temperature 1.0 and lambda 1 for contrast and entropy: CC's (Li et al. 2021,
  implementation details and eq. 6); cluster heads are `heads.cluster_head` with a 512-wide
  hidden layer (CC's hidden width, the feature width of its ResNet-34).
- cluster_scales [1, 4, 16]: our choice for "multi-scale K" (over-clustering heads at 4K and
  16K beside the K head, in the spirit of IIC's auxiliary over-clustering heads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from crlbench.methods.ema import EMATarget
from crlbench.methods.heads import cluster_head, mlp
from crlbench.methods.losses import cluster_contrast, cluster_mass_entropy, normalized_mse
from crlbench.protocol import Batch, Method


def head_terms(logits1: Tensor, logits2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """One cluster head's terms for two views: the cluster-level contrast of the assignment
    columns and the summed entropies H(m1) + H(m2) of the two views' cluster masses."""
    p1, p2 = torch.softmax(logits1.float(), dim=1), torch.softmax(logits2.float(), dim=1)
    return (cluster_contrast(p1, p2, temperature),
            cluster_mass_entropy(p1) + cluster_mass_entropy(p2))


class C2BIN(Method):
    """C2BIN: BYOL-style runner and EMA follower with cluster heads at K, 4K and 16K."""

    name = "c2bin"
    num_views = 2

    @dataclass
    class Config:
        momentum_base: float = 0.996  # to 1 along a cosine over the run (BYOL)
        proj_dim: int = 256
        proj_hidden_dim: int = 4096
        pred_hidden_dim: int = 4096
        cluster_hidden_dim: int = 512
        cluster_scales: list[int] = field(default_factory=lambda: [1, 4, 16])
        cluster_temperature: float = 1.0
        lambda_cluster: float = 1.0
        lambda_entropy: float = 1.0

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        scales = list(cfg.cluster_scales)
        if not scales or any(int(s) != s or s < 1 for s in scales):
            raise ValueError(f"cluster_scales must be positive integers, got {scales}")
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)
        self.heads = nn.ModuleList(cluster_head(ctx.feature_dim, cfg.cluster_hidden_dim,
                                                int(s) * ctx.num_clusters) for s in scales)
        self.follower = EMATarget(self._runner(), cfg.momentum_base, ctx.total_steps)

    def _runner(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def cluster_logits(self, feats: Tensor) -> list[Tensor]:
        """Every head's logits, in the order of cluster_scales (the K head first by default)."""
        return [head(feats) for head in self.heads]

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        h1, h2 = (self.backbone(v) for v in views)
        p1, p2 = (self.predictor(self.projector(h)) for h in (h1, h2))
        with torch.no_grad():
            z1, z2 = (self.follower(v) for v in views)
        align = normalized_mse(p1, z2) + normalized_mse(p2, z1)
        terms = [head_terms(a, b, self.cfg.cluster_temperature)
                 for a, b in zip(self.cluster_logits(h1), self.cluster_logits(h2), strict=True)]
        contrast = torch.stack([c for c, _ in terms]).mean()
        entropy = torch.stack([e for _, e in terms]).mean()
        loss = align + self.cfg.lambda_cluster * contrast - self.cfg.lambda_entropy * entropy
        return {"loss": loss, "align": align.detach(), "cluster": contrast.detach(),
                "entropy": entropy.detach(), "momentum": self.follower.momentum.clone()}

    def after_step(self, step: int) -> None:
        self.follower.update(self._runner(), step)
