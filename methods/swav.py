"""SwAV: predict the cluster code of one view from the other, codes balanced by Sinkhorn-Knopp.

Caron, Misra, Mairal, Goyal, Bojanowski, Joulin. "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", NeurIPS 2020. Each view's embedding z (projection MLP, then L2
normalisation) is scored against K prototypes c_k (unit rows of a bias-free linear layer); the
codes Q of a batch are the equipartitioned soft assignments of section 3.1 (Sinkhorn-Knopp,
computed without gradient) and the loss is the swapped prediction of eq. 1-2. Defaults follow the
paper's implementation details (appendix A.1) and its code (facebookresearch/swav, main_swav.py):

- projection head: 2-layer MLP, hidden 2048, output 128;
- K = 3000 prototypes, renormalised to unit rows after every optimiser step (the code renormalises
  before every forward pass; doing it here right after each update, and once at construction, is
  the same sequence of weights);
- temperature tau = 0.1, Sinkhorn epsilon = 0.05 with 3 iterations;
- prototypes frozen during the first epoch (`freeze_prototypes_niters=313` in the code: one
  ImageNet epoch at batch 4096).

Freezing: the trainer, not the method, runs backward and the optimiser step, so the method cannot
clear the prototypes' gradient as the reference code does. Instead, during the frozen steps the
scores are computed from the *detached* prototype weights: the weight never enters the graph,
its `.grad` stays None (the trainer zeroes grads with set_to_none), and every optimiser skips a
parameter without a gradient - no update, no weight decay, no momentum, exactly as with
`p.grad = None` in the reference. The embedding still receives the gradient of the loss. The
steps taken so far are counted in a buffer set by `after_step`, so a run resumed from a
checkpoint knows whether it is still in the frozen period before its first step. Frozen rows are
not renormalised either (they did not move), so they stay bit-identical.

Not implemented: the optional queue of past embeddings that the paper adds to the Sinkhorn input
for small batches, and multi-crop (the suite's augmenter gives two views of one size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.heads import mlp
from crlbench.methods.losses import swapped_prediction
from crlbench.methods.sinkhorn import sinkhorn
from crlbench.protocol import Batch, Method


class SwAV(Method):
    """SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-balanced codes over prototypes."""

    name = "swav"
    num_views = 2
    data_parallel = True  # Sinkhorn's codes balanced over the global batch

    @dataclass
    class Config:
        proj_hidden_dim: int = 2048
        proj_dim: int = 128
        num_prototypes: int = 3000
        temperature: float = 0.1
        sinkhorn_epsilon: float = 0.05
        sinkhorn_iterations: int = 3
        freeze_prototypes_epochs: int = 1

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.prototypes = nn.Linear(cfg.proj_dim, cfg.num_prototypes, bias=False)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        # A host-side copy of steps_done: reading the buffer each step would synchronise the GPU.
        self._steps: int | None = 0
        self.register_load_state_dict_post_hook(_forget_host_step_count)
        self.frozen_steps = cfg.freeze_prototypes_epochs * ctx.steps_per_epoch
        self._normalize_prototypes()

    @torch.no_grad()
    def _normalize_prototypes(self) -> None:
        w = self.prototypes.weight
        w.copy_(F.normalize(w.float(), dim=1).to(w.dtype))

    def prototypes_frozen(self) -> bool:
        if self._steps is None:  # state was just loaded
            self._steps = int(self.steps_done)
        return self._steps < self.frozen_steps

    def scores(self, z: Tensor) -> Tensor:
        """Cosine scores [B, K] of unit embeddings against the prototypes, in float32."""
        w = self.prototypes.weight
        if self.prototypes_frozen():
            w = w.detach()
        # Under autocast the matmul would round to bf16; eps = 0.05 makes Sinkhorn sensitive to it.
        with torch.autocast(z.device.type, enabled=False):
            return z.float() @ w.float().T

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        s1, s2 = (self.scores(gather(F.normalize(self.projector(self.backbone(v)).float(), dim=1)))
                  for v in views)
        q1, q2 = (sinkhorn(s.detach(), cfg.sinkhorn_epsilon, cfg.sinkhorn_iterations)
                  for s in (s1, s2))
        return {"loss": swapped_prediction(s1, s2, q1, q2, cfg.temperature)}

    def after_step(self, step: int) -> None:
        if not self.prototypes_frozen():  # frozen rows did not move; renormalising adds rounding
            self._normalize_prototypes()
        self._steps = step + 1
        self.steps_done.fill_(step + 1)


def _forget_host_step_count(module: SwAV, incompatible_keys) -> None:
    module._steps = None
