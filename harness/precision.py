"""`full_precision`: run a loss or metric in float32 even inside a bf16 autocast region.

Under autocast, `a.float() @ b.float()` still runs in bf16: casting inputs is not enough. Losses
with temperatures like 0.07 over thousands of logits need float32, so they turn autocast off
for their own body.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable)


def full_precision(fn: F) -> F:
    """Decorate a function of tensors so that its body runs with autocast disabled."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
