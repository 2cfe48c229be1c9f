"""Pick and label the records that figures and report pages read.

A figure's line is a row label (`row_label`) with the variant it is drawn against left out:
the imbalance figure puts rho on the x axis, so `cc (imbalance=10)` and `cc (imbalance=100)`
are one line `cc`. Lines are ordered as table rows are: by method name with `raw` (the floor)
last, then by variant values, numbers compared as numbers (k=5 before k=10).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crlbench.errors import UserError
from crlbench.report.summary import FLOOR_METHOD, Record, check_known, pick_suite, row_label


def select(
    records: Iterable[Record], suite: str | None = None, datasets: Sequence[str] | None = None
) -> tuple[str, list[Record]]:
    """The records (ok or not) of one suite, narrowed to `datasets`, and the suite's name.

    `suite` is needed only when the records span several suites.
    """
    records = list(records)
    if not records:
        raise UserError("no run records; run a suite first")
    records = pick_suite(records, suite)
    if datasets:
        check_known("dataset", list(datasets), {r["dataset"] for r in records})
        records = [r for r in records if r["dataset"] in datasets]
    return str(records[0].get("suite")), records


def ok_runs(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.get("status") == "ok"]


def variant_value(record: Record, key: str) -> Any:
    return (record.get("variant") or {}).get(key)


def line_label(record: Record, without: Sequence[str] = ()) -> str:
    """The record's row label, leaving out the variant keys in `without`."""
    variant = {k: v for k, v in (record.get("variant") or {}).items() if k not in without}
    return row_label({**record, "variant": variant})


def _value_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _order_key(record: Record, without: Sequence[str]) -> tuple:
    variant = sorted((k, v) for k, v in (record.get("variant") or {}).items() if k not in without)
    return (
        record["method"] == FLOOR_METHOD,
        record["method"],
        tuple((key, _value_key(value)) for key, value in variant),
    )


def ordered_labels(records: Iterable[Record], without: Sequence[str] = ()) -> list[str]:
    """The distinct line labels of `records`, in table-row order."""
    firsts: dict[str, Record] = {}
    for record in records:
        firsts.setdefault(line_label(record, without), record)
    return sorted(firsts, key=lambda label: _order_key(firsts[label], without))
