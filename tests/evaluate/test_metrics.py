"""Tests of crlbench.evaluate against scikit-learn, brute force and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from crlbench import registry
from crlbench.config import EvalConfig
from crlbench.errors import UserError
from crlbench.evaluate import (
    Embeddings,
    ari,
    cluster_scores,
    cluster_split,
    contingency,
    hungarian_accuracy,
    knn_accuracy,
    linear_probe,
    nmi,
    precision_at_k,
)
from crlbench.evaluate.kmeans import _kmeans_plus_plus, _lloyd, kmeans
from crlbench.evaluate.linear import _Settings, _train, stratified_split
from crlbench.resolve import evaluate_named

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------- clustering metrics


@st.composite
def labelings(draw):
    """Two labelings of the same samples, with arbitrary (also unequal) numbers of values."""
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 7))
    c = draw(st.integers(1, 7))
    pred = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    truth = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return pred, truth


@settings(max_examples=300, deadline=None)
@given(labelings())
def test_nmi_and_ari_equal_sklearn(pair):
    pred, truth = pair
    p, t = torch.tensor(pred), torch.tensor(truth)
    assert nmi(p, t) == pytest.approx(normalized_mutual_info_score(truth, pred), abs=1e-12)
    assert ari(p, t) == pytest.approx(adjusted_rand_score(truth, pred), abs=1e-12)


@pytest.mark.parametrize(
    ("pred", "truth"),
    [
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # one cluster, one class
        ([0, 0, 0, 0], [0, 1, 0, 1]),  # one cluster
        ([0, 1, 2, 3], [0, 0, 0, 0]),  # one class
        ([0, 1, 2, 3], [0, 1, 2, 3]),  # all singletons
        ([5, 5, 9, 9], [-1, -1, 7, 7]),  # arbitrary label values
        ([0], [3]),
    ],
)
def test_nmi_and_ari_edge_cases_as_sklearn(pred, truth):
    p, t = torch.tensor(pred), torch.tensor(truth)
    assert nmi(p, t) == normalized_mutual_info_score(truth, pred)
    assert ari(p, t) == adjusted_rand_score(truth, pred)


def test_nmi_and_ari_on_large_random_labelings():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 20000)
    pred = np.where(rng.random(20000) < 0.6, truth, rng.integers(0, 13, 20000))
    p, t = torch.from_numpy(pred), torch.from_numpy(truth)
    assert nmi(p, t) == pytest.approx(normalized_mutual_info_score(truth, pred), abs=1e-12)
    assert ari(p, t) == pytest.approx(adjusted_rand_score(truth, pred), abs=1e-12)


def test_contingency_counts_rows_clusters_columns_classes():
    pred = torch.tensor([2, 2, 7, 7, 7, 2])
    truth = torch.tensor([0, 1, 1, 1, 0, 0])
    expected = torch.tensor([[2, 1], [1, 2]])  # cluster 2: two of class 0, one of class 1
    assert torch.equal(contingency(pred, truth), expected)
    with pytest.raises(ValueError, match="labels"):
        contingency(pred, truth[:3])


def test_hungarian_accuracy_of_a_permuted_perfect_clustering_is_one():
    truth = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    perm = torch.tensor([3, 0, 2, 1])
    assert hungarian_accuracy(perm[truth], truth) == 1.0


def test_hungarian_accuracy_hand_computed_with_an_unmatched_cluster():
    # Contingency (clusters x classes) = [[4, 1], [0, 3], [2, 2]], 12 samples. The best
    # one-to-one matching is cluster 0 -> class 0, cluster 1 -> class 1: 4 + 3 = 7 correct.
    # Cluster 2 stays unmatched and its 4 samples count as wrong (a many-to-one majority
    # mapping would instead score (4 + 3 + 2) / 12).
    pred = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)
    truth = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1])
    assert hungarian_accuracy(pred, truth) == pytest.approx(7 / 12)
    # More classes than clusters: the class left over is wrong whatever it is matched to.
    one_cluster = torch.zeros(6, dtype=torch.long)
    assert hungarian_accuracy(one_cluster, torch.tensor([0, 0, 0, 1, 1, 2])) == 0.5


def _brute_force_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    clusters, classes = np.unique(pred), np.unique(truth)
    best = 0
    if len(clusters) <= len(classes):
        for chosen in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, chosen, strict=True))
            best = max(best, sum(mapping[p] == t for p, t in zip(pred, truth, strict=True)))
    else:
        for chosen in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(chosen, classes, strict=True))
            best = max(best, sum(mapping.get(p) == t for p, t in zip(pred, truth, strict=True)))
    return best / len(pred)


def test_hungarian_accuracy_equals_brute_force_over_matchings():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n, k, c = rng.integers(1, 30), rng.integers(1, 6), rng.integers(1, 6)
        pred, truth = rng.integers(0, k, n), rng.integers(0, c, n)
        got = hungarian_accuracy(torch.from_numpy(pred), torch.from_numpy(truth))
        assert got == pytest.approx(_brute_force_accuracy(pred, truth), abs=1e-12)


def test_cluster_scores_keys():
    scores = cluster_scores(torch.tensor([1, 1, 0, 0]), torch.tensor([0, 0, 1, 1]))
    assert scores == {"acc": 1.0, "nmi": 1.0, "ari": 1.0}


# ---------------------------------------------------------------- kNN


def _brute_force_knn(train, train_labels, test, test_labels, k, temperature, num_classes):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    correct = 0
    for q, label in zip(test, test_labels, strict=True):
        sims = train @ q
        nearest = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in nearest:
            votes[train_labels[j]] += np.exp(sims[j] / temperature)
        correct += int(np.argmax(votes) == label)
    return correct / len(test)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    num_classes = 4
    centers = rng.normal(size=(num_classes, 8))
    train_labels = rng.integers(0, num_classes, 60)
    test_labels = rng.integers(0, num_classes, 25)
    train = centers[train_labels] + rng.normal(scale=1.5, size=(60, 8))
    test = centers[test_labels] + rng.normal(scale=1.5, size=(25, 8))
    ks = (1, 5, 20, 100)  # 100 > bank size: the whole bank votes
    for temperature in (0.07, 0.5):
        got = knn_accuracy(
            torch.tensor(train, dtype=torch.float32),
            torch.from_numpy(train_labels),
            torch.tensor(test, dtype=torch.float32),
            torch.from_numpy(test_labels),
            ks=ks,
            temperature=temperature,
            num_classes=num_classes,
            chunk_size=7,  # several chunks, the last one partial
        )
        assert list(got) == list(ks)
        for k in ks:
            expected = _brute_force_knn(
                train, train_labels, test, test_labels, min(k, 60), temperature, num_classes
            )
            assert got[k] == expected, (k, temperature)


def test_knn_hand_computed():
    # Cosine similarities of the query (1, 0) to the bank: 1, 0.8, 0.6, 0, -1 (the bank is not
    # normalised: knn_accuracy must do it). The query is of class 1.
    bank = torch.tensor([[3.0, 0.0], [0.8, 0.6], [1.2, 1.6], [0.0, 2.0], [-1.0, 0.0]])
    bank_labels = torch.tensor([0, 1, 1, 2, 0])
    query, truth = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    # T = 1, k = 3: class 0 gets e^1 = 2.72, class 1 gets e^0.8 + e^0.6 = 4.05 -> correct.
    # k = 5 adds e^-1 to class 0 (3.09) and e^0 to class 2: still class 1.
    args = (bank, bank_labels, query, truth)
    got = knn_accuracy(*args, ks=(1, 3, 5), temperature=1.0, num_classes=3)
    assert got == {1: 0.0, 3: 1.0, 5: 1.0}
    # T = 0.07: e^(1/0.07) outweighs e^(0.8/0.07) + e^(0.6/0.07) -> class 0 for every k.
    got = knn_accuracy(*args, ks=(1, 3, 5), temperature=0.07, num_classes=3)
    assert got == {1: 0.0, 3: 0.0, 5: 0.0}


# ---------------------------------------------------------------- k-means


def test_kmeans_recovers_well_separated_blobs():
    x, y = make_blobs(n_samples=300, centers=5, n_features=6, cluster_std=0.3, random_state=0)
    labels, centroids, inertia = kmeans(torch.tensor(x, dtype=torch.float32), 5, seed=0)
    assert labels.dtype == torch.long and labels.shape == (300,)
    assert centroids.shape == (5, 6)
    assert hungarian_accuracy(labels, torch.from_numpy(y)) == 1.0
    expected = sum(((x[labels.numpy() == j] - centroids[j].numpy()) ** 2).sum() for j in range(5))
    assert inertia == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_kmeans_inertia_within_one_percent_of_sklearn(seed):
    x, _ = make_blobs(n_samples=400, centers=8, n_features=5, cluster_std=2.5, random_state=seed)
    _, _, inertia = kmeans(torch.tensor(x, dtype=torch.float32), 8, seed=seed)
    reference = KMeans(8, n_init=10, random_state=seed).fit(x).inertia_
    assert abs(inertia - reference) / reference < 0.01


@pytest.mark.parametrize("rows", [7, 100, 1024])
def test_kmeans_assignment_in_row_blocks_equals_the_whole_product(rows, monkeypatch):
    """The CPU assigns in blocks of rows that stay in cache; the result is the plain
    argmin over all centres and the plain per-cluster sums."""
    from crlbench.evaluate import kmeans as kmeans_module

    monkeypatch.setattr(kmeans_module, "_CPU_ROWS", rows)
    g = torch.Generator().manual_seed(3)
    x, centers = torch.randn(250, 6, generator=g), torch.randn(4, 6, generator=g)
    labels, sums = kmeans_module._assign_and_sum(x, centers)
    assert torch.equal(labels, torch.cdist(x, centers).argmin(dim=1))
    expected = torch.stack([x[labels == c].sum(dim=0) for c in range(4)])
    assert torch.allclose(sums, expected, atol=1e-5)


def test_kmeans_same_seed_same_result():
    x = torch.randn(250, 4, generator=torch.Generator().manual_seed(0))
    a = kmeans(x, 6, restarts=3, seed=7)
    b = kmeans(x, 6, restarts=3, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    others = [kmeans(x, 6, restarts=1, seed=s)[2] for s in range(4)]
    assert len(set(others)) > 1  # the seed does drive the initialisation


def test_kmeans_best_restart_is_no_worse_than_one_restart():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(1))
    single = kmeans(x, 7, restarts=1, seed=0)[2]  # the first of the five restarts below
    assert kmeans(x, 7, restarts=5, seed=0)[2] <= single + 1e-6


def test_kmeans_plus_plus_samples_by_squared_distance():
    # 100 copies of one point and two other points: after the first centre, a point equal to
    # a chosen centre has weight zero, so the three centres are the three distinct points.
    x = torch.cat([torch.zeros(100, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]])])
    for seed in range(5):
        centers = _kmeans_plus_plus(x, (x * x).sum(1), 3, torch.Generator().manual_seed(seed))
        assert len({tuple(c.tolist()) for c in centers}) == 3


def test_kmeans_reseeds_an_empty_cluster_at_the_farthest_point():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0]])
    centers = torch.tensor([[1.0, 1.0], [100.0, 100.0]])  # the second centre gets no point
    out = _lloyd(x, (x * x).sum(1), centers, iters=1, tol_abs=0.0)
    assert torch.allclose(out[1], x[3])  # (5, 5) is the point farthest from its centre
    assert torch.allclose(out[0], x.mean(0))


def test_kmeans_degenerate_inputs():
    x = torch.tensor([[0.0], [0.0], [1.0], [1.0], [3.0]])
    labels, _, inertia = kmeans(x, 3, seed=0)
    assert inertia == 0.0 and len(set(labels.tolist())) == 3
    with pytest.raises(ValueError, match="k-means needs"):
        kmeans(x, 6, seed=0)


# ---------------------------------------------------------------- linear probe


def _separable(seed: int, n: int = 300, dim: int = 10, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 6
    labels = torch.randint(classes, (n,), generator=g)
    feats = centers[labels] + torch.randn(n, dim, generator=g)
    # a large offset and scale: standardisation must take care of them
    return feats * 50 + 1000, labels


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_linear_probe_separates_separable_data(optimizer):
    x, y = _separable(0)
    xt, yt = _separable(0, n=100)
    lrs = [1e-3, 1e-2, 1e-1]
    out = linear_probe(
        x, y, xt, yt, num_classes=3, lrs=lrs, epochs=10, batch_size=64, optimizer=optimizer, seed=0
    )
    assert out["acc"] >= 0.99
    assert out["lr"] in lrs
    assert sorted(out["val_acc"]) == lrs
    # every lr separates the held-out part: the tie goes to the smallest lr
    assert all(acc == 1.0 for acc in out["val_acc"].values())
    assert out["lr"] == min(lrs)


def test_linear_probe_picks_the_best_validation_lr_and_is_deterministic():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 20, generator=g)
    y = (x[:, :3].sum(1) + 0.8 * torch.randn(400, generator=g) > 0).long()
    kwargs = dict(num_classes=2, lrs=[1e-5, 1e-1, 1e-3], epochs=3, batch_size=32, seed=5,
                  optimizer="adam")
    a = linear_probe(x[:300], y[:300], x[300:], y[300:], **kwargs)
    b = linear_probe(x[:300], y[:300], x[300:], y[300:], **kwargs)
    assert a == b
    best = max(a["val_acc"].values())
    assert a["val_acc"][a["lr"]] == best
    assert a["lr"] == min(lr for lr, acc in a["val_acc"].items() if acc == best)


def test_linear_probe_is_invariant_to_scaling_each_feature():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    scale = torch.tensor([1e3, 1e-3, 1.0, 50.0, 2.0, 1e4])
    kwargs = dict(num_classes=2, lrs=[0.1, 1.0], epochs=5, batch_size=32, optimizer="sgd", seed=0)
    a = linear_probe(x[:150], y[:150], x[150:], y[150:], **kwargs)
    x = x * scale - 7.0
    b = linear_probe(x[:150], y[:150], x[150:], y[150:], **kwargs)
    assert a == b


def _noisy(seed: int, n: int, dim: int = 16, classes: int = 4):
    """Overlapping Gaussian classes: the penalty matters, and the optimum is unique."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g)
    labels = torch.randint(classes, (n,), generator=g)
    return centers[labels] + 1.5 * torch.randn(n, dim, generator=g), labels


