"""NPID: instance discrimination against a memory bank of every training sample's embedding.

Wu, Xiong, Yu, Lin. "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
CVPR 2018. One augmented view per sample goes through the backbone and a linear projection to an
L2-normalised 128-d feature f_i. A memory bank holds one unit vector v_j per training sample; the
positive of f_i is its own entry v_i (looked up by `batch.indices`), the negatives are m entries
drawn uniformly from the whole bank (possibly v_i itself, as in the reference code), and the
loss is the NCE approximation of the non-parametric softmax (the paper's "Noise-Contrastive
Estimation" subsection; `losses.nce`). Defaults are the paper's (section 4) and its code's
(zhirongw/lemniscate.pytorch, main.py): 128-d features, m = 4096 noise samples, temperature
tau = 0.07 (the ImageNet value; the code's CIFAR script uses `--nce-t 0.1`, which the CIFAR-size
suites set), bank momentum 0.5 (`--nce-m`: the code mixes v_i <- normalise(0.5 v_i + 0.5 f_i)
where the paper's text writes f_i -> v_i).

The normalising constant Z of the NCE posterior is estimated once, from the first training
batch's noise, and then held fixed, as the paper ("derived from initial batches") and its code
(NCEAverage: `if Z < 0: Z = out.mean() * outputSize`) do. On a small dataset this can fail:
on the 1,437 digits of `representation_cpu` (512 noise samples, 30 epochs) the fixed Z, made
from a random bank, let the noise terms grow to hundreds and left the features at chance
(kNN-5 18.6%), where a Z re-estimated from every batch (`normaliser="batch"`, version 1's
behaviour) reaches 77.2%; that suite sets it, with this reason.

Bank update: done inside `loss`, under no_grad, right after the loss is built. It must use the
f_i of this forward pass (what the reference code writes in its backward pass, before the
optimiser step), and the loss only ever holds copies of bank rows (advanced indexing), so the
in-place write cannot change the backward. Deferring it to `after_step` would mean keeping f_i in
a plain attribute between calls, outside the state_dict. It is skipped in eval mode, so calling
`loss` to score a model leaves the bank untouched.

Proximal regularisation (the paper's "Proximal Regularization" subsection): the positive term gains
lambda ||f_i - v_i||^2, pulling each feature towards its previous value in the bank.
`proximal_weight` is lambda; it defaults to 0 because the authors' released code, which also
supplies the momentum and produced the released models, has no such term; set it (e.g. to 30)
for the paper's regularised objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.banks import MemoryBank, NCENormaliser
from crlbench.methods.losses import nce
from crlbench.protocol import Batch, Method, check_choice, check_positive

NORMALISERS = ("once", "batch")


class NPID(Method):
    """NPID (Wu et al. 2018): NCE instance discrimination against a memory bank, 4096 negatives."""

    name = "npid"
    num_views = 1
    version = "2"  # 2: Z estimated once, from the first batch (version 1: every batch)
    data_parallel = True  # the global batch: the same noise draws and bank rows on every worker

    @dataclass
    class Config:
        proj_dim: int = 128
        num_negatives: int = 4096  # m
        temperature: float = 0.07
        bank_momentum: float = 0.5
        proximal_weight: float = 0.0  # lambda of the proximal regularisation; 0 turns it off
        normaliser: str = "once"  # Z: once, from the first batch (the authors') | batch

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_choice("normaliser", cfg.normaliser, NORMALISERS)
        check_positive(cfg, "temperature", "num_negatives", "proj_dim")

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.check_config(cfg)
        self.projector = nn.Linear(ctx.feature_dim, cfg.proj_dim)
        self.bank = MemoryBank(ctx.dataset_size, cfg.proj_dim, cfg.bank_momentum)
        self.normaliser = NCENormaliser()  # Z: estimated from the first batch, then fixed

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        idx = gather(batch.indices)
        f = gather(F.normalize(self.projector(self.backbone(views[0])).float(), dim=1))
        positive_rows = self.bank.bank[idx]
        noise_rows = self.bank.sample(cfg.num_negatives, len(f))  # [B, m, D]
        with torch.autocast(f.device.type, enabled=False):  # similarities in float32
            positive = (f * positive_rows).sum(dim=1)
            noise = torch.bmm(noise_rows, f.unsqueeze(2)).squeeze(2)
        n = self.ctx.dataset_size
        z = self.normaliser(noise, cfg.temperature, n) if cfg.normaliser == "once" else None
        nce_loss = nce(positive, noise, cfg.temperature, n, normaliser=z)
        proximal = (f - positive_rows).pow(2).sum(dim=1).mean()
        loss = nce_loss + cfg.proximal_weight * proximal
        if self.training:
            self.bank.update(idx, f.detach())
        return {"loss": loss, "nce": nce_loss.detach(), "proximal": proximal.detach()}
