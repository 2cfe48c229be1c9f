"""Estimating the number of clusters K from features: silhouette and the elbow of the inertia.

the README's "Evaluation" section, Wrong K: k-means (kmeans.py) is run for every k of a range
on a seeded sample of the features, and K is estimated twice:

- silhouette (Rousseeuw 1987, "Silhouettes: a graphical aid to the interpretation and
  validation of cluster analysis"): the k whose clustering has the largest mean silhouette.
  Per point, a = mean Euclidean distance to the other points of its cluster, b = the smallest
  mean distance to the points of another cluster, s = (b - a) / max(a, b); as in scikit-learn's
  `silhouette_score`, a point alone in its cluster has s = 0, and so has a point with
  a = b = 0 (duplicates).
- elbow (Thorndike 1953, "Who belongs in the family?"): the knee of the curve of log inertia
  against k, found with the difference curve and the threshold of Kneedle (Satopää, Albrecht,
  Irwin & Raghavan 2011, "Finding a 'Kneedle' in a Haystack: Detecting Knee Points in System
  Behavior", sec. III). Both axes are scaled to [0, 1]; the decreasing convex curve is flipped,
  so the difference curve is y_d = (1 - y) - x; the candidate is the k where y_d is largest,
  and it is the knee when y_d later falls below the threshold T = y_d(candidate) - S *
  mean(x_{i+1} - x_i), with the paper's sensitivity S = 1. Where it does not (a flat or a
  straight curve), or the largest y_d is at an end of the range, there is no elbow estimate
  (NaN in the record).

  What differs from the paper, and why, measured on well-separated Gaussian blobs (K = 3..20,
  2-D and 10-D, 30 or 100 points a blob, three seeds, k = 2..30: 216 curves):
  (1) the candidate is the largest y_d, where Kneedle takes the first local maximum that
  passes the threshold (its "first knee"): on k-means curves a wiggle in the tail is a local
  maximum of its own, and the first-knee rule stopped there in 6 of the 216 curves, the largest
  y_d in none. For a single bend the two agree. (2) No smoothing spline first, as the
  candidate is not a local feature. (3) The curve is log inertia, as in the gap statistic
  (Tibshirani, Walther & Hastie 2001, who work with log W_k), and the running minimum of it
  over k, as the optimal inertia never grows with k while k-means' (an upper bound of it) can.
  On the linear scale the first few centres take most of the variance, the curve is flat long
  before K and the knee comes early: the same rule on linear inertia found K in 83 of the 216
  curves (K = 20 in 10-D gave 12-14). Inertia exactly 0 (duplicated points) is floored at
  1e-12 of the largest before the log.

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
    k_elbow: int | None  # knee of the log-inertia curve; None where there is none


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


def knee_index(x: Sequence[float], y: Sequence[float], *, sensitivity: float = 1.0) -> int | None:
    """Index of the knee of a decreasing convex curve, or None (see the module's docstring).

    `x` increasing. Kneedle's difference curve y_d = (1 - y) - x on the unit square (Satopää
    et al. 2011, sec. III); the largest y_d is the knee if y_d falls below its threshold
    y_d(max) - S * mean(x_{i+1} - x_i) somewhere after it.
    """
    if len(x) != len(y):
        raise ValueError(f"need one y per x, got {len(x)} and {len(y)}")
    xs = torch.tensor([float(v) for v in x], dtype=torch.float64)
    ys = torch.tensor([float(v) for v in y], dtype=torch.float64)
    n = len(xs)
    if n < 3:
        return None
    x_span, y_span = float(xs[-1] - xs[0]), float(ys.max() - ys.min())
    if x_span <= 0 or y_span <= 0:
        return None
    xs = (xs - xs[0]) / x_span
    ys = (ys - ys.min()) / y_span
    diff = (1.0 - ys) - xs
    best = int(diff.argmax())  # the first on ties
    if best in (0, n - 1):
        return None
    threshold = float(diff[best]) - sensitivity / (n - 1)  # 1 / (n - 1): the mean x step
    # a tolerance, so that a one-step plateau (a fall of exactly S steps) is not a bend
    return best if float(diff[best + 1:].min()) < threshold - 1e-9 else None


def elbow_k(ks: Sequence[int], inertias: Sequence[float]) -> int | None:
    """The elbow of k-means inertia over `ks`: `knee_index` of the running minimum of log
    inertia (see the module's docstring for the rule and how it differs from Kneedle); None
    where the curve has no knee."""
    if len(ks) != len(inertias) or not ks:
        raise ValueError(f"need one inertia per k, got {len(ks)} ks and {len(inertias)} inertias")
    values = [float(v) for v in inertias]
    top = max(values)
    if top <= 0:
        return None
    floor = 1e-12 * top
    # The optimal inertia never grows with k; k-means' is an upper bound of it that can (a
    # local minimum at one k), and the running minimum is the tighter bound.
    values = torch.tensor(values, dtype=torch.float64).cummin(dim=0).values.tolist()
    knee = knee_index(ks, [math.log(max(v, floor)) for v in values])
    return None if knee is None else int(ks[knee])


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