@pytest.mark.parametrize("lam", [1e-4, 1e-2])
def test_lbfgs_solution_is_scikit_learns_logistic_regression(lam):
    """Our objective is LogisticRegression(C = 1 / (lambda n))'s divided by C n: the same
    minimiser. Compared on the weights, the objective and the predictions."""
    from sklearn.linear_model import LogisticRegression

    from crlbench.evaluate.linear import _solve, _standardise, lbfgs_objective

    x, y = _noisy(0, 600)
    xs, _ = _standardise(x, x)
    w = _solve(xs.double(), y, lam, xs.new_zeros(17, 4, dtype=torch.float64), 500, tol=1e-9)
    ref = LogisticRegression(C=1 / (lam * len(x)), tol=1e-10, max_iter=10_000)
    ref.fit(xs[:, :-1].double().numpy(), y.numpy())
    ref_w = torch.cat([torch.from_numpy(ref.coef_.T), torch.from_numpy(ref.intercept_)[None]])
    # softmax logits are defined up to a constant per row: compare centred weights
    centred = w - w.mean(dim=1, keepdim=True)
    ref_centred = ref_w - ref_w.mean(dim=1, keepdim=True)
    assert torch.allclose(centred, ref_centred, atol=2e-4)
    assert float(lbfgs_objective(xs.double(), y, w, lam)) == pytest.approx(
        float(lbfgs_objective(xs.double(), y, ref_w, lam)), rel=1e-7)
    # and the gradient vanishes at the solution (a first-order optimality check)
    w.requires_grad_(True)
    lbfgs_objective(xs.double(), y, w, lam).backward()
    assert float(w.grad.abs().max()) < 1e-5


