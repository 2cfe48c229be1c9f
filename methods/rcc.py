"""RCC: Contrastive Clustering with the uniformity loss of Wang & Isola as a regulariser.

The loss is a convex combination of CC's loss (Li et al. 2021, see `crlbench.methods.cc`) and the
uniformity loss of Wang & Isola, "Understanding Contrastive Representation Learning through
Alignment and Uniformity on the Hypersphere", ICML 2020:

    L = lambda * L_CC + (1 - lambda) * L_unif,    lambda = 0.95 by default,

with L_unif = log E exp(-t |z - z'|^2) over distinct pairs of the batch, t = 2 (Wang & Isola's
default), on the L2-normalised outputs of CC's instance projector, averaged over the two views
- as Wang & Isola's own code combines the two views, (uniform(x) + uniform(y)) / 2. We found no
text of the RCC paper to check which features the uniformity acts on; the instance embeddings
(rather than the backbone features or the cluster probabilities) are our reading of "the
uniformity of the L2-normalised instance embeddings", and lambda = 0.95 is the value of that
description, likewise unchecked. Everything else, heads and defaults included, is CC's; with
lambda = 1 RCC is CC exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from crlbench.methods.cc import CC
from crlbench.methods.losses import uniformity
from crlbench.protocol import Batch


class RCC(CC):
    """RCC (CC + Wang & Isola 2020): lambda * CC loss + (1 - lambda) * instance uniformity."""

    name = "rcc"

    @dataclass
    class Config(CC.Config):
        lam: float = 0.95  # lambda, the weight of CC's loss
        uniformity_t: float = 2.0

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        z, logits = self.heads(views)
        out = self.cc_terms(z, logits)
        unif = 0.5 * (uniformity(z[0], self.cfg.uniformity_t)
                      + uniformity(z[1], self.cfg.uniformity_t))
        lam = self.cfg.lam
        out["loss"] = lam * out["loss"] + (1 - lam) * unif
        out["uniformity"] = unif.detach()
        return out
