"""Published numbers as data, and our numbers beside them (`crlbench table --vs paper`).

Each file in `crlbench/papers/` is one published table, transcribed as printed: its source,
the suites it mirrors, the paper's setting, its conventions as structured facts, and every row
with its printed names, mapped to crlbench's method, dataset and metric names (a row or a
dataset crlbench has no counterpart for maps to null and is kept, so the file stays a full
transcription). `load_tables` reads and checks them once; the rest is pure.

A comparison pairs each of our table cells (a method without variant, a dataset, a metric)
with every published number for the same three names, and states where the conventions behind
the two numbers differ: what the encoder was trained on (train or train + test), what
clustering is scored on, the kNN vote temperature, and whether the linear probe is trained
after pre-training (offline, crlbench's) or alongside it (online). A convention the source does
not state is marked unknown, not assumed equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import pandas as pd
import yaml

from crlbench.errors import UserError
from crlbench.report.metrics import format_mean_std, format_number, metric_style
from crlbench.report.select import Record, row_label

# the structured conventions a table states, and their labels in a comparison
FACETS = {"trained_on": "trained on", "scored_on": "clustering scored on",
          "knn_temperature": "kNN temperature", "linear_probe": "linear probe"}
REQUIRED = ("id", "source", "caption", "suites", "setting", "conventions", "scale", "datasets",
            "metrics", "methods", "rows")


@dataclass(frozen=True)
class PaperNumber:
    """One published value, in crlbench's names and units (fractions, as records hold)."""

    table: str  # the table's id
    row: str  # the row as printed
    method: str
    dataset: str
    metric: str
    value: float


@dataclass(frozen=True)
class PaperTable:
    id: str
    source: str
    suites: tuple[str, ...]
    setting: Mapping[str, Any]
    conventions: Mapping[str, Any]
    numbers: tuple[PaperNumber, ...] = field(repr=False)


def _mapped(table: dict[str, Any], row: str) -> tuple[str | None, Mapping[str, Any]]:
    """A printed row's crlbench method and its printed-metric -> crlbench-metric map."""
    target = table["methods"].get(row)
    if isinstance(target, Mapping):
        return target.get("method"), {**table["metrics"], **(target.get("metrics") or {})}
    return target, table["metrics"]


def parse_table(data: Mapping[str, Any], name: str) -> PaperTable:
    """A table from its YAML data; ValueError naming the file and what is wrong."""
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValueError(f"{name}: missing {', '.join(missing)}")
    if data["scale"] not in (1, 100):
        raise ValueError(f"{name}: scale must be 1 or 100, not {data['scale']!r}")
    unknown = set(data["conventions"]) - set(FACETS) - {"seeds"}
    if unknown:
        raise ValueError(f"{name}: unknown conventions {', '.join(sorted(unknown))}")
    numbers = []
    for row, by_dataset in data["rows"].items():
        if row not in data["methods"]:
            raise ValueError(f"{name}: row {row!r} is not in its methods map")
        method, metrics = _mapped(data, row)
        for dataset, values in (by_dataset or {}).items():
            if dataset not in data["datasets"]:
                raise ValueError(f"{name}: row {row!r} has dataset {dataset!r}, not in its "
                                 "datasets map")
            for printed, value in values.items():
                if printed not in metrics:
                    raise ValueError(f"{name}: row {row!r} has metric {printed!r}, not in its "
                                     "metrics map")
                ours, where = metrics[printed], data["datasets"][dataset]
                if method and where and ours and value is not None:
                    numbers.append(PaperNumber(data["id"], row, method, where, ours,
                                               float(value) / data["scale"]))
    return PaperTable(id=data["id"], source=data["source"], suites=tuple(data["suites"]),
                      setting=data["setting"], conventions=data["conventions"],
                      numbers=tuple(numbers))


def load_tables() -> list[PaperTable]:
    """The shipped published tables, in file-name order."""
    folder = files("crlbench") / "papers"
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".yaml")),
                     key=lambda e: e.name)
    return [parse_table(yaml.safe_load(entry.read_text()), entry.name) for entry in entries]


