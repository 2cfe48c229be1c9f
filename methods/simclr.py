"""SimCLR: contrast two augmented views of each image against the rest of the batch.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020. Defaults follow the paper's CIFAR-10 setting (appendix B.9):
a 2-layer MLP projection head to 128 dimensions whose hidden width is the feature width, and
NT-Xent with temperature 0.5. The loss is the paper's Algorithm 1 (as also printed in Senanou,
Mensah, Mohamed, Sanya, "Self-supervised visual representation learning: SimCLR & Deep
Clustering", sec. 3): s_ij the cosine over tau, the denominator without k = i, the mean over
all 2N anchors (`losses.nt_xent`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from crlbench.distributed import gather
from crlbench.methods.heads import mlp
from crlbench.methods.losses import nt_xent
from crlbench.protocol import Batch, Method


class SimCLR(Method):
    """SimCLR (Chen et al. 2020): NT-Xent between two views through an MLP projection head."""

    name = "simclr"
    num_views = 2
    data_parallel = True  # NT-Xent over the global batch: every worker's negatives

    @dataclass
    class Config:
        temperature: float = 0.5
        proj_dim: int = 128
        proj_hidden_dim: int | None = None  # None: the backbone's feature width

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        hidden = cfg.proj_hidden_dim or ctx.feature_dim
        self.projector = mlp(ctx.feature_dim, hidden, cfg.proj_dim)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        z1, z2 = (gather(self.projector(self.backbone(v))) for v in views)
        return {"loss": nt_xent(z1, z2, self.cfg.temperature)}
