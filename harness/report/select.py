"""Which records a table, figure or note shows, and in which order: the one definition that the
table, the provenance and conventions lines, the mixed-configuration warning and the figures
share, so that they always speak of the same records in the same order.

A record's row label is its method name, plus its variant as `name (k=v, ...)` with the items
sorted by key. A `methods` filter entry matches a method name (all its variants) or a full row
label. Rows are ordered by method name with `raw` (the floor the others are read against)
last, then by variant values, numbers compared as numbers (k=5 before k=10, 0.1 before 0.25
before 0.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crlbench.errors import UserError

FLOOR_METHOD = "raw"

Record = Mapping[str, Any]


def row_label(record: Record) -> str:
    """The method name, plus the variant as ` (k=v, ...)` when the record has one."""
    variant = record.get("variant") or {}
    if not variant:
        return record["method"]
    # a swept config key is shown by its last part: method_cfg.cmc.loss=nce -> loss=nce
    items = ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in sorted(variant.items()))
    return f"{record['method']} ({items})"


def _choices(values: Iterable[str]) -> str:
    return ", ".join(sorted(set(values)))


def pick_suite(records: list[Record], suite: str | None) -> list[Record]:
    """The records of `suite`; without one, the records must all be of one suite."""
    suites = {record.get("suite") for record in records}
    if suite is None:
        if len(suites) > 1:
            raise UserError(
                f"records come from several suites; choose one of: {_choices(map(str, suites))}"
            )
        return records
    if suite not in suites:
        raise UserError(f"no record has suite {suite!r}; valid: {_choices(map(str, suites))}")
    return [record for record in records if record.get("suite") == suite]


def check_known(kind: str, wanted: list[str], known: set[str]) -> None:
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UserError(
            f"no record has {kind} {', '.join(map(repr, unknown))}; valid: {_choices(known)}"
        )


def matches(record: Record, datasets: Sequence[str] | None = None,
            methods: Sequence[str] | None = None) -> bool:
    """Whether the record passes the dataset and method filters (None: no filter)."""
    return ((not datasets or record.get("dataset") in datasets)
            and (not methods or record["method"] in methods or row_label(record) in methods))


def select(records: Iterable[Record], *, suite: str | None = None,
           datasets: Sequence[str] | None = None,
           methods: Sequence[str] | None = None) -> list[Record]:
    """The records (ok or not) of one suite that pass the filters; a filter value that no
    record has raises UserError naming the valid values."""
    records = list(records)
    if not records:
        raise UserError("no run records; run a suite first")
    records = pick_suite(records, suite)
    if datasets:
        check_known("dataset", list(datasets), {r["dataset"] for r in records})
    if methods:
        check_known("method", list(methods),
                    {r["method"] for r in records} | {row_label(r) for r in records})
    return [r for r in records if matches(r, datasets, methods)]


def _value_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def order_key(record: Record, without: Sequence[str] = ()) -> tuple:
    """The sort key of the record's row (or figure line, leaving out the variant keys in
    `without`): floor last, method name, then variant values."""
    variant = sorted((k, v) for k, v in (record.get("variant") or {}).items() if k not in without)
    return (
        record["method"] == FLOOR_METHOD,
        record["method"],
        tuple((key, _value_key(value)) for key, value in variant),
    )
