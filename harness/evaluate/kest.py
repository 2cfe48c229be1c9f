"""Estimating the number of clusters K from features: silhouette and the elbow of the inertia.

the README's "Evaluation" section, Wrong K: k-means (kmeans.py) is run for every k of a range
on a seeded sample of the features, and K is estimated twice:

- silhouette (Rousseeuw 1987, "Silhouettes: a graphical aid to the interpretation and
  validation of cluster analysis"): the k whose clustering has the largest mean silhouette.
  Per point, a = mean Euclidean distance to the other points of its cluster, b = the smallest
  mean distance to the points of another cluster, s = (b - a) / max(a, b); as in scikit-learn's
  `silhouette_score`, a point alone in its cluster has s = 0, and so has a point with
  a = b = 0 (duplicates).
- elbow (Thorndike 1953, "Who belongs in the family?"), located by the kneedle rule (Satopää,
  Albrecht, Irwin & Raghavan 2011, "Finding a 'Kneedle' in a Haystack: Detecting Knee Points in
  System Behavior"): both axes of the (k, inertia) curve are scaled to [0, 1] and the knee is
  the k farthest from the straight line through the first and the last point.

The silhouette is computed on the device of the features in float64, with the pairwise
distances in row chunks and the per-cluster sums of distances as a matmul with the one-hot
labels (deterministic on the GPU, unlike scatter-adds). The distances do not depend on the
labels, so `silhouette_scores` scores several labellings of the same points in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .kmeans import kmeans

# Elements of one [chunk, N] float64 distance block (256 MiB).
_BLOCK = 1 << 25


@dataclass
class KEstimate:
    ks: list[int]
    inertia: list[float]  # k-means inertia for each k of ks
    silhouette: list[float]  # mean silhouette for each k; nan where k-means found < 2 clusters
    k_silhouette: int | None  # k of the largest silhouette (the smallest k on ties)
    k_elbow: int  # knee of the inertia curve


def silhouette_score(x: Tensor, labels: Tensor) -> float:
    """Mean silhouette of the rows of `x` [N, D] clustered by `labels` [N] (Euclidean).

    Equals sklearn.metrics.silhouette_score; like it, needs 2 <= number of labels <= N - 1.
    """
    return silhouette_scores(x, [labels])[0]


def silhouette_scores(x: Tensor, labelings: Sequence[Tensor]) -> list[float]:
    """`silhouette_score(x, labels)` for each labelling, sharing the pairwise distances."""
    if x.ndim != 2:
        raise ValueError(f"silhouette needs [N, D] features, got {tuple(x.shape)}")
    n = len(x)
    x = x.double()
    device = x.device
    onehots, inverses = [], []
    for labels in labelings:
        labels = torch.as_tensor(labels).reshape(-1).to(device)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} points")
        _, inverse = torch.unique(labels, return_inverse=True)
        k = int(inverse.max()) + 1 if n else 0
        if not 2 <= k <= n - 1:
            raise ValueError(f"silhouette needs 2 <= number of labels <= N - 1 = {n - 1}, got {k}")
        onehots.append(F.one_hot(inverse, k).double())
        inverses.append(inverse)
    if not onehots:
        return []
    # All labellings side by side: one matmul gives every labelling's per-cluster sums.
    stacked = torch.cat(onehots, dim=1)  # [N, sum of k]
    counts = stacked.sum(dim=0)
    offsets = [0]
    for onehot in onehots:
        offsets.append(offsets[-1] + onehot.shape[1])

    sq_norms = (x * x).sum(dim=1)
    totals = torch.zeros(len(onehots), dtype=torch.float64, device=device)
    chunk = max(1, _BLOCK // max(n, 1))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows = torch.arange(stop - start, device=device)
        sq = torch.addmm(sq_norms[None, :], x[start:stop], x.T, alpha=-2.0)
        sq += sq_norms[start:stop, None]
        dist = sq.clamp_min_(0.0).sqrt_()
        dist[rows, rows + start] = 0.0  # exactly, whatever the rounding of the expansion
        sums = dist @ stacked  # [chunk, sum of k]
        for j, inverse in enumerate(inverses):
            lo, hi = offsets[j], offsets[j + 1]
            own = inverse[start:stop]
            own_sums = sums[:, lo:hi]
            own_counts = counts[lo:hi]
            size = own_counts[own]
            a = own_sums[rows, own] / (size - 1).clamp_min(1.0)
            means = own_sums / own_counts
            means[rows, own] = math.inf
            b = means.min(dim=1).values
            denom = torch.maximum(a, b)
            keep = (size > 1) & (denom > 0)
            s = torch.where(keep, (b - a) / torch.where(keep, denom, 1.0), 0.0)
            totals[j] += s.sum()
    return [float(t) / n for t in totals]


def elbow_k(ks: Sequence[int], inertias: Sequence[float]) -> int:
    """Knee of the curve (ks, inertias) by the kneedle rule (Satopää et al. 2011).

    Both axes are scaled to [0, 1]; the knee is the k farthest from the line through the first
    and the last scaled point (the first such k on ties, so a flat curve gives ks[0]).
    """
    if len(ks) != len(inertias) or not ks:
        raise ValueError(f"need one inertia per k, got {len(ks)} ks and {len(inertias)} inertias")
    k = torch.tensor([float(v) for v in ks], dtype=torch.float64)
    y = torch.tensor([float(v) for v in inertias], dtype=torch.float64)
    k_span, y_span = float(k.max() - k.min()), float(y.max() - y.min())
    k = (k - k.min()) / k_span if k_span > 0 else torch.zeros_like(k)
    y = (y - y.min()) / y_span if y_span > 0 else torch.zeros_like(y)
    dk, dy = k[-1] - k[0], y[-1] - y[0]
    # |cross product| with the chord; dividing by the chord's length would not move the argmax
    distance = (dk * (y - y[0]) - dy * (k - k[0])).abs()
    return int(ks[int(distance.argmax())])


def estimate_k(
    x: Tensor,
    ks: Sequence[int],
    *,
    restarts: int = 3,
    iters: int = 300,
    seed: int,
) -> KEstimate:
    """Run seeded k-means for every k of `ks` (increasing, each 2 <= k <= N - 1) on the rows of
    `x` and estimate K by the silhouette and by the elbow of the inertia."""
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("estimate_k needs at least one k")
    if ks != sorted(set(ks)) or ks[0] < 2 or ks[-1] > len(x) - 1:
        raise ValueError(f"ks must increase within 2..N-1 = {len(x) - 1}, got {ks}")
    inertias: list[float] = []
    labelings: list[Tensor] = []
    for k in ks:
        labels, _, inertia = kmeans(x, k, restarts=restarts, iters=iters, seed=seed)
        inertias.append(inertia)
        labelings.append(labels)
    # With duplicated points (a collapsed representation) k-means may leave a single cluster,
    # whose silhouette is undefined.
    defined = [i for i, labels in enumerate(labelings) if len(torch.unique(labels)) >= 2]
    scores = silhouette_scores(x, [labelings[i] for i in defined])
    silhouette = [math.nan] * len(ks)
    for i, score in zip(defined, scores, strict=True):
        silhouette[i] = score
    k_silhouette = max(defined, key=lambda i: (silhouette[i], -i)) if defined else None
    return KEstimate(
        ks=ks,
        inertia=inertias,
        silhouette=silhouette,
        k_silhouette=ks[k_silhouette] if k_silhouette is not None else None,
        k_elbow=elbow_k(ks, inertias),
    )
