"""Draw a suite's figures by kind and save them as `<dir>/<suite>_<kind>.png` and `.pdf`.

`kind="all"` draws every figure the records allow and notes why each other one was skipped;
a single kind raises the figure's `UserError` when the records lack its data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from crlbench.errors import UserError
from crlbench.report.cd import cd_figure
from crlbench.report.kinds import FIGURE_KINDS
from crlbench.report.plot import (
    curves_figure,
    imbalance_figure,
    kest_figure,
    precision_figure,
    save,
    tsne_figure,
)
from crlbench.report.summary import Record

KINDS: dict[str, Callable[..., Figure]] = dict(
    zip(FIGURE_KINDS, (imbalance_figure, kest_figure, tsne_figure, precision_figure,
                       curves_figure, cd_figure), strict=True))
# the figures that take a `metric` (the imbalance figure's, the curves', the ranks')
WITH_METRIC = ("imbalance", "curves", "cd")


@dataclass
class Figures:
    """What `make_figures` wrote (kind -> [png, pdf]) and skipped (kind -> why)."""

    written: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def figure_path(output: Path, suite: str, kind: str) -> Path:
    """The path, without suffix, of a suite's figure of `kind`."""
    return Path(output) / f"{suite}_{kind}"


def make_figures(
    records: Iterable[Record], kind: str, output: Path, suite: str, metric: str | None = None
) -> Figures:
    """Draw and save the figure `kind` (or `all`) of `records`; `metric` is the imbalance
    figure's, the learning curves' and the critical-difference diagram's metric."""
    if kind != "all" and kind not in KINDS:
        raise UserError(f"unknown figure {kind!r}; choose one of: {', '.join(KINDS)}, all")
    records = list(records)
    made = Figures()
    for name in KINDS if kind == "all" else [kind]:
        options = {"metric": metric} if name in WITH_METRIC else {}
        try:
            fig = KINDS[name](records, **options)
        except UserError as e:
            if kind != "all":
                raise
            made.skipped[name] = str(e)
            continue
        made.written[name] = save(fig, figure_path(output, suite, name))
    return made
