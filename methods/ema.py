"""Momentum (EMA) target networks, shared by MoCo, BYOL and the clustering methods that use one.

The target is a frozen deep copy of the online module, moved towards it after every step:
theta_target <- m * theta_target + (1 - m) * theta_online (He et al. 2020, MoCo). BYOL (Grill et
al. 2020) raises m from its base value to 1 along a cosine over the run.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that takes no gradient (the target network starts equal to the online one)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """Move target's parameters towards online's; copy buffers (BatchNorm statistics) as is."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.detach(), 1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's schedule: 1 - (1 - base) * (cos(pi * step / total) + 1) / 2, from base up to 1."""
    progress = min(step / max(1, total_steps), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMATarget(nn.Module):
    """A target network that follows an online one by EMA after every optimiser step.

    `base` is the momentum; with `cosine`, it rises from `base` to 1 over `total_steps` (BYOL,
    MoCo v3); without, it stays `base` (MoCo v2). The momentum the next update applies is a
    buffer, so a run resumed from a checkpoint continues the schedule and logs the same values.
    """

    def __init__(self, online: nn.Module, base: float, total_steps: int, cosine: bool = True):
        super().__init__()
        self.net = frozen_copy(online)
        self.base, self.total_steps, self.cosine = base, total_steps, cosine
        self.register_buffer("momentum", torch.tensor(self.momentum_at(0)))

    def momentum_at(self, step: int) -> float:
        if self.cosine and self.total_steps > 0:
            return cosine_momentum(step, self.total_steps, self.base)
        return self.base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def update(self, online: nn.Module, step: int) -> None:
        """Apply the momentum of `step` (call from after_step), then ready the next one."""
        ema_update(self.net, online, self.momentum_at(step))
        self.momentum.fill_(self.momentum_at(step + 1))
