"""Tables of the variant studies: metrics under class imbalance, and K estimates under a wrong K.

`imbalance_table`: each metric at each imbalance ratio rho (`variant.imbalance`), with its
drop from rho = 1 paired per seed: value(rho) - value(rho = 1) for the same method, dataset and
seed, then mean ± sample std over the seeds that have both. A negative drop is a loss.

`wrong_k_table`: for runs trained with a given K (`variant.k`), each K estimate in the metrics
(`kest_silhouette`, `kest_elbow`, any other `kest_*` but the `kest_*_err` scores) and its error
|estimate - true number of classes| (`data.num_classes`; the recorded `kest_*_err`), mean ±
sample std over seeds. The sign of a miss shows in the estimate's mean against K and classes.

Frames hold raw values (fractions, not percent); the `*_markdown` functions format them as
tables do. Runs of the same key and seed (several configs) are averaged before pairing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from crlbench.errors import UserError
from crlbench.report.metrics import format_mean_std, metric_style
from crlbench.report.records import line_label, ok_runs, ordered_labels, variant_value
from crlbench.report.summary import Record, is_number
from crlbench.report.table import pipe_table

IMBALANCE_COLUMNS = ("method", "dataset", "rho", "metric", "mean", "std", "n",
                     "drop_mean", "drop_std", "drop_n")
WRONG_K_COLUMNS = ("method", "dataset", "k", "classes", "estimator", "mean", "std",
                   "error_mean", "error_std", "n")
KEST_PREFIX = "kest_"


def imbalance_runs(records: Iterable[Record]) -> list[Record]:
    return [r for r in ok_runs(records) if variant_value(r, "imbalance") is not None]


def wrong_k_runs(records: Iterable[Record]) -> list[Record]:
    return [r for r in ok_runs(records) if variant_value(r, "k") is not None]


def _ordered(frame: pd.DataFrame, labels: list[str], by: list[str]) -> pd.DataFrame:
    rank = {label: i for i, label in enumerate(labels)}
    return frame.sort_values(by, key=lambda c: c.map(rank) if c.name == "method" else c,
                             ignore_index=True)


def imbalance_table(records: Iterable[Record], metrics: Sequence[str]) -> pd.DataFrame:
    """Each of `metrics` per method, dataset and rho, with its paired drop from rho = 1."""
    runs = imbalance_runs(records)
    if not runs:
        raise UserError("no successful record has variant.imbalance")
    metrics = list(dict.fromkeys(metrics))
    long = pd.DataFrame(
        [
            (line_label(r, ["imbalance"]), r["dataset"], float(variant_value(r, "imbalance")),
             r["seed"], metric, float(r["metrics"][metric]))
            for r in runs for metric in metrics
            if is_number((r.get("metrics") or {}).get(metric))
        ],
        columns=["method", "dataset", "rho", "seed", "metric", "value"],
    )
    missing = [m for m in metrics if m not in set(long["metric"])]
    if missing:
        known = sorted({m for r in runs for m in (r.get("metrics") or {})})
        raise UserError(f"no imbalance record has metric {', '.join(map(repr, missing))}; "
                        f"valid: {', '.join(known)}")
    keys = ["method", "dataset", "metric", "seed"]
    per_seed = long.groupby([*keys, "rho"], as_index=False)["value"].mean()
    base = per_seed[per_seed["rho"] == 1.0][[*keys, "value"]].rename(columns={"value": "base"})
    per_seed = per_seed.merge(base, on=keys, how="left")
    per_seed["drop"] = per_seed["value"] - per_seed["base"]
    table = (
        per_seed.groupby(["method", "dataset", "rho", "metric"], as_index=False)
        .agg(mean=("value", "mean"), std=("value", "std"), n=("value", "count"),
             drop_mean=("drop", "mean"), drop_std=("drop", "std"), drop_n=("drop", "count"))
    )
    table["metric_order"] = table["metric"].map({m: i for i, m in enumerate(metrics)})
    labels = ordered_labels(runs, ["imbalance"])
    table = _ordered(table, labels, ["method", "dataset", "rho", "metric_order"])
    return table[list(IMBALANCE_COLUMNS)]


def kest_estimators(runs: Iterable[Record]) -> list[str]:
    """The K-estimate metrics the runs have: silhouette and elbow first, then any other."""
    present = {m for r in runs for m, v in (r.get("metrics") or {}).items()
               if m.startswith(KEST_PREFIX) and not m.endswith("_err") and is_number(v)}
    first = [m for m in ("kest_silhouette", "kest_elbow") if m in present]
    return first + sorted(present.difference(first))


def wrong_k_table(records: Iterable[Record]) -> pd.DataFrame:
    """Per method, dataset and trained K: each K estimate and its error vs the true classes."""
    runs = wrong_k_runs(records)
    if not runs:
        raise UserError("no successful record has variant.k")
    estimators = kest_estimators(runs)
    if not estimators:
        raise UserError("no wrong-K record has kest_* metrics; run the suite with eval.metrics "
                        "including kest")
    long = pd.DataFrame(
        [
            (line_label(r, ["k"]), r["dataset"], int(variant_value(r, "k")),
             (r.get("data") or {}).get("num_classes", np.nan), r["seed"], name,
             float(r["metrics"][name]))
            for r in runs for name in estimators if is_number(r["metrics"].get(name))
        ],
        columns=["method", "dataset", "k", "classes", "seed", "estimator", "value"],
    )
    keys = ["method", "dataset", "k", "classes", "estimator"]
    per_seed = long.groupby([*keys, "seed"], as_index=False, dropna=False)["value"].mean()
    per_seed["error"] = (per_seed["value"] - per_seed["classes"]).abs()
    table = per_seed.groupby(keys, as_index=False, dropna=False).agg(
        mean=("value", "mean"), std=("value", "std"), error_mean=("error", "mean"),
        error_std=("error", "std"), n=("value", "count"),
    )
    table["estimator_order"] = table["estimator"].map({e: i for i, e in enumerate(estimators)})
    table = _ordered(table, ordered_labels(runs, ["k"]), ["method", "dataset", "k",
                                                          "estimator_order"])
    return table[list(WRONG_K_COLUMNS)]


# -- markdown -----------------------------------------------------------------------------------


def _signed(metric: str, mean: float, std: float) -> str:
    if np.isnan(mean):
        return "–"
    text = format_mean_std(metric, mean, std)
    return text if text.startswith("-") else "+" + text


def imbalance_markdown(table: pd.DataFrame) -> str:
    """A pipe table of `imbalance_table`'s frame: a row per method, dataset and rho; a column
    per metric with `mean ± std (Δ drop ± std)`."""
    metrics = list(dict.fromkeys(table["metric"]))
    rows = []
    for (method, dataset, rho), group in table.groupby(["method", "dataset", "rho"],
                                                       sort=False):
        cells = {row.metric: row for row in group.itertuples(index=False)}
        row = [method, dataset, f"{rho:g}", str(int(group["n"].max()))]
        for metric in metrics:
            cell = cells.get(metric)
            if cell is None:
                row.append("–")
                continue
            text = format_mean_std(metric, cell.mean, cell.std)
            if rho != 1.0:
                text += f" (Δ {_signed(metric, cell.drop_mean, cell.drop_std)})"
            row.append(text)
        rows.append(row)
    header = ["method", "dataset", "ρ", "seeds", *(metric_style(m).label for m in metrics)]
    percent = any(metric_style(m).percent for m in metrics)
    note = ("Mean ± sample std over seeds; Δ is the drop from ρ = 1 paired per seed "
            "(value at ρ minus value at ρ = 1, same method, dataset and seed), mean ± std"
            + ("; accuracy, NMI, ARI and precision@k in %." if percent else "."))
    return pipe_table(header, rows, "ll" + "r" * (len(header) - 2)) + "\n" + note + "\n"


def wrong_k_markdown(table: pd.DataFrame) -> str:
    """A pipe table of `wrong_k_table`'s frame: a row per method, dataset and trained K; per
    estimator its estimate and error, mean ± std."""
    estimators = list(dict.fromkeys(table["estimator"]))
    rows = []
    for (method, dataset, k, classes), group in table.groupby(
            ["method", "dataset", "k", "classes"], sort=False, dropna=False):
        cells = {row.estimator: row for row in group.itertuples(index=False)}
        row = [method, dataset, str(k), "?" if pd.isna(classes) else f"{classes:g}",
               str(int(group["n"].max()))]
        for name in estimators:
            cell = cells.get(name)
            row += (["–", "–"] if cell is None else
                    [_plain(cell.mean, cell.std), _plain(cell.error_mean, cell.error_std)])
        rows.append(row)
    header = ["method", "dataset", "K", "classes", "seeds"]
    for name in estimators:
        short = name.removeprefix(KEST_PREFIX)
        header += [f"K̂ {short}", f"error {short}"]
    note = ("K is the number of clusters the method was trained with; K̂ the number of "
            "clusters estimated from its features; error = |K̂ − classes|. Mean ± sample std "
            "over seeds.")
    return pipe_table(header, rows, "ll" + "r" * (len(header) - 2)) + "\n" + note + "\n"


def _plain(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.1f}" + ("" if np.isnan(std) else f" ± {std:.1f}")

