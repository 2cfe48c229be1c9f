"""Seed statistics for the tables: is a difference real or seed noise?

Pure functions over the per-seed values of the records (no I/O), each a transcription of a
textbook procedure computed with scipy:

- `t_interval`: the two-sided Student-t interval of a mean over seeds,
  mean +- t_{n-1, (1+level)/2} * s / sqrt(n).
- `bootstrap_interval`: the percentile bootstrap interval of the mean (scipy.stats.bootstrap),
  seeded, for readers who prefer no normality assumption.
- `paired_test`: the two-sided paired t-test of two methods over the seeds both ran
  (scipy.stats.ttest_rel). Runs with one seed share the data order and the augmentation
  draws, so they are paired by seed; pairing removes the seed's share of the variance.
- `tied_with_best`: the methods of one table column whose paired test against the best mean
  does not reject equality at `alpha` (no correction for the several comparisons: more
  methods are marked as tied, which is the cautious side for a leaderboard).
- `average_ranks`, `friedman_test`, `nemenyi_cd`: comparing methods over several datasets
  (Demsar 2006, "Statistical comparisons of classifiers over multiple data sets", JMLR 7):
  ranks per dataset with ties averaged, the Friedman test, and the critical difference of the
  Nemenyi post-hoc test, CD = q_alpha * sqrt(k (k + 1) / (6 N)), where q_alpha is the
  studentized range quantile for k groups divided by sqrt(2) (Demsar's Table 5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95
ALPHA = 0.05


def _scipy():
    """scipy.stats, imported on first use: it costs about a second, and a table whose cells
    hold one seed each (or that shows no interval) never needs it."""
    from scipy import stats

    return stats


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """The Student-t interval of the mean; None with fewer than two values."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    half = _scipy().t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(values: Sequence[float], level: float = LEVEL, resamples: int = 9999,
                       seed: int = 0) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean; None with fewer than two values."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    result = _scipy().bootstrap((x,), np.mean, confidence_level=level, n_resamples=resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class PairedResult:
    """A paired t-test over the seeds two methods share."""

    n: int  # seeds both ran
    mean_difference: float | None  # a - b
    p_value: float | None  # None with fewer than two pairs


def paired_test(a: Mapping[int, float], b: Mapping[int, float]) -> PairedResult:
    """Two-sided paired t-test of `a` against `b` ({seed: value}) over their common seeds.
    Equal values on every seed give p = 1 (no evidence of a difference)."""
    seeds = sorted(set(a) & set(b))
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    if len(seeds) < 2:
        return PairedResult(len(seeds), float(np.mean(x - y)) if seeds else None, None)
    differences = x - y
    if np.allclose(differences, differences[0], rtol=1e-9, atol=1e-12):
        # no spread: t is 0/0 when all are equal (no difference) and infinite otherwise
        return PairedResult(len(seeds), float(differences[0]),
                            1.0 if differences[0] == 0 else 0.0)
    return PairedResult(len(seeds), float(differences.mean()),
                        float(_scipy().ttest_rel(x, y).pvalue))


def tied_with_best(values: Mapping[str, Mapping[int, float]], lower_is_better: bool = False,
                   alpha: float = ALPHA) -> dict[str, PairedResult | None]:
    """For one column ({method: {seed: value}}): the best method by mean (None for it) and
    every other method whose paired test against it does not reject equality at `alpha`
    (its PairedResult). A method sharing fewer than two seeds with the best cannot be
    tested and is left out."""
    means = {m: float(np.mean(list(v.values()))) for m, v in values.items() if v}
    if not means:
        return {}
    best = (min if lower_is_better else max)(means, key=means.__getitem__)
    tied: dict[str, PairedResult | None] = {best: None}
    for method in means:
        if method == best:
            continue
        result = paired_test(values[method], values[best])
        if result.p_value is not None and result.p_value >= alpha:
            tied[method] = result
    return tied


def average_ranks(scores: pd.DataFrame, lower_is_better: bool = False) -> pd.Series:
    """Mean rank of each method (columns) over datasets (rows), rank 1 the best, ties
    sharing the average of their ranks (Demsar 2006, sec. 3.2.2). Rows with a missing value
    are left out."""
    complete = scores.dropna()
    values = complete.to_numpy(dtype=float)
    ranks = _scipy().rankdata(values if lower_is_better else -values, axis=1)
    return pd.Series(ranks.mean(axis=0), index=scores.columns, name="average rank")


def friedman_test(scores: pd.DataFrame) -> float | None:
    """The Friedman test's p-value that all methods (columns) rank alike over the datasets
    (rows); None with fewer than 3 methods or 2 complete datasets."""
    complete = scores.dropna()
    if complete.shape[1] < 3 or complete.shape[0] < 2:
        return None
    return float(_scipy().friedmanchisquare(*(complete[c] for c in complete.columns)).pvalue)


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """q_alpha of the Nemenyi test for k methods: the studentized range quantile over sqrt 2."""
    if k < 2:
        raise ValueError(f"the Nemenyi test compares at least 2 methods, got {k}")
    return float(_scipy().studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def nemenyi_cd(k: int, n_datasets: int, alpha: float = ALPHA) -> float:
    """The critical difference of average ranks: two methods whose average ranks over
    `n_datasets` differ by less are not significantly different at `alpha`."""
    if n_datasets < 1:
        raise ValueError(f"the critical difference needs at least one dataset, got {n_datasets}")
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_datasets))
