"""Optimisers and the learning-rate schedule of the trainer.

SGD, Adam and AdamW come from torch; LARS (You et al. 2017, "Large Batch Training of
Convolutional Networks") is written here as SimCLR's implementation of it (lars_optimizer.py,
which BYOL uses too): the weight decay is added to the gradient first, g' = g + wd * w, and
each parameter's step is scaled by the trust ratio eta * ||w|| / ||g'||, with eta = 1e-3
(SimCLR's and BYOL's; You et al. write the same ratio as eta * ||w|| / (||g|| + wd * ||w||)).
Biases and norm layers are excluded from both weight decay and adaptation. There is no clip of
the adapted rate (solo-learn's `clip_lr`, with its eta of 0.02, is another optimiser).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017)."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, eta: float = 1e-3):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                    "lars": True}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                if group["lars"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["eta"] * w_norm / g_norm, torch.ones_like(w_norm))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def scaled_lr(base_lr: float, batch_size: int, scaling: str) -> float:
    """The peak learning rate: `linear` is lr * B / 256 (Goyal et al. 2017), `sqrt` its root."""
    ratio = batch_size / 256
    return {"linear": base_lr * ratio, "sqrt": base_lr * math.sqrt(ratio), "none": base_lr}[scaling]


def default_param_groups(module: nn.Module, exclude_bias_and_norm: bool) -> list[dict[str, Any]]:
    """All trainable parameters; biases and norm weights (1-D) apart, without decay or LARS."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if exclude_bias_and_norm and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars": False})
    return groups


def build_optimizer(groups: list[dict[str, Any]], cfg: Any,
                    batch_size: int) -> torch.optim.Optimizer:
    """An optimiser over parameter groups; `cfg` is the suite's train.optimizer section."""
    lr = scaled_lr(cfg.lr, batch_size, cfg.lr_scaling)
    wd = cfg.weight_decay
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=wd, eta=cfg.lars_eta)
    for g in groups:  # the LARS flag means nothing to the other optimisers
        g.pop("lars", None)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    opt_cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return opt_cls(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=wd)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  min_ratio: float) -> LambdaLR:
    """Linear warm-up to the peak LR, then cosine decay to peak * min_ratio at the last step."""
    warmup_steps = min(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)
