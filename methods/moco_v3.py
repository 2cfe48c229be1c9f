"""MoCo v3: symmetric in-batch InfoNCE between a predictor and a momentum encoder, no queue.

Chen, Xie, He. "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021.
Defaults are the paper's ResNet-50 setting ("MLP heads" in its implementation details): a
3-layer projection MLP and a 2-layer prediction MLP, hidden layers 4096-d with BN and ReLU,
outputs 256-d, BN (without affine, as SimCLR v2) on the projector's output; the loss of the
paper's algorithm 1, ctr(q1, k2) + ctr(q2, k1) with each term scaled by 2 tau; temperature 1.0
and momentum 0.99 raised to 1 by a half cosine over training, the ResNet defaults of the
official code (github.com/facebookresearch/moco-v3, main_moco.py and CONFIG.md; its ViT runs
use tau = 0.2). That code builds a 2-layer projector for ResNets (`proj_layers=2` matches it);
its ResNet predictor has no BN on the output, and neither has this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.ema import EMATarget
from crlbench.methods.heads import mlp
from crlbench.methods.losses import info_nce
from crlbench.protocol import Batch, Method


class MoCoV3(Method):
    """MoCo v3 (Chen, Xie, He 2021): symmetric in-batch InfoNCE against a momentum encoder."""

    name = "moco_v3"
    num_views = 2
    data_parallel = True  # in-batch InfoNCE over the global batch (keys of every worker)

    @dataclass
    class Config:
        temperature: float = 1.0
        momentum_base: float = 0.99  # to 1 along a cosine (constant if total_steps is 0)
        proj_dim: int = 256
        proj_hidden_dim: int = 4096
        proj_layers: int = 3
        pred_hidden_dim: int = 4096

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim,
                             layers=cfg.proj_layers, last_bn=True)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)
        self.momentum_encoder = EMATarget(self._online(), cfg.momentum_base, ctx.total_steps)

    def _online(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        q1, q2 = (gather(self.predictor(self.projector(self.backbone(v)))) for v in views)
        with torch.no_grad():
            k1, k2 = (gather(self.momentum_encoder(v)) for v in views)
        t = self.cfg.temperature
        loss = 2 * t * (info_nce(q1, k2, t) + info_nce(q2, k1, t))
        return {"loss": loss, "momentum": self.momentum_encoder.momentum.clone()}

    def after_step(self, step: int) -> None:
        self.momentum_encoder.update(self._online(), step)
