"""BYOL: an online network predicts the projection of a slow-moving target network.

Grill et al. "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
NeurIPS 2020. Defaults follow section 3.3: projector and predictor are MLPs of a 4096-d linear
layer, BatchNorm and ReLU, then a 256-d linear output; the target (backbone + projector) is an
exponential moving average of the online network whose rate starts at tau_base = 0.996 and rises
to 1 as 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 over the K training steps; the loss is
eq. 2, 2 - 2 cos(prediction, target projection), symmetrised over the two views (L + L~).

The paper's asymmetric augmentations (table 6) are the `byol` augmentation family; the suite,
not the method, chooses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crlbench.methods.ema import EMATarget
from crlbench.methods.heads import mlp
from crlbench.methods.losses import normalized_mse
from crlbench.protocol import Batch, Method


class BYOL(Method):
    """BYOL (Grill et al. 2020): predict an EMA target network's projection of the other view."""

    name = "byol"
    num_views = 2
    # each sample's loss reads its own prediction and target alone: nothing to gather
    data_parallel = True

    @dataclass
    class Config:
        momentum_base: float = 0.996  # to 1 along a cosine (constant if total_steps is 0)
        proj_dim: int = 256
        proj_hidden_dim: int = 4096
        pred_hidden_dim: int = 4096

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)
        self.target = EMATarget(self._online(), cfg.momentum_base, ctx.total_steps)

    def _online(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        p1, p2 = (self.predictor(self.projector(self.backbone(v))) for v in views)
        with torch.no_grad():
            z1, z2 = (self.target(v) for v in views)
        loss = normalized_mse(p1, z2) + normalized_mse(p2, z1)
        return {"loss": loss, "momentum": self.target.momentum.clone()}

    def after_step(self, step: int) -> None:
        self.target.update(self._online(), step)
