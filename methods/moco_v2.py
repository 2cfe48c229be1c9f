"""MoCo v2: contrast queries against a momentum-encoded key and a queue of past keys.

He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020 (MoCo), and Chen, Fan, Girshick, He. "Improved Baselines with Momentum
Contrastive Learning", arXiv:2003.04297, 2020 (v2). Defaults are v2's ImageNet setting: a
2-layer MLP head (hidden 2048 with ReLU, no BatchNorm, output 128), InfoNCE with temperature
0.2 (v2, section 2 and table 1), a queue of K = 65536 keys and key-encoder momentum 0.999 (MoCo,
section 4.1, kept by v2). The official code sizes the hidden layer as the backbone's feature
width, which is 2048 on the papers' ResNet-50.

The loss is asymmetric as in both papers: view 1 is the query, view 2 the key.
`symmetric=True` adds the swapped term and enqueues both views' keys, as the authors' CIFAR-10
demo (github.com/facebookresearch/moco, colab notebook) does; it sums the two terms, and its
README notes that it behaves like twice the epochs.

The queue is never longer than the training set allows (`banks.queue_length`: at most N - B
keys for N images in batches of B): at 65536 on CIFAR's 50,000 images it would hold a key of
every image, the anchor's own among the negatives, and keys more than an epoch old. The
CIFAR-size suites set 4,096, as MoCo's CIFAR-10 demo does (its README: the queue "saturated at
--moco-k 4096"); the length a run used is in its record (`method_details.queue_length`).

Shuffle-BN (MoCo section 3.3) shuffles the keys' batch across GPUs so that BatchNorm statistics
of a query and of its key come from different subsets. On one device BatchNorm already sees the
whole batch, where a permutation changes nothing, so it is not done here. (The CIFAR demo keeps
it by simulating 8 GPUs with a split BatchNorm, and reports about 4 points of kNN accuracy lost
without it at 800 epochs; that is not reproduced.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.banks import FeatureQueue, queue_length
from crlbench.methods.ema import EMATarget
from crlbench.methods.heads import mlp
from crlbench.methods.losses import info_nce
from crlbench.protocol import Batch, Method


class MoCoV2(Method):
    """MoCo v2 (Chen et al. 2020): InfoNCE against a momentum key encoder and a queue of keys."""

    name = "moco_v2"
    num_views = 2
    version = "2"  # 2: the queue is cut to what the training set allows
    data_parallel = True  # queries and keys gathered: every worker enqueues the same keys

    @dataclass
    class Config:
        temperature: float = 0.2
        momentum: float = 0.999
        queue_size: int = 65536
        proj_dim: int = 128
        proj_hidden_dim: int = 2048
        symmetric: bool = False

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim, hidden_bn=False)
        self.momentum_encoder = EMATarget(self._online(), cfg.momentum, ctx.total_steps,
                                          cosine=False)
        length = queue_length(cfg.queue_size, ctx.dataset_size, ctx.steps_per_epoch)
        self.queue = FeatureQueue(length, cfg.proj_dim)
        self._new_keys: Tensor | None = None

    def _online(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def describe(self) -> dict[str, Any]:
        return {"queue_length": len(self.queue.keys)}

    def _term(self, query_view: Tensor, key_view: Tensor) -> tuple[Tensor, Tensor]:
        q = gather(self.projector(self.backbone(query_view)))
        with torch.no_grad():
            k = gather(self.momentum_encoder(key_view))
        return info_nce(q, k, self.cfg.temperature, negatives=self.queue.keys), k

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        loss, k2 = self._term(views[0], views[1])
        keys = [k2]
        if self.cfg.symmetric:
            loss_21, k1 = self._term(views[1], views[0])
            loss = loss + loss_21
            keys = [k1, k2]
        # Enqueued in after_step, once the step is taken: loss() has no side effect, and the
        # queue is never written while the autograd graph of this step is alive.
        self._new_keys = F.normalize(torch.cat(keys).float(), dim=1)
        return {"loss": loss}

    def after_step(self, step: int) -> None:
        self.momentum_encoder.update(self._online(), step)
        if self._new_keys is not None:
            self.queue.push(self._new_keys)
            self._new_keys = None
