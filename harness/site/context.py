"""What the HTML leaderboard's pages show, as plain data: pure functions from run records to
the dictionaries the templates read. Nothing here writes a file or knows HTML.

A suite page has the suite's shared protocol (the config keys every successful run agrees on),
its conventions and provenance lines, its runs, one table per dataset (the grid of
`crlbench.report.grid`, so the marks, best, second and tied, are those of every other table
format), and the average ranks over datasets when there are several. A run page has the
record's status, metrics, config, environment, timings and per-epoch history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from crlbench.errors import UserError
from crlbench.report.grid import TIED, Grid, build_grid, footnote, metric_header
from crlbench.report.metrics import default_metric_order, format_mean_std, format_number
from crlbench.report.provenance import convention_values, provenance
from crlbench.report.records import ok_runs
from crlbench.report.select import Record, order_key, row_label
from crlbench.report.summary import is_number, mixed_configs, summarize

# config keys that differ between a suite's runs by design: not part of the shared protocol
PER_RUN_KEYS = ("method", "method_cfg", "seed", "dataset", "variant")


def run_page(record: Record) -> str:
    """The path of a run's page, relative to its suite's folder."""
    return f"runs/{record['run_id']}.html"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"train": {"epochs": 5}} -> {"train.epochs": 5}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def shared_protocol(records: Iterable[Record]) -> list[tuple[str, str]]:
    """The (dotted key, value) pairs of config that every successful run has with one value,
    per-run keys (method, seed, dataset, ...) left out, in key order."""
    flats = [flatten({k: v for k, v in (r.get("config") or {}).items() if k not in PER_RUN_KEYS})
             for r in ok_runs(records)]
    if not flats:
        return []
    first = flats[0]
    return [(key, _shown(first[key])) for key in sorted(first)
            if all(key in flat and flat[key] == first[key] for flat in flats[1:])]


def _cell(grid: Grid, method: str, column) -> dict[str, Any] | None:
    cell = grid.cell(method, column)
    if cell is None:
        return None
    return {
        "text": format_mean_std(cell.metric, cell.mean, cell.std),
        "mean": cell.mean,
        "std": None if math.isnan(cell.std) else cell.std,
        "n": cell.n,
        "mark": cell.mark,
        "tied": TIED if cell.tied else "",
    }


def dataset_table(records: list[Record], dataset: str) -> dict[str, Any]:
    """One dataset's table: a header per metric (with its direction, for sorting best first),
    a row per method with its cells and the links to its runs, and the footnote."""
    grid = build_grid(summarize(records, datasets=[dataset]))
    runs: dict[str, list[Record]] = {}
    for record in records:
        if record.get("dataset") == dataset:
            runs.setdefault(row_label(record), []).append(record)
    rows = []
    for method in grid.methods:
        mine = sorted(runs.get(method, []), key=lambda r: (r.get("seed") is None, r.get("seed")))
        rows.append({
            "method": method,
            "cells": [_cell(grid, method, column) for column in grid.columns],
            "runs": [{"href": run_page(r), "seed": r.get("seed"), "status": r.get("status")}
                     for r in mine],
        })
    return {
        "dataset": dataset,
        "columns": [{"metric": metric, "label": metric_header(metric, lower=grid.lower),
                     "lower": grid.lower_is_better(metric)} for _, metric in grid.columns],
        "rows": rows,
        "footnote": footnote(grid) + " Best per column in bold, second underlined.",
    }


def ranks_table(records: list[Record]) -> dict[str, Any] | None:
    """Average ranks over the datasets (crlbench.report.cd), or None with fewer than two
    datasets or methods."""
    from crlbench.report.cd import rank_summary

    try:
        ranks = rank_summary(records)
    except UserError:
        return None
    return {
        "metric": ranks.label,
        "datasets": ranks.datasets,
        "cd": f"{ranks.cd:.2f}",
        "friedman": None if ranks.friedman is None else f"{ranks.friedman:.3g}",
        "rows": [{"method": method, "rank": f"{rank:.2f}", "value": rank}
                 for method, rank in ranks.ranks.sort_values().items()],
        "left_out": list(ranks.left_out),
    }


def suite_page(records: list[Record], suite: str, description: str | None) -> dict[str, Any]:
    """Everything a suite's page shows (its figures are added by the caller, who draws
    them)."""
    ok = ok_runs(records)
    failed = sorted((r for r in records if r.get("status") != "ok"),
                    key=lambda r: (order_key(r), r.get("dataset"), r.get("seed")))
    # datasets with a number to show (a run's metrics may all be NaN)
    datasets = sorted({r["dataset"] for r in ok
                       if any(is_number(v) for v in (r.get("metrics") or {}).values())})
    return {
        "suite": suite,
        "description": description,
        "counts": {"runs": len(records), "ok": len(ok), "failed": len(failed)},
        "methods": sorted({row_label(r) for r in records}),
        "seeds": sorted({r["seed"] for r in records if r.get("seed") is not None}),
        "protocol": shared_protocol(records),
        "provenance": provenance(records),
        "conventions": sorted(convention_values(ok).items()),
        "warnings": mixed_configs(records),
        "tables": [dataset_table(records, dataset) for dataset in datasets],
        "ranks": ranks_table(records) if len(datasets) > 1 else None,
        "failed": [{"label": row_label(r), "dataset": r.get("dataset"), "seed": r.get("seed"),
                    "href": run_page(r), "error": _first_line(r)} for r in failed],
    }


def _first_line(record: Record) -> str:
    message = str((record.get("error") or {}).get("message") or "no error recorded").strip()
    return message.splitlines()[0] if message else "no error recorded"


def _history(record: Record) -> dict[str, Any]:
    """The per-epoch history as a table: epoch, then every numeric field (evaluations during
    training as eval.<metric>)."""
    entries = [flatten(entry) for entry in record.get("history") or []]
    names = list(dict.fromkeys(name for entry in entries for name, value in entry.items()
                               if is_number(value)))
    rows = [[epoch, *(_history_value(name, entry.get(name)) for name in names)]
            for epoch, entry in enumerate(entries, start=1)]
    return {"columns": names, "rows": rows}


def _history_value(name: str, value: Any) -> str:
    if not is_number(value):
        return ""
    if name.startswith("eval."):
        return format_number(name.removeprefix("eval."), value)
    return f"{value:.6g}"


def run_page_context(record: Record) -> dict[str, Any]:
    """Everything a run's page shows (its curves figure is added by the caller)."""
    metrics = record.get("metrics") or {}
    return {
        "record": record,
        "title": f"{row_label(record)} on {record.get('dataset')}, seed {record.get('seed')}",
        "status": record.get("status"),
        "error": (record.get("error") or {}).get("message"),
        "metrics": [(name, format_number(name, metrics[name]), metrics[name])
                    for name in default_metric_order(n for n, v in metrics.items()
                                                     if is_number(v))],
        "config": yaml.safe_dump(record.get("config") or {}, sort_keys=False),
        "environment": sorted((record.get("environment") or {}).items()),
        "timings": sorted((k, f"{v:.1f}") for k, v in (record.get("wall_seconds") or {}).items()
                          if is_number(v)),
        "conventions": sorted((record.get("conventions") or {}).items()),
        "facts": [(key, _shown(record.get(key))) for key in
                  ("run_id", "config_id", "suite", "method_version", "created", "started")
                  if record.get(key) is not None],
        "history": _history(record),
    }
