"""Figures from run records: pure functions from records to matplotlib Figures, and `save`.

Figures read only what records hold (metrics and eval_details), never models or features, and
use only successful runs. Curves are the mean over seeds with a ±1 sample-std band; percent
metrics (accuracy, NMI, ARI, precision@k) are drawn x100. A figure whose data no record has
raises `UserError` saying which record field is missing and how to get it.

Figures are `matplotlib.figure.Figure` objects made without pyplot: nothing opens a window or
stays in pyplot's registry, and `save` renders PNG with Agg and PDF with the PDF backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from crlbench.errors import UserError
from crlbench.report.metrics import metric_style, retrieval_k
from crlbench.report.records import line_label, ok_runs, ordered_labels, variant_value
from crlbench.report.summary import Record, is_number, pick_suite

PANEL = (4.2, 3.2)  # inches per panel
DPI = 150
_MANY_CLASSES = 20  # beyond this a t-SNE is coloured by a colour bar, not a legend
_TSNE_COLUMNS = 4


def save(fig: Figure, path: str | Path) -> list[Path]:
    """Write `fig` as `<path>.png` and `<path>.pdf`; return both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = (path.with_name(f"{path.name}.{ext}") for ext in ("png", "pdf"))
    fig.savefig(png, dpi=DPI)
    # no creation date, so the same records give the same PDF bytes
    fig.savefig(pdf, metadata={"CreationDate": None})
    return [png, pdf]


# -- shared layout ------------------------------------------------------------------------------


def suite_runs(records: Iterable[Record]) -> tuple[str, list[Record]]:
    """The suite of `records` and its successful runs; UserError when there are none."""
    records = list(records)
    if records:
        records = pick_suite(records, None)
    runs = ok_runs(records)
    if not runs:
        failed = len(records)
        raise UserError(f"no successful runs to plot ({failed} failed)" if failed
                        else "no run records to plot; run a suite first")
    return str(runs[0].get("suite")), runs


def _figure(suite: str, what: str, rows: int, cols: int,
            panel: tuple[float, float] = PANEL) -> tuple[Figure, np.ndarray]:
    # the extra width is for the figure legend on the right
    fig = Figure(figsize=(panel[0] * cols + 1.6, panel[1] * rows + 0.4), layout="constrained")
    fig.suptitle(f"{suite}: {what}")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _colours(labels: Sequence[str]) -> dict[str, tuple]:
    cmap = mpl.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _legend(fig: Figure, title: str | None = None) -> None:
    # one legend for the figure, from every panel's labelled artists, first occurrence wins
    handles: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper",
                   title=title, fontsize="small")


