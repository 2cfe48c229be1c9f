"""The CPU variants of the representation and loss-study suites, end to end (2 epochs each)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from crlbench.cli import main
from crlbench.config import load_suite
from crlbench.store import scan

SHORT = ["train.epochs=2", "eval.linear.epochs=5"]


def table_csv(store, suite, capsys) -> pd.DataFrame:
    capsys.readouterr()
    assert main(["table", f"suite={suite}", f"results.dir={store}", "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


@pytest.mark.slow
def test_representation_cpu_runs_every_method(tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", "suite=representation_cpu", *SHORT, f"results.dir={store}"]) == 0
    frame = table_csv(store, "representation_cpu", capsys)
    methods = list(load_suite("representation_cpu").method)
    assert set(frame["method"]) == set(methods)
    assert set(frame["metric"]) == {"knn5_acc", "knn200_acc", "linear_acc"}
    assert len(frame) == 3 * len(methods)
    # every method really trained (raw excepted): a loss history per epoch, all finite
    for record in scan(store).records:
        if record["method"] != "raw":
            assert len(record["history"]) == 2, record["method"]


@pytest.mark.slow
def test_losses_cpu_sweeps_the_four_cmc_losses(tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", "suite=losses_cpu", *SHORT, f"results.dir={store}"]) == 0
    frame = table_csv(store, "losses_cpu", capsys)
    assert set(frame["method"]) == {f"cmc (loss={loss})"
                                    for loss in ("softmax", "nce", "triplet", "spring")}
    assert {"linear_acc", "align", "uniform"} <= set(frame["metric"])
    losses = {r["variant"]["method_cfg.cmc.loss"]: r for r in scan(store).records}
    assert set(losses) == {"softmax", "nce", "triplet", "spring"}
    for name, record in losses.items():
        assert record["config"]["method_cfg"]["loss"] == name
        assert record["metrics"]["align"] >= 0 and record["metrics"]["uniform"] <= 0


@pytest.mark.slow
def test_clustering_cpu_scores_heads_and_kmeans_for_every_method(tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", "suite=clustering_cpu", *SHORT, f"results.dir={store}"]) == 0
    frame = table_csv(store, "clustering_cpu", capsys)
    methods = set(load_suite("clustering_cpu").method)
    assert set(frame["method"]) == methods
    kmeans = {"kmeans_acc", "kmeans_nmi", "kmeans_ari"}
    heads = {"head_acc", "head_nmi", "head_ari"}
    for method in methods:
        shown = set(frame[frame["method"] == method]["metric"])
        assert kmeans <= shown, method
        # every method with a cluster head has it scored; raw and simclr have none
        assert (heads <= shown) == (method not in {"raw", "simclr"}), method
    c2bin = next(r for r in scan(store).records if r["method"] == "c2bin")
    assert {"head0_k10_acc", "head1_k40_acc", "head2_k160_acc"} <= set(c2bin["metrics"])
    assert c2bin["cluster_split"] == "all"
