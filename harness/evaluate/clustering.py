"""Scores of a clustering against the true classes: Hungarian ACC, NMI and ARI.

Definitions (the README's "Evaluation" section), all computed from the contingency matrix:
- ACC: the one-to-one matching of clusters to classes that maximises the number of matched
  samples (Kuhn 1955, via scipy's linear_sum_assignment), divided by the number of samples.
  When K != C the matrix is rectangular and the samples of unmatched clusters count as wrong.
- NMI: mutual information over the arithmetic mean of the two entropies (Strehl & Ghosh 2002),
  which is scikit-learn's default `normalized_mutual_info_score`, including its edge cases.
- ARI: the adjusted Rand index (Hubert & Arabie 1985) in the pair-counting form of
  scikit-learn's `adjusted_rand_score`, including its edge cases.

The contingency matrix is counted with torch.bincount on the labels' device; the scores are
then computed in float64 (ARI in exact Python integers, as pair counts overflow int64).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def contingency(pred: Tensor, truth: Tensor) -> Tensor:
    """Counts [K, C]: row = predicted cluster, column = true class, int64 on the input device.

    Labels may be any integers; rows and columns are the distinct values present, in sorted
    order, so clusters or classes that never occur take no row or column.
    """
    pred = torch.as_tensor(pred).reshape(-1)
    truth = torch.as_tensor(truth).reshape(-1).to(pred.device)
    if pred.shape != truth.shape:
        raise ValueError(f"pred has {pred.numel()} labels but truth has {truth.numel()}")
    _, p = torch.unique(pred, return_inverse=True)
    _, t = torch.unique(truth, return_inverse=True)
    k = int(p.max()) + 1 if p.numel() else 0
    c = int(t.max()) + 1 if t.numel() else 0
    return torch.bincount(p * c + t, minlength=k * c).reshape(k, c)


def hungarian_accuracy(pred: Tensor, truth: Tensor) -> float:
    """Fraction of samples whose cluster is matched to their class by the best 1-to-1 matching."""
    counts = contingency(pred, truth).cpu().numpy()
    n = counts.sum()
    if n == 0:
        raise ValueError("clustering accuracy of an empty labelling is undefined")
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / n)


def _entropy(marginal: Tensor) -> float:
    p = marginal[marginal > 0].double()
    total = p.sum()
    return float(-((p / total) * (p.log() - total.log())).sum())


def _mutual_info(counts: Tensor) -> float:
    counts = counts.double()
    rows, cols = counts.sum(1), counts.sum(0)
    if len(rows) == 1 or len(cols) == 1:
        return 0.0
    total = counts.sum()
    i, j = counts.nonzero(as_tuple=True)
    n_ij = counts[i, j]
    # log(n * n_ij / (a_i * b_j)) split into terms as sklearn does, to agree with it to the ulp
    p_ij = n_ij / total
    log_outer = -(rows[i] * cols[j]).log() + rows.sum().log() + cols.sum().log()
    terms = p_ij * (n_ij.log() - total.log()) + p_ij * log_outer
    terms = torch.where(terms.abs() < np.finfo(np.float64).eps, 0.0, terms)
    return max(float(terms.sum()), 0.0)


def nmi(pred: Tensor, truth: Tensor) -> float:
    """Normalised mutual information, arithmetic normalisation (= sklearn's default)."""
    counts = contingency(pred, truth).cpu()
    k, c = counts.shape
    # One cluster and one class (or no samples): both labellings are the same trivial split.
    if k == c and k <= 1:
        return 1.0
    mi = _mutual_info(counts)
    if mi == 0.0:
        return 0.0
    h_pred, h_true = _entropy(counts.sum(1)), _entropy(counts.sum(0))
    return mi / ((h_pred + h_true) / 2)


def ari(pred: Tensor, truth: Tensor) -> float:
    """Adjusted Rand index (= sklearn's adjusted_rand_score)."""
    counts = contingency(pred, truth).cpu()
    n = int(counts.sum())
    sum_squares = int((counts * counts).sum())
    # Ordered pairs of distinct samples: together in both / only in the cluster / only in
    # the class / in neither.
    together = sum_squares - n
    only_pred = int((counts.sum(1) ** 2).sum()) - sum_squares
    only_true = int((counts.sum(0) ** 2).sum()) - sum_squares
    neither = n * n - only_pred - only_true - sum_squares
    if only_pred == 0 and only_true == 0:
        return 1.0
    numerator = 2.0 * (together * neither - only_pred * only_true)
    denominator = (together + only_pred) * (only_pred + neither) + (together + only_true) * (
        only_true + neither
    )
    return numerator / denominator


def cluster_scores(pred: Tensor, truth: Tensor) -> dict[str, float]:
    """{"acc", "nmi", "ari"} of a clustering `pred` against the classes `truth`."""
    return {
        "acc": hungarian_accuracy(pred, truth),
        "nmi": nmi(pred, truth),
        "ari": ari(pred, truth),
    }
