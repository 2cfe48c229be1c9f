"""Summarise run records into a tidy frame: one row per (method, dataset, metric).

Only records with status "ok" are tabulated; how many failed records matched the filters is
kept in `summary.attrs["failed"]` for a footnote. A row's method is its row label: the method
name, plus its variant as `name (k=v, ...)` with the items sorted by key.

`n` counts runs, not distinct seeds: two records of the same method, dataset, seed and variant
with different run_ids (different configs) are both kept, so such a cell has `n` larger than
its number of seeds. `std` is the sample standard deviation (ddof=1), NaN when n == 1.

Per-head metrics (`head{i}_k{K}_*`, recorded for every cluster head) are left out unless a
metric filter names them; `head_*` already scores the head whose K is the number of classes.

Order (carried by ordered categoricals in the method, dataset and metric columns, so renderers
keep it): what a filter lists comes in the filter's order. Without a filter, rows follow
`select.order_key` (methods alphabetical with `raw` last, variant values compared as numbers),
as the figures' lines do; datasets are alphabetical and metrics follow
`metrics.default_metric_order`. Which records are tabulated is `select.select`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd
from packaging.version import InvalidVersion, Version

from crlbench.errors import UserError
from crlbench.report.metrics import default_metric_order, is_per_head
from crlbench.report.select import (  # noqa: F401  (row_label, pick_suite: re-exported)
    FLOOR_METHOD,
    Record,
    check_known,
    matches,
    order_key,
    pick_suite,
    row_label,
    select,
)

COLUMNS = ("method", "dataset", "metric", "mean", "std", "n")


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    # a bare string would otherwise be read as a sequence of one-letter names
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(dict.fromkeys(value))


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _method_order(firsts: dict[str, Record], methods: list[str] | None) -> list[str]:
    """Row labels in `order_key` order; with a methods filter, first in the filter's order."""
    def key(label: str) -> tuple:
        record = firsts[label]
        rank = (0 if methods is None else
                min(i for i, m in enumerate(methods) if m in (label, record["method"])))
        return (rank, order_key(record))

    return sorted(firsts, key=key)


