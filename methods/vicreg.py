"""VICReg: variance, invariance and covariance regularisation of two views' embeddings.

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022. Both views go through the backbone and an expander
(3-layer MLP, Linear-BN-ReLU twice then Linear) to Z, Z' of n rows and d dimensions; the loss is
eq. 6:

    l(Z, Z') = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]

with the variance v (eq. 1-2: mean over dimensions of max(0, gamma - sqrt(Var(z^j) + eps))), the
covariance c (eq. 3-4: squared off-diagonal covariances summed, divided by d) and the invariance
s (eq. 5). Defaults are the paper's (its implementation details and algorithm 1):
lambda = mu = 25, nu = 1, gamma = 1, eps = 1e-4.

Two scale conventions to know:
- s is the mean squared error over all n * d entries, as in the paper's algorithm 1 and the
  official code (`F.mse_loss`); eq. 5 as printed averages over the n pairs only. The weights
  lambda = mu = 25 were tuned with the former.
- the variance terms of both branches are summed, as in eq. 6 and algorithm 1. The official
  code (facebookresearch/vicreg, main_vicreg.py) averages them (`/ 2` each), which is the same as
  mu = 12.5 here.

Expander width: the paper uses 8192-8192-8192 on ResNet-50 (2048-d features) and reports accuracy
growing with the width. The suite's backbone is a ResNet-18 (512-d) at small image sizes, where
an 8192-wide expander would hold about 12x the backbone's parameters (138M vs 11M) and make the
d x d covariance 16x costlier. The default, 2048-2048-2048 (about as large as the backbone), is the
setting solo-learn (da Costa et al., JMLR 2022) uses for VICReg with ResNet-18 on CIFAR
(scripts/pretrain/cifar/vicreg.yaml). Set `expander_hidden_dim` and `expander_dim` to 8192 for
the paper's head.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from crlbench.distributed import gather
from crlbench.methods.heads import mlp
from crlbench.methods.losses import vicreg_covariance, vicreg_invariance, vicreg_variance
from crlbench.protocol import Batch, Method


class VICReg(Method):
    """VICReg (Bardes et al. 2022): invariance, variance and covariance terms on an MLP expander."""

    name = "vicreg"
    num_views = 2
    data_parallel = True  # variance and covariance of the global batch

    @dataclass
    class Config:
        sim_weight: float = 25.0  # lambda
        var_weight: float = 25.0  # mu
        cov_weight: float = 1.0  # nu
        gamma: float = 1.0  # target standard deviation of every embedding dimension
        eps: float = 1e-4
        expander_hidden_dim: int = 2048
        expander_dim: int = 2048
        expander_layers: int = 3

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.expander = mlp(ctx.feature_dim, cfg.expander_hidden_dim, cfg.expander_dim,
                            layers=cfg.expander_layers)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        z1, z2 = (gather(self.expander(self.backbone(v))) for v in views)
        invariance = vicreg_invariance(z1, z2)  # the loss functions run in float32
        variance = vicreg_variance(z1, cfg.gamma, cfg.eps) + vicreg_variance(z2, cfg.gamma, cfg.eps)
        covariance = vicreg_covariance(z1) + vicreg_covariance(z2)
        loss = cfg.sim_weight * invariance + cfg.var_weight * variance + cfg.cov_weight * covariance
        return {"loss": loss, "invariance": invariance, "variance": variance,
                "covariance": covariance}
