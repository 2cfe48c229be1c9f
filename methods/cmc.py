"""CMC: contrast the L (luminance) and ab (chrominance) channels of Lab colour.

Tian, Krishnan, Isola. "Contrastive Multiview Coding", arXiv:1906.05849 (ECCV 2020). Each image
is converted to CIE Lab and split into two views, L and ab, each with its own encoder; a linear
projection to 128 dimensions, L2-normalised, feeds a cross-view contrastive loss in both
directions (L anchors against ab candidates and the reverse).

Defaults and their sources:

- `feat_dim` 128, linear projection then L2 normalisation, `temperature` 0.07 and
  `nce_negatives` 4096: the paper's code (github.com/HobbitLong/CMC, train_CMC.py and
  models/resnet.py; its README gives temperature 0.07 for ImageNet, 0.1 for STL-10).
- `loss` "softmax": the objective the paper recommends over NCE (its code's default later).
- `triplet_margin` 0.5 and `spring_margin` 1.0: our choice. We did not find the values used by
  the paper's loss comparison. On unit vectors the triplet margin is on squared distances
  (range [0, 4]) and the spring margin on distances (range [0, 2]).

Our choices where the paper differs:

- Negatives come from the batch, not from the paper's memory bank of 4096 (or 16384) past
  embeddings. The paper's (N+1)-way softmax thus becomes a B-way softmax over the batch's
  candidates (`info_nce` without a queue), and NCE draws its `nce_negatives` noise samples with
  replacement from the other B - 1 items while keeping the uniform noise density 1 / dataset
  size in its formula. Triplet and spring use all B - 1 other items as negatives (so the
  spring loss, a sum over all cross-view pairs, is the same in both directions).
- The two directions are averaged, where the paper sums them (half the gradient scale).
- L is scaled to [0, 1] (L / 100) and ab to about [-1, 1] (ab / 110); the paper's code
  standardises each channel to about [-1, 1] with fixed constants.
- The augmentation is the suite's (CMC used random resized crop and flip only); its colour
  jitter and grayscale act on the RGB image before the Lab split.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.methods.color import rgb_to_lab
from crlbench.methods.losses import info_nce, nce, spring, triplet_margin
from crlbench.protocol import Batch, Method

LOSSES = ("softmax", "nce", "triplet", "spring")
L_SCALE, AB_SCALE = 100.0, 110.0


def other_indices(batch_size: int, device: torch.device | None = None) -> Tensor:
    """[B, B - 1] indices: row i lists every j != i (i + 1, ..., i + B - 1 modulo B)."""
    offsets = torch.arange(1, batch_size, device=device)
    return (torch.arange(batch_size, device=device)[:, None] + offsets) % batch_size


def sample_other_indices(batch_size: int, m: int, device: torch.device | None = None) -> Tensor:
    """[B, m] indices drawn uniformly with replacement from the other B - 1 items of each row.

    Uses torch's global generator, which the trainer re-seeds every epoch.
    """
    offsets = torch.randint(1, batch_size, (batch_size, m), device=device)
    return (torch.arange(batch_size, device=device)[:, None] + offsets) % batch_size


class CMC(Method):
    """CMC (Tian et al. 2019): contrast L and ab of Lab colour, each view with its own encoder.

    The harness gives one backbone built for 3 channels; the ab encoder is a deep copy of it.
    Each encoder sees the Lab image with the other view's channels set to zero (L: [L, 0, 0],
    ab: [0, a, b]). A zero channel contributes nothing through the first (linear, zero-padded)
    layer, so this equals an encoder whose stem has only that view's channels.

    The copy starts from the same weights as the L encoder rather than a fresh initialisation:
    an instance cannot re-run its builder's initialisation scheme (torchvision's and timm's
    differ from `reset_parameters()`), and re-initialising only the copy would give the two
    views different initial distributions. The encoders do not stay equal: their parameters are
    separate and their inputs use disjoint input channels of the first layer, so their features
    and gradients differ from the first step.

    `features` (what the evaluators see) concatenates both encoders' backbone features on the
    un-augmented image, as the paper's evaluation does, so its width is twice the backbone's.
    """

    name = "cmc"
    num_views = 1
    input_channels = (3,)

    @dataclass
    class Config:
        loss: str = "softmax"  # one of LOSSES
        temperature: float = 0.07  # softmax and nce
        feat_dim: int = 128
        nce_negatives: int = 4096  # noise samples per anchor (with replacement)
        triplet_margin: float = 0.5
        spring_margin: float = 1.0

    def __init__(self, backbone: nn.Module, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        if ctx.channels != 3:
            raise ValueError(f"CMC splits RGB images into L and ab and needs 3 input channels; "
                             f"this dataset has {ctx.channels}")
        if cfg.loss not in LOSSES:
            raise ValueError(f"unknown CMC loss {cfg.loss!r}; valid choices: {', '.join(LOSSES)}")
        if len(ctx.input_mean) != 3 or len(ctx.input_std) != 3:
            raise ValueError("CMC needs ctx.input_mean and ctx.input_std (3 values each) to undo "
                             "the input normalisation before converting to Lab")
        self.backbone_ab = copy.deepcopy(backbone)
        self.proj_l = nn.Linear(ctx.feature_dim, cfg.feat_dim)
        self.proj_ab = nn.Linear(ctx.feature_dim, cfg.feat_dim)
        # Non-persistent: derived from ctx, moved by .to(), kept out of checkpoints.
        self.register_buffer("mean", torch.tensor(ctx.input_mean).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(ctx.input_std).view(1, 3, 1, 1), False)
        # Per-channel factors that scale Lab and zero the other view's channels.
        self.register_buffer("scale_l", torch.tensor([1 / L_SCALE, 0, 0]).view(1, 3, 1, 1),
                             False)
        self.register_buffer("scale_ab", torch.tensor([0, 1 / AB_SCALE, 1 / AB_SCALE])
                             .view(1, 3, 1, 1), False)

    def split(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised RGB images -> the two encoders' inputs, [L, 0, 0] and [0, a, b] (scaled)."""
        lab = rgb_to_lab(images.float() * self.std + self.mean)
        return lab * self.scale_l, lab * self.scale_ab

    def embed(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The L2-normalised projections (z_l, z_ab) of a batch of normalised RGB images."""
        x_l, x_ab = self.split(images)
        z_l = self.proj_l(self.backbone(x_l))
        z_ab = self.proj_ab(self.backbone_ab(x_ab))
        return F.normalize(z_l.float(), dim=1), F.normalize(z_ab.float(), dim=1)

    def features(self, images: Tensor) -> Tensor:
        x_l, x_ab = self.split(images)
        return torch.cat([self.backbone(x_l), self.backbone_ab(x_ab)], dim=1)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        z_l, z_ab = self.embed(views[0])
        l_to_ab, ab_to_l = self._directions(z_l, z_ab)
        return {"loss": 0.5 * (l_to_ab + ab_to_l), "loss_l_to_ab": l_to_ab,
                "loss_ab_to_l": ab_to_l}

    def _directions(self, z_l: Tensor, z_ab: Tensor) -> tuple[Tensor, Tensor]:
        cfg, b = self.cfg, len(z_l)
        if cfg.loss == "softmax":
            return (info_nce(z_l, z_ab, cfg.temperature), info_nce(z_ab, z_l, cfg.temperature))
        if cfg.loss == "nce":
            sim = z_l @ z_ab.T  # sim[i, j]: L of i against ab of j; its transpose the reverse
            noise_ab = sample_other_indices(b, cfg.nce_negatives, sim.device)
            noise_l = sample_other_indices(b, cfg.nce_negatives, sim.device)
            pos, n = sim.diagonal(), self.ctx.dataset_size
            return (nce(pos, sim.gather(1, noise_ab), cfg.temperature, n),
                    nce(pos, sim.T.gather(1, noise_l), cfg.temperature, n))
        others = other_indices(b, z_l.device)
        if cfg.loss == "triplet":
            return (triplet_margin(z_l, z_ab, z_ab[others], cfg.triplet_margin),
                    triplet_margin(z_ab, z_l, z_l[others], cfg.triplet_margin))
        return (spring(z_l, z_ab, z_ab[others], cfg.spring_margin),
                spring(z_ab, z_l, z_l[others], cfg.spring_margin))