def tables_for(suite: str, tables: Sequence[PaperTable]) -> tuple[list[PaperTable], bool]:
    """The tables that mirror `suite`, and True; or, when none names it, every table and
    False (a suite of one's own is compared on matching names only)."""
    mine = [t for t in tables if suite in t.suites]
    return (mine, True) if mine else (list(tables), False)


def our_conventions(record: Record) -> dict[str, Any]:
    """The structured conventions of a record's numbers, in FACETS' terms (None where the
    record does not say)."""
    config = record.get("config") or {}
    split = (record.get("data") or {}).get("train_split") or \
        (config.get("data") or {}).get("train_split")
    return {
        "trained_on": split,
        "scored_on": {"all": "train+test", "test": "test"}.get(str(record.get("cluster_split"))),
        "knn_temperature": (config.get("eval") or {}).get("knn_temperature"),
        "linear_probe": "offline",  # crlbench's probe is fitted on the frozen final features
    }


def facets_of(metric: str) -> tuple[str, ...]:
    """The conventions that bear on a metric's number."""
    if metric.startswith("knn"):
        return ("trained_on", "knn_temperature")
    if metric == "linear_acc":
        return ("trained_on", "linear_probe")
    if metric.startswith(("kmeans_", "head_")):
        return ("trained_on", "scored_on")
    return ("trained_on",)


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, int | float) and isinstance(theirs, int | float):
        return math.isclose(float(ours), float(theirs))
    return str(ours) == str(theirs)


def differences(ours: Sequence[Mapping[str, Any]], paper: Mapping[str, Any],
                metric: str) -> tuple[list[str], list[str]]:
    """The conventions bearing on `metric` that differ ("trained on: ours train+test, paper
    train"), and those that cannot be compared ("kNN temperature: not stated by the paper",
    or "...: not in our records"), for a cell whose records have `ours`."""
    differ, unknown = [], []
    for facet in facets_of(metric):
        label = FACETS[facet]
        theirs = paper.get(facet)
        mine = list(dict.fromkeys(str(c.get(facet)) for c in ours))
        if theirs is None:
            unknown.append(f"{label}: not stated by the paper")
        elif any(c.get(facet) is None for c in ours):
            unknown.append(f"{label}: not in our records")
        elif not all(_same(c.get(facet), theirs) for c in ours):
            differ.append(f"{label}: ours {' | '.join(mine)}, paper {theirs}")
    return differ, unknown


COMPARISON = ("method", "dataset", "metric", "mean", "std", "n", "paper", "delta", "table",
              "row", "differs", "unknown")


def compare(records: Iterable[Record], summary: pd.DataFrame,
            tables: Sequence[PaperTable]) -> pd.DataFrame:
    """Each cell of `summary` (from `summarize`) beside each published number for the same
    method (its rows without a variant), dataset and metric: our mean, std and n, the paper's
    value, delta = ours - paper (fractions), the table and printed row, and the conventions
    that differ or cannot be compared. A number two tables print alike under the same
    conventions (a main table and its appendix) is listed once, with both tables."""
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        if record.get("status") == "ok" and not record.get("variant"):
            by_cell.setdefault((row_label(record), record["dataset"]), []).append(
                our_conventions(record))
    # (method, dataset, metric) -> (value, conventions) -> the tables and rows printing it
    published: dict[tuple[str, str, str], dict[tuple, list[tuple[PaperTable, PaperNumber]]]] = {}
    for table in tables:
        conventions = tuple(sorted((k, str(v)) for k, v in table.conventions.items()))
        for number in table.numbers:
            same = published.setdefault((number.method, number.dataset, number.metric), {})
            same.setdefault((number.value, conventions), []).append((table, number))
    rows = []
    for cell in summary.astype({"method": str, "dataset": str, "metric": str}).itertuples():
        conventions = by_cell.get((cell.method, cell.dataset))
        if not conventions:
            continue  # a variant row: no published number is of it
        for (value, _), sources in published.get((cell.method, cell.dataset, cell.metric),
                                                 {}).items():
            differ, unknown = differences(conventions, sources[0][0].conventions, cell.metric)
            rows.append((cell.method, cell.dataset, cell.metric, cell.mean, cell.std, cell.n,
                         value, cell.mean - value, ", ".join(t.id for t, _ in sources),
                         "; ".join(dict.fromkeys(n.row for _, n in sources)),
                         "; ".join(differ), "; ".join(unknown)))
    return pd.DataFrame(rows, columns=list(COMPARISON))


