"""CMC: contrast the L (luminance) and ab (chrominance) channels of Lab colour.

Tian, Krishnan, Isola. "Contrastive Multiview Coding", arXiv:1906.05849 (ECCV 2020). Each image
is converted to CIE Lab and split into two views, L and ab, each with its own encoder; a linear
projection to 128 dimensions, L2-normalised, feeds a cross-view contrastive loss in both
directions (L anchors against ab candidates and the reverse).

The four losses of the CMC loss study (Wang, Zhang, Chen, Ding, "Effect of Contrastive Loss
on Unsupervised Representation Learning", sec. 3.2), on the L2-normalised projections, with d
the Euclidean distance, `loss=`:

- "spring" (spring-like, Hadsell et al. 2006): d / 2 for the positive pair, [m - d]_+ / 2 for
  each negative pair, unsquared as the study prints it (`squared_distances=true` gives
  Hadsell's d^2 / 2 and [m - d]_+^2 / 2);
- "triplet" (Schroff et al. 2015): [d(x^p, x) - d(x^n, x) + alpha]_+, unsquared as printed
  (`squared_distances=true` gives FaceNet's squared form);
- "softmax", the (N+1)-way softmax (van den Oord et al. 2018): -log(exp(x_1 . x / tau) /
  sum_i exp(x_i . x / tau)), the positive first;
- "nce" (Wu et al. 2018): h = P(i|x) / (P(i|x) + m P_n) with P_n = 1 / n, the loss
  -log h(positive) - sum over the m noise samples of log(1 - h), Z estimated once from the
  first batch and then fixed (as CMC's and NPID's code).

The objective sums the two directions, L(V1, V2) = L^{V1,V2} + L^{V2,V1} (sec. 3.1).

Defaults and their sources:

- `feat_dim` 128, linear projection then L2 normalisation, `temperature` 0.07 and
  `nce_negatives` 4096: CMC's code (github.com/HobbitLong/CMC, train_CMC.py and
  models/resnet.py; its README gives temperature 0.07 for ImageNet, 0.1 for STL-10, which the
  STL-10 suites set).
- `loss` "softmax": the objective CMC recommends over NCE (its code's default later), and the
  best of the study's Table 1.
- `triplet_margin` alpha 0.5 and `spring_margin` m 1.0: our choice; the study gives no values.
  On unit vectors both margins are on distances (range [0, 2]).

Our choices where the papers differ:

- Negatives come from the batch, not from CMC's memory bank of 4096 (or 16384) past
  embeddings. The (N+1)-way softmax thus becomes a B-way softmax over the batch's candidates
  (`info_nce` without a queue), and NCE draws its `nce_negatives` noise samples with
  replacement from the other B - 1 items while keeping the uniform noise density 1 / dataset
  size in its formula. Triplet and spring use all B - 1 other items as negatives (so the
  spring loss, a sum over all cross-view pairs, is the same in both directions). A bank of
  past embeddings is what CMC's code adds for memory: at the study's batch of 128 the batch
  gives 127 distinct negatives.
- L is scaled to [0, 1] (L / 100) and ab to about [-1, 1] (ab / 110); CMC's code standardises
  each channel to about [-1, 1] with fixed constants.
- The augmentation is the suite's (CMC used random resized crop and flip only, which the
  `losses` suite uses too); any colour jitter or grayscale acts on the RGB image before the Lab
  split.

The geometry evaluator scores CMC on its own positive pairs (`positive_pairs`: the L and ab
embeddings of one image), as the study's alignment and uniformity (sec. 3.3, Table 1) do.

Version 2 prints the study's unsquared spring and triplet losses, sums the two directions
and fixes NCE's Z once (version 1: squared distances, averaged directions, Z every batch).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.banks import NCENormaliser
from crlbench.methods.color import rgb_to_lab
from crlbench.methods.losses import info_nce, nce, spring, triplet_margin
from crlbench.protocol import Batch, Method, check_choice, check_positive

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
    kept_state = ("backbone", "backbone_ab", "proj_l", "proj_ab")  # features, positive_pairs
    num_views = 1
    input_channels = (3,)
    version = "2"
    data_parallel = True  # both views' embeddings of the global batch

    @dataclass
    class Config:
        loss: str = "softmax"  # one of LOSSES
        temperature: float = 0.07  # softmax and nce
        feat_dim: int = 128
        nce_negatives: int = 4096  # noise samples per anchor (with replacement)
        triplet_margin: float = 0.5  # alpha
        spring_margin: float = 1.0  # m
        squared_distances: bool = False  # spring and triplet on d^2 (Hadsell's, FaceNet's)

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_choice("loss", cfg.loss, LOSSES)
        check_positive(cfg, "temperature", "nce_negatives", "feat_dim")
        for key in ("triplet_margin", "spring_margin"):
            if not getattr(cfg, key) >= 0:
                raise ValueError(f"{key} must be at least 0, got {getattr(cfg, key)}")

    def __init__(self, backbone: nn.Module, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        if ctx.channels != 3:
            raise ValueError(f"CMC splits RGB images into L and ab and needs 3 input channels; "
                             f"this dataset has {ctx.channels}")
        self.check_config(cfg)
        if len(ctx.input_mean) != 3 or len(ctx.input_std) != 3:
            raise ValueError("CMC needs ctx.input_mean and ctx.input_std (3 values each) to undo "
                             "the input normalisation before converting to Lab")
        self.backbone_ab = copy.deepcopy(backbone)
        self.proj_l = nn.Linear(ctx.feature_dim, cfg.feat_dim)
        self.proj_ab = nn.Linear(ctx.feature_dim, cfg.feat_dim)
        self.z_l_to_ab, self.z_ab_to_l = NCENormaliser(), NCENormaliser()  # NCE's two Z
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

    def positive_pairs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """CMC's positive pair of each image, for the geometry evaluator: its normalised L and
        ab embeddings (the loss study's alignment and uniformity, sec. 3.3)."""
        return self.embed(images)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        z_l, z_ab = (gather(z) for z in self.embed(views[0]))
        l_to_ab, ab_to_l = self._directions(z_l, z_ab)
        return {"loss": l_to_ab + ab_to_l, "loss_l_to_ab": l_to_ab.detach(),
                "loss_ab_to_l": ab_to_l.detach()}

    def _directions(self, z_l: Tensor, z_ab: Tensor) -> tuple[Tensor, Tensor]:
        cfg, b = self.cfg, len(z_l)
        if cfg.loss == "softmax":
            return (info_nce(z_l, z_ab, cfg.temperature), info_nce(z_ab, z_l, cfg.temperature))
        if cfg.loss == "nce":
            with torch.autocast(z_l.device.type, enabled=False):  # similarities in float32
                sim = z_l @ z_ab.T  # sim[i, j]: L of i against ab of j; its transpose the reverse
            noise_ab = sample_other_indices(b, cfg.nce_negatives, sim.device)
            noise_l = sample_other_indices(b, cfg.nce_negatives, sim.device)
            pos, n, tau = sim.diagonal(), self.ctx.dataset_size, cfg.temperature
            to_ab, to_l = sim.gather(1, noise_ab), sim.T.gather(1, noise_l)
            return (nce(pos, to_ab, tau, n, normaliser=self.z_l_to_ab(to_ab, tau, n)),
                    nce(pos, to_l, tau, n, normaliser=self.z_ab_to_l(to_l, tau, n)))
        others = other_indices(b, z_l.device)
        fn, margin = ((triplet_margin, cfg.triplet_margin) if cfg.loss == "triplet"
                      else (spring, cfg.spring_margin))
        sq = cfg.squared_distances
        return (fn(z_l, z_ab, z_ab[others], margin, squared=sq),
                fn(z_ab, z_l, z_l[others], margin, squared=sq))
