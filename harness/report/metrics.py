"""How each metric is displayed: its label, percent scaling, direction and default order.

This is the one place that knows about metric names. Accuracies, NMI, ARI (names ending in
`_acc`, `_nmi`, `_ari`) and precision@k (`retrieval_p<k>`) are fractions in the records and are
shown x100 with one decimal; every other metric is shown raw with three decimals. Only the
names in `LOWER_IS_BETTER` rank downwards; an unknown metric is higher-is-better and labelled
by its own name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_ORDER = (
    "knn5_acc",
    "knn200_acc",
    "linear_acc",
    "kmeans_acc",
    "kmeans_nmi",
    "kmeans_ari",
    "head_acc",
    "head_nmi",
    "head_ari",
)
LOWER_IS_BETTER = frozenset({"align", "uniform", "kest_silhouette_err", "kest_elbow_err"})
# Estimates that are neither good nor bad by size (a K estimate is judged by its error)
UNRANKED = frozenset({"kest_silhouette", "kest_elbow"})
# Per-head scores (head0_k10_acc, head2_k160_nmi, ...) are recorded for every head; tables show
# them only when a metric filter names them, since head_* already scores the K = C head.
_PER_HEAD = re.compile(r"^head\d+_k\d+_")


def is_per_head(name: str) -> bool:
    return bool(_PER_HEAD.match(name))

_LABELS = {
    "knn5_acc": "kNN-5",
    "knn200_acc": "kNN-200",
    "linear_acc": "Linear",
    "kmeans_acc": "KM ACC",
    "kmeans_nmi": "KM NMI",
    "kmeans_ari": "KM ARI",
    "head_acc": "Head ACC",
    "head_nmi": "Head NMI",
    "head_ari": "Head ARI",
    "align": "Align",
    "uniform": "Uniform",
    "kest_silhouette": "K sil",
    "kest_elbow": "K elbow",
    "kest_silhouette_err": "|K sil-C|",
    "kest_elbow_err": "|K elb-C|",
    "rankme": "RankMe",
    "collapse_std": "Std x sqrt(D)",
}
_PERCENT = re.compile(r"(_acc|_nmi|_ari)$|^retrieval_p\d+$")
_RETRIEVAL = re.compile(r"^retrieval_p(\d+)$")
# the accuracies a finished run's log line shows
PROGRESS_METRICS = ("knn5_acc", "knn200_acc", "linear_acc", "kmeans_acc", "head_acc")


def retrieval_k(name: str) -> int | None:
    """k of a precision@k metric (`retrieval_p<k>`), None for any other name."""
    match = _RETRIEVAL.match(name)
    return int(match[1]) if match else None


@dataclass(frozen=True)
class MetricStyle:
    """Display rules for one metric."""

    label: str
    percent: bool
    lower_is_better: bool
    ranked: bool = True  # False: no best/second marks (estimates judged by another column)


def metric_style(name: str, lower: frozenset[str] = frozenset()) -> MetricStyle:
    """The display rules for metric `name` (unknown names: raw, higher-is-better, unless
    `lower`, the names the records' evaluators declare lower-is-better, has it)."""
    label = _LABELS.get(name)
    if label is None and (k := retrieval_k(name)) is not None:
        label = f"P@{k}"
    return MetricStyle(
        label=label or name,
        percent=bool(_PERCENT.search(name)),
        lower_is_better=name in LOWER_IS_BETTER or name in lower,
        ranked=name not in UNRANKED,
    )


def natural_key(name: str) -> list[str | int]:
    # splitting on a capturing group alternates text and digits, so keys compare position-wise
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def default_metric_order(names: Iterable[str]) -> list[str]:
    """`DEFAULT_ORDER` first, then the rest in natural order (retrieval_p2 before _p10)."""
    present = set(names)
    known = [name for name in DEFAULT_ORDER if name in present]
    return known + sorted(present.difference(DEFAULT_ORDER), key=natural_key)


def format_number(name: str, value: float) -> str:
    """`value` as displayed for metric `name`: x100 with 1 decimal, a count of clusters (the
    K estimates) with 1 decimal, or raw with 3."""
    if metric_style(name).percent:
        return f"{value * 100:.1f}"
    if name.startswith("kest_"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def format_mean_std(name: str, mean: float, std: float, pm: str = " ± ",
                    interval: tuple[float, float] | None = None) -> str:
    """`mean ± std` as displayed, or `mean [low, high]` with an interval; the mean alone when
    std is NaN (a single run)."""
    text = format_number(name, mean)
    if interval is not None:
        text += f" [{format_number(name, interval[0])}, {format_number(name, interval[1])}]"
    elif not math.isnan(std):
        text += pm + format_number(name, std)
    return text
