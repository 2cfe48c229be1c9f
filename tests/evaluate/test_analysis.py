"""Tests of the analysis evaluators: retrieval, K estimation, t-SNE, and head_* under wrong K."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score as sklearn_silhouette

from crlbench.config import EvalConfig
from crlbench.errors import UserError
from crlbench.evaluate import (
    Embeddings,
    KEstimate,
    contingency,
    elbow_k,
    estimate_k,
    knee_index,
    precision_at_k,
    silhouette_score,
    tsne_2d,
)
from crlbench.evaluate import kest as kest_module
from crlbench.evaluate.evaluators import sample_rows
from crlbench.evaluate.kest import silhouette_scores
from crlbench.resolve import evaluate_named

pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(num_classes: int, n_per: int, seed: int = 0, dim: int = 8, spread: float = 10.0):
    """Gaussian blobs (unit variance) centred on `spread` times the first basis vectors."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per)
    centers = spread * torch.eye(dim)[:num_classes]
    return centers[labels] + torch.randn(len(labels), dim, generator=g), labels


def _embeddings(num_classes: int = 4, n_train: int = 40, n_test: int = 10) -> Embeddings:
    """Well-separated classes; n_train and n_test samples per class."""
    train, train_labels = _blobs(num_classes, n_train, seed=0)
    test, test_labels = _blobs(num_classes, n_test, seed=1)
    return Embeddings(train, train_labels, test, test_labels, num_classes)


def _cfg(**overrides):
    cfg = OmegaConf.structured(EvalConfig)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


# ---------------------------------------------------------------- retrieval


def _brute_force_precision(train, train_labels, test, test_labels, k):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    total = 0.0
    for q, label in zip(test, test_labels, strict=True):
        nearest = np.argsort(-(train @ q), kind="stable")[:k]
        total += float(np.mean(train_labels[nearest] == label))
    return total / len(test)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_at_k_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 8))
    train_labels = rng.integers(0, 4, 60)
    test_labels = rng.integers(0, 4, 25)
    train = centers[train_labels] + rng.normal(scale=1.5, size=(60, 8))
    test = centers[test_labels] + rng.normal(scale=1.5, size=(25, 8))
    ks = (1, 2, 10, 50, 100)  # 100 > bank size: the whole bank is retrieved
    got = precision_at_k(
        torch.tensor(train, dtype=torch.float32),
        torch.from_numpy(train_labels),
        torch.tensor(test, dtype=torch.float32),
        torch.from_numpy(test_labels),
        ks,
        chunk_size=7,  # several chunks, the last one partial
    )
    assert list(got) == list(ks)
    for k in ks:
        expected = _brute_force_precision(train, train_labels, test, test_labels, min(k, 60))
        assert got[k] == pytest.approx(expected, abs=1e-12), k


def test_precision_at_k_hand_computed():
    # Cosine similarities of query (1, 0), of class 1: 1, 0.8, 0.6, 0, -1 (the bank is not
    # normalised: precision_at_k must do it), labels 0, 1, 1, 2, 0 -> relevant: -, x, x, -, -.
    # Query (0, 1), of class 2: 0, 0.6, 0.8, 1, 0 -> ranked labels 2, 1, 1, 0, 0.
    bank = torch.tensor([[3.0, 0.0], [0.8, 0.6], [1.2, 1.6], [0.0, 2.0], [-1.0, 0.0]])
    bank_labels = torch.tensor([0, 1, 1, 2, 0])
    queries, truth = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 2])
    got = precision_at_k(bank, bank_labels, queries, truth, (1, 2, 3, 5, 10))
    # k=1: (0 + 1)/2; k=2: (1/2 + 1/2)/2; k=3: (2/3 + 1/3)/2; k=5 and k=10 (whole bank):
    # (2/5 + 1/5)/2
    assert got == pytest.approx({1: 0.5, 2: 0.5, 3: 0.5, 5: 0.3, 10: 0.3}, abs=1e-12)


def test_precision_at_k_rejects_bad_input():
    x, y = torch.randn(5, 3), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="positive"):
        precision_at_k(x, y, x, y, (0, 1))
    with pytest.raises(ValueError, match="non-empty"):
        precision_at_k(x[:0], y[:0], x, y, (1,))


