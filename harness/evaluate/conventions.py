"""The conventions behind a run's numbers, in words, for its record and for every table.

Papers compute "the same" metric differently: kNN with another k, temperature or similarity,
NMI with the geometric instead of the arithmetic mean, clustering scored on test only, training
on train + test, another probe, the best epoch instead of the last. `conventions` names each
choice a run's metrics depend on, from its resolved config, so that a reader can tell a
crlbench number from a paper's. Pure: a config in, a dict of short strings out.
"""

from __future__ import annotations

from typing import Any

CLUSTERING_METRICS = ("kmeans", "heads", "kest")


def trained_on(train_split: str, unlabeled: bool) -> str:
    """The images self-supervised training saw: "train", "train+test", plus "+unlabeled"."""
    return train_split + ("+unlabeled" if unlabeled else "")


def _join(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def conventions(run_cfg: dict[str, Any], train_split: str, pair_source: str) -> dict[str, str]:
    """What the metrics of a run with this config mean; only the evaluators it ran appear.

    `train_split` is what training saw (`trained_on`), `pair_source` where the geometry's
    positive pairs came from ("views" or "method").
    """
    ev = run_cfg["eval"]
    metrics = set(ev["metrics"])
    out = {
        "features": "after the last epoch, of un-augmented images, in eval mode",
        "trained on": train_split,
    }
    if "knn" in metrics:
        out["kNN"] = (f"k = {_join(ev['knn_k'])}, cosine similarity to the train features, "
                      f"votes weighted exp(s / {ev['knn_temperature']:g})")
    if "linear" in metrics:
        lin = ev["linear"]
        if lin["optimizer"] == "lbfgs":
            how = (f"L-BFGS on the full batch (at most {lin['max_iter']} iterations) of "
                   "standardised train features, L2 penalty lambda from "
                   f"{_join(f'{lam:g}' for lam in lin['l2'])}")
        else:
            how = (f"{lin['optimizer']}, {lin['epochs']} epochs on standardised train features, "
                   f"lr from {_join(f'{lr:g}' for lr in lin['lrs'])}")
        out["linear probe"] = (f"{how} picked on {lin['val_fraction']:.0%} of train held out, "
                               "then retrained on all of train")
    if metrics & set(CLUSTERING_METRICS):
        split = {"all": "train+test", "test": "test"}.get(ev["cluster_split"],
                                                          ev["cluster_split"])
        out["clustering"] = (f"scored on {split}; ACC by the Hungarian matching, NMI with the "
                             "arithmetic mean, ARI")
    if "kmeans" in metrics:
        out["k-means"] = (f"K = number of classes, k-means++ with {ev['kmeans_restarts']} "
                          "restarts, on the raw features")
    if "geometry" in metrics:
        pairs = ("the method's own positive pairs" if pair_source == "method"
                 else "two augmented views")
        samples = ev.get("geometry_samples")
        out["geometry"] = (f"alignment (alpha 2) of {pairs} and uniformity (t 2, on at most "
                           f"10,000 points) of {'all' if samples is None else samples} test "
                           "images, L2-normalised")
    if "kest" in metrics:
        out["K estimation"] = (
            f"k-means ({ev['kest_restarts']} restarts) for k = {ev['kest_min_k']}.."
            f"{ev['kest_max_k']} on at most {ev['kest_sample']:,} points; silhouette: the best "
            "mean silhouette; elbow: Kneedle (S = 1) on log inertia")
    if "retrieval" in metrics:
        out["retrieval"] = (f"precision@k for k = {_join(ev['retrieval_k'])}, test queries "
                            "against the train features, cosine")
    if "rankme" in metrics:
        out["RankMe"] = ("exp of the entropy of the L1-normalised singular values (+1e-7) of "
                         "the raw train features")
    if "collapse" in metrics:
        out["collapse"] = ("per-dimension std of the L2-normalised train features, mean over "
                           "dimensions x sqrt(D)")
    return out
