"""Where a table's numbers come from and what they mean, in two lines: how many records of
which suites, made when, on which devices, with which torch, crlbench and git commit; and the
conventions of the metrics (kNN's k and similarity, the probe, the split clustered and trained
on, ...). `crlbench table` prints both under markdown and terminal tables and as comments above
LaTeX, so a published table carries them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crlbench.report.select import matches


def _values(records: list[dict[str, Any]], get) -> str:
    seen: dict[str, None] = {}
    for record in records:
        value = get(record)
        if value:
            seen[str(value)] = None
    return ", ".join(seen) or "unknown"


def _device(record: dict[str, Any]) -> str | None:
    env = record.get("environment") or {}
    name, kind = env.get("device_name"), env.get("device")
    return f"{name} ({kind})" if name and kind and name != kind else name or kind


def _commit(record: dict[str, Any]) -> str | None:
    commit = (record.get("environment") or {}).get("git_commit")
    return commit and commit[:7] + ("+dirty" if commit.endswith("+dirty") else "")


def _shown(records: Iterable[dict[str, Any]], datasets: Sequence[str] | None,
           methods: Sequence[str] | None) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok" and matches(r, datasets, methods)]


def made_between(records: Iterable[dict[str, Any]]) -> str | None:
    """The dates the records were made: "2026-12-01", or "2026-12-01 to 2026-12-03"; None when
    none says."""
    dates = sorted(str(r.get("created", ""))[:10] for r in records if r.get("created"))
    if not dates:
        return None
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def provenance(records: Iterable[dict[str, Any]], *, datasets: Sequence[str] | None = None,
               methods: Sequence[str] | None = None) -> str | None:
    """The line for the ok records a table with these filters shows; None if there are none."""
    shown = _shown(records, datasets, methods)
    if not shown:
        return None
    when = made_between(shown) or "?"
    env = lambda key: (lambda r: (r.get("environment") or {}).get(key))  # noqa: E731
    commits = _values(shown, _commit)
    return (f"From {len(shown)} records of suite {_values(shown, lambda r: r.get('suite'))}, "
            f"made {when} on {_values(shown, _device)}; torch {_values(shown, env('torch'))}, "
            f"crlbench {_values(shown, env('crlbench'))}, git {commits}.")


def convention_values(records: Iterable[dict[str, Any]],
                      missing: str | None = None) -> dict[str, str]:
    """Each convention's value over `records` (their `conventions`), distinct values joined
    by " | "; a record without conventions adds `missing` under "conventions" (None: nothing)."""
    values: dict[str, dict[str, None]] = {}
    for record in records:
        conventions = record.get("conventions") or (
            {"conventions": missing} if missing is not None else {})
        for name, value in conventions.items():
            values.setdefault(name, {})[str(value)] = None
    return {name: " | ".join(seen) for name, seen in values.items()}


def conventions_line(records: Iterable[dict[str, Any]], *,
                     datasets: Sequence[str] | None = None,
                     methods: Sequence[str] | None = None) -> str | None:
    """The conventions of the numbers a table with these filters shows (each record's
    `conventions`), one "name: value" per convention; where records differ, their values
    are joined with " | ". None if no shown record has conventions."""
    values = convention_values(_shown(records, datasets, methods), missing="not recorded")
    if not values:
        return None
    return "Conventions: " + "; ".join(f"{name}: {value}" for name, value in values.items()) + "."
