"""Evaluation of frozen features: kNN, linear probe, k-means, cluster heads, geometry,
retrieval, K estimation and a t-SNE map.

Every number follows the README's "Evaluation" section; each module cites its source.
`evaluate(emb, cfg, seed=...)` runs the evaluators that an EvalConfig names and returns flat
metrics plus details (chosen LR, inertia, timings). The k-means function is not re-exported
here, so that `crlbench.evaluate.kmeans` stays the module: `from crlbench.evaluate.kmeans
import kmeans`.
"""

from __future__ import annotations

from .clustering import (
    ari,
    cluster_scores,
    contingency,
    hungarian_accuracy,
    nmi,
)
from .evaluators import (
    EVALUATORS,
    Embeddings,
    EvalResult,
    EvaluatorError,
    cluster_split,
    evaluate,
    run_evaluator,
)
from .kest import KEstimate, elbow_k, estimate_k, knee_index, silhouette_score
from .knn import knn_accuracy
from .linear import linear_probe
from .retrieval import precision_at_k
from .tsne import tsne_2d

__all__ = [
    "EVALUATORS",
    "Embeddings",
    "EvalResult",
    "EvaluatorError",
    "KEstimate",
    "ari",
    "cluster_scores",
    "cluster_split",
    "contingency",
    "elbow_k",
    "estimate_k",
    "evaluate",
    "hungarian_accuracy",
    "knee_index",
    "knn_accuracy",
    "linear_probe",
    "nmi",
    "precision_at_k",
    "run_evaluator",
    "silhouette_score",
    "tsne_2d",
]
