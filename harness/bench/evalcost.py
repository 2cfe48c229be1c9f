"""(c) The cost of evaluation: every evaluator of the benchmark's EvalConfig, timed one by one
on synthetic features of each size in `eval_sizes`.

Features are Gaussian class centres N(0, I) plus isotropic noise of variance
NOISE * sqrt(dim / 8): the between-class gap in squared distance (2 dim) is then about a third
of the noise's spread in it (sqrt(8 dim) var), so classes overlap as learned features' do
(kNN-5 accuracy near 0.85 at 512 dims, 10 classes, 10k features), and k-means does not
converge in a few iterations as on separated blobs. They are split 6:1 into train and test like
Fashion-MNIST's 60k/10k. The geometry evaluator gets two noisy copies of
the test features as its view pairs; cluster heads are skipped (there are none to score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
from omegaconf import DictConfig

from crlbench.bench.model import clock
from crlbench.bench.peers import time_peers
from crlbench.evaluate import Embeddings, run_evaluator
from crlbench.plugin import PluginEntry
from crlbench.resolve import resolve_evaluators

NOISE = 3.0
VIEW_NOISE = 0.1  # view pairs: the test features plus this share of the class noise
WARMUP_SIZE = 2000  # an untimed evaluation on a GPU first, so the first size pays no lazy init


def synthetic_features(n: int, dim: int, classes: int, seed: int,
                       device: torch.device) -> Embeddings:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=gen)
    sigma = math.sqrt(NOISE * math.sqrt(dim / 8))
    labels = torch.randint(classes, (n,), generator=gen)
    feats = centres[labels] + sigma * torch.randn(n, dim, generator=gen)
    n_train = n * 6 // 7
    test = feats[n_train:]
    pairs = tuple(test + VIEW_NOISE * sigma * torch.randn(test.shape, generator=gen)
                  for _ in range(2))
    emb = Embeddings(train=feats[:n_train].to(device), train_labels=labels[:n_train].to(device),
                     test=test.to(device), test_labels=labels[n_train:].to(device),
                     num_classes=classes)
    emb.view_pairs = (pairs[0].to(device), pairs[1].to(device))
    emb.cluster_labels = labels.to(device)
    return emb


def time_evaluators(emb: Embeddings, cfg: DictConfig, seed: int, device: torch.device,
                    evaluators: Sequence[PluginEntry]) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    metrics: dict[str, float] = {}
    for entry in evaluators:
        if entry.name == "heads":
            skipped[entry.name] = "no cluster heads on synthetic features"
            continue
        start = clock(device)
        m, details = run_evaluator(entry, emb, cfg, seed)
        seconds[entry.name] = clock(device) - start
        metrics.update(m)
        if entry.name == "kmeans":  # compared with the peer's
            metrics["kmeans_inertia"] = details["inertia"]
    return {"seconds": seconds, "total_s": sum(seconds.values()), "skipped": skipped,
            "metrics": metrics}


def _exponent(a: dict[str, Any], b: dict[str, Any], ta: float | None,
              tb: float | None) -> float | None:
    if not ta or not tb or a["features"] == b["features"]:
        return None
    return math.log(tb / ta) / math.log(b["features"] / a["features"])


def growth(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exponent of time in features between consecutive sizes (1 is linear growth), of
    the total and of each evaluator."""
    out = []
    for a, b in pairwise(sizes):
        total = _exponent(a, b, a["total_s"], b["total_s"])
        if total is None:
            continue
        each = {name: _exponent(a, b, a["seconds"].get(name), b["seconds"].get(name))
                for name in a["seconds"]}
        out.append({"from": a["features"], "to": b["features"], "exponent": total,
                    "evaluators": {k: v for k, v in each.items() if v is not None}})
    return out


def compare(ours: dict[str, Any], peers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per evaluator with a peer: both times, ours / peer, and both values of each metric
    the two report."""
    out = {}
    for name, peer in peers.items():
        mine = ours["seconds"].get(name)
        shared = sorted(set(peer["metrics"]) & set(ours["metrics"]))
        out[name] = {"seconds": mine, "peer_seconds": peer["seconds"],
                     "ratio": mine / peer["seconds"] if mine and peer["seconds"] else None,
                     "metrics": {m: {"ours": ours["metrics"][m], "peer": peer["metrics"][m]}
                                 for m in shared}}
    return out


def measure_eval(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    evaluators = resolve_evaluators(cfg.eval.metrics)  # once, for every size
    if device.type == "cuda":
        warm = synthetic_features(WARMUP_SIZE, cfg.feature_dim, cfg.classes, cfg.seed, device)
        time_evaluators(warm, cfg.eval, cfg.seed, device, evaluators)
    sizes = []
    for n in cfg.eval_sizes:
        emb = synthetic_features(n, cfg.feature_dim, cfg.classes, cfg.seed, device)
        timed = time_evaluators(emb, cfg.eval, cfg.seed, device, evaluators)
        row = {"features": n, "train": len(emb.train), "test": len(emb.test), **timed}
        if cfg.peers:
            names = [str(m) for m in cfg.eval.metrics]
            row["peers"] = compare(timed, time_peers(emb, cfg.eval, cfg.seed, names,
                                                     torch.get_num_threads()))
        sizes.append(row)
        del emb
    return {"feature_dim": cfg.feature_dim, "classes": cfg.classes,
            "threads": torch.get_num_threads(), "peer": "scikit-learn" if cfg.peers else None,
            "metrics": [str(m) for m in cfg.eval.metrics], "sizes": sizes,
            "growth": growth(sorted(sizes, key=lambda s: s["features"]))}
