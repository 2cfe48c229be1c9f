"""Render a summary (from `summarize`) as a terminal, markdown, CSV or LaTeX table.

Pure functions: a summary frame in, a string (or a rich Table) out; nothing is read or written.
Display formats show rows = methods and columns = dataset / metric, with the best per column in
bold; CSV stays tidy and raw (fractions, not percent) for machines.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from rich.table import Table
from rich.text import Text

from crlbench.errors import UserError
from crlbench.report.grid import Cell, Grid, build_grid, footnote, metric_header
from crlbench.report.latex import to_latex
from crlbench.report.metrics import format_mean_std
from crlbench.report.summary import COLUMNS

MISSING = "–"


def _cell_text(cell: Cell, grid: Grid) -> str:
    text = format_mean_std(cell.metric, cell.mean, cell.std)
    # n goes into every cell only when it differs; otherwise the footnote states it once
    return text if grid.uniform_n is not None else f"{text} ({cell.n})"


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(summary: pd.DataFrame) -> str:
    """A GitHub pipe table: best per column in bold, a footnote line under it."""
    grid = build_grid(summary)
    header = ["method", *(f"{d} / {metric_header(m)}" for d, m in grid.columns)]
    lines = [
        "| " + " | ".join(map(_markdown_escape, header)) + " |",
        "| :-- |" + " --: |" * len(grid.columns),
    ]
    for method in grid.methods:
        cells = [_markdown_escape(method)]
        for column in grid.columns:
            cell = grid.cell(method, column)
            if cell is None:
                cells.append(MISSING)
            else:
                text = _cell_text(cell, grid)
                cells.append(f"**{text}**" if cell.mark == "best" else text)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", footnote(grid) + " Best per column in bold."]
    return "\n".join(lines) + "\n"


def to_csv(summary: pd.DataFrame) -> str:
    """Tidy CSV: method, dataset, metric, mean, std, n; raw values (fractions, not percent)."""
    frame = summary[list(COLUMNS)].astype({"method": str, "dataset": str, "metric": str})
    return frame.to_csv(index=False, lineterminator="\n")


def to_rich(summary: pd.DataFrame) -> Table:
    """A rich Table for the terminal: best per column bold, second underlined."""
    grid = build_grid(summary)
    datasets = list(dict.fromkeys(dataset for dataset, _ in grid.columns))
    # one dataset: name it once in the title, so the columns stay narrow enough for 80 chars
    title = datasets[0] if len(datasets) == 1 else None
    table = Table(title=title, caption=footnote(grid), caption_justify="left")
    table.add_column("method", no_wrap=True)
    for dataset, metric in grid.columns:
        header = metric_header(metric) if title else f"{dataset}\n{metric_header(metric)}"
        table.add_column(Text(header), justify="right", no_wrap=True)
    styles = {"best": "bold", "second": "underline", "": ""}
    for method in grid.methods:
        row: list[Text] = [Text(method)]  # Text, so names are never parsed as rich markup
        for column in grid.columns:
            cell = grid.cell(method, column)
            if cell is None:
                row.append(Text(MISSING))
            else:
                text = _cell_text(cell, grid).replace(" ± ", "±")
                row.append(Text(text, style=styles[cell.mark]))
        table.add_row(*row)
    return table


RENDERERS: dict[str, Callable[[pd.DataFrame], str | Table]] = {
    "terminal": to_rich,
    "markdown": to_markdown,
    "csv": to_csv,
    "latex": to_latex,
}


def render(summary: pd.DataFrame, fmt: str) -> str | Table:
    """Render `summary` in format `fmt`: one of terminal, markdown, csv, latex."""
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise UserError(f"unknown table format {fmt!r}; choose one of: {', '.join(RENDERERS)}")
    return renderer(summary)
