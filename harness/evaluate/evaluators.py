"""The evaluators of a run: named functions from embeddings to flat metrics, and `evaluate`.

Each evaluator applies one definition of the README's "Evaluation" section to an `Embeddings`
and returns (metrics, details): metrics is a flat {name: float} dict that goes into the record,
details holds what explains them (the chosen LR, the k-means inertia). An evaluator that reads
more than the features declares it (`needs`, from INPUTS), and the runner computes it. The
evaluators arrive resolved (`PluginEntry`, from suite expansion); nothing here looks a name
up. Metric names:

- knn:    knn{k}_acc for each k in cfg.knn_k (on L2-normalised features, see knn.py)
- linear: linear_acc (details: the chosen lr or l2, val_acc per candidate)
- kmeans: kmeans_acc, kmeans_nmi, kmeans_ari, k-means with K = num_classes on the raw
          (not L2-normalised) features of cfg.cluster_split
- heads:  head{i}_k{K}_acc/_nmi/_ari for every cluster head i with K columns, and head_acc,
          head_nmi, head_ari for the first head with K = num_clusters (the K the method was
          trained with; num_classes unless a wrong-K variant sets it), scored against the
          true classes (rectangular Hungarian when K != num_classes); nothing without heads
- geometry: align (alignment of positive pairs: two augmented views of the test images, or
          the method's own pairs, e.g. CMC's L and ab embeddings) and uniform (uniformity of
          the test features, or the mean over the two sides of the method's pairs, each on a
          seeded sample of at most 10,000), on all test images or a seeded sample of
          cfg.geometry_samples; see geometry.py
- retrieval: retrieval_p{k} (precision@k of test queries against the train bank, cosine)
          for each k in cfg.retrieval_k, see retrieval.py
- kest:   kest_silhouette and kest_elbow (K estimated by the silhouette and by the elbow of
          the k-means inertia over k = cfg.kest_min_k..cfg.kest_max_k, on a seeded sample of
          at most cfg.kest_sample raw features of cfg.cluster_split) and kest_silhouette_err,
          kest_elbow_err (|estimate - num_classes|); details: the curves, see kest.py
- rankme: rankme, the effective rank of the train features (label-free; see labelfree.py)
- collapse: collapse_std, sqrt(D) times the mean per-dimension std of the L2-normalised train
          features: about 1 when spread, 0 at collapse (label-free; see labelfree.py)
- tsne:   no metrics; details: 2-D t-SNE points of a seeded sample of at most
          cfg.tsne_points test features and their labels, for plots, see tsne.py
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..config import CLUSTER_SPLITS
from ..errors import UserError
from ..plugin import PluginEntry
from .clustering import cluster_scores
from .geometry import alignment, uniformity
from .kest import estimate_k
from .kmeans import kmeans
from .knn import knn_accuracy
from .labelfree import collapse_std, rankme
from .linear import linear_probe
from .neighbours import Chunk, nearest
from .retrieval import precision_at_k
from .tsne import tsne_2d, tsne_perplexity


@dataclass
class Embeddings:
    """Frozen features of one run, as the evaluators receive them."""

    train: Tensor  # float [N, D] features of the un-augmented train split
    train_labels: Tensor  # int64 [N]
    test: Tensor  # float [M, D]
    test_labels: Tensor  # int64 [M]
    num_classes: int
    # K of the method's clustering head (the variant's K in wrong-K runs); None: num_classes.
    num_clusters: int | None = None
    # Cluster-head logits on the clustering split, rows in the order of cluster_labels.
    head_logits: list[Tensor] = field(default_factory=list)
    # Labels of the clustering split: train+test for "all", test for "test".
    cluster_labels: Tensor | None = None
    # Positive pairs for alignment, row-aligned: two augmented views of the test images'
    # features, or the method's own pairs (`Method.positive_pairs`, e.g. CMC's L and ab).
    view_pairs: tuple[Tensor, Tensor] | None = None
    pair_source: str = "views"  # "views" | "method"
    # Point sets whose uniformity is averaged; None: the test features.
    uniformity_sets: list[Tensor] | None = None
    # The backbone features of two augmented views of the same test images as view_pairs.
    augmented_views: tuple[Tensor, Tensor] | None = None
    # The test features' nearest train features, found by the first of kNN and retrieval.
    neighbours: Chunk | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.num_clusters is None:
            self.num_clusters = self.num_classes


@dataclass
class EvalResult:
    metrics: dict[str, float]  # flat, name -> value (accuracies, NMI, ARI as fractions)
    details: dict[str, Any]  # per evaluator, plus "timings_s": {evaluator: seconds}
    # the reported metrics that their evaluators declare lower-is-better (`declares`)
    lower_is_better: frozenset[str] = frozenset()


Evaluator = Callable[[Embeddings, Any, int], tuple[dict[str, float], dict[str, Any]]]

# What the runner computes for an evaluator beyond the train and test features, when one of
# the run's evaluators declares it (`needs`): the name, and the Embeddings fields it fills.
INPUTS = {
    "head_logits": "the cluster-head logits of a method with heads on the clustering split "
                   "(head_logits, rows in the order of cluster_labels; empty without heads)",
    "view_pairs": "positive pairs of the test images, or of a seeded sample of "
                  "eval.geometry_samples of them: the method's own (Method.positive_pairs) "
                  "when it defines them, else the backbone features of two augmented views "
                  "(view_pairs, pair_source; uniformity_sets, the point sets they come from)",
    "augmented_views": "the backbone features of two augmented views of the same test images, "
                       "whatever the method (augmented_views)",
}


def needs(*inputs: str) -> Callable[[Evaluator], Evaluator]:
    """Decorator: the inputs (names of INPUTS) an evaluator reads beyond the features.

        @needs("view_pairs")
        def my_evaluator(emb, cfg, seed): ...
    """
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise ValueError(f"unknown evaluator inputs {unknown}; valid: {', '.join(INPUTS)}")

    def mark(fn: Evaluator) -> Evaluator:
        fn.needs = frozenset(inputs)  # type: ignore[attr-defined]
        return fn

    return mark


def evaluator_needs(entry: PluginEntry) -> frozenset[str]:
    """The inputs a resolved evaluator declares (its `needs` attribute); UserError for one that
    is not a set of names of INPUTS."""
    declared = getattr(entry.obj, "needs", frozenset())
    if isinstance(declared, str) or not all(isinstance(n, str) for n in declared):
        raise UserError(f"{entry.describe('evaluator')}: its `needs` must be a set of input "
                        f"names ({', '.join(INPUTS)}), got {declared!r}")
    unknown = sorted(set(declared) - set(INPUTS))
    if unknown:
        raise UserError(f"{entry.describe('evaluator')} needs {', '.join(unknown)}, which the "
                        f"runner does not provide; valid inputs: {', '.join(INPUTS)}")
    return frozenset(declared)


_OPTION_TYPES = (bool, int, float, str, list)


def declares(*, options: dict[str, Any] | None = None,
             lower_is_better: Sequence[str] = ()) -> Callable[[Evaluator], Evaluator]:
    """Decorator: an evaluator's own settings and the direction of its metrics.

        @declares(options={"k": 10, "scale": 1.0}, lower_is_better=["my_error"])
        def my_evaluator(emb, cfg, seed):
            k = cfg.options.my_evaluator.k  # the suite's eval.options.my_evaluator.k, or 10

    `options`: setting -> default (a bool, int, float, str or list); a suite overrides them as
    eval.options.<evaluator>.<key>, checked against these names and types before any run,
    and the resolved values are part of the run's identity. `lower_is_better`: the metric
    names for which a smaller value is better; tables mark the smallest as the best.
    """
    options = dict(options or {})
    bad = [k for k, v in options.items() if not isinstance(k, str)
           or not isinstance(v, _OPTION_TYPES)]
    if bad:
        raise ValueError(f"options {bad} must map names to a bool, int, float, str or list")
    if isinstance(lower_is_better, str):
        raise ValueError("lower_is_better must be a list of metric names, not one string")

    def mark(fn: Evaluator) -> Evaluator:
        fn.options = options  # type: ignore[attr-defined]
        fn.lower_is_better = frozenset(lower_is_better)  # type: ignore[attr-defined]
        return fn

    return mark


def evaluator_options(entry: PluginEntry) -> dict[str, Any]:
    """The settings a resolved evaluator declares with their defaults ({} when none)."""
    declared = getattr(entry.obj, "options", {})
    if not isinstance(declared, dict):
        raise UserError(f"{entry.describe('evaluator')}: its `options` must be a dict of "
                        f"setting -> default, got {declared!r}")
    return dict(declared)


def evaluator_lower_is_better(entry: PluginEntry) -> frozenset[str]:
    declared = getattr(entry.obj, "lower_is_better", frozenset())
    if isinstance(declared, str) or not all(isinstance(n, str) for n in declared):
        raise UserError(f"{entry.describe('evaluator')}: its `lower_is_better` must be a set "
                        f"of metric names, got {declared!r}")
    return frozenset(declared)


def cluster_split(emb: Embeddings, split: str) -> tuple[Tensor, Tensor]:
    """Features and labels that clustering is scored on: "all" (train then test) or "test"."""
    if split == "all":
        feats = torch.cat([emb.train, emb.test.to(emb.train.device)])
        labels = torch.cat([emb.train_labels, emb.test_labels.to(emb.train_labels.device)])
        return feats, labels
    if split == "test":
        return emb.test, emb.test_labels
    raise UserError(f"unknown cluster split {split!r}; valid: {', '.join(CLUSTER_SPLITS)}")


def sample_rows(n: int, cap: int, seed: int) -> Tensor | None:
    """Indices (CPU) of a seeded sample of `cap` of `n` rows, or None when all n fit."""
    if n <= cap:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:cap]


def neighbour_depth(cfg: Any, bank_size: int, own_ks: Any = ()) -> int:
    """How many neighbours one search must find to serve kNN and retrieval both: the largest
    of `own_ks` and of the k of whichever of the two eval.metrics names, clipped to the bank."""
    ks = [int(k) for k in own_ks]
    for name, key in (("knn", "knn_k"), ("retrieval", "retrieval_k")):
        if name in cfg.metrics:
            ks += [int(k) for k in cfg[key]]
    return min(max(ks), bank_size)


def _neighbour_table(emb: Embeddings, cfg: Any, own_ks: Any) -> Chunk:
    """The cosine neighbours of the test features in the train bank, searched once per run for
    kNN and retrieval both (`neighbour_depth` deep), and kept on `emb`."""
    depth = neighbour_depth(cfg, len(emb.train), own_ks)
    if emb.neighbours is None or emb.neighbours.sims.shape[1] < depth:
        emb.neighbours = nearest(emb.train, emb.train_labels, emb.test, emb.test_labels, depth)
    return emb.neighbours


def eval_knn(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """kNN accuracy (cosine, temperature-weighted votes) for each k in eval.knn_k."""
    accs = knn_accuracy(
        emb.train,
        emb.train_labels,
        emb.test,
        emb.test_labels,
        ks=[int(k) for k in cfg.knn_k],
        temperature=float(cfg.knn_temperature),
        num_classes=emb.num_classes,
        neighbours=_neighbour_table(emb, cfg, cfg.knn_k),
    )
    return {f"knn{k}_acc": acc for k, acc in accs.items()}, {"bank_size": len(emb.train)}


def eval_linear(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Linear probe accuracy, best of the learning-rate sweep on a held-out split."""
    lin = cfg.linear
    out = linear_probe(
        emb.train,
        emb.train_labels,
        emb.test,
        emb.test_labels,
        num_classes=emb.num_classes,
        lrs=[float(lr) for lr in lin.lrs],
        epochs=int(lin.epochs),
        batch_size=int(lin.batch_size),
        val_fraction=float(lin.val_fraction),
        optimizer=str(lin.optimizer),
        weight_decay=float(lin.weight_decay),
        l2=[float(lam) for lam in lin.l2],
        max_iter=int(lin.max_iter),
        seed=seed,
    )
    picked = "l2" if "l2" in out else "lr"
    return {"linear_acc": out["acc"]}, {picked: out[picked], "val_acc": out["val_acc"]}


