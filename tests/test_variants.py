"""Harness variants: long-tailed training splits (imbalance) and the K a method trains with."""

from __future__ import annotations

import pytest
import torch

from crlbench.cli import main
from crlbench.data import long_tail_counts, long_tail_indices
from crlbench.errors import UserError
from crlbench.loader import load_suite
from crlbench.store import scan
from crlbench.suite import expand


@pytest.mark.parametrize(("n_max", "classes", "rho"), [(5000, 10, 100), (500, 100, 10),
                                                       (143, 10, 50), (600, 2, 10)])
def test_long_tail_counts_follow_the_formula(n_max, classes, rho):
    counts = long_tail_counts(n_max, classes, rho)
    assert counts == [int(n_max * rho ** (-i / (classes - 1))) for i in range(classes)]
    assert counts[0] == n_max and counts[-1] == int(n_max / rho)
    assert counts == sorted(counts, reverse=True)  # class 0 is the head


def test_long_tail_indices_keep_the_counts_deterministically_per_seed():
    labels = torch.arange(10).repeat_interleave(100)[torch.randperm(1000)]
    keep = long_tail_indices(labels, 10, 10.0, seed=3)
    counts = torch.bincount(labels[keep], minlength=10).tolist()
    assert counts == long_tail_counts(100, 10, 10.0)
    assert torch.equal(keep, long_tail_indices(labels, 10, 10.0, seed=3))
    assert not torch.equal(keep, long_tail_indices(labels, 10, 10.0, seed=4))
    assert torch.equal(long_tail_indices(labels, 10, 1.0, seed=0), torch.arange(1000))
    with pytest.raises(ValueError, match="rho must be at least 1"):
        long_tail_counts(10, 3, 0.5)


def test_variants_expand_like_seeds_and_k_only_for_cluster_methods():
    cfg = load_suite(None, ["method=simclr,cc", "dataset=digits", "seeds=[0,1]",
                            "variant.imbalance=[1,10]", "variant.k=[5,20]"])
    specs = expand(cfg)
    simclr = [s for s in specs if s.method == "simclr"]
    cc = [s for s in specs if s.method == "cc"]
    assert len(simclr) == 2 * 2  # rho x seeds: simclr has no cluster head to vary K for
    assert len(cc) == 2 * 2 * 2
    assert {(s.variant["imbalance"], s.variant["k"]) for s in cc} == {
        (1.0, 5), (1.0, 20), (10.0, 5), (10.0, 20)}
    assert all(set(s.variant) == {"imbalance"} for s in simclr)
    assert len({s.run_id for s in specs}) == len(specs)
    with pytest.raises(UserError, match="rho >= 1"):
        expand(load_suite(None, ["variant.imbalance=[0.5]"]))
    with pytest.raises(UserError, match="at least 2"):
        expand(load_suite(None, ["method=cc", "variant.k=[1]"]))


def test_imbalanced_and_wrong_k_runs_record_what_they_trained_on(tiny, tmp_path):
    store = tmp_path / "results"
    assert main(["run", "suite=quickstart", *tiny, "method=cc", "seeds=[0]",
                 "variant.imbalance=[10]", "variant.k=[5]",
                 "eval.metrics=[heads,kmeans]"]) == 0
    (record,) = scan(store).records
    assert record["variant"] == {"imbalance": 10.0, "k": 5}
    counts = record["data"]["train_class_counts"]
    assert counts == long_tail_counts(min(counts[0], 1437), 10, 10.0)  # class 0: smallest class
    assert sum(counts) == record["data"]["train_size"] < 1437
    # the K = 5 head is scored against the 10 true classes; k-means uses the true K
    assert record["metrics"]["head_acc"] == record["metrics"]["head0_k5_acc"]
    assert record["eval_details"]["kmeans"]["k"] == 10
