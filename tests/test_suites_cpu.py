"""The CPU variants of the representation and loss-study suites, end to end (2 epochs each)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from crlbench.cli import main
from crlbench.loader import load_suite
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


@pytest.mark.slow
def test_imbalance_cpu_runs_and_reports_drops(tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", "suite=imbalance_cpu", *SHORT, f"results.dir={store}"]) == 0
    records = scan(store).records
    rhos = {r["variant"]["imbalance"] for r in records}
    assert rhos == {1.0, 10.0, 50.0, 100.0}
    for r in records:  # the long tail: the head class keeps the most, the tail the fewest
        if r["variant"]["imbalance"] == 1.0:
            continue  # rho = 1 trains on the dataset as it is
        counts = r["data"]["train_class_counts"]
        assert counts[0] == max(counts) and counts[-1] == min(counts)
        assert counts[0] / max(1, counts[-1]) >= r["variant"]["imbalance"] * 0.5
    assert main(["report", "suite=imbalance_cpu", f"results.dir={store}"]) == 0
    page = (store / "imbalance_cpu" / "report.md").read_text()
    assert "imbalance" in page and "figures/imbalance_cpu_imbalance.png" in page
    assert (store / "imbalance_cpu" / "figures" / "imbalance_cpu_imbalance.png").stat().st_size


@pytest.mark.slow
def test_wrong_k_cpu_estimates_k_and_reports_it(tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", "suite=wrong_k_cpu", *SHORT, f"results.dir={store}"]) == 0
    records = scan(store).records
    assert {(r["method"], r["variant"]["k"]) for r in records} == {
        (m, k) for m in ("cc", "rcc") for k in (5, 10, 20)}
    for r in records:
        k = r["variant"]["k"]
        m = r["metrics"]
        assert m["head_acc"] == m[f"head0_k{k}_acc"]  # the K head, scored against the truth
        assert r["eval_details"]["kmeans"]["k"] == 10  # k-means with the true K
        assert 2 <= m["kest_silhouette"] <= 30 and 2 <= m["kest_elbow"] <= 30
        assert m["kest_elbow_err"] == abs(m["kest_elbow"] - 10)
        assert len(r["eval_details"]["kest"]["ks"]) == 29
    assert main(["report", "suite=wrong_k_cpu", f"results.dir={store}"]) == 0
    page = (store / "wrong_k_cpu" / "report.md").read_text()
    assert "K estimation" in page and "figures/wrong_k_cpu_kest.png" in page


def _fake_fashion(root, n_train: int = 600, n_test: int = 200) -> None:
    """Fashion-MNIST's four IDX files, gzipped as released, with 10 learnable classes: each a
    fixed random 28x28 pattern plus noise."""
    import numpy as np
    from formats import write_idx

    rng = np.random.default_rng(0)
    prototypes = rng.integers(0, 256, (10, 28, 28))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = np.clip(prototypes[labels] + rng.normal(0, 40, (n, 28, 28)), 0, 255)
        write_idx(root / "FashionMNIST/raw" / f"{prefix}-images-idx3-ubyte", images, gz=True)
        write_idx(root / "FashionMNIST/raw" / f"{prefix}-labels-idx1-ubyte", labels, gz=True)


@pytest.mark.slow
def test_fashion_cpu_runs_every_method_on_fashion_files(tmp_path, capsys):
    """The CPU variant of the reference board, on small files in Fashion-MNIST's real format."""
    _fake_fashion(tmp_path / "data")
    store = tmp_path / "results"
    assert main(["run", "suite=fashion_cpu", "train.epochs=1", "eval.linear.epochs=5",
                 "train.batch_size=128", f"data.root={tmp_path / 'data'}", "executor=local",
                 f"results.dir={store}"]) == 0
    frame = table_csv(store, "fashion_cpu", capsys)
    methods = set(load_suite("fashion_cpu").method)
    assert set(frame["method"]) == methods
    clustering = {"cc", "c2bin", "deepcluster"}
    metrics = set(frame[frame["method"].isin(clustering)]["metric"])
    assert {"knn200_acc", "linear_acc", "kmeans_nmi", "head_acc", "retrieval_p1",
            "uniform"} <= metrics
    raw = frame[(frame["method"] == "raw") & (frame["metric"] == "knn5_acc")]["mean"].item()
    assert raw > 0.9  # the classes are separable in pixel space (CSV holds fractions)


def test_the_reference_board_has_every_grayscale_method():
    from crlbench import registry

    cfg = load_suite("fashion")
    grayscale = {name for name in registry.methods.names()
                 if registry.methods.get(name).input_channels in (None, (1,), (1, 3))}
    assert set(cfg.method) == grayscale
    assert list(cfg.seeds) == [0, 1, 2] and cfg.train.epochs == 50
    assert cfg.backbone.name == "resnet18" and cfg.data.image_size == 32