def summarize(
    records: Iterable[Record],
    *,
    suite: str | None = None,
    datasets: str | Sequence[str] | None = None,
    metrics: str | Sequence[str] | None = None,
    methods: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Tidy summary of `records`: columns method, dataset, metric, mean, std, n.

    Filters narrow the records: `suite` is required when the records span several suites;
    `methods` entries match a method name (all its variants) or a full row label. A filter
    value that no record has raises `UserError` naming the valid values.
    """
    datasets, metrics, methods = _as_list(datasets), _as_list(metrics), _as_list(methods)
    records = select(records, suite=suite, datasets=datasets, methods=methods)
    ok = [r for r in records if r.get("status") == "ok"]
    failed = len(records) - len(ok)
    if not ok:
        raise UserError(f"no successful runs to tabulate ({failed} failed)")

    long = pd.DataFrame(
        [
            (row_label(r), r["method"], r["dataset"], name, float(value), r.get("seed"))
            for r in ok
            for name, value in (r.get("metrics") or {}).items()
            if is_number(value)
        ],
        columns=["label", "base", "dataset", "metric", "value", "seed"],
    )
    if long.empty:
        raise UserError(f"the {len(ok)} successful runs have no metrics to tabulate")
    if metrics is not None:
        check_known("metric", metrics, set(long["metric"]))
        long = long[long["metric"].isin(metrics)]
    elif not long["metric"].map(is_per_head).all():
        long = long[~long["metric"].map(is_per_head)]

    firsts: dict[str, Record] = {}
    for r in ok:
        firsts.setdefault(row_label(r), r)
    order = {
        "method": _method_order({label: firsts[label] for label in set(long["label"])}, methods),
        "dataset": datasets or sorted(set(long["dataset"])),
        "metric": metrics or default_metric_order(long["metric"]),
    }
    summary = (
        long.rename(columns={"label": "method"})
        .groupby(["method", "dataset", "metric"], sort=False)["value"]
        .agg(mean="mean", std="std", n="count")
        .reset_index()
    )
    for column, levels in order.items():
        summary[column] = pd.Categorical(summary[column], categories=levels, ordered=True)
    summary = summary.sort_values(["method", "dataset", "metric"], ignore_index=True)
    summary["n"] = summary["n"].astype(int)
    summary.attrs["failed"] = failed
    # each cell's values by seed, for the paired tests of the marks (crlbench.report.stats)
    seeds: dict[tuple[str, str, str], dict[int, float]] = {}
    for row in long.itertuples(index=False):
        if row.seed is not None:
            seeds.setdefault((row.label, row.dataset, row.metric), {})[int(row.seed)] = row.value
    summary.attrs["seeds"] = seeds
    summary.attrs["lower_is_better"] = declared_lower_is_better(ok)
    return summary[list(COLUMNS)]


def declared_lower_is_better(records: Iterable[Record]) -> list[str]:
    """The metrics that the records' evaluators declare lower-is-better (plugins' own
    metrics; the built-in ones are `metrics.LOWER_IS_BETTER`)."""
    return sorted({name for r in records for name in r.get("lower_is_better") or ()})


def mixed_configs(records: Iterable[Record], *, datasets: Sequence[str] | None = None,
                  methods: Sequence[str] | None = None) -> list[str]:
    """Warnings for the table cells (of the records the filters select) that would average
    runs of different configurations.

    Runs of one suite that differ only in their seed share a `config_id`; a (method, dataset)
    cell whose ok records carry several config_ids mixes, e.g., a 10-epoch and a 100-epoch run.
    """
    seen: dict[tuple[str, str, str], set[str]] = {}
    for record in records:
        if record.get("status") == "ok" and matches(record, datasets, methods):
            seen.setdefault(_cell(record), set()).add(str(record.get("config_id")))
    return [
        f"{method} on {dataset} mixes {len(ids)} configurations ({', '.join(sorted(ids))}); "
        "move old records away or use a separate results.dir per configuration"
        for (_, method, dataset), ids in sorted(seen.items()) if len(ids) > 1
    ]


def _cell(record: Record) -> tuple[str, str, str]:
    """The table cell a record belongs to: its suite, row label and dataset."""
    return str(record.get("suite")), row_label(record), str(record.get("dataset"))


def newest_method_versions(records: Iterable[Record]) -> tuple[list[Record], list[str]]:
    """The records with, in each table cell (suite, row label, dataset), only those of one
    method version: the highest among its ok records (in PEP 440 order; versions that do not
    parse, such as records made before method versions, rank below and among themselves by
    their newest record). Records of other
    versions (an older plugin release, a built-in method before a fix) are left out, and each
    cell that had some gets a warning naming the versions, so no table averages two
    implementations.
    """
    records = list(records)
    cells: dict[tuple[str, str, str], list[Record]] = {}
    for record in records:
        cells.setdefault(_cell(record), []).append(record)
    dropped: set[int] = set()
    warnings = []
    for (_, label, dataset), members in sorted(cells.items()):
        versions = {_version(r) for r in members}
        if len(versions) < 2:
            continue
        ok = [r for r in members if r.get("status") == "ok"]
        current = _version(max(ok or members, key=_version_rank))
        old = [r for r in members if _version(r) != current]
        dropped.update(id(r) for r in old)
        warnings.append(
            f"{label} on {dataset}: shows method version {current} and leaves out {len(old)} "
            f"record{'s' if len(old) != 1 else ''} of version "
            f"{', '.join(sorted(versions - {current}))}; move the old records away to "
            "silence this")
    return [r for r in records if id(r) not in dropped], warnings


def _version(record: Record) -> str:
    return str(record.get("method_version") or "unknown (made before method versions)")


def _version_rank(record: Record) -> tuple:
    try:
        parsed: tuple = (1, Version(_version(record)))
    except InvalidVersion:
        parsed = (0,)
    return (*parsed, str(record.get("created", "")))

