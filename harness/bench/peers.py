"""scikit-learn beside each evaluator: the same protocol on the same features, timed at the
same thread count, so that the benchmark reports how crlbench compares with the best-known
peer, and whether the two agree on the metric.

- linear: `LogisticRegression` (lbfgs, at most eval.linear.max_iter iterations) for each
  penalty lambda of eval.linear.l2 as C = 1 / (lambda n), picked on the same stratified 10% of
  train held out, refitted on all of train; on the same standardised features.
- kmeans: `KMeans(n_init=eval.kmeans_restarts, max_iter=eval.kmeans_iters)` on the clustering
  split, compared by inertia and ACC.
- knn: `NearestNeighbors(metric="cosine", algorithm="brute")`, then the same exp(sim / T)
  vote; retrieval reuses those neighbours (as crlbench's retrieval reuses kNN's search).

geometry, heads, kest and tsne have no peer here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from crlbench.evaluate import Embeddings, cluster_scores, cluster_split
from crlbench.evaluate.evaluators import neighbour_depth
from crlbench.evaluate.linear import _standardise, stratified_split


def _linear(emb: Embeddings, cfg: Any, seed: int, state: dict) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    y = emb.train_labels.cpu()
    fit, val = stratified_split(y, float(cfg.linear.val_fraction),
                                torch.Generator().manual_seed(seed))
    x_fit, x_val = (a[:, :-1].numpy() for a in _standardise(emb.train.cpu()[fit],
                                                           emb.train.cpu()[val]))
    best = None
    for lam in sorted((float(v) for v in cfg.linear.l2), reverse=True):
        model = LogisticRegression(C=1 / (lam * len(fit)), max_iter=int(cfg.linear.max_iter))
        acc = model.fit(x_fit, y[fit].numpy()).score(x_val, y[val].numpy())
        if best is None or acc > best[0]:
            best = (acc, lam)
    x_all, x_test = (a[:, :-1].numpy() for a in _standardise(emb.train.cpu(), emb.test.cpu()))
    model = LogisticRegression(C=1 / (best[1] * len(y)), max_iter=int(cfg.linear.max_iter))
    model.fit(x_all, y.numpy())
    return {"linear_acc": float(model.score(x_test, emb.test_labels.cpu().numpy()))}


def _kmeans(emb: Embeddings, cfg: Any, seed: int, state: dict) -> dict[str, float]:
    from sklearn.cluster import KMeans

    feats, labels = cluster_split(emb, str(cfg.cluster_split))
    model = KMeans(emb.num_classes, n_init=int(cfg.kmeans_restarts),
                   max_iter=int(cfg.kmeans_iters), random_state=seed).fit(feats.cpu().numpy())
    scores = cluster_scores(torch.from_numpy(model.labels_).long(), labels.cpu())
    return {"kmeans_acc": scores["acc"], "kmeans_inertia": float(model.inertia_)}


def _neighbours(emb: Embeddings, depth: int, state: dict) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    if state.get("depth", 0) < depth:
        index = NearestNeighbors(n_neighbors=depth, metric="cosine", algorithm="brute")
        dist, idx = index.fit(emb.train.cpu().numpy()).kneighbors(emb.test.cpu().numpy())
        state.update(depth=depth, sims=1.0 - dist, labels=emb.train_labels.cpu().numpy()[idx])
    return state["sims"], state["labels"]


def _knn(emb: Embeddings, cfg: Any, seed: int, state: dict) -> dict[str, float]:
    sims, labels = _neighbours(emb, neighbour_depth(cfg, len(emb.train), cfg.knn_k), state)
    truth = emb.test_labels.cpu().numpy()
    weights = np.exp((sims - sims[:, :1]) / float(cfg.knn_temperature))
    out = {}
    for k in (min(int(k), len(emb.train)) for k in cfg.knn_k):
        votes = np.zeros((len(truth), emb.num_classes))
        np.add.at(votes, (np.arange(len(truth))[:, None], labels[:, :k]), weights[:, :k])
        out[f"knn{k}_acc"] = float((votes.argmax(axis=1) == truth).mean())
    return out


def _retrieval(emb: Embeddings, cfg: Any, seed: int, state: dict) -> dict[str, float]:
    _, labels = _neighbours(emb, neighbour_depth(cfg, len(emb.train), cfg.retrieval_k), state)
    hits = labels == emb.test_labels.cpu().numpy()[:, None]
    return {f"retrieval_p{k}": float(hits[:, :min(int(k), len(emb.train))].mean())
            for k in cfg.retrieval_k}


PEERS: dict[str, Callable[..., dict[str, float]]] = {
    "linear": _linear, "kmeans": _kmeans, "knn": _knn, "retrieval": _retrieval}


def time_peers(emb: Embeddings, cfg: Any, seed: int, names: list[str],
               threads: int) -> dict[str, dict[str, Any]]:
    """{evaluator: {"seconds", "metrics"}} of the peers of `names`, on `threads` threads."""
    state: dict = {}
    out = {}
    with threadpool_limits(threads):
        for name in names:
            if name not in PEERS:
                continue
            start = time.perf_counter()
            metrics = PEERS[name](emb, cfg, seed, state)
            out[name] = {"seconds": time.perf_counter() - start, "metrics": metrics}
    return out
