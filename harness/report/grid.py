"""Lay a tidy summary out as a grid: rows are methods, columns are (dataset, metric) pairs.

Every display renderer (markdown, LaTeX, terminal) reads this grid, so they agree on order,
on which cells are best and second, and on the footnote.

Marks are decided on the displayed values (rounded as shown), so methods that tie as printed
are all marked. In a column with at least two distinct values the best are marked "best";
"second" is marked only when some value ranks below it (with two methods it would just mark
the worse one). A cell whose paired test by seed cannot separate it from the best is marked
tied (a dagger; crlbench.report.stats.tied_with_best).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from crlbench.errors import UserError
from crlbench.report.kinds import TABLE_INTERVALS
from crlbench.report.metrics import format_number, metric_style
from crlbench.report.stats import ALPHA, bootstrap_interval, t_interval, tied_with_best

Column = tuple[str, str]  # (dataset, metric)


@dataclass(frozen=True)
class Cell:
    """One method's result on one (dataset, metric)."""

    metric: str
    mean: float
    std: float
    n: int
    mark: str  # "best", "second" or ""
    # not significantly different from the column's best (crlbench.report.stats.tied_with_best)
    tied: bool = False
    # the 95% interval of the mean over seeds, when the table shows intervals (None: not
    # shown, or fewer than two seeds)
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class Grid:
    """The summary as rows x columns, with the facts a footnote needs."""

    methods: list[str]
    columns: list[Column]
    cells: dict[tuple[str, Column], Cell]
    uniform_n: int | None  # the n of every cell when all are equal, else None
    failed: int
    # metrics the records' evaluators declare lower-is-better (besides the built-in ones)
    lower: frozenset[str] = frozenset()
    interval: str = "std"  # one of TABLE_INTERVALS: what the cells show beside the mean

    @property
    def has_tied(self) -> bool:
        return any(cell.tied for cell in self.cells.values())

    def cell(self, method: str, column: Column) -> Cell | None:
        return self.cells.get((method, column))

    def lower_is_better(self, metric: str) -> bool:
        return metric_style(metric, self.lower).lower_is_better

    @property
    def has_percent(self) -> bool:
        return any(metric_style(metric).percent for _, metric in self.columns)

    @property
    def has_lower_is_better(self) -> bool:
        return any(self.lower_is_better(metric) for _, metric in self.columns)


def _levels(column: pd.Series) -> list[str]:
    # ordered categoricals (from `summarize`) carry the intended order; plain columns
    # (e.g. a summary read back from CSV) fall back to order of appearance
    present = list(pd.unique(column))
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [level for level in column.cat.categories if level in present]
    return present


def _marks(metric: str, means: dict[str, float], lower: frozenset[str]) -> dict[str, str]:
    shown = {method: float(format_number(metric, mean)) for method, mean in means.items()}
    style = metric_style(metric, lower)
    distinct = sorted(set(shown.values()), reverse=not style.lower_is_better)
    marks = dict.fromkeys(shown, "")
    if len(distinct) < 2 or not style.ranked:
        return marks
    for method, value in shown.items():
        if value == distinct[0]:
            marks[method] = "best"
        elif value == distinct[1] and len(distinct) > 2:
            marks[method] = "second"
    return marks


def _tied(by_column: dict[Column, dict[str, float]],
          seeds: dict[tuple[str, str, str], dict[int, float]],
          marks: dict[Column, dict[str, str]], lower: frozenset[str]) -> set[tuple[str, Column]]:
    """The (method, column) cells whose paired test by seed against the column's best does
    not reject equality (the best itself, and cells marked best as shown, are not marked)."""
    found = set()
    for column, means in by_column.items():
        dataset, metric = column
        style = metric_style(metric, lower)
        if not style.ranked:
            continue
        values = {method: seeds.get((method, dataset, metric), {}) for method in means}
        for method, result in tied_with_best(values, style.lower_is_better).items():
            if result is not None and marks[column][method] != "best":
                found.add((method, column))
    return found


