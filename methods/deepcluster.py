"""DeepCluster: k-means on the network's own features gives pseudo-labels for a classifier.

Caron, Bojanowski, Joulin, Douze. "Deep Clustering for Unsupervised Learning of Visual Features",
ECCV 2018. Before every epoch the whole training set is embedded (un-augmented, eval mode, no
gradient), the features are PCA-whitened, L2-normalised and clustered with k-means; each image's
cluster is its pseudo-label for the epoch. The classifier on top of the backbone is
re-initialised (its old outputs name last epoch's clusters, which k-means numbers anew) and the
network is trained with cross-entropy on one augmented view per image (the objective as the
review of Senanou, Mensah, Mohamed, Sanya, "Self-supervised visual representation learning:
SimCLR & Deep Clustering", sec. 3, prints it: the mean over images of the classifier's
cross-entropy against the k-means assignment). Defaults follow the paper's
implementation details and its code (facebookresearch/deepcluster, clustering.py and main.py):

- PCA to 256 dimensions with whitening (`PCAMatrix(eigen_power=-0.5)`), then L2 normalisation;
  fewer dimensions when the feature width or the sample count allows fewer (components with no
  variance are dropped);
- k-means with 20 Lloyd iterations and one run (`clus.niter = 20`, Faiss's default `nredo = 1`),
  its seed changing every epoch (here derived from the run's seed and the epoch, so a run is
  reproducible and a resumed run replays the same clusters);
- clusters reassigned every epoch (`--reassign 1`; `reassign_epochs` here, whole epochs only),
  the top layer re-initialised at each reassignment with weights N(0, 0.01^2) and zero bias.
  An ImageNet epoch is thousands of steps; on a small dataset one epoch may be too few for the
  fresh classifier to learn anything, and `reassign_epochs` > 1 gives it more.

Differences, by necessity of the harness:

- K is the suite's cluster count `ctx.num_clusters` (the paper over-clusters ImageNet with
  K = 10000) so that the classifier is a cluster head that can be scored against the classes.
  `overcluster` multiplies it; with a factor above 1 the head has overcluster * K columns and is
  scored only as `head0_k{K'}` (no `head_acc`).
- The paper samples images uniformly over pseudo-classes (`UnifLabelSampler`) so that large
  clusters do not dominate. The harness draws batches uniformly over images, so each sample's
  loss is weighted by N / (K' n_c), where n_c is the size of its cluster and K' the number of
  non-empty clusters. These weights average 1 over the dataset and give the loss the same
  expectation as the paper's sampler; empty clusters get weight 0 and are simply never targets.
  (Inside k-means, crlbench's k-means re-seeds an empty cluster at the point farthest from its
  centre; the paper's section 3.3 perturbs the centroid of a random non-empty cluster.)
- The classifier is a linear layer on the backbone features (the paper's AlexNet keeps two
  trained fully connected layers below it and clusters their output; here the features that are
  clustered are those that every evaluator sees). No Sobel filtering: the suite fixes the input.
- Whitening scales every kept component to unit variance. The paper keeps 256 of AlexNet's 4096
  dimensions, only the leading components; when the backbone is at most `pca_dim` wide (the tiny
  ConvNet: 4 x width; ResNet-18: 512, halved) little or nothing is cut, and low-variance (noise)
  directions weigh as much in k-means as the leading ones, which can blur the clusters.
  `whiten=False` (PCA only) or a smaller `pca_dim` avoids that.
- The paper builds a fresh optimiser without momentum for the top layer every epoch. Here the
  suite's optimiser is shared and built once, so its state (momentum, Adam moments) for the
  classifier carries over the re-initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crlbench.evaluate.kmeans import kmeans
from crlbench.protocol import Batch, EpochLoader, Method
from crlbench.seeding import derive_seed

_KMEANS_STREAM = 1001  # derive_seed tags: independent streams for k-means and the re-init
_INIT_STREAM = 1002


@torch.no_grad()
def pca_whiten(x: Tensor, dim: int, whiten: bool = True, rel_tol: float = 1e-6) -> Tensor:
    """Project the rows of `x` [N, D] on their top principal components, each scaled to unit
    variance if `whiten` (Faiss's PCAMatrix with eigen_power -0.5). At most `dim` components, and
    none whose variance is below `rel_tol` times the largest (they would only amplify rounding
    noise)."""
    x = x.float()
    x = x - x.mean(dim=0)
    cov = (x.T @ x).double() / max(len(x) - 1, 1)
    variances, vectors = torch.linalg.eigh(cov)  # ascending
    variances, vectors = variances.flip(0), vectors.flip(1)
    keep = int((variances > rel_tol * variances[0]).sum().clamp(1, dim))
    proj = vectors[:, :keep]
    if whiten:
        proj = proj / variances[:keep].clamp_min(1e-30).sqrt()
    return x @ proj.float()


def balanced_weights(labels: Tensor, k: int) -> Tensor:
    """Per-cluster loss weights N / (K' n_c) for the pseudo-labels `labels` [N] in [0, k): a
    sample's weight is that of its cluster, K' counts the non-empty clusters, and an empty cluster
    gets 0. Uniform sampling with these weights equals, in expectation, the paper's sampling of a
    non-empty cluster uniformly and then an image in it; the weights of the N samples average 1."""
    counts = torch.bincount(labels, minlength=k).float()
    nonempty = counts > 0
    return torch.where(nonempty, len(labels) / (nonempty.sum() * counts.clamp_min(1)), 0.0)


class DeepCluster(Method):
    """DeepCluster (Caron et al. 2018): classify k-means pseudo-labels, re-clustered every epoch."""

    name = "deepcluster"
    kept_state = ("backbone", "classifier")  # cluster_logits
    num_views = 1
    # a per-sample loss; the k-means of before_epoch is worker 0's (the trainer broadcasts it)
    data_parallel = True

    @dataclass
    class Config:
        pca_dim: int = 256
        whiten: bool = True  # see the module docstring: at D <= pca_dim this equalises all axes
        overcluster: int = 1  # k-means K = overcluster * ctx.num_clusters
        kmeans_iters: int = 20
        kmeans_restarts: int = 1
        reassign_epochs: int = 1  # epochs between two clusterings (the code's --reassign)
        init_std: float = 0.01  # the re-initialised classifier's weights ~ N(0, init_std^2)

    def __init__(self, backbone, ctx, cfg: Config):
        super().__init__(backbone, ctx, cfg)
        if cfg.overcluster < 1 or cfg.reassign_epochs < 1:
            raise ValueError(f"overcluster and reassign_epochs must be >= 1, got "
                             f"{cfg.overcluster} and {cfg.reassign_epochs}")
        self.k = cfg.overcluster * ctx.num_clusters
        if self.k > ctx.dataset_size:
            raise ValueError(f"DeepCluster needs at least K = {self.k} training samples for "
                             f"k-means, got {ctx.dataset_size}")
        self.classifier = nn.Linear(ctx.feature_dim, self.k)
        # -1: not assigned yet (before the first epoch)
        self.register_buffer("pseudo_labels", torch.full((ctx.dataset_size,), -1, dtype=torch.long))
        self.register_buffer("cluster_weights", torch.zeros(self.k))

    @torch.no_grad()
    def embed(self, loader: EpochLoader) -> Tensor:
        """Backbone features of the whole training set in dataset order, in eval mode."""
        was_training = self.training
        self.eval()
        feats = torch.cat([self.backbone(x).float() for x, _ in loader])
        self.train(was_training)
        return feats

    @torch.no_grad()
    def before_epoch(self, epoch: int, loader: EpochLoader) -> None:
        cfg, n = self.cfg, self.ctx.dataset_size
        if epoch % cfg.reassign_epochs and int(self.pseudo_labels.min()) >= 0:
            return  # keep the labels and the classifier (both restored with the state on resume)
        feats = self.embed(loader)
        if len(feats) != n:
            raise ValueError(f"the epoch loader gave {len(feats)} samples, ctx.dataset_size is {n}")
        z = F.normalize(pca_whiten(feats, min(cfg.pca_dim, n - 1), cfg.whiten), dim=1)
        labels, _, _ = kmeans(z, self.k, restarts=cfg.kmeans_restarts, iters=cfg.kmeans_iters,
                              seed=derive_seed(self.ctx.seed, epoch, _KMEANS_STREAM))
        self.pseudo_labels.copy_(labels)
        self.cluster_weights.copy_(balanced_weights(labels, self.k))
        self.reset_classifier(epoch)

    @torch.no_grad()
    def reset_classifier(self, epoch: int) -> None:
        """Fresh N(0, init_std^2) weights and zero bias, drawn on the CPU from a seeded generator
        (the same on every device)."""
        gen = torch.Generator().manual_seed(derive_seed(self.ctx.seed, epoch, _INIT_STREAM))
        w = self.classifier.weight
        w.copy_(torch.randn(w.shape, generator=gen) * self.cfg.init_std)
        self.classifier.bias.zero_()

    def cluster_logits(self, feats: Tensor) -> Tensor:
        with torch.autocast(feats.device.type, enabled=False):
            return self.classifier(feats.float())

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        logits = self.cluster_logits(self.backbone(views[0]))
        targets = self.pseudo_labels[batch.indices]
        ce = F.cross_entropy(logits, targets, reduction="none")
        loss = (self.cluster_weights[targets] * ce).mean()
        return {"loss": loss, "ce": ce.detach().mean()}