def test_lbfgs_probe_matches_scikit_learn_on_the_same_protocol():
    from sklearn.linear_model import LogisticRegression

    from crlbench.evaluate.linear import _standardise

    feats, labels = _noisy(1, 2000)
    x, y, xt, yt = feats[:1500], labels[:1500], feats[1500:], labels[1500:]
    l2 = [1e-4, 1e-3, 1e-2, 1e-1]
    out = linear_probe(x, y, xt, yt, num_classes=4, optimizer="lbfgs", l2=l2, seed=0)
    assert out["l2"] in l2 and sorted(out["val_acc"]) == l2
    best = max(out["val_acc"].values())
    assert out["val_acc"][out["l2"]] == best
    assert out["l2"] == max(lam for lam, acc in out["val_acc"].items() if acc == best)
    # scikit-learn, fitted on all of train at the chosen penalty, scores the same on test
    xs, xts = _standardise(x, xt)
    ref = LogisticRegression(C=1 / (out["l2"] * len(x)), max_iter=1000)
    ref.fit(xs[:, :-1].numpy(), y.numpy())
    assert out["acc"] >= ref.score(xts[:, :-1].numpy(), yt.numpy()) - 1 / len(xt)
    again = linear_probe(x, y, xt, yt, num_classes=4, optimizer="lbfgs", l2=l2, seed=0)
    assert again == out


