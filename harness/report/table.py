"""Render a summary (from `summarize`) as a terminal, markdown, CSV or LaTeX table.

Pure functions: a summary frame in, a string (or a rich Table) out; nothing is read or written.
Display formats show rows = methods and columns = dataset / metric, with the best per column in
bold; CSV stays tidy and raw (fractions, not percent) for machines.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from crlbench.errors import UserError
from crlbench.report.grid import (
    TIED,
    Cell,
    Grid,
    build_grid,
    cell_interval,
    footnote,
    metric_header,
)
from crlbench.report.kinds import TABLE_FORMATS
from crlbench.report.latex import to_latex
from crlbench.report.metrics import format_mean_std
from crlbench.report.summary import COLUMNS

MISSING = "–"


def _cell_text(cell: Cell, grid: Grid) -> str:
    text = (format_mean_std(cell.metric, cell.mean, cell.std, interval=cell.interval)
            + (TIED if cell.tied else ""))
    # n goes into every cell only when it differs; otherwise the footnote states it once
    return text if grid.uniform_n is not None else f"{text} ({cell.n})"


def pipe_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A GitHub pipe table; `align` has one letter per column, "l" or "r". A "|" in any cell
    is escaped, so names cannot split a row."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = "|" + "".join(" :-- |" if a == "l" else " --: |" for a in align)
    return "\n".join([line(header), rule, *map(line, rows)]) + "\n"


def to_markdown(summary: pd.DataFrame) -> str:
    """A GitHub pipe table: best per column in bold, a footnote line under it."""
    grid = build_grid(summary)
    header = ["method", *(f"{d} / {metric_header(m, lower=grid.lower)}" for d, m in grid.columns)]
    rows = []
    for method in grid.methods:
        cells = [method]
        for column in grid.columns:
            cell = grid.cell(method, column)
            if cell is None:
                cells.append(MISSING)
            else:
                text = _cell_text(cell, grid)
                cells.append(f"**{text}**" if cell.mark == "best" else text)
        rows.append(cells)
    table = pipe_table(header, rows, "l" + "r" * len(grid.columns))
    return table + "\n" + footnote(grid) + " Best per column in bold.\n"


def to_csv(summary: pd.DataFrame) -> str:
    """Tidy CSV: method, dataset, metric, mean, std, n, and with an interval (`--interval t`
    or `bootstrap`) its ci_low and ci_high; raw values (fractions, not percent)."""
    frame = summary[list(COLUMNS)].astype({"method": str, "dataset": str, "metric": str})
    kind = summary.attrs.get("interval", "std")
    if kind != "std":
        seeds = summary.attrs.get("seeds") or {}
        bounds = [cell_interval(kind, seeds.get((r.method, r.dataset, r.metric), {}))
                  for r in frame.itertuples(index=False)]
        frame = frame.assign(ci_low=[b[0] if b else None for b in bounds],
                             ci_high=[b[1] if b else None for b in bounds])
    return frame.to_csv(index=False, lineterminator="\n")


_STYLES = {"best": "bold", "second": "underline", "": ""}
_BORDERS = 3  # a rich column costs its text plus two spaces of padding and one rule


def _terminal_cells(grid: Grid, column) -> dict[str, Text]:
    cells = {}
    for method in grid.methods:
        cell = grid.cell(method, column)
        cells[method] = (Text(MISSING) if cell is None else
                         Text(_cell_text(cell, grid).replace(" ± ", "±"),
                              style=_STYLES[cell.mark]))
    return cells


def _chunks(widths: list[int], first: int, limit: int) -> list[list[int]]:
    """Column indices grouped so that each group, after the method column, fits `limit`."""
    groups: list[list[int]] = [[]]
    used = first
    for i, width in enumerate(widths):
        if groups[-1] and used + width > limit:
            groups.append([])
            used = first
        groups[-1].append(i)
        used += width
    return groups


def to_rich(summary: pd.DataFrame, width: int | None = None) -> Table | Group:
    """Rich tables for the terminal: best per column bold, second underlined.

    Columns that do not fit in `width` characters go into further tables below the first (each
    with the method column), instead of being squeezed until their numbers are cut.
    """
    grid = build_grid(summary)
    datasets = list(dict.fromkeys(dataset for dataset, _ in grid.columns))
    # one dataset: name it once in the title, so the columns stay narrow
    title = datasets[0] if len(datasets) == 1 else None
    headers = [metric_header(m, lower=grid.lower) if title
               else f"{d}\n{metric_header(m, lower=grid.lower)}" for d, m in grid.columns]
    cells = [_terminal_cells(grid, column) for column in grid.columns]
    widths = [max([len(line) for line in h.split("\n")] + [len(t) for t in c.values()])
              + _BORDERS for h, c in zip(headers, cells, strict=True)]
    first = max([len("method")] + [len(m) for m in grid.methods]) + _BORDERS + 1
    groups = _chunks(widths, first, width) if width else [list(range(len(widths)))]
    tables = []
    for g, group in enumerate(groups):
        last = g == len(groups) - 1
        table = Table(title=title if g == 0 else None, caption=footnote(grid) if last else None,
                      caption_justify="left")
        table.add_column("method", no_wrap=True)
        for i in group:
            table.add_column(Text(headers[i]), justify="right", no_wrap=True)
        for method in grid.methods:
            # Text, so names are never parsed as rich markup
            table.add_row(Text(method), *(cells[i][method] for i in group))
        tables.append(table)
    return tables[0] if len(tables) == 1 else Group(*tables)


RENDERERS: dict[str, Callable[..., str | Table | Group]] = dict(
    zip(TABLE_FORMATS, (to_rich, to_markdown, to_csv, to_latex), strict=True))


def render(summary: pd.DataFrame, fmt: str, width: int | None = None) -> str | Table | Group:
    """Render `summary` in format `fmt`: one of terminal, markdown, csv, latex. `width` (the
    console's) splits a terminal table that would not fit."""
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise UserError(f"unknown table format {fmt!r}; choose one of: {', '.join(RENDERERS)}")
    return renderer(summary, width) if fmt == "terminal" else renderer(summary)