def cell_interval(kind: str, by_seed: dict[int, float]) -> tuple[float, float] | None:
    """The 95% interval of the mean of a cell's values by seed, as `kind` (TABLE_INTERVALS)
    says; None for "std" or fewer than two seeds."""
    values = list(by_seed.values())
    if kind == "t":
        return t_interval(values)
    if kind == "bootstrap":
        return bootstrap_interval(values)
    return None


def build_grid(summary: pd.DataFrame) -> Grid:
    """The grid of `summary` (a frame from `summarize`, or one with the same columns)."""
    if summary.empty:
        raise UserError("nothing to render: the summary has no rows")
    datasets = _levels(summary["dataset"])
    metrics = _levels(summary["metric"])
    pairs = set(zip(summary["dataset"], summary["metric"], strict=True))
    columns = [(d, m) for d in datasets for m in metrics if (d, m) in pairs]

    rows = summary.astype({"method": str, "dataset": str, "metric": str})
    by_column: dict[Column, dict[str, float]] = {}
    for row in rows.itertuples(index=False):
        by_column.setdefault((row.dataset, row.metric), {})[row.method] = row.mean
    lower = frozenset(summary.attrs.get("lower_is_better", ()))
    marks = {column: _marks(column[1], means, lower) for column, means in by_column.items()}
    seeds = summary.attrs.get("seeds") or {}
    tied = _tied(by_column, seeds, marks, lower)
    interval = str(summary.attrs.get("interval", "std"))
    if interval not in TABLE_INTERVALS:
        raise UserError(f"unknown interval {interval!r}; choose one of: "
                        f"{', '.join(TABLE_INTERVALS)}")

    cells = {
        (row.method, (row.dataset, row.metric)): Cell(
            metric=row.metric,
            mean=float(row.mean),
            std=float(row.std),
            n=int(row.n),
            mark=marks[(row.dataset, row.metric)][row.method],
            tied=(row.method, (row.dataset, row.metric)) in tied,
            interval=cell_interval(interval,
                               seeds.get((row.method, row.dataset, row.metric), {})),
        )
        for row in rows.itertuples(index=False)
    }
    counts = set(rows["n"].astype(int))
    return Grid(
        methods=_levels(summary["method"]),
        columns=columns,
        cells=cells,
        uniform_n=counts.pop() if len(counts) == 1 else None,
        failed=int(summary.attrs.get("failed", 0)),
        lower=lower,
        interval=interval,
    )


def metric_header(metric: str, *, down: str = "↓", lower: frozenset[str] = frozenset()) -> str:
    """The metric's label, with `down` appended when lower is better (`lower`: the grid's
    declared lower-is-better metrics)."""
    style = metric_style(metric, lower)
    return f"{style.label} {down}" if style.lower_is_better else style.label


TIED = "†"  # the mark of a cell tied with the best


def footnote(grid: Grid, *, pm: str = "±", percent: str = "%", down: str = "↓",
             dagger: str = TIED, alpha: str = "α") -> str:
    """One sentence about what the cells mean: statistic, n, units, direction, ties with the
    best, failures."""
    spread = {"std": f"{pm} sample std", "t": f"[95{percent} t interval of the mean]",
              "bootstrap": f"[95{percent} percentile bootstrap interval of the mean, 9,999 "
                           "resamples]"}
    if grid.uniform_n == 1:
        parts = ["One run per cell"]
    elif grid.uniform_n is not None:
        parts = [f"Mean {spread[grid.interval]} over n = {grid.uniform_n} runs per cell"]
    else:
        parts = [f"Mean {spread[grid.interval]} over (n) runs"]
    if grid.has_percent:
        parts.append(f"accuracy, NMI, ARI and precision@k in {percent}")
    if grid.has_lower_is_better:
        parts.append(f"{down} lower is better")
    if grid.has_tied:
        parts.append(f"{dagger} not significantly different from the best (paired t-test over "
                     f"seeds, two-sided, {alpha} = {ALPHA:g})")
    if grid.failed:
        parts.append(f"{grid.failed} failed run{'s' if grid.failed != 1 else ''} not shown")
    return "; ".join(parts) + "."