def test_lbfgs_probe_separates_separable_data():
    x, y = _separable(0)
    xt, yt = _separable(0, n=100)
    out = linear_probe(x, y, xt, yt, num_classes=3, optimizer="lbfgs", seed=0)
    assert out["acc"] >= 0.99


def test_stratified_split_holds_out_each_class_in_proportion():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 1)
    fit, val = stratified_split(labels, 0.1, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[val], minlength=3).tolist() == [5, 3, 0]
    assert sorted(torch.cat([fit, val]).tolist()) == list(range(81))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_probe_updates_equal_torch_optim(optimizer):
    """The written-out gradient and optimiser steps equal autograd + torch.optim."""
    g = torch.Generator().manual_seed(0)
    x = F.pad(torch.randn(40, 5, generator=g), (0, 1), value=1.0)  # last column: bias
    y = torch.randint(3, (40,), generator=g)
    lrs, epochs, wd = [0.05, 0.2], 6, 0.01
    # full batches: the reshuffling does not change the gradient
    settings = _Settings(num_classes=3, epochs=epochs, batch_size=40, optimizer=optimizer,
                         weight_decay=wd, gen=torch.Generator().manual_seed(0))
    w = _train(x, y, lrs, settings)
    for p, lr in enumerate(lrs):
        weight = torch.zeros(5, 3, requires_grad=True)
        bias = torch.zeros(1, 3, requires_grad=True)
        groups = [{"params": [weight], "weight_decay": wd}, {"params": [bias], "weight_decay": 0.0}]
        opt = (
            torch.optim.Adam(groups, lr=lr)
            if optimizer == "adam"
            else torch.optim.SGD(groups, lr=lr, momentum=0.9)
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / epochs))
        )
        for _ in range(epochs):
            loss = F.cross_entropy(x @ torch.cat([weight, bias]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        assert torch.allclose(w[:, p], torch.cat([weight, bias]).detach(), atol=1e-5)


# ---------------------------------------------------------------- evaluate


def _embeddings(num_classes: int = 3, heads: bool = True) -> Embeddings:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(num_classes, 8, generator=g) * 4
    train_labels = torch.arange(90) % num_classes
    test_labels = torch.arange(30) % num_classes
    train = centers[train_labels] + torch.randn(90, 8, generator=g)
    test = centers[test_labels] + torch.randn(30, 8, generator=g)
    emb = Embeddings(train, train_labels, test, test_labels, num_classes)
    if heads:
        cluster_labels = torch.cat([train_labels, test_labels])
        emb.head_logits = [
            torch.randn(120, 5, generator=g),
            F.one_hot(cluster_labels, num_classes).float(),  # a perfect head
            torch.randn(120, num_classes, generator=g),
        ]
        emb.cluster_labels = cluster_labels
    return emb


def _cfg(**overrides):
    cfg = OmegaConf.structured(EvalConfig)
    # The evaluators these tests cover (the default list also names geometry, which needs view
    # pairs, and retrieval; tests/evaluate/test_analysis.py covers those added later).
    cfg.metrics = ["knn", "linear", "kmeans", "heads"]
    cfg.linear.epochs = 3
    cfg.kmeans_restarts = 2
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_evaluate_returns_exactly_the_expected_metrics():
    result = evaluate_named(_embeddings(), _cfg(knn_k=[5, 200]), seed=0)
    head_names = {
        f"head{i}_k{k}_{m}" for i, k in enumerate([5, 3, 3]) for m in ("acc", "nmi", "ari")
    }
    assert set(result.metrics) == {
        "knn5_acc",
        "knn200_acc",
        "linear_acc",
        "kmeans_acc",
        "kmeans_nmi",
        "kmeans_ari",
        "head_acc",
        "head_nmi",
        "head_ari",
        *head_names,
    }
    assert all(isinstance(v, float) for v in result.metrics.values())
    # head_* is the first head with num_clusters (= num_classes here) columns: the perfect one
    assert result.metrics["head_acc"] == result.metrics["head1_k3_acc"] == 1.0
    assert result.metrics["head_nmi"] == result.metrics["head_ari"] == 1.0
    assert result.metrics["kmeans_acc"] == 1.0  # well-separated classes
    assert result.details["linear"]["l2"] in EvalConfig().linear.l2  # lbfgs, the default
    assert set(result.details["timings_s"]) == {"knn", "linear", "kmeans", "heads"}
    assert result.details["kmeans"]["split"] == "all"


def test_evaluate_runs_only_the_named_evaluators():
    cfg = _cfg(metrics=["knn", "heads"], knn_k=[1, 3])
    result = evaluate_named(_embeddings(heads=False), cfg, seed=0)
    assert set(result.metrics) == {"knn1_acc", "knn3_acc"}  # no heads: no head metrics
    assert set(result.details["timings_s"]) == {"knn", "heads"}


def test_evaluate_unknown_evaluator_is_a_user_error_listing_the_valid_ones():
    with pytest.raises(UserError) as info:
        evaluate_named(_embeddings(), _cfg(metrics=["knn", "retrievl"]), seed=0)
    assert "retrievl" in str(info.value)
    assert all(name in str(info.value) for name in registry.evaluators.names())


def test_evaluate_is_deterministic_given_the_seed():
    a = evaluate_named(_embeddings(), _cfg(), seed=3)
    b = evaluate_named(_embeddings(), _cfg(), seed=3)
    assert a.metrics == b.metrics


def test_cluster_split():
    emb = _embeddings(heads=False)
    feats, labels = cluster_split(emb, "all")
    assert torch.equal(feats, torch.cat([emb.train, emb.test]))
    assert torch.equal(labels, torch.cat([emb.train_labels, emb.test_labels]))
    feats, labels = cluster_split(emb, "test")
    assert feats is emb.test and labels is emb.test_labels
    with pytest.raises(UserError, match="cluster split"):
        cluster_split(emb, "train")
    result = evaluate_named(emb, _cfg(metrics=["kmeans"], cluster_split="test"), seed=0)
    assert result.details["kmeans"]["split"] == "test"


def test_geometry_evaluator_scores_view_pairs_and_test_uniformity(monkeypatch):
    from crlbench.evaluate import evaluators
    from crlbench.evaluate.geometry import alignment, uniformity

    emb = _embeddings(heads=False)
    g = torch.Generator().manual_seed(1)
    view_a = emb.test + 0.1 * torch.randn(emb.test.shape, generator=g)
    view_b = emb.test + 0.1 * torch.randn(emb.test.shape, generator=g)
    emb.view_pairs = (view_a, view_b)
    result = evaluate_named(emb, _cfg(metrics=["geometry"]), seed=0)
    assert result.metrics == {"align": pytest.approx(alignment(view_a, view_b).item()),
                              "uniform": pytest.approx(uniformity(emb.test).item())}
    # above the sample size, uniformity is measured on a seeded subset
    monkeypatch.setattr(evaluators, "UNIFORMITY_SAMPLE", 10)
    first = evaluate_named(emb, _cfg(metrics=["geometry"]), seed=3)
    again = evaluate_named(emb, _cfg(metrics=["geometry"]), seed=3)
    assert first.details["geometry"]["uniformity_points"] == 10
    assert first.metrics == again.metrics
    assert first.metrics["uniform"] != result.metrics["uniform"]


def test_geometry_without_views_is_an_error():
    with pytest.raises(ValueError, match="view_pairs"):
        evaluate_named(_embeddings(heads=False), _cfg(metrics=["geometry"]), seed=0)


def test_knn_and_retrieval_of_a_run_search_the_neighbours_once(monkeypatch):
    from crlbench.evaluate import evaluators

    calls = []
    nearest = evaluators.nearest

    def counted(*args, **kwargs):
        calls.append(args[-1])
        return nearest(*args, **kwargs)

    monkeypatch.setattr(evaluators, "nearest", counted)
    cfg = _cfg(metrics=["knn", "retrieval"], knn_k=[5, 20], retrieval_k=[1, 10, 50])
    together = evaluate_named(_embeddings(), cfg, seed=0).metrics
    assert calls == [50]  # one search, as deep as the deepest k of either
    alone = {**knn_accuracy(*_embeddings_tensors(), ks=[5, 20], num_classes=3),
             **precision_at_k(*_embeddings_tensors(), ks=[1, 10, 50])}
    assert [together[f"knn{k}_acc"] for k in (5, 20)] == [alone[5], alone[20]]
    assert [together[f"retrieval_p{k}"] for k in (1, 10, 50)] == [alone[1], alone[10],
                                                                   alone[50]]


def _embeddings_tensors():
    emb = _embeddings()
    return emb.train, emb.train_labels, emb.test, emb.test_labels
