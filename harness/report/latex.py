r"""Render a summary as a booktabs LaTeX tabular (no document, no table float).

Rows are methods; columns are a two-level header, dataset over metric, with a \cmidrule under
each dataset. Cells are `$mean \pm std$`; the best per column is `\textbf{\boldmath $...$}`
(`\boldmath` makes the math itself bold, which `\textbf` alone does not) and the second is
`\underline{...}`. A footnote row under the bottom rule says what the numbers are. Needs only
`\usepackage{booktabs}`.
"""

from __future__ import annotations

import pandas as pd

from crlbench.report.grid import Cell, Grid, build_grid, footnote
from crlbench.report.metrics import format_mean_std, metric_style

_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped (for names, not for math)."""
    return "".join(_SPECIAL.get(char, char) for char in text)


def _cell(cell: Cell | None, grid: Grid) -> str:
    if cell is None:
        return "--"
    tied = r"^\dagger" if cell.tied else ""
    text = "$" + format_mean_std(cell.metric, cell.mean, cell.std, pm=r" \pm ",
                                 interval=cell.interval) + tied + "$"
    if grid.uniform_n is None:
        text += f" ({cell.n})"
    if cell.mark == "best":
        return rf"\textbf{{\boldmath {text}}}"
    if cell.mark == "second":
        return rf"\underline{{{text}}}"
    return text


def _header(metric: str, lower: frozenset[str]) -> str:
    style = metric_style(metric, lower)
    label = latex_escape(style.label)
    return label + r" $\downarrow$" if style.lower_is_better else label


def _cmidrules(grid: Grid) -> str:
    spans: list[tuple[str, int]] = []
    for dataset, _ in grid.columns:
        if spans and spans[-1][0] == dataset:
            spans[-1] = (dataset, spans[-1][1] + 1)
        else:
            spans.append((dataset, 1))
    rules, start = [], 2  # column 1 holds the method names
    for _, width in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    return " ".join(rules) + "\n"


def to_latex(summary: pd.DataFrame) -> str:
    """A booktabs tabular of `summary`, best per column bold and second underlined."""
    grid = build_grid(summary)
    columns = pd.MultiIndex.from_tuples(
        [(latex_escape(dataset), _header(metric, grid.lower)) for dataset, metric in grid.columns]
    )
    frame = pd.DataFrame(
        [
            [_cell(grid.cell(method, column), grid) for column in grid.columns]
            for method in grid.methods
        ],
        index=[latex_escape(method) for method in grid.methods],
        columns=columns,
    )
    tabular = frame.style.to_latex(
        hrules=True,
        column_format="l" + "c" * len(grid.columns),
        multicol_align="c",
    )
    # Styler puts the dataset row first after \toprule; the rules go right under it
    head, _, body = tabular.partition("\\toprule\n")
    first_row, _, rest = body.partition("\\\\\n")
    note = footnote(grid, pm=r"$\pm$", percent=r"\%", down=r"$\downarrow$",
                    dagger=r"$^\dagger$", alpha=r"$\alpha$")
    rest = rest.replace(
        "\\bottomrule\n",
        "\\bottomrule\n"
        rf"\multicolumn{{{len(grid.columns) + 1}}}{{l}}{{\footnotesize {note}}} \\"
        "\n",
    )
    return f"{head}\\toprule\n{first_row}\\\\\n{_cmidrules(grid)}{rest}"
