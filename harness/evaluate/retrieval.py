"""Retrieval precision@k of test queries against the train bank.

Definition (the README's "Evaluation" section, Retrieval; precision at a cut-off as in Manning,
Raghavan & Schütze 2008, "Introduction to Information Retrieval", sec. 8.4): features are
L2-normalised, each test feature queries the train features by cosine similarity, and
precision@k is the fraction of its k most similar train items that share its label, averaged
over the queries.

A k larger than the bank retrieves the whole bank, so its precision@k is the fraction of the
bank with the query's label (the denominator is the bank size, not k). The neighbours are found
by `neighbours.cosine_neighbours`, shared with kNN.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .neighbours import Chunk, cosine_neighbours


def precision_at_k(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    ks: Sequence[int] = (1, 2, 10, 50, 100),
    *,
    chunk_size: int = 1024,
    neighbours: Chunk | None = None,
) -> dict[int, float]:
    """Mean precision@k in [0, 1] of the test queries against the train bank, for each k in `ks`.

    Runs on the device of `train_feats` in float32. `neighbours`: the table
    `neighbours.nearest` found, reused.
    """
    k_used, chunks = cosine_neighbours(train_feats, train_labels, test_feats, test_labels, ks,
                                       what="retrieval", chunk_size=chunk_size,
                                       table=neighbours)
    # hits[k] = number of relevant items among the top k, summed over queries (exact integers)
    hits = dict.fromkeys(ks, 0)
    for chunk in chunks:
        cumulative = (chunk.labels == chunk.truth[:, None]).long().cumsum(dim=1)
        for k in ks:
            hits[k] += int(cumulative[:, k_used[k] - 1].sum())
    return {k: hits[k] / (k_used[k] * len(test_feats)) for k in ks}
