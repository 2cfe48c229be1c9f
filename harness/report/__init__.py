"""Tables from run records: `summarize` records into a tidy frame, then `render` it.

For example `render(summarize(records, suite="quick"), "markdown")` gives a pipe table.
"""

from __future__ import annotations

from crlbench.lazy import lazy_exports

# name -> the module of this package that defines it, loaded on first use (so that the CLI can
# import crlbench.report.kinds without pandas)
_EXPORTS = {
    **dict.fromkeys(("mixed_configs", "row_label", "summarize"), "summary"),
    **dict.fromkeys(("render", "to_csv", "to_latex", "to_markdown", "to_rich"), "table"),
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
