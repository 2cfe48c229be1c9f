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
