"""C2BIN: contrasting batch-wise cluster assignments while bootstrapping instances.

"Learning Representations by Contrasting Clusters While Bootstrapping Instances" (C2BIN, an
anonymous ICLR 2021 submission): section 3, equations 1-8, with the hyper-parameters of its
appendix tables 5 (representation learning, section 4.1) and 10 (clustering, section 4.3).

Networks (sec. 3.1, Fig. 3). The runner E_theta is the backbone F_theta followed by the
instance projector G^a_theta; the follower E_phi is a copy of both that takes no gradient and
follows the runner by eq. 8 with a constant momentum gamma; the instance predictor P^a sits on
the runner only. One linear cluster predictor P^{c,k} per cluster size K reads the runner's
backbone features r (sec. 3.3: "a linear function whose takes r_i as an input").

The loss, for two views x' and x'' of each of the n images of a batch:

- eq. 1: L_align = 1 - cos(P^a(G^a_theta(F_theta(x'))), G^a_phi(F_phi(x''))), the mean over the
  batch. One direction, as printed: x' goes through the runner, x'' through the follower.
- eq. 2-3: z^c_i = P^{c,k}(r_i), "a cluster membership distribution" of image i: we read the
  linear output as logits and take their softmax. Column j of the [n, K] matrix of a view is
  the batch-wise cluster assignment c_j (BCA). Both views pass through F_theta and P^{c,k}
  (c' from x', c'' from x'').
- eq. 4: L_bca = (1/K) sum_i -log(exp(c'_i . c''_i / tau) / sum_{j != i} exp(c'_i . c''_j / tau)),
  as printed: the anchors are the columns of view x' only, the negatives the other view's
  K - 1 columns, and the positive is left out of the denominator. The similarity: we read
  c'_i . c''_j as the cosine of the two columns, as in CC's cluster contrast (Li et al. 2021),
  which this branch extends, and as contrastive papers write sim(u, v). The plain dot product
  (`bca_similarity="dot"`; eq. 1, unlike eq. 4, writes its norms out) cannot be what was
  trained: it grows with the batch size n, and for one-hot assignments it gives every column
  the same loss whether the clusters are balanced or all images share one
  (log(K - 1) - n / (K tau) either way), so only the entropy term stands against collapse. On
  `clustering_cpu` the dot product collapsed every head to one cluster (head ACC 10.2%, NMI 0,
  k-means ACC 38.7%); the cosine gave 71.8%, 68.2% and 74.2%.
- eq. 5: L_clust^k = L_bca - lambda_ent H(s), with s_j = sum_i c_j(i) the mass of cluster j in
  the batch. H(s) = -sum_j s_j log s_j is an entropy only for a distribution, so s is
  normalised to sum to 1 (the mean assignment). The text defines s on the unprimed c; we take
  the view x' that eq. 4 anchors on.
- eq. 6: L_clust = sum over the cluster sizes K of L_clust^K (a sum, not a mean).
- eq. 7: L_total = L_align + lambda_clust L_clust.
- eq. 8: phi <- gamma phi + (1 - gamma) theta after every optimiser step, gamma constant.

Cluster sizes (`cluster_sizes`) are absolute numbers or relative to the run's K (the number of
classes, or a wrong-K variant's K): `32` is 32 clusters, `"K"` is K and `"4K"` four times K.
Table 5 uses {32, 64, 128} for every dataset; Table 10 uses {10, 40, 160} on CIFAR-10 and
STL-10 and {20, 40, 160} on CIFAR-100's 20 superclasses, i.e. ["K", 40, 160].

Presets (`preset`), each value from its table; Config's defaults are the clustering preset:

| key | representation (Table 5) | clustering (Table 10) |
| --- | --- | --- |
| lambda_cluster (lambda_clust) | 2.0 | 1.0 |
| lambda_entropy (lambda_ent) | 1.0 | 1.0 |
| momentum (gamma) | 0.990 | 0.995 |
| temperature (tau) | 0.5 | 1.0 |
| cluster_sizes | [32, 64, 128] | ["K", 40, 160] |
| proj_hidden_dim, pred_hidden_dim | 512, 512 | 512, 512 |

The tables' optimiser, schedule, epochs and backbone belong to the suites `c2bin_representation`
(LARS, constant LR 0.2, 500 epochs, ResNet-18) and `c2bin_clustering` (Adam, cosine 3e-4 to 0,
300 epochs, ResNet-34).

Readings where the paper is not explicit (not deviations: the paper allows them):

- "MLP(512, 512) ReLU" (Tables 5 and 10) is read as input 512 (the representation dim) and a
  512-wide hidden layer with ReLU; the projector's output d_a is 128, "as in Chen et al.
  (2020a;c)" (sec. 3.2: SimCLR's and MoCo v2's 128), and the predictor maps 128 -> 512 -> 128.
  The hidden layers keep BatchNorm as in BYOL, which C2BIN's runner and follower follow (the
  tables name only the ReLU); `mlp_batchnorm=false` removes it.
- The predictor P^a belongs to the runner (Table 5 writes P^a_theta) and is not copied to the
  follower.

Version 2 is this implementation of the paper; version 1 (before the paper's text was at hand)
was a BYOL + CC hybrid and its records are not comparable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from crlbench.distributed import gather
from crlbench.methods.ema import EMATarget
from crlbench.methods.heads import mlp
from crlbench.methods.losses import bca_contrast, cluster_mass_entropy, cosine_distance
from crlbench.protocol import Batch, Method, check_choice, check_positive

SIMILARITIES = ("dot", "cosine")
_RELATIVE = re.compile(r"^(\d*)K$")


def resolve_cluster_sizes(sizes: list[Any], k: int) -> list[int]:
    """Cluster sizes as numbers: an int is absolute, "K" is k and "nK" is n * k. ValueError
    for anything else, or for a size below 2 (eq. 4 needs a negative)."""
    out = []
    for size in sizes:
        match = _RELATIVE.match(size) if isinstance(size, str) else None
        if isinstance(size, int) and not isinstance(size, bool):
            value = size
        elif match:
            value = int(match.group(1) or 1) * k
        elif isinstance(size, str) and size.isdigit():
            value = int(size)
        else:
            raise ValueError(f"cluster_sizes entries are numbers (32), 'K' or multiples such as "
                             f"'4K'; got {size!r}")
        if value < 2:
            raise ValueError(f"cluster size {size!r} gives {value} clusters; eq. 4 needs at "
                             "least 2")
        out.append(value)
    if not out:
        raise ValueError("cluster_sizes is empty; give at least one size")
    return out


class C2BIN(Method):
    """C2BIN: bootstrapped instance alignment plus contrast of batch-wise cluster assignments."""

    name = "c2bin"
    kept_state = ("backbone", "heads")  # cluster_logits: the predictors
    num_views = 2
    version = "2"
    data_parallel = True  # alignment per sample; the assignment columns of the global batch
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Table 5: the representation-learning setting of section 4.1.
        "representation": {"lambda_cluster": 2.0, "lambda_entropy": 1.0, "momentum": 0.990,
                           "temperature": 0.5, "cluster_sizes": [32, 64, 128],
                           "proj_hidden_dim": 512, "pred_hidden_dim": 512},
        # Table 10: the clustering setting of section 4.3.
        "clustering": {"lambda_cluster": 1.0, "lambda_entropy": 1.0, "momentum": 0.995,
                       "temperature": 1.0, "cluster_sizes": ["K", 40, 160],
                       "proj_hidden_dim": 512, "pred_hidden_dim": 512},
    }

    @dataclass
    class Config:
        preset: str = "clustering"  # representation (Table 5) | clustering (Table 10)
        lambda_cluster: float = 1.0  # lambda_clust of eq. 7 (Table 10)
        lambda_entropy: float = 1.0  # lambda_ent of eq. 5 (Table 10)
        momentum: float = 0.995  # gamma of eq. 8, constant (Table 10)
        temperature: float = 1.0  # tau of eq. 4 (Table 10)
        cluster_sizes: list[Any] = field(default_factory=lambda: ["K", 40, 160])  # Table 10
        proj_hidden_dim: int = 512  # G^a: MLP(512, 512) ReLU (Table 10)
        pred_hidden_dim: int = 512  # P^a: MLP(512, 512) ReLU (Table 10)
        proj_dim: int = 128  # d_a, "as in Chen et al. (2020a;c)" (sec. 3.2)
        mlp_batchnorm: bool = True  # BN in G^a's and P^a's hidden layer, as in BYOL
        bca_similarity: str = "cosine"  # of eq. 4's columns (our reading); or "dot"

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_choice("bca_similarity", cfg.bca_similarity, SIMILARITIES)
        check_positive(cfg, "temperature", "proj_dim", "proj_hidden_dim", "pred_hidden_dim")
        resolve_cluster_sizes(list(cfg.cluster_sizes), k=2)  # the form; K is known at build

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        self.check_config(cfg)
        self.cluster_sizes = resolve_cluster_sizes(list(cfg.cluster_sizes), ctx.num_clusters)
        bn = cfg.mlp_batchnorm
        self.projector = mlp(ctx.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim, hidden_bn=bn)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim, hidden_bn=bn)
        self.heads = nn.ModuleList(nn.Linear(ctx.feature_dim, k) for k in self.cluster_sizes)
        self.follower = EMATarget(self._runner(), cfg.momentum, ctx.total_steps, cosine=False)

    def _runner(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projector)

    def describe(self) -> dict[str, Any]:
        return {"cluster_sizes": self.cluster_sizes}

    def cluster_logits(self, feats: Tensor) -> list[Tensor]:
        """Every cluster predictor's logits, in the order of cluster_sizes."""
        return [head(feats) for head in self.heads]

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        r1, r2 = (self.backbone(v) for v in views)
        prediction = self.predictor(self.projector(r1))
        with torch.no_grad():  # the follower takes no gradient (eq. 8)
            target = self.follower(views[1])
        align = cosine_distance(prediction, target)  # eq. 1
        bca, entropy = [], []
        for a, b in zip(self.cluster_logits(r1), self.cluster_logits(r2), strict=True):
            p1, p2 = gather(a.float().softmax(dim=1)), gather(b.float().softmax(dim=1))
            bca.append(bca_contrast(p1, p2, cfg.temperature, cfg.bca_similarity))  # eq. 4
            entropy.append(cluster_mass_entropy(p1))  # H(s) of eq. 5
        bca_sum, entropy_sum = sum(bca), sum(entropy)  # eq. 6
        cluster = bca_sum - cfg.lambda_entropy * entropy_sum  # eq. 5 summed by eq. 6
        loss = align + cfg.lambda_cluster * cluster  # eq. 7
        return {"loss": loss, "align": align.detach(), "bca": bca_sum.detach(),
                "entropy": entropy_sum.detach()}

    def after_step(self, step: int) -> None:
        self.follower.update(self._runner(), step)  # eq. 8
