"""The critical-difference diagram of a suite (Demsar 2006, "Statistical comparisons of
classifiers over multiple data sets", JMLR 7, Fig. 1): each method at its average rank over the
suite's datasets on one metric (rank 1 the best, from the mean over seeds per dataset), the
Nemenyi critical difference as a bar, and a thick line under each largest group of methods
whose average ranks differ by less than it (not significantly different at alpha = 0.05).

Only datasets on which every method has a result count (ranks need a complete block), and
the Friedman test's p-value is in the title: where it is large, no difference is significant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from crlbench.errors import UserError
from crlbench.report.metrics import default_metric_order, metric_style
from crlbench.report.plot import suite_runs
from crlbench.report.records import line_label, ordered_labels
from crlbench.report.stats import ALPHA, average_ranks, friedman_test, nemenyi_cd
from crlbench.report.summary import Record, declared_lower_is_better, is_number


def dataset_scores(runs: list[Record], metric: str) -> pd.DataFrame:
    """The mean over seeds of `metric` per dataset (rows) and method (columns), the datasets
    where every method has one."""
    rows = [(line_label(r), r["dataset"], float(r["metrics"][metric])) for r in runs
            if is_number((r.get("metrics") or {}).get(metric))]
    if not rows:
        known = sorted({m for r in runs for m in (r.get("metrics") or {})})
        raise UserError(f"no record has metric {metric!r}; valid: {', '.join(known)}")
    frame = pd.DataFrame(rows, columns=["label", "dataset", "value"])
    scores = frame.pivot_table(index="dataset", columns="label", values="value", aggfunc="mean")
    labels = [label for label in ordered_labels(runs) if label in scores.columns]
    return scores[labels].dropna()


def cliques(ranks: pd.Series, cd: float) -> list[list[str]]:
    """The largest runs of methods, in rank order, whose average ranks span less than `cd`
    (each of at least two methods, none inside another)."""
    order = ranks.sort_values()
    names, values = list(order.index), list(order.to_numpy())
    groups: list[list[str]] = []
    for start in range(len(names)):
        end = start
        while end + 1 < len(names) and values[end + 1] - values[start] < cd:
            end += 1
        if end > start and not (groups and groups[-1][-1] == names[end]):
            groups.append(names[start:end + 1])
    return groups


def _default_metric(runs: list[Record]) -> str:
    names = {m for r in runs for m, v in (r.get("metrics") or {}).items() if is_number(v)}
    ranked = [m for m in default_metric_order(names) if metric_style(m).ranked]
    if not ranked:
        raise UserError("no record has a ranked metric to compare the methods on")
    return ranked[0]


@dataclass(frozen=True)
class Ranks:
    """A suite's average ranks on one metric and the statistics that judge them."""

    suite: str
    metric: str
    label: str  # the metric's display label
    ranks: pd.Series  # method -> average rank (1 the best)
    datasets: int  # the complete blocks ranked over
    cd: float  # Nemenyi's critical difference at ALPHA
    friedman: float | None  # the Friedman test's p-value
    left_out: tuple[str, ...] = ()  # methods without the metric on any dataset


def rank_summary(records: Iterable[Record], metric: str | None = None) -> Ranks:
    """The average ranks on `metric` (default: the suite's first table metric) over the
    datasets where every method that has it has it; `UserError` with fewer than 2 methods or
    datasets, or for a metric that is not ranked (an estimate such as a K)."""
    suite, runs = suite_runs(records)
    metric = metric or _default_metric(runs)
    style = metric_style(metric, frozenset(declared_lower_is_better(runs)))
    if not style.ranked:
        raise UserError(f"{metric} is an estimate judged by its error, not a score to rank")
    scores = dataset_scores(runs, metric)
    k, n = scores.shape[1], scores.shape[0]
    if k < 2 or n < 2:
        raise UserError(f"a critical-difference diagram compares at least 2 methods over at "
                        f"least 2 datasets on which all have {metric}; these records give {k} "
                        f"method(s) over {n} such dataset(s)")
    return Ranks(suite=suite, metric=metric, label=style.label, datasets=n,
                 ranks=average_ranks(scores, lower_is_better=style.lower_is_better),
                 cd=nemenyi_cd(k, n, ALPHA), friedman=friedman_test(scores),
                 left_out=tuple(label for label in ordered_labels(runs)
                                if label not in scores.columns))


def ranks_line(records: Iterable[Record], metric: str | None = None) -> str | None:
    """One sentence with the average ranks over the datasets (best first), the critical
    difference and the Friedman p-value; None with fewer than 2 methods or datasets."""
    try:
        summary = rank_summary(records, metric)
    except UserError:
        return None
    ranks = ", ".join(f"{name} {rank:.2f}" for name, rank in summary.ranks.sort_values().items())
    p_text = "" if summary.friedman is None else f"; Friedman p = {summary.friedman:.3g}"
    out = "" if not summary.left_out else \
        f"; not ranked (no {summary.label}): {', '.join(summary.left_out)}"
    return (f"Average rank on {summary.label} over {summary.datasets} datasets (1 the best): "
            f"{ranks}; Nemenyi CD = {summary.cd:.2f} at alpha = {ALPHA:g}{p_text}{out}.")


def cd_figure(records: Iterable[Record], metric: str | None = None) -> Figure:
    """The suite's critical-difference diagram on `metric` (default: its first table
    metric)."""
    summary = rank_summary(records, metric)
    ranks, cd, friedman, n = summary.ranks, summary.cd, summary.friedman, summary.datasets
    k, suite = len(ranks), summary.suite

    half = (k + 1) // 2
    fig = Figure(figsize=(7.0, 1.9 + 0.25 * half), layout="constrained")
    p_text = "" if friedman is None else f", Friedman p = {friedman:.3g}"
    fig.suptitle(f"{suite}: average rank on {summary.label} over {n} datasets\n"
                 f"CD = {cd:.2f} (Nemenyi, alpha = {ALPHA:g}){p_text}", fontsize="medium")
    ax = fig.subplots()
    ax.set_xlim(k + 0.5, 0.5)  # rank 1, the best, on the right as in Demsar's figure
    ax.set_ylim(-half * 0.5 - 0.4, 1.2)
    ax.set_yticks([])
    ax.spines[["left", "right", "bottom"]].set_visible(False)
    ax.xaxis.set_ticks_position("top")
    ax.set_xticks(range(1, k + 1))
    ax.plot([1, 1 + cd], [0.8, 0.8], color="black", linewidth=2, gid="cd")
    ax.text(1 + cd / 2, 0.95, "CD", ha="center", va="bottom", fontsize="small")
    order = ranks.sort_values()
    for i, (name, rank) in enumerate(order.items()):
        right = i < half  # the better half labelled on the right
        row = -(i if right else k - 1 - i) * 0.5 - 0.6
        end = 0.5 if right else k + 0.5
        ax.plot([rank, rank, end], [0, row, row], color="black", linewidth=0.8)
        ax.text(end, row, f" {name} ({rank:.2f}) ", ha="left" if right else "right",
                va="center", fontsize="small", gid="method")
    for j, group in enumerate(cliques(ranks, cd)):
        y = -0.2 - 0.12 * j
        ax.plot([ranks[group[0]] - 0.03, ranks[group[-1]] + 0.03], [y, y], color="black",
                linewidth=3, gid="clique")
    return fig
