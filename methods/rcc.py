"""RCC: Contrastive Clustering with the uniformity loss of Wang & Isola as a regulariser.

Khan, Zhu, Duong, Katneni. "Robust Contrastive Learning" (RCC), section 4: a convex combination
of CC's loss (Li et al. 2021, section 3.1 of the RCC paper; see `crlbench.methods.cc`) and the
uniformity loss of section 3.2 (Wang & Isola, ICML 2020):

    L = lambda * L_cont + (1 - lambda) * L_unif,    L_cont = L_ins + L_clu,

with L_unif = log E exp(-t |u - v|^2) over distinct pairs of the batch and t = 2 (Wang & Isola's
default, and `uniform_loss(x, t=2)` in the first author's code).

Where the uniformity acts (section 5): "We apply an L2 Norm after the final pass over the
backbone to generate vectors that are normalized and are contained within the unit
hyper-sphere", and Fig. 5 shows that sphere: the uniformity is on the L2-normalised backbone
representation h, not on the instance projector's z. The first author's public code
(rana-shahroz/Contrastive-Clustering, utils/trainer2.py) does the same and adds the two views'
terms, `uniform_loss(Ha) + uniform_loss(Hb)`, with `0.95 * loss_contrastive + 0.05 *
loss_uniformity`. So, by default, L_unif = U(h^a) + U(h^b). `uniformity_on="instance"` puts it
on CC's instance embeddings instead, `uniformity_reduce="mean"` averages the views (Wang &
Isola's own code): both are variants, not the paper.

Defaults (section 5): lambda = 0.95; tau_I = 0.5 and tau_C = 1.0, the heads (2-layer MLPs with
ReLU; the cluster head ends in a softmax) and everything else are CC's, so lambda = 1 gives CC
exactly. The paper's optimiser (Adam, lr 3e-4, no weight decay, batch 256, 200 epochs), MNIST
at 64 x 64 with a ResNet-18, and 5 seeds belong to a suite.

Where the paper's text and this implementation differ: section 5 feeds the heads the
normalised representation, while the first author's code (modules/models.py) feeds them the
raw backbone output; we follow the code, so the heads are CC's exactly (the normalisation only
enters the uniformity term).

Version 2 puts the uniformity on the backbone representation and sums the views (version 1
used the instance embeddings and averaged them).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from crlbench.methods.cc import CC
from crlbench.methods.losses import uniformity
from crlbench.protocol import Batch, check_choice

UNIFORMITY_ON = ("backbone", "instance")
UNIFORMITY_REDUCE = ("sum", "mean")


class RCC(CC):
    """RCC (Khan et al.): lambda * CC loss + (1 - lambda) * uniformity of the representation."""

    name = "rcc"
    version = "2"

    @dataclass
    class Config(CC.Config):
        lam: float = 0.95  # lambda, the weight of CC's loss (section 5)
        uniformity_t: float = 2.0  # t of the Gaussian potential (section 3.2)
        uniformity_on: str = "backbone"  # backbone (section 5) | instance
        uniformity_reduce: str = "sum"  # sum over the two views (authors' code) | mean

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_choice("uniformity_on", cfg.uniformity_on, UNIFORMITY_ON)
        check_choice("uniformity_reduce", cfg.uniformity_reduce, UNIFORMITY_REDUCE)
        if not 0 <= cfg.lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {cfg.lam}")

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.check_config(cfg)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        h, z, logits = self.heads(views)
        out = self.cc_terms(z, logits)
        on = h if cfg.uniformity_on == "backbone" else z
        # `uniformity` L2-normalises its input first: the representation on the unit sphere
        unif = uniformity(on[0], cfg.uniformity_t) + uniformity(on[1], cfg.uniformity_t)
        if cfg.uniformity_reduce == "mean":
            unif = unif / 2
        out["loss"] = cfg.lam * out["loss"] + (1 - cfg.lam) * unif
        out["uniformity"] = unif.detach()
        return out