def test_retrieval_evaluator_names_one_metric_per_k():
    emb = _embeddings()
    result = evaluate_named(emb, _cfg(metrics=["retrieval"], retrieval_k=[1, 5, 500]), seed=0)
    expected = precision_at_k(emb.train, emb.train_labels, emb.test, emb.test_labels, (1, 5, 500))
    assert result.metrics == {f"retrieval_p{k}": v for k, v in expected.items()}
    assert result.metrics["retrieval_p1"] == 1.0  # well-separated classes
    assert result.metrics["retrieval_p500"] == pytest.approx(0.25)  # the whole bank, 4 classes
    assert result.details["retrieval"] == {"bank_size": 160}


# ---------------------------------------------------------------- silhouette


@st.composite
def labelled_points(draw):
    """Small-integer points (exact distances, duplicates, ties) with 2..N-1 distinct labels."""
    n = draw(st.integers(3, 25))
    d = draw(st.integers(1, 3))
    coords = draw(st.lists(st.integers(-3, 3), min_size=n * d, max_size=n * d))
    labels = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    assume(2 <= len(set(labels)) <= n - 1)
    return np.array(coords, dtype=np.float64).reshape(n, d), np.array(labels)


@settings(max_examples=200, deadline=None)
@given(labelled_points())
def test_silhouette_equals_sklearn_on_random_cases(case):
    x, labels = case
    got = silhouette_score(torch.from_numpy(x), torch.from_numpy(labels))
    assert got == pytest.approx(sklearn_silhouette(x, labels), abs=1e-12)


def test_silhouette_equals_sklearn_on_blobs_in_several_chunks(monkeypatch):
    x, labels = make_blobs(n_samples=300, centers=5, n_features=6, random_state=0)
    labels = labels * 7 - 3  # any label values
    # the blobs, and a random labelling (negative silhouettes)
    for labeling in (labels, np.random.default_rng(0).permutation(labels)):
        got = silhouette_score(torch.from_numpy(x), torch.from_numpy(labeling))
        assert got == pytest.approx(sklearn_silhouette(x, labeling), abs=1e-10)
    monkeypatch.setattr(kest_module, "_BLOCK", 300 * 17)  # 17 rows a chunk
    got = silhouette_score(torch.from_numpy(x), torch.from_numpy(labels))
    assert got == pytest.approx(sklearn_silhouette(x, labels), abs=1e-10)


def test_silhouette_hand_computed_with_a_singleton():
    # Points 0, 1 in cluster A, 10 alone in B. Point 0: a = 1, b = 10 -> 0.9; point 1: a = 1,
    # b = 9 -> 8/9; the singleton scores 0 (as in scikit-learn).
    x = torch.tensor([[0.0], [1.0], [10.0]])
    got = silhouette_score(x, torch.tensor([0, 0, 1]))
    assert got == pytest.approx((0.9 + 8 / 9 + 0.0) / 3, abs=1e-12)


def test_silhouette_scores_of_several_labelings_equal_one_at_a_time():
    x, _ = make_blobs(n_samples=120, centers=3, n_features=4, random_state=1)
    x = torch.from_numpy(x).float()
    g = torch.Generator().manual_seed(0)
    labelings = [torch.randint(0, k, (120,), generator=g) for k in (2, 3, 7)]
    together = silhouette_scores(x, labelings)
    assert together == pytest.approx([silhouette_score(x, lab) for lab in labelings], abs=1e-12)


def test_silhouette_needs_two_to_n_minus_one_labels_like_sklearn():
    x = torch.randn(4, 2)
    for labels in ([0, 0, 0, 0], [0, 1, 2, 3]):
        with pytest.raises(ValueError, match="number of labels"):
            silhouette_score(x, torch.tensor(labels))
        with pytest.raises(ValueError):
            sklearn_silhouette(x.numpy(), labels)


@pytest.mark.gpu
def test_silhouette_on_the_gpu_equals_the_cpu():
    x, labels = make_blobs(n_samples=500, centers=4, n_features=16, random_state=0)
    x, labels = torch.from_numpy(x), torch.from_numpy(labels)
    cpu = silhouette_score(x, labels)
    assert silhouette_score(x.cuda(), labels.cuda()) == pytest.approx(cpu, abs=1e-10)


# ---------------------------------------------------------------- elbow


