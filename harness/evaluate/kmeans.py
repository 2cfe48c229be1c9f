"""Seeded k-means: greedy k-means++ seeding, Lloyd iterations, best of several restarts.

Definitions: Lloyd 1982 (iterations), Arthur & Vassilvitskii 2007 (k-means++ seeding) in its
greedy form, which is also scikit-learn's: each new centre is the best, by the resulting
potential, of 2 + floor(ln k) candidates drawn with probability proportional to the squared
distance to the nearest chosen centre. the README's "Evaluation" section runs it with K = the
number of classes and 10 restarts on the raw (not L2-normalised) features.

As in scikit-learn, `tol` is relative to the mean per-dimension variance of the data, and a
restart stops when the summed squared shift of the centres falls to it or below. An empty
cluster is re-seeded at the point farthest from its own centre (the next farthest for a second
empty cluster, and so on). All randomness comes from one torch.Generator seeded with `seed`
and drawn on the CPU, so the same seed gives the same draws on every device. On the CPU the
assignment step runs in blocks of rows that stay in cache, with a scatter-add for the sums
(one pass over the data per iteration); on a GPU it is one product and a one-hot matmul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_CPU_ROWS = 1024  # rows of one block of the CPU's assignment step (a few MB for D = 512)


def kmeans(
    x: Tensor,
    k: int,
    *,
    restarts: int = 10,
    iters: int = 300,
    tol: float = 1e-4,
    seed: int,
) -> tuple[Tensor, Tensor, float]:
    """Cluster the rows of `x` [N, D] into `k` clusters.

    Returns (labels int64 [N], centroids float32 [k, D], inertia), the restart with the lowest
    inertia (sum of squared distances of the points to their centroid; the first restart wins
    ties). Runs on the device of `x` in float32.
    """
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points ({n}), got k={k}")
    if restarts < 1 or iters < 1:
        raise ValueError(f"restarts and iters must be >= 1, got {restarts} and {iters}")
    x = x.float()
    # Centring does not change the clustering but keeps |x|^2 - 2 x.c + |c|^2 accurate.
    mean = x.mean(dim=0)
    x = x - mean
    sq_norms = (x * x).sum(dim=1)
    tol_abs = tol * float(x.var(dim=0, unbiased=False).mean())
    gen = torch.Generator().manual_seed(seed)

    best: tuple[Tensor, Tensor, float] | None = None
    for _ in range(restarts):
        centers = _kmeans_plus_plus(x, sq_norms, k, gen)
        centers = _lloyd(x, sq_norms, centers, iters, tol_abs)
        labels = _sq_dists(x, sq_norms, centers).argmin(dim=1)
        inertia = _inertia(x, labels, centers)
        if best is None or inertia < best[2]:
            best = (labels, centers, inertia)
    assert best is not None
    labels, centers, inertia = best
    return labels, centers + mean, inertia


def _sq_dists(x: Tensor, sq_norms: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances [N, K] of the points to the centres."""
    d = sq_norms[:, None] - 2.0 * (x @ centers.T) + (centers * centers).sum(dim=1)[None, :]
    return d.clamp_min_(0.0)


def _kmeans_plus_plus(x: Tensor, sq_norms: Tensor, k: int, gen: torch.Generator) -> Tensor:
    n, device = len(x), x.device
    trials = 2 + int(math.log(k))
    centers = x.new_empty(k, x.shape[1])
    first = int(torch.randint(n, (1,), generator=gen))
    centers[0] = x[first]
    closest = _sq_dists(x, sq_norms, centers[:1])[:, 0]
    for i in range(1, k):
        # Inverse-CDF sampling on a float64 cumulative sum (no 2^24 category limit as in
        # torch.multinomial); right=True never picks a point with zero weight.
        cdf = closest.double().cumsum(dim=0)
        u = torch.rand(trials, generator=gen, dtype=torch.float64).to(device) * cdf[-1]
        candidates = torch.searchsorted(cdf, u, right=True).clamp_max_(n - 1)
        cand_dists = torch.minimum(closest[None, :], _sq_dists(x, sq_norms, x[candidates]).T)
        best = int(cand_dists.double().sum(dim=1).argmin())
        centers[i] = x[candidates[best]]
        closest = cand_dists[best]
    return centers


def _lloyd(x: Tensor, sq_norms: Tensor, centers: Tensor, iters: int, tol_abs: float) -> Tensor:
    k = len(centers)
    for _ in range(iters):
        labels, sums = _assign_and_sum(x, centers)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        new = sums / counts.clamp_min(1.0)[:, None]
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            own = _sq_dists(x, sq_norms, centers).gather(1, labels[:, None]).flatten()
            new[empty] = x[own.topk(len(empty)).indices]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= tol_abs:
            break
    return centers


def _assign_and_sum(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Each point's nearest centre [N], and the sum of each cluster's points [k, D].

    |x|^2 is the same for every centre of a row, so the argmin skips it. On the CPU the rows
    go in blocks small enough to stay in cache between the two steps (one pass over the data
    instead of two), and the sums are a scatter-add, deterministic there. On a GPU one
    product and a one-hot matmul: no float atomics, so deterministic too.
    """
    k = len(centers)
    c_norms = (centers * centers).sum(dim=1)
    if x.device.type != "cpu":
        labels = torch.addmm(c_norms, x, centers.T, alpha=-2.0).argmin(dim=1)
        return labels, F.one_hot(labels, k).to(x.dtype).T @ x
    labels = torch.empty(len(x), dtype=torch.long)
    sums = x.new_zeros(k, x.shape[1])
    for start in range(0, len(x), _CPU_ROWS):
        rows = x[start:start + _CPU_ROWS]
        own = torch.addmm(c_norms, rows, centers.T, alpha=-2.0).argmin(dim=1)
        labels[start:start + _CPU_ROWS] = own
        sums.index_add_(0, own, rows)
    return labels, sums


def _inertia(x: Tensor, labels: Tensor, centers: Tensor) -> float:
    # blocks that stay in cache on the CPU (4x faster than 64k rows there)
    chunk = _CPU_ROWS if x.device.type == "cpu" else 65536
    total = 0.0
    for start in range(0, len(x), chunk):
        diff = x[start : start + chunk] - centers[labels[start : start + chunk]]
        total += float((diff * diff).sum(dim=1).double().sum())
    return total