def _mean_std(frame: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean and sample std (over seeds) of `columns` per `by`, as `<column>_mean`, `_std`."""
    stats = frame.groupby(by, sort=True)[columns].agg(["mean", "std"])
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    return stats.reset_index()


def _curve(ax: Axes, x, mean, std, colour, label: str) -> None:
    x, mean, std = (np.asarray(a, dtype=float) for a in (x, mean, std))
    ax.plot(x, mean, marker="o", markersize=3.5, color=colour, label=label)
    if np.isfinite(std).any():  # one seed: no band
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)


def _log_x(ax: Axes, ticks: Iterable[float]) -> None:
    ticks = sorted(set(ticks))
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())


def _scale(metric: str) -> float:
    return 100.0 if metric_style(metric).percent else 1.0


def _axis_label(metric: str) -> str:
    style = metric_style(metric)
    return f"{style.label} (%)" if style.percent else style.label


# -- imbalance ----------------------------------------------------------------------------------


def _default_imbalance_metric(runs: list[Record]) -> str:
    # head_acc when every line has it; else kmeans_acc, which methods without heads have too
    # (a suite of raw, simclr and cc would otherwise draw cc alone)
    candidates = ("head_acc", "kmeans_acc")
    has = {m: {line_label(r, ["imbalance"]) for r in runs
               if is_number((r.get("metrics") or {}).get(m))} for m in candidates}
    lines = {line_label(r, ["imbalance"]) for r in runs}
    for metric in candidates:
        if has[metric] == lines:
            return metric
    return next((m for m in candidates if has[m]), "head_acc")


def imbalance_figure(records: Iterable[Record], metric: str | None = None) -> Figure:
    """`metric` against the imbalance ratio rho, one line per method, one panel per dataset.

    The default metric is head_acc, or kmeans_acc when some method has no cluster heads.
    """
    suite, runs = suite_runs(records)
    runs = [r for r in runs if variant_value(r, "imbalance") is not None]
    if not runs:
        raise UserError("no record has variant.imbalance; run the suite with "
                        "variant.imbalance=[1,10,100] (a list of imbalance ratios)")
    metric = metric or _default_imbalance_metric(runs)
    rows = [
        (line_label(r, ["imbalance"]), r["dataset"], float(variant_value(r, "imbalance")),
         r["metrics"][metric] * _scale(metric))
        for r in runs if is_number((r.get("metrics") or {}).get(metric))
    ]
    if not rows:
        known = sorted({m for r in runs for m in (r.get("metrics") or {})})
        raise UserError(f"no imbalance record has metric {metric!r}; valid: {', '.join(known)}")
    frame = pd.DataFrame(rows, columns=["label", "dataset", "rho", "value"])
    stats = _mean_std(frame, ["label", "dataset", "rho"], ["value"])
    labels = ordered_labels([r for r in runs if metric in r["metrics"]], ["imbalance"])
    colours = _colours(labels)
    datasets = sorted(set(frame["dataset"]))

    fig, axes = _figure(suite, f"{metric_style(metric).label} against imbalance", 1, len(datasets))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for label in labels:
            line = stats[(stats["label"] == label) & (stats["dataset"] == dataset)]
            if not line.empty:
                _curve(ax, line["rho"], line["value_mean"], line["value_std"], colours[label],
                       label)
        _log_x(ax, frame.loc[frame["dataset"] == dataset, "rho"])
        ax.set(title=dataset, xlabel="imbalance ratio ρ", ylabel=_axis_label(metric))
        ax.grid(alpha=0.3)
    _legend(fig)
    return fig


# -- K estimation -------------------------------------------------------------------------------


def kest_figure(records: Iterable[Record]) -> Figure:
    """Inertia (left) and silhouette (right) against k, one line per method (and trained K),
    with a dashed line at the true number of classes; one row of panels per dataset."""
    suite, runs = suite_runs(records)
    runs = [r for r in runs if isinstance((r.get("eval_details") or {}).get("kest"), dict)]
    if not runs:
        raise UserError("no record has eval_details.kest; run the suite with eval.metrics "
                        "including kest")
    rows = []
    for r in runs:
        kest = r["eval_details"]["kest"]
        for k, inertia, silhouette in zip(kest["ks"], kest["inertia"], kest["silhouette"],
                                          strict=True):
            rows.append((line_label(r), r["dataset"], int(k), _float(inertia),
                         _float(silhouette)))
    frame = pd.DataFrame(rows, columns=["label", "dataset", "k", "inertia", "silhouette"])
    stats = _mean_std(frame, ["label", "dataset", "k"], ["inertia", "silhouette"])
    labels = ordered_labels(runs)
    colours = _colours(labels)
    datasets = sorted(set(frame["dataset"]))
    classes = {d: sorted({(r.get("data") or {}).get("num_classes") for r in runs
                          if r["dataset"] == d} - {None}) for d in datasets}

    fig, axes = _figure(suite, "K estimation", len(datasets), 2)
    for row, dataset in zip(axes, datasets, strict=True):
        for ax, quantity in zip(row, ("inertia", "silhouette"), strict=True):
            for label in labels:
                line = stats[(stats["label"] == label) & (stats["dataset"] == dataset)]
                if not line.empty:
                    _curve(ax, line["k"], line[f"{quantity}_mean"], line[f"{quantity}_std"],
                           colours[label], label)
            for c in classes[dataset]:
                ax.axvline(c, color="0.3", linestyle="--", linewidth=1, label=f"classes ({c})")
            ax.set(title=f"{dataset}: {quantity}", xlabel="k (clusters)", ylabel=quantity)
            ax.grid(alpha=0.3)
    _legend(fig)
    return fig


def _float(value) -> float:
    return float(value) if is_number(value) else float("nan")


# -- t-SNE --------------------------------------------------------------------------------------


def _first_seeds(runs: list[Record]) -> dict[tuple[str, str], Record]:
    firsts: dict[tuple[str, str], Record] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        firsts.setdefault((r["dataset"], line_label(r)), r)
    return firsts


def tsne_figure(records: Iterable[Record]) -> Figure:
    """One t-SNE scatter per method (its first seed) and dataset, coloured by class."""
    suite, runs = suite_runs(records)
    runs = [r for r in runs if isinstance((r.get("eval_details") or {}).get("tsne"), dict)]
    if not runs:
        raise UserError("no record has eval_details.tsne; run the suite with eval.metrics "
                        "including tsne")
    firsts = _first_seeds(runs)
    datasets = sorted({d for d, _ in firsts})
    panels = {d: [label for label in ordered_labels(runs) if (d, label) in firsts]
              for d in datasets}
    classes = sorted({c for r in firsts.values() for c in r["eval_details"]["tsne"]["labels"]})
    many = len(classes) > _MANY_CLASSES
    cmap = mpl.colormaps["viridis" if many else "tab10" if len(classes) <= 10 else "tab20"]
    index = {c: i for i, c in enumerate(classes)}
    norm = Normalize(0, max(len(classes) - 1, 1)) if many else None

    # each dataset's panels fill rows of at most _TSNE_COLUMNS
    cols = min(_TSNE_COLUMNS, max(len(p) for p in panels.values()))
    slots = [(d, labels[i:i + cols]) for d, labels in panels.items()
             for i in range(0, len(labels), cols)]
    fig, axes = _figure(suite, "t-SNE (first seed)", len(slots), cols,
                        panel=(PANEL[1], PANEL[1]))
    for row, (dataset, labels) in zip(axes, slots, strict=True):
        for i, ax in enumerate(row):
            if i >= len(labels):
                ax.remove()
                continue
            label = labels[i]
            tsne = firsts[(dataset, label)]["eval_details"]["tsne"]
            points = np.asarray(tsne["points"], dtype=float).reshape(-1, 2)
            codes = np.array([index[c] for c in tsne["labels"]])
            colours = codes if many else [cmap(c % cmap.N) for c in codes]
            ax.scatter(points[:, 0], points[:, 1], c=colours, cmap=cmap if many else None,
                       norm=norm, s=3, linewidths=0, rasterized=True)
            ax.set(title=f"{dataset}: {label}", xticks=[], yticks=[])
            ax.set_aspect("equal", adjustable="datalim")
    if many:
        mappable = ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=fig.axes, label="class (index)", shrink=0.8)
    else:
        handles = [Line2D([], [], linestyle="", marker="o", markersize=5,
                          color=cmap(index[c] % cmap.N)) for c in classes]
        fig.legend(handles, [str(c) for c in classes], loc="outside right upper", title="class",
                   fontsize="small", ncols=1 if len(classes) <= 10 else 2)
    return fig


# -- precision@k --------------------------------------------------------------------------------


def precision_figure(records: Iterable[Record]) -> Figure:
    """Precision@k (metrics retrieval_p{k}) against k, one line per method, panel per dataset."""
    suite, runs = suite_runs(records)
    rows = [
        (line_label(r), r["dataset"], k, value * 100)
        for r in runs
        for name, value in (r.get("metrics") or {}).items()
        if (k := retrieval_k(name)) is not None and is_number(value)
    ]
    if not rows:
        raise UserError("no record has retrieval_p<k> metrics; run the suite with eval.metrics "
                        "including retrieval")
    frame = pd.DataFrame(rows, columns=["label", "dataset", "k", "value"])
    stats = _mean_std(frame, ["label", "dataset", "k"], ["value"])
    labels = [label for label in ordered_labels(runs) if label in set(frame["label"])]
    colours = _colours(labels)
    datasets = sorted(set(frame["dataset"]))

    fig, axes = _figure(suite, "precision@k", 1, len(datasets))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for label in labels:
            line = stats[(stats["label"] == label) & (stats["dataset"] == dataset)]
            if not line.empty:
                _curve(ax, line["k"], line["value_mean"], line["value_std"], colours[label],
                       label)
        _log_x(ax, frame.loc[frame["dataset"] == dataset, "k"])
        ax.set(title=dataset, xlabel="k (neighbours retrieved)", ylabel="precision@k (%)")
        ax.grid(alpha=0.3)
    _legend(fig)
    return fig


# -- learning curves ----------------------------------------------------------------------------


def _curve_points(runs: list[Record]) -> list[tuple[str, str, int, str, float]]:
    """(label, dataset, epoch, metric, value) of every learning-curve point in the records."""
    return [(line_label(r), r["dataset"], epoch, name, value)
            for r in runs for epoch, entry in enumerate(r.get("history") or [], start=1)
            for name, value in (entry.get("eval") or {}).items() if is_number(value)]


def curves_figure(records: Iterable[Record], metric: str | None = None) -> Figure:
    """A learning-curve metric (default knn200_acc, else the first the records have) against
    the epoch, one line per method with the mean and a ±1 std band over seeds, one panel per
    dataset."""
    suite, runs = suite_runs(records)
    points = _curve_points(runs)
    if not points:
        raise UserError("no record has learning curves; run the suite with eval.every=N "
                        "(an evaluation every N epochs of training)")
    names = sorted({p[3] for p in points})
    if metric is None:
        metric = "knn200_acc" if "knn200_acc" in names else names[0]
    elif metric not in names:
        raise UserError(f"no learning curve has metric {metric!r}; valid: {', '.join(names)}")
    frame = pd.DataFrame([p for p in points if p[3] == metric],
                         columns=["label", "dataset", "epoch", "metric", "value"])
    frame["value"] *= _scale(metric)
    stats = _mean_std(frame, ["label", "dataset", "epoch"], ["value"])
    labels = [label for label in ordered_labels(runs) if label in set(frame["label"])]
    colours = _colours(labels)
    datasets = sorted(set(frame["dataset"]))

    fig, axes = _figure(suite, f"learning curves, {metric_style(metric).label}", 1,
                        len(datasets))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for label in labels:
            line = stats[(stats["label"] == label) & (stats["dataset"] == dataset)]
            if not line.empty:
                _curve(ax, line["epoch"], line["value_mean"], line["value_std"],
                       colours[label], label)
        ax.set(title=dataset, xlabel="epoch", ylabel=_axis_label(metric))
        ax.grid(alpha=0.3)
    _legend(fig)
    return fig


# -- one run's training ------------------------------------------------------------------------


def run_figure(record: Record) -> Figure:
    """One run's training by epoch: the loss, the learning rate and, where the run evaluated
    during training (eval.every), each of those metrics; UserError when it has no history."""
    history = record.get("history") or []
    panels = {name: [(epoch, entry[name]) for epoch, entry in enumerate(history, start=1)
                     if is_number(entry.get(name))] for name in ("loss", "lr")}
    for epoch, entry in enumerate(history, start=1):
        for name, value in (entry.get("eval") or {}).items():
            if is_number(value):
                panels.setdefault(name, []).append((epoch, value * _scale(name)))
    panels = {name: points for name, points in panels.items() if points}
    if not panels:
        raise UserError(f"run {record.get('run_id')} has no training history to draw")
    fig, axes = _figure(f"{line_label(record)} on {record.get('dataset')}, seed "
                        f"{record.get('seed')}", "training", 1, len(panels), panel=(3.6, 2.8))
    for ax, (name, points) in zip(axes[0], panels.items(), strict=True):
        epochs, values = zip(*points, strict=True)
        ax.plot(epochs, values, marker="o" if len(points) < 30 else None, markersize=3)
        label = {"loss": "loss", "lr": "learning rate"}.get(name) or _axis_label(name)
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
    return fig