def test_knee_index_hand_computed():
    # already on the unit square: x = 0, .25, .5, .75, 1 and y = 1, .3, .2, .1, 0, so
    # y_d = (1 - y) - x = 0, .45, .3, .15, 0; the largest is at 1, its threshold
    # .45 - 1 * .25 = .2, and y_d falls to .15 below it -> the knee is index 1
    assert knee_index([0, 1, 2, 3, 4], [1.0, 0.3, 0.2, 0.1, 0.0]) == 1
    # a higher sensitivity asks for a larger fall: .45 - 2 * .25 = -.05 is never reached
    assert knee_index([0, 1, 2, 3, 4], [1.0, 0.3, 0.2, 0.1, 0.0], sensitivity=2.0) is None
    # nearly straight: y_d = 0, .05, 0, 0, 0 never falls below .05 - .25 -> no knee
    assert knee_index([0, 1, 2, 3, 4], [1.0, 0.7, 0.5, 0.25, 0.0]) is None
    # the largest y_d wins over an earlier local maximum: y_d = 0, .3, .25, .4, .1, ...
    xs = [0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1]
    yd = [0, 0.3, 0.25, 0.4, 0.1, 0.05, 0.02, 0.01, 0]
    assert knee_index(xs, [1 - x - d for x, d in zip(xs, yd, strict=True)]) == 3


def test_knee_index_is_invariant_to_affine_changes_of_either_axis():
    ks = list(range(2, 21))
    y = [1000 - 150 * (k - 2) if k <= 6 else 400 - 5 * (k - 6) for k in ks]
    assert knee_index(ks, y) == 4  # k = 6
    assert knee_index([10 * k + 3 for k in ks], [3.5 * v + 1e6 for v in y]) == 4


def test_elbow_is_the_knee_of_log_inertia():
    ks = list(range(2, 11))
    # inertia halves with every k up to 6, then falls by 1% a step: straight on a log scale up
    # to the knee, so the knee is k = 6; on the linear scale the same rule stops early, at 5
    inertia = [2.0 ** -(k - 2) if k <= 6 else 2.0**-4 * 0.99 ** (k - 6) for k in ks]
    assert elbow_k(ks, inertia) == 6
    assert ks[knee_index(ks, inertia)] == 5
    # scaling the inertia does not move it; a k-means local minimum (a rise) is ignored
    assert elbow_k(ks, [7.0 * v for v in inertia]) == 6
    bumped = list(inertia)
    bumped[2] = inertia[1] * 1.2
    assert elbow_k(ks, bumped) == 6


def test_elbow_without_a_knee():
    assert elbow_k([2, 3, 4], [5.0, 5.0, 5.0]) is None  # flat
    assert elbow_k([2], [5.0]) is None
    assert elbow_k(list(range(2, 12)), [math.exp(-k) for k in range(2, 12)]) is None  # straight
    assert elbow_k([2, 3, 4], [0.0, 0.0, 0.0]) is None  # collapsed
    # inertia 0 from k = 4 on (four distinct points): floored before the log, the knee is 4
    assert elbow_k([2, 3, 4, 5, 6], [8.0, 3.0, 0.0, 0.0, 0.0]) == 4
    with pytest.raises(ValueError, match="one inertia per k"):
        elbow_k([2, 3], [1.0])


def _separated_blobs(num_classes: int, n_per: int, dim: int, seed: int, gap: float = 10.0):
    """Unit-variance Gaussian blobs whose centres are at least `gap` apart, drawn in a box."""
    g = torch.Generator().manual_seed(seed)
    side = 1.5 * gap * (2 * num_classes) ** (1 / dim)
    centres: list[torch.Tensor] = []
    while len(centres) < num_classes:
        c = (torch.rand(dim, generator=g) - 0.5) * side
        if all(float((c - o).norm()) >= gap for o in centres):
            centres.append(c)
    labels = torch.arange(num_classes).repeat_interleave(n_per)
    return torch.stack(centres)[labels] + torch.randn(len(labels), dim, generator=g), labels


@pytest.mark.parametrize("dim", [2, 10])
def test_elbow_and_silhouette_find_k_of_separated_blobs_from_3_to_20(dim):
    missed = {}
    for num_classes in range(3, 21):
        x, _ = _separated_blobs(num_classes, 30, dim, seed=num_classes)
        est = estimate_k(x, range(2, 31), restarts=3, seed=0)
        if (est.k_elbow, est.k_silhouette) != (num_classes, num_classes):
            missed[num_classes] = (est.k_elbow, est.k_silhouette)
    assert missed == {}


# ---------------------------------------------------------------- K estimation


@pytest.mark.parametrize("num_classes", [4, 7])
def test_estimate_k_finds_the_number_of_well_separated_blobs(num_classes):
    x, _ = _blobs(num_classes, 60, seed=num_classes)
    est = estimate_k(x, range(2, 31), restarts=3, seed=0)
    assert est.k_silhouette == num_classes
    assert est.k_elbow == num_classes
    assert est.ks == list(range(2, 31))
    assert len(est.inertia) == len(est.silhouette) == 29
    # the curve has its elbow at K: a large drop from K - 1 to K, a small one after
    at = {k: inertia for k, inertia in zip(est.ks, est.inertia, strict=True)}
    assert at[num_classes] < 0.6 * at[num_classes - 1]
    assert at[num_classes + 1] > 0.95 * at[num_classes]


