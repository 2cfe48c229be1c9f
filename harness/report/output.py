"""What `crlbench table` and the end of `crlbench run` print: a rendered table with the lines
that say where its numbers come from, as one text or one rich renderable.

The CLI parses arguments and writes; the composition lives here.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich.console import Console, Group, RenderableType
from rich.text import Text

from crlbench.report.metrics import DEFAULT_ORDER
from crlbench.report.provenance import conventions_line, provenance
from crlbench.report.summary import Record, summarize
from crlbench.report.table import render

PLAIN_WIDTH = 200  # a terminal table written to a file


def as_text(renderable: RenderableType, width: int = PLAIN_WIDTH) -> str:
    """A rich renderable as plain text, `width` columns wide."""
    buf = Console(record=True, width=width, file=io.StringIO())
    buf.print(renderable)
    return buf.export_text()


def table_output(records: list[Record], fmt: str, *, width: int | None, plain: bool,
                 datasets: list[str] | None = None, metrics: list[str] | None = None,
                 methods: list[str] | None = None, interval: str = "std") -> str | RenderableType:
    """The table of `records` in format `fmt`, narrowed by the filters, followed (markdown,
    terminal) or preceded (latex, as comments) by its provenance and conventions lines; csv
    stays data only. `plain`: text even for the terminal format (for a file). `interval`:
    what a cell shows beside its mean (one of TABLE_INTERVALS)."""
    from crlbench.report.cd import ranks_line
    from crlbench.report.select import select

    summary = summarize(records, datasets=datasets, metrics=metrics, methods=methods)
    summary.attrs["interval"] = interval
    out = render(summary, fmt, width=width)
    shown = {"datasets": datasets, "methods": methods}
    # ranked on the table's first metric, over the datasets and methods it shows
    ranks = ranks_line(select(records, datasets=datasets, methods=methods),
                       str(summary["metric"].cat.categories[0]) if metrics else None)
    lines = [line for line in (ranks, provenance(records, **shown),
                               conventions_line(records, **shown)) if line]
    if not isinstance(out, str) and plain:
        out = as_text(out)
    if lines and fmt in ("markdown", "terminal"):
        if isinstance(out, str):
            return out + "".join(f"\n{line}\n" for line in lines)
        return Group(out, *(Text(line) for line in lines))
    if lines and fmt == "latex":
        return "".join(f"% {line}\n" for line in lines) + out
    return out


def comparison_output(records: list[Record], fmt: str, *, width: int | None, plain: bool,
                      datasets: list[str] | None = None, metrics: list[str] | None = None,
                      methods: list[str] | None = None) -> str | RenderableType:
    """`crlbench table --vs paper`: each of our cells (narrowed by the filters) beside the
    published numbers of the same method, dataset and metric, in format `fmt`."""
    from crlbench.report.papers import (
        check_comparable,
        compare,
        load_tables,
        render_comparison,
        tables_for,
    )
    from crlbench.report.select import pick_suite

    suite = str(pick_suite(records, None)[0].get("suite"))
    summary = summarize(records, datasets=datasets, metrics=metrics, methods=methods)
    tables, mirrored = tables_for(suite, load_tables())
    frame = compare(records, summary, tables)
    check_comparable(frame, tables)
    note = None if mirrored else (f"No published table names suite {suite}: compared with "
                                  "every shipped table on the method, dataset and metric.")
    out = render_comparison(frame, tables, fmt, note)
    if not isinstance(out, str) and plain:
        return as_text(out, PLAIN_WIDTH)
    return out


def headline(records: Iterable[Record], width: int | None) -> tuple[RenderableType | None, bool]:
    """The headline metrics of a run's records as a terminal table (None when none is ok), and
    whether the records hold more metrics than the headline shows."""
    records = list(records)
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return None, False
    present = {name for r in ok for name in r["metrics"]}
    top = [m for m in DEFAULT_ORDER if m in present] or None
    table = render(summarize(records, metrics=top), "terminal", width=width)
    return table, bool(top and present - set(top))