def check_comparable(frame: pd.DataFrame, tables: Sequence[PaperTable]) -> None:
    """UserError when no published number matched, naming what the tables cover."""
    if not frame.empty:
        return
    covered = sorted({(n.method, n.dataset) for t in tables for n in t.numbers})
    listing = ", ".join(f"{m} on {d}" for m, d in covered) or "nothing"
    raise UserError(f"no published number matches these records' methods, datasets and "
                    f"metrics; the published tables compared ({', '.join(t.id for t in tables)})"
                    f" give: {listing}")


def delta_text(metric: str, delta: float) -> str:
    """ours - paper in the metric's display units, signed."""
    text = format_number(metric, abs(delta))
    return ("−" if delta < 0 and float(text) != 0 else "+") + text


def comparison_rows(frame: pd.DataFrame) -> list[list[str]]:
    """The comparison as display strings: method, dataset, metric, ours, paper, delta, table
    and row, conventions."""
    out = []
    for r in frame.itertuples():
        marks = (["≠ " + r.differs] if r.differs else []) + \
            ([f"? {r.unknown}"] if r.unknown else [])
        out.append([r.method, r.dataset, metric_style(r.metric).label,
                    format_mean_std(r.metric, r.mean, r.std) + ("" if r.n == 1 else
                                                                f" (n={r.n})"),
                    format_number(r.metric, r.paper), delta_text(r.metric, r.delta),
                    f"{r.table}: {r.row}", "; ".join(marks) or "same"])
    return out


HEADER = ["method", "dataset", "metric", "ours", "paper", "Δ", "published in", "conventions"]
FOOTNOTE = ("Δ = ours − paper, in the metric's display units (accuracy, NMI, ARI in %); ours: "
            "mean ± std over our seeds; ≠: a convention behind the two numbers differs; ?: it "
            "cannot be compared (the source does not state it, or our records do not). The "
            "paper's protocol (backbone, epochs, optimiser) is its own: see each table's "
            "setting below.")


def settings_lines(tables: Sequence[PaperTable], used: Iterable[str]) -> list[str]:
    """A line per table compared: its source and its setting."""
    used = {name for names in used for name in names.split(", ")}
    return [f"{t.id}: {t.source}. Setting: "
            + "; ".join(f"{k}: {v}" for k, v in t.setting.items() if v is not None) + "."
            for t in tables if t.id in used]


# what pdflatex cannot take as UTF-8 text, as math
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "≠": r"$\neq$",
                  "α": r"$\alpha$"}


def render_comparison(frame: pd.DataFrame, tables: Sequence[PaperTable], fmt: str,
                      note: str | None = None):
    """The comparison in `fmt` (TABLE_FORMATS): csv is `frame` itself (fractions); the
    display formats show `comparison_rows` with the footnote, `note` and each table's
    setting."""
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    rows = comparison_rows(frame)
    lines = [FOOTNOTE, *([note] if note else []),
             *settings_lines(tables, frame["table"])]
    if fmt == "markdown":
        from crlbench.report.table import pipe_table

        return pipe_table(HEADER, rows, "lllrrrll") + "".join(f"\n{line}\n" for line in lines)
    if fmt == "latex":
        from crlbench.report.latex import latex_escape

        def tex(text: str) -> str:
            return "".join(_LATEX_SYMBOLS.get(c, c) for c in latex_escape(text))

        body = "".join(" & ".join(map(tex, row)) + r" \\" + "\n" for row in rows)
        comments = "".join(f"% {line}\n" for line in lines)
        return (comments + "\\begin{tabular}{lllrrrll}\n\\toprule\n"
                + " & ".join(map(tex, HEADER)) + r" \\" + "\n\\midrule\n"
                + body + "\\bottomrule\n\\end{tabular}\n")
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="ours beside the published numbers")
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="right" if 3 <= i <= 5 else "left",
                         overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return Group(table, *(Text(line) for line in lines))