def test_estimate_k_same_seed_same_result():
    x, _ = _blobs(5, 30, seed=3, spread=3.0)  # overlapping: k-means depends on the seeding
    a = estimate_k(x, range(2, 12), restarts=2, seed=4)
    b = estimate_k(x, range(2, 12), restarts=2, seed=4)
    assert a == b


def test_estimate_k_of_collapsed_features_has_no_silhouette():
    est = estimate_k(torch.ones(20, 3), [2, 3, 4], restarts=1, seed=0)
    assert est.k_silhouette is None
    assert all(math.isnan(s) for s in est.silhouette)
    assert est.inertia == [0.0, 0.0, 0.0] and est.k_elbow is None


def test_estimate_k_rejects_bad_ks():
    x = torch.randn(10, 2)
    for ks in ([], [1, 2], [3, 2], [2, 10]):
        with pytest.raises(ValueError):
            estimate_k(x, ks, seed=0)


def test_kest_evaluator_metrics_and_details():
    emb = _embeddings()  # 4 classes, 200 points in the "all" split
    cfg = _cfg(metrics=["kest"], kest_max_k=10)
    result = evaluate_named(emb, cfg, seed=0)
    assert result.metrics == {
        "kest_silhouette": 4.0,
        "kest_elbow": 4.0,
        "kest_silhouette_err": 0.0,
        "kest_elbow_err": 0.0,
    }
    assert all(isinstance(v, float) for v in result.metrics.values())
    details = result.details["kest"]
    assert details["ks"] == list(range(2, 11))
    assert len(details["inertia"]) == len(details["silhouette"]) == 9
    assert details["sample"] == 200 and details["split"] == "all"
    feats = torch.cat([emb.train, emb.test])
    est = estimate_k(feats, range(2, 11), restarts=cfg.kest_restarts, seed=0)
    assert details["silhouette"] == est.silhouette and details["inertia"] == est.inertia


def test_kest_evaluator_samples_caps_k_and_is_seeded():
    emb = _embeddings()
    cfg = _cfg(metrics=["kest"], cluster_split="test", kest_sample=12, kest_max_k=30)
    first = evaluate_named(emb, cfg, seed=5)
    again = evaluate_named(emb, cfg, seed=5)
    other = evaluate_named(emb, cfg, seed=6)
    details = first.details["kest"]
    assert details["sample"] == 12
    assert details["ks"] == list(range(2, 12))  # capped at sample size - 1
    assert first.metrics == again.metrics and details == again.details["kest"]
    assert details["inertia"] != other.details["kest"]["inertia"]  # another sample
    # the sample is the seeded subset of the test features
    pick = sample_rows(40, 12, 5)
    est = estimate_k(emb.test[pick], range(2, 12), restarts=cfg.kest_restarts, seed=5)
    assert details["inertia"] == est.inertia
    # the wrong-K error: estimates against the true number of classes
    m = first.metrics
    assert m["kest_elbow_err"] == abs(m["kest_elbow"] - 4)
    assert m["kest_silhouette_err"] == abs(m["kest_silhouette"] - 4)


def test_kest_evaluator_rejects_an_empty_k_range():
    with pytest.raises(UserError, match="kest_min_k"):
        evaluate_named(_embeddings(), _cfg(metrics=["kest"], kest_min_k=1), seed=0)
    with pytest.raises(UserError, match="kest_min_k"):
        evaluate_named(_embeddings(), _cfg(metrics=["kest"], kest_min_k=9, kest_max_k=5), seed=0)


def test_kest_of_collapsed_features_is_nan():
    emb = _embeddings()
    emb.train, emb.test = torch.ones_like(emb.train), torch.ones_like(emb.test)
    metrics = evaluate_named(emb, _cfg(metrics=["kest"], kest_max_k=4), seed=0).metrics
    assert math.isnan(metrics["kest_silhouette"]) and math.isnan(metrics["kest_silhouette_err"])
    assert math.isnan(metrics["kest_elbow"]) and math.isnan(metrics["kest_elbow_err"])


# ---------------------------------------------------------------- t-SNE


def _one_nn_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    dist = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return float((labels[dist.argmin(axis=1)] == labels).mean())


