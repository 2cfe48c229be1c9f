"""Raw pixels: the identity feature map, the floor under every table.

Nothing is trained; the features are the flattened, per-channel standardised pixels that every
backbone receives. A learned representation that does not beat this has learned nothing useful
for the task.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from crlbench.protocol import Batch, Method


class Raw(Method):
    """Raw pixels (no training): flattened standardised images as features."""

    name = "raw"
    kept_state = ()  # nothing trained, nothing kept
    num_views = 0
    trainable = False

    @dataclass
    class Config:
        pass

    def features(self, images: Tensor) -> Tensor:
        return images.flatten(1)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        raise RuntimeError("raw has nothing to train; the harness never calls its loss")
