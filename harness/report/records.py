"""Pick and label the records that figures and report pages read.

A figure's line is a row label (`row_label`) with the variant it is drawn against left out:
the imbalance figure puts rho on the x axis, so `cc (imbalance=10)` and `cc (imbalance=100)`
are one line `cc`. Which records, and the lines' order, are `crlbench.report.select`'s, as for
table rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crlbench.report.select import Record, order_key, row_label


def ok_runs(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.get("status") == "ok"]


def variant_value(record: Record, key: str) -> Any:
    return (record.get("variant") or {}).get(key)


def line_label(record: Record, without: Sequence[str] = ()) -> str:
    """The record's row label, leaving out the variant keys in `without`."""
    variant = {k: v for k, v in (record.get("variant") or {}).items() if k not in without}
    return row_label({**record, "variant": variant})


def ordered_labels(records: Iterable[Record], without: Sequence[str] = ()) -> list[str]:
    """The distinct line labels of `records`, in table-row order."""
    firsts: dict[str, Record] = {}
    for record in records:
        firsts.setdefault(line_label(record, without), record)
    return sorted(firsts, key=lambda label: order_key(firsts[label], without))