def test_tsne_evaluator_records_a_seeded_sample_of_test_points():
    emb = _embeddings(num_classes=3, n_test=30)  # 90 test points
    cfg = _cfg(metrics=["tsne"], tsne_points=60)
    first = evaluate_named(emb, cfg, seed=2)
    assert first.metrics == {}
    details = first.details["tsne"]
    assert len(details["points"]) == len(details["labels"]) == 60
    assert all(len(p) == 2 and all(round(v, 4) == v for v in p) for p in details["points"])
    pick = sample_rows(90, 60, 2)
    assert details["labels"] == emb.test_labels[pick].tolist()
    assert all(type(v) is int for v in details["labels"])
    assert details["perplexity"] == (60 - 1) / 3  # capped, below the default 30
    # deterministic given the seed; well-separated classes stay separated in the map
    assert evaluate_named(emb, cfg, seed=2).details["tsne"] == details
    points = np.array(details["points"])
    assert _one_nn_accuracy(points, np.array(details["labels"])) == 1.0


def test_tsne_2d_keeps_blobs_apart_and_normalises():
    x, labels = _blobs(3, 25, seed=0)
    points = tsne_2d(x, perplexity=10.0, seed=0)
    assert points.shape == (75, 2)
    assert _one_nn_accuracy(points, labels.numpy()) == 1.0
    # the map is of the L2-normalised features: scaling the rows changes nothing (powers of
    # two, so that the normalised features are bit-identical; t-SNE amplifies rounding)
    scale = 2.0 ** torch.randint(-3, 4, (75, 1), generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(tsne_2d(x * scale, perplexity=10.0, seed=0), points)
    with pytest.raises(ValueError, match="N >= 2"):
        tsne_2d(x[:1], seed=0)


def test_sample_rows():
    assert sample_rows(10, 10, 0) is None
    pick = sample_rows(10, 4, 0)
    assert len(pick) == len(set(pick.tolist())) == 4
    assert torch.equal(pick, sample_rows(10, 4, 0))


# ---------------------------------------------------------------- heads under wrong K


def test_head_metrics_score_the_head_with_num_clusters_columns():
    emb = _embeddings(num_classes=3, n_train=30, n_test=10)  # 40 samples a class in "all"
    labels = torch.cat([emb.train_labels, emb.test_labels])
    # A K = 5 head: class 0 split 20/20 over clusters 0, 1; class 1 split 30/10 over 2, 3;
    # class 2 all in cluster 4. The rectangular Hungarian matches 0->0 (or 1), 2->1, 4->2:
    # ACC = (20 + 30 + 40) / 120; clusters 1 and 3 stay unmatched and count as wrong.
    rank = torch.zeros_like(labels)
    for c in range(3):
        rank[labels == c] = torch.arange(int((labels == c).sum()))
    pred = torch.where(labels == 0, (rank >= 20).long(), 0)
    pred = torch.where(labels == 1, 2 + (rank >= 30).long(), pred)
    pred = torch.where(labels == 2, 4, pred)
    emb.head_logits = [F.one_hot(pred, 5).float(), F.one_hot(labels, 3).float()]
    emb.cluster_labels = labels
    emb.num_clusters = 5
    metrics = evaluate_named(emb, _cfg(metrics=["heads"]), seed=0).metrics
    counts = contingency(pred, labels).numpy()
    rows, cols = linear_sum_assignment(counts, maximize=True)
    assert counts[rows, cols].sum() / 120 == 0.75
    assert metrics["head_acc"] == metrics["head0_k5_acc"] == 0.75
    assert metrics["head_nmi"] == metrics["head0_k5_nmi"]
    assert metrics["head_ari"] == metrics["head0_k5_ari"]
    assert metrics["head1_k3_acc"] == 1.0  # per-head scores are kept for every head
    # without num_clusters (= num_classes) head_* is the 3-column head
    emb.num_clusters = None
    emb.__post_init__()
    assert emb.num_clusters == 3
    assert evaluate_named(emb, _cfg(metrics=["heads"]), seed=0).metrics["head_acc"] == 1.0


def test_num_clusters_defaults_to_num_classes():
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    assert Embeddings(x, y, x, y, 2).num_clusters == 2
    assert Embeddings(x, y, x, y, 2, num_clusters=6).num_clusters == 6


def test_k_estimate_is_a_dataclass_of_lists():
    est = estimate_k(_blobs(3, 10)[0], [2, 3, 4], restarts=1, seed=0)
    assert isinstance(est, KEstimate)
    assert all(type(k) is int for k in est.ks)
    assert all(type(v) is float for v in est.inertia + est.silhouette)
