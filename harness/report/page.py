"""A suite's report page in Markdown, from its run records and the figures drawn from them.

The page: the suite's name and description (shipped suites only: records do not carry it),
how many runs succeeded and failed (with each failure's error), the main table, the imbalance
and wrong-K study tables when the records have those variants, and the figures as relative
image links. `render_page` is pure; the caller draws the figures and writes the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from crlbench.loader import shipped_suites
from crlbench.report.metrics import DEFAULT_ORDER, default_metric_order, is_per_head
from crlbench.report.provenance import conventions_line, provenance
from crlbench.report.records import line_label, ok_runs
from crlbench.report.studies import (
    imbalance_markdown,
    imbalance_runs,
    imbalance_table,
    kest_estimators,
    wrong_k_markdown,
    wrong_k_runs,
    wrong_k_table,
)
from crlbench.report.summary import Record, is_number, mixed_configs, summarize
from crlbench.report.table import render

FIGURE_CAPTIONS = {
    "imbalance": "Clustering quality against the imbalance ratio ρ (mean ± std over seeds).",
    "kest": "K estimation: k-means inertia and silhouette against k; dashed: the true number "
            "of classes.",
    "tsne": "t-SNE of the features, first seed of each method, coloured by class.",
    "precision": "Retrieval precision@k (mean ± std over seeds).",
    "curves": "Learning curves: the metric evaluated during training against the epoch (mean "
              "± std over seeds).",
    "cd": "Critical-difference diagram: average ranks over the datasets; methods joined by a "
          "thick line are not significantly different (Nemenyi, α = 0.05).",
}


def suite_description(suite: str) -> str | None:
    """The description in a shipped suite's YAML, or None for any other suite."""
    path = shipped_suites().get(suite)
    if path is None:
        return None
    description = (yaml.safe_load(path.read_text()) or {}).get("description")
    return str(description) if description else None


def _runs_section(records: list[Record]) -> list[str]:
    ok = len(ok_runs(records))
    failed = [r for r in records if r.get("status") != "ok"]
    lines = [f"{len(records)} runs: {ok} ok, {len(failed)} failed."]
    if failed:
        lines.append("")
        for r in sorted(failed, key=lambda r: (line_label(r), r["dataset"], r["seed"])):
            message = str((r.get("error") or {}).get("message", "no error recorded"))
            first = message.strip().splitlines()[0] if message.strip() else message
            lines.append(f"- {line_label(r)} on {r['dataset']}, seed {r['seed']}: {first}")
    return lines


def _study_metrics(runs: list[Record]) -> list[str]:
    present = {m for r in runs for m, v in (r.get("metrics") or {}).items() if is_number(v)}
    headline = [m for m in DEFAULT_ORDER if m in present]
    return headline or [m for m in default_metric_order(present) if not is_per_head(m)]


def render_page(
    records: Iterable[Record],
    suite: str,
    description: str | None = None,
    figures: Mapping[str, str] | None = None,
) -> str:
    """The Markdown page of one suite's `records`; `figures` maps a figure kind to its image
    path relative to the page."""
    records = list(records)
    lines = [f"# Suite `{suite}`", ""]
    if description:
        lines += [description, ""]
    lines += ["## Runs", "", *_runs_section(records), ""]

    lines += ["## Results", ""]
    if ok_runs(records):
        lines.append(str(render(summarize(records), "markdown")))
        for line in (provenance(records), conventions_line(records)):
            lines += ["", line] if line else []
        lines += [f"> Warning: {warning}" for warning in mixed_configs(records)]
    else:
        lines.append("No successful runs.")
    lines.append("")

    if runs := imbalance_runs(records):
        table = imbalance_table(runs, _study_metrics(runs))
        lines += ["## Class imbalance", "", imbalance_markdown(table)]
    if (runs := wrong_k_runs(records)) and kest_estimators(runs):
        lines += ["## K estimation under a wrong K", "", wrong_k_markdown(wrong_k_table(runs))]

    if figures:
        lines += ["## Figures", ""]
        for kind, path in figures.items():
            caption = FIGURE_CAPTIONS.get(kind, kind)
            lines += [f"![{kind}]({Path(path).as_posix()})", "", caption, ""]
    return "\n".join(lines).rstrip("\n") + "\n"
