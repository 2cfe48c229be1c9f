"""Evaluation of frozen features: kNN, linear probe, k-means, cluster heads, geometry,
retrieval, K estimation and a t-SNE map.

Every number follows the README's "Evaluation" section; each module cites its source.
`evaluate(emb, cfg, seed=...)` runs the evaluators that an EvalConfig names and returns flat
metrics plus details (chosen LR, inertia, timings). The k-means function is not re-exported
here, so that `crlbench.evaluate.kmeans` stays the module: `from crlbench.evaluate.kmeans
import kmeans`. The names are loaded on first use, so that a method importing one evaluation
module (e.g. the geometry) does not import scikit-learn and scipy with the others.
"""

from __future__ import annotations

from crlbench.lazy import lazy_exports

# name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(("ari", "cluster_scores", "contingency", "hungarian_accuracy", "nmi"),
                    "clustering"),
    **dict.fromkeys(("INPUTS", "Embeddings", "EvalResult", "EvaluatorError", "cluster_split",
                     "declares", "evaluate", "evaluator_lower_is_better", "evaluator_needs",
                     "evaluator_options", "needs", "run_evaluator"), "evaluators"),
    **dict.fromkeys(("KEstimate", "elbow_k", "estimate_k", "knee_index", "silhouette_score"),
                    "kest"),
    "knn_accuracy": "knn",
    "linear_probe": "linear",
    "precision_at_k": "retrieval",
    "tsne_2d": "tsne",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
