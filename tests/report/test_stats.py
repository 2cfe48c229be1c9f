"""Seed statistics against closed forms, scipy and the tables of Demsar (2006)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from crlbench.errors import UserError
from crlbench.report import stats

VALUES = [71.2, 70.4, 72.0, 70.9, 71.5]


def test_t_interval_is_mean_plus_minus_t_times_the_standard_error():
    mean, s, n = np.mean(VALUES), np.std(VALUES, ddof=1), len(VALUES)
    half = 2.7764451051977987 * s / math.sqrt(n)  # t_{4, 0.975}, from a table
    low, high = stats.t_interval(VALUES)
    assert low == pytest.approx(mean - half) and high == pytest.approx(mean + half)
    assert (low, high) == pytest.approx(sps.t.interval(0.95, n - 1, loc=mean,
                                                       scale=s / math.sqrt(n)))
    assert stats.t_interval([70.0]) is None


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    low, high = stats.bootstrap_interval(VALUES, seed=3)
    assert low < np.mean(VALUES) < high
    assert (low, high) == stats.bootstrap_interval(VALUES, seed=3)
    assert min(VALUES) <= low and high <= max(VALUES)  # a percentile interval of means
    assert stats.bootstrap_interval([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert stats.bootstrap_interval([5.0]) is None


def test_paired_test_is_scipys_ttest_rel_over_the_common_seeds():
    a = {0: 71.2, 1: 70.4, 2: 72.0, 3: 70.9, 4: 71.5}
    b = {0: 70.8, 1: 70.1, 2: 71.1, 3: 70.9, 4: 70.6, 9: 99.0}  # seed 9: a has none
    result = stats.paired_test(a, b)
    seeds = [0, 1, 2, 3, 4]
    expected = sps.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    assert result.n == 5 and result.p_value == pytest.approx(expected.pvalue)
    assert result.mean_difference == pytest.approx(np.mean([a[s] - b[s] for s in seeds]))
    # by hand: t = mean(d) / (sd(d) / sqrt(n)), p = 2 * (1 - F_t(|t|, n - 1))
    d = np.array([a[s] - b[s] for s in seeds])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    assert result.p_value == pytest.approx(2 * sps.t.sf(abs(t), 4))


def test_paired_test_edge_cases():
    assert stats.paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).p_value == 1.0
    assert stats.paired_test({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}).p_value == 0.0
    assert stats.paired_test({0: 1.0}, {0: 2.0}).p_value is None
    assert stats.paired_test({0: 1.0}, {1: 2.0}) == stats.PairedResult(0, None, None)


def test_pairing_by_seed_detects_what_unpaired_noise_hides():
    # seed effects dwarf the difference, which is the same on every seed
    seed_effect = [0.0, 3.0, -2.0, 5.0, -4.0]
    a = {s: 70 + e + 0.5 + 0.01 * s for s, e in enumerate(seed_effect)}
    b = {s: 70 + e for s, e in enumerate(seed_effect)}
    assert stats.paired_test(a, b).p_value < 1e-4
    assert sps.ttest_ind(list(a.values()), list(b.values())).pvalue > 0.5


def test_tied_with_best_marks_the_methods_seed_noise_cannot_separate():
    values = {
        "best": {0: 72.0, 1: 71.0, 2: 73.0, 3: 72.5, 4: 71.5},
        "close": {0: 71.9, 1: 71.3, 2: 72.5, 3: 72.6, 4: 71.2},  # within noise
        "worse": {0: 70.0, 1: 69.1, 2: 71.0, 3: 70.4, 4: 69.6},  # 2 lower on every seed
    }
    values["one_seed"] = {0: 71.0}
    tied = stats.tied_with_best(values)
    assert set(tied) == {"best", "close"} and tied["best"] is None
    assert tied["close"].p_value >= 0.05
    assert stats.paired_test(values["worse"], values["best"]).p_value < 0.05
    # lower is better: the order turns round
    flipped = stats.tied_with_best({m: {s: -v for s, v in d.items()} for m, d in values.items()},
                                   lower_is_better=True)
    assert set(flipped) == {"best", "close"}
    assert stats.tied_with_best({}) == {}


def test_average_ranks_follow_demsars_worked_example():
    # Demsar (2006), sec. 3.2.2: ties share the average rank; rank 1 is the best
    scores = pd.DataFrame({"A": [0.9, 0.8, 0.7], "B": [0.8, 0.8, 0.9], "C": [0.7, 0.6, 0.8]},
                          index=["d1", "d2", "d3"])
    ranks = stats.average_ranks(scores)
    # d1: A1 B2 C3; d2: A1.5 B1.5 C3; d3: A3 B1 C2
    assert ranks.to_dict() == pytest.approx({"A": 11 / 6, "B": 3 / 2, "C": 8 / 3})
    assert stats.average_ranks(-scores, lower_is_better=True).to_dict() == pytest.approx(
        ranks.to_dict())
    assert ranks.sum() == pytest.approx(3 * 4 / 2)  # the ranks of k methods sum to k(k+1)/2


def test_friedman_is_scipys_and_needs_three_methods():
    scores = pd.DataFrame({"A": [0.9, 0.8, 0.7, 0.85], "B": [0.8, 0.7, 0.9, 0.8],
                           "C": [0.7, 0.6, 0.8, 0.75]})
    expected = sps.friedmanchisquare(scores.A, scores.B, scores.C).pvalue
    assert stats.friedman_test(scores) == pytest.approx(expected)
    assert stats.friedman_test(scores[["A", "B"]]) is None


# Demsar (2006), Table 5(a): q_0.05 of the Nemenyi test for k = 2 .. 10
DEMSAR_Q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]


def test_nemenyi_q_matches_demsars_table():
    for k, q in zip(range(2, 11), DEMSAR_Q05, strict=True):
        assert stats.nemenyi_q(k) == pytest.approx(q, abs=2e-3), k


def test_nemenyi_cd_is_the_closed_form():
    # Demsar's sec. 3.2.2 example: k = 4 classifiers on N = 14 data sets, CD = 1.25
    assert stats.nemenyi_cd(4, 14) == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 14)),
                                                    abs=2e-3)
    assert stats.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.01)
    with pytest.raises(ValueError, match="at least 2 methods"):
        stats.nemenyi_q(1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=8))
def test_a_t_interval_contains_the_mean_and_widens_with_the_level(values):
    narrow, wide = stats.t_interval(values, 0.8), stats.t_interval(values, 0.99)
    mean = float(np.mean(values))
    assert narrow[0] <= mean + 1e-9 and mean - 1e-9 <= narrow[1]
    assert wide[0] <= narrow[0] + 1e-9 and narrow[1] <= wide[1] + 1e-9


# ---- the critical-difference diagram --------------------------------------------------------

def _suite_records(scores: dict[str, dict[str, float]], seeds=(0, 1)) -> list[dict]:
    """Records of a suite: method -> {dataset: knn5_acc}, the same value on every seed."""
    from report.test_plots import record

    return [record(method, seed, dataset=dataset, metrics={"knn5_acc": value})
            for method, by_dataset in scores.items() for dataset, value in by_dataset.items()
            for seed in seeds]


THREE = {"alpha": {"d1": 0.9, "d2": 0.8, "d3": 0.9, "d4": 0.7},
         "beta": {"d1": 0.8, "d2": 0.7, "d3": 0.8, "d4": 0.6},
         "gamma": {"d1": 0.7, "d2": 0.6, "d3": 0.7, "d4": 0.5}}


def test_the_cd_diagram_places_methods_at_their_average_ranks():
    from crlbench.report.cd import cd_figure

    fig = cd_figure(_suite_records(THREE))
    cd = stats.nemenyi_cd(3, 4)  # 2.343 * sqrt(12 / 24) = 1.657
    assert cd == pytest.approx(1.657, abs=2e-3)
    title = fig._suptitle.get_text()
    assert f"CD = {cd:.2f}" in title and "over 4 datasets" in title and "Friedman p" in title
    (ax,) = fig.axes
    labels = sorted(t.get_text().strip() for t in ax.texts if t.get_gid() == "method")
    assert labels == ["alpha (1.00)", "beta (2.00)", "gamma (3.00)"]
    # alpha-beta and beta-gamma are within the CD, alpha-gamma (2 ranks) is not
    cliques = [line.get_xdata() for line in ax.get_lines() if line.get_gid() == "clique"]
    assert len(cliques) == 2
    (bar,) = [line for line in ax.get_lines() if line.get_gid() == "cd"]
    assert bar.get_xdata()[1] - bar.get_xdata()[0] == pytest.approx(cd)


def test_cliques_are_the_largest_runs_within_the_cd():
    from crlbench.report.cd import cliques

    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.2, "d": 3.9})
    assert cliques(ranks, 1.3) == [["a", "b", "c"]]
    assert cliques(ranks, 0.8) == [["a", "b"], ["b", "c"]]
    assert cliques(ranks, 0.1) == []
    assert cliques(ranks, 10) == [["a", "b", "c", "d"]]


def test_the_cd_diagram_needs_two_datasets_every_method_ran(tmp_path, capsys):
    from crlbench.report.cd import cd_figure, dataset_scores
    from crlbench.report.figures import make_figures

    one = {m: {"d1": v["d1"]} for m, v in THREE.items()}
    with pytest.raises(UserError, match=r"at least 2 datasets .* give 3 method\(s\) over 1"):
        cd_figure(_suite_records(one))
    partial = {**THREE, "delta": {"d1": 0.95}}  # ran on d1 only: d2..d4 have no full block
    assert list(dataset_scores(_suite_records(partial), "knn5_acc").index) == ["d1"]
    made = make_figures(_suite_records(one), "all", tmp_path, "study")
    assert "cd" in made.skipped and "at least 2 datasets" in made.skipped["cd"]
    made = make_figures(_suite_records(THREE), "cd", tmp_path, "study", metric="knn5_acc")
    assert [p.suffix for p in made.written["cd"]] == [".png", ".pdf"]
