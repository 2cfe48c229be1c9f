"""A small results store written as `crlbench run` writes one: records of a suite `demo` with
three methods (two close, one far behind) and the raw floor on two datasets, three seeds each,
with configs, histories, environments and conventions, and one failed run. The site, table
and bundle tests read it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crlbench.store import SCHEMA_VERSION, record_path, write_record

SUITE = "demo"
DATASETS = ("digits", "fashion_mnist")
SEEDS = (0, 1, 2)
# method -> (knn5_acc centre, linear_acc centre, align centre); alpha and beta are within the
# seeds' noise of each other, gamma and raw are far behind
CENTRES = {"alpha": (0.900, 0.920, 0.30), "beta": (0.897, 0.915, 0.32),
           "gamma": (0.700, 0.750, 0.60), "raw": (0.600, 0.650, 0.90)}
CONVENTIONS = {"kNN": "k = 5, cosine, votes weighted exp(s / 0.07)", "trained on": "train"}


def _record(method: str, dataset: str, seed: int, rng: np.random.Generator) -> dict:
    knn, linear, align = (c + rng.normal(0, 0.004) for c in CENTRES[method])
    epochs = 0 if method == "raw" else 4
    history = [{"loss": 5.0 - 0.5 * e + 0.01 * seed, "lr": 0.001 * (epochs - e) / epochs,
                "seconds": 1.0 + e, **({"eval": {"knn5_acc": knn - 0.05 * (epochs - e)}}
                                        if method == "alpha" else {})}
               for e in range(epochs)]
    metrics = {"knn5_acc": knn, "linear_acc": linear, "align": align}
    if method == "gamma" and dataset == "digits":
        metrics["kmeans_nmi"] = 0.5 + 0.01 * seed  # a column only one method has
    return {
        "schema": SCHEMA_VERSION, "run_id": f"{method[:2]}{dataset[:2]}{seed}0000000",
        "status": "ok", "error": None, "suite": SUITE, "method": method, "dataset": dataset,
        "seed": seed, "variant": {}, "metrics": metrics, "history": history,
        "config_id": f"cfg-{method}-{dataset}", "method_version": "1",
        "created": f"2026-12-0{1 + seed}T10:00:00+00:00",
        "config": {"method": method, "dataset": dataset, "seed": seed,
                   "backbone": {"name": "convnet_tiny"},
                   "train": {"epochs": epochs if method != "raw" else 4, "batch_size": 256},
                   "method_cfg": {"temperature": 0.5}},
        "environment": {"torch": "2.5.0", "crlbench": "0.1.0", "device": "cpu",
                        "device_name": "Test CPU", "git_commit": "0123456789abcdef"},
        "conventions": CONVENTIONS,
        "wall_seconds": {"train": 12.5, "evaluate": 3.25},
    }


def write_board(store: Path) -> list[dict]:
    """Write the demo suite's records (and one failed run) under `store`; return them."""
    rng = np.random.default_rng(7)
    records = [_record(m, d, s, rng) for m in CENTRES for d in DATASETS for s in SEEDS]
    failed = {**_record("gamma", "digits", 3, rng), "status": "failed", "metrics": {},
              "run_id": "gadi30000000", "seed": 3,
              "error": {"type": "RuntimeError", "message": "CUDA out of memory\ntraceback"}}
    records.append(failed)
    for record in records:
        write_record(record_path(store, SUITE, record["method"], record["dataset"],
                                 record["run_id"]), record)
    return records


def cell_values(records: list[dict], method: str, dataset: str, metric: str) -> list[float]:
    return [r["metrics"][metric] for r in records
            if r["status"] == "ok" and r["method"] == method and r["dataset"] == dataset
            and metric in r["metrics"]]