def eval_kmeans(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """k-means (K = classes, restarts) scored by Hungarian ACC, NMI and ARI."""
    feats, labels = cluster_split(emb, str(cfg.cluster_split))
    pred, _, inertia = kmeans(
        feats,
        emb.num_classes,
        restarts=int(cfg.kmeans_restarts),
        iters=int(cfg.kmeans_iters),
        seed=seed,
    )
    scores = cluster_scores(pred, labels)
    metrics = {f"kmeans_{name}": value for name, value in scores.items()}
    return metrics, {"inertia": inertia, "split": str(cfg.cluster_split), "k": emb.num_classes}


@needs("head_logits")
def eval_heads(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """The method's cluster heads scored by Hungarian ACC, NMI and ARI."""
    if not emb.head_logits:
        return {}, {}
    if emb.cluster_labels is None:
        raise ValueError("Embeddings has head_logits but no cluster_labels to score them on")
    metrics: dict[str, float] = {}
    for i, logits in enumerate(emb.head_logits):
        if len(logits) != len(emb.cluster_labels):
            raise ValueError(
                f"head {i} has {len(logits)} rows of logits but there are "
                f"{len(emb.cluster_labels)} cluster labels"
            )
        k = logits.shape[1]
        scores = cluster_scores(logits.argmax(dim=1), emb.cluster_labels)
        for name, value in scores.items():
            metrics[f"head{i}_k{k}_{name}"] = value
            if k == emb.num_clusters:
                metrics.setdefault(f"head_{name}", value)
    return metrics, {}


UNIFORMITY_SAMPLE = 10_000  # pairs grow quadratically; 10k points give 5e7 pairs


@needs("view_pairs")
def eval_geometry(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Alignment of the positive pairs and uniformity of the point sets (the test features
    unless the runner gave others), averaged over the sets."""
    if emb.view_pairs is None:
        raise ValueError("the geometry evaluator needs Embeddings.view_pairs (positive pairs)")
    with torch.no_grad():
        align = float(alignment(*emb.view_pairs))
        sets = [emb.test] if emb.uniformity_sets is None else emb.uniformity_sets
        picked = []
        for feats in sets:
            pick = sample_rows(len(feats), UNIFORMITY_SAMPLE, seed)
            picked.append(feats if pick is None else feats[pick.to(feats.device)])
        uniform = sum(float(uniformity(feats)) for feats in picked) / len(picked)
    return {"align": align, "uniform": uniform}, {
        "pairs": emb.pair_source, "pair_count": len(emb.view_pairs[0]),
        "uniformity_points": len(picked[0])}


def eval_retrieval(
    emb: Embeddings, cfg: Any, seed: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Precision@k of test queries against the train bank (cosine)."""
    precision = precision_at_k(
        emb.train,
        emb.train_labels,
        emb.test,
        emb.test_labels,
        ks=[int(k) for k in cfg.retrieval_k],
        neighbours=_neighbour_table(emb, cfg, cfg.retrieval_k),
    )
    return {f"retrieval_p{k}": p for k, p in precision.items()}, {"bank_size": len(emb.train)}


def eval_rankme(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """RankMe of the train features (what the method was trained on; no labels read)."""
    return {"rankme": rankme(emb.train)}, {"points": len(emb.train),
                                           "max": min(emb.train.shape)}


def eval_collapse(emb: Embeddings, cfg: Any,
                  seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """The collapse indicator of the train features (no labels read)."""
    return {"collapse_std": collapse_std(emb.train)}, {"points": len(emb.train)}


def eval_kest(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """K estimated by silhouette and by the elbow of k-means inertia, and the errors."""
    feats, _ = cluster_split(emb, str(cfg.cluster_split))
    pick = sample_rows(len(feats), int(cfg.kest_sample), seed)
    if pick is not None:
        feats = feats[pick.to(feats.device)]
    # silhouette needs k <= N - 1
    ks = list(range(int(cfg.kest_min_k), min(int(cfg.kest_max_k), len(feats) - 1) + 1))
    if not ks or ks[0] < 2:
        raise UserError(
            f"K estimation needs 2 <= eval.kest_min_k <= eval.kest_max_k and fewer than "
            f"{len(feats)} points, got kest_min_k={cfg.kest_min_k}, kest_max_k={cfg.kest_max_k}"
        )
    est = estimate_k(
        feats, ks, restarts=int(cfg.kest_restarts), iters=int(cfg.kmeans_iters), seed=seed
    )
    k_sil = math.nan if est.k_silhouette is None else float(est.k_silhouette)
    k_elbow = math.nan if est.k_elbow is None else float(est.k_elbow)
    metrics = {
        "kest_silhouette": k_sil,
        "kest_elbow": k_elbow,
        "kest_silhouette_err": abs(k_sil - emb.num_classes),
        "kest_elbow_err": abs(k_elbow - emb.num_classes),
    }
    details = {
        "ks": est.ks,
        "inertia": est.inertia,
        "silhouette": est.silhouette,
        "sample": len(feats),
        "split": str(cfg.cluster_split),
    }
    return metrics, details


def eval_tsne(emb: Embeddings, cfg: Any, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """A 2-D t-SNE map of a sample of test features (details only, for plots)."""
    feats, labels = emb.test, emb.test_labels
    pick = sample_rows(len(feats), int(cfg.tsne_points), seed)
    if pick is not None:
        feats, labels = feats[pick.to(feats.device)], labels[pick.to(labels.device)]
    points = tsne_2d(feats, perplexity=float(cfg.tsne_perplexity), seed=seed)
    details = {
        "points": [[round(float(a), 4), round(float(b), 4)] for a, b in points],
        "labels": [int(v) for v in labels.tolist()],
        "perplexity": tsne_perplexity(len(feats), float(cfg.tsne_perplexity)),
    }
    return {}, details


class EvaluatorError(RuntimeError):
    """A plugin's evaluator raised, or returned something other than (metrics, details)."""


def _checked_output(who: str, out: Any) -> tuple[dict[str, float], dict[str, Any]]:
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)
            and isinstance(out[1], dict | None)):
        raise EvaluatorError(f"{who} must return (metrics: dict[str, float], details: dict), "
                             f"got {type(out).__name__}")
    metrics = {}
    for key, value in out[0].items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(
                value, int | float):
            raise EvaluatorError(f"{who}: metric {key!r} must be a str name with a float "
                                 f"value, got {type(value).__name__}")
        metrics[key] = float(value)
    try:
        json.dumps(out[1], allow_nan=True)
    except (TypeError, ValueError) as e:
        raise EvaluatorError(f"{who}: details must be JSON data (dicts, lists, str, numbers; "
                             f"use .tolist() on arrays): {e}") from None
    return metrics, out[1] or {}


def run_evaluator(entry: PluginEntry, emb: Embeddings, cfg: Any,
                  seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """One resolved evaluator. A plugin's is fenced: whatever it raises becomes an
    EvaluatorError naming it and its package (so the run's record says who failed)."""
    if entry.builtin:
        return entry.obj(emb, cfg, seed)
    who = entry.describe("evaluator")
    try:
        out = entry.obj(emb, cfg, seed)
    except Exception as e:  # a plugin may raise anything; name it, keep the cause chained
        raise EvaluatorError(f"{who} raised {type(e).__name__}: {e}") from e
    return _checked_output(who, out)


def evaluate(emb: Embeddings, cfg: Any, *, seed: int,
             evaluators: Sequence[PluginEntry]) -> EvalResult:
    """Run the resolved evaluators (those of cfg.metrics, an EvalConfig), in order, timing
    each."""
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {}
    timings: dict[str, float] = {}
    lower: set[str] = set()
    for entry in evaluators:
        start = time.perf_counter()
        m, d = run_evaluator(entry, emb, cfg, seed)
        timings[entry.name] = time.perf_counter() - start
        clash = sorted(set(m) & set(metrics))
        if clash:
            raise EvaluatorError(f"evaluator {entry.name!r} reports {', '.join(clash)}, which "
                                 "an earlier evaluator of eval.metrics already reported")
        metrics.update(m)
        lower |= evaluator_lower_is_better(entry) & set(m)
        if d:
            details[entry.name] = d
    details["timings_s"] = timings
    return EvalResult(metrics=metrics, details=details, lower_is_better=frozenset(lower))
