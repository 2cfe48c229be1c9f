"""Tables from run records: `summarize` records into a tidy frame, then `render` it.

For example `render(summarize(records, suite="quick"), "markdown")` gives a pipe table.
"""

from __future__ import annotations

from crlbench.report.summary import mixed_configs, row_label, summarize
from crlbench.report.table import render, to_csv, to_latex, to_markdown, to_rich

__all__ = [
    "mixed_configs", "render", "row_label", "summarize", "to_csv", "to_latex", "to_markdown",
    "to_rich",
]
