"""Retrieval precision@k of test queries against the train bank.

Definition (DESIGN.md "Evaluation definitions", Retrieval; precision at a cut-off as in Manning,
Raghavan & Schütze 2008, "Introduction to Information Retrieval", sec. 8.4): features are
L2-normalised, each test feature queries the train features by cosine similarity, and
precision@k is the fraction of its k most similar train items that share its label, averaged
over the queries.

A k larger than the bank retrieves the whole bank, so its precision@k is the fraction of the
bank with the query's label (the denominator is the bank size, not k). The top max(k) items are
found once per chunk of queries and reused for every smaller k, and the queries are processed
in chunks so that only a [chunk_size, N_train] similarity block exists at a time. Ties in
similarity are broken as torch.topk breaks them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def precision_at_k(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    ks: Sequence[int] = (1, 2, 10, 50, 100),
    *,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Mean precision@k in [0, 1] of the test queries against the train bank, for each k in `ks`.

    Runs on the device of `train_feats` in float32.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    if len(train_feats) == 0 or len(test_feats) == 0:
        raise ValueError("retrieval needs a non-empty train bank and test set")
    device = train_feats.device
    bank = F.normalize(train_feats.float(), dim=1)
    bank_labels = train_labels.to(device=device, dtype=torch.long)
    queries = F.normalize(test_feats.to(device).float(), dim=1)
    query_labels = test_labels.to(device=device, dtype=torch.long)

    k_used = {k: min(k, len(bank)) for k in ks}
    k_max = max(k_used.values())
    # hits[k] = number of relevant items among the top k, summed over queries (exact integers)
    hits = dict.fromkeys(ks, 0)
    for start in range(0, len(queries), chunk_size):
        q = queries[start : start + chunk_size]
        idx = (q @ bank.T).topk(k_max, dim=1).indices
        relevant = bank_labels[idx] == query_labels[start : start + chunk_size, None]
        cumulative = relevant.long().cumsum(dim=1)
        for k in ks:
            hits[k] += int(cumulative[:, k_used[k] - 1].sum())
    return {k: hits[k] / (k_used[k] * len(queries)) for k in ks}
