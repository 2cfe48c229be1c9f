"""Weighted k-nearest-neighbour classification accuracy on frozen features.

Definition (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", sec. 3.4; DESIGN.md "Evaluation definitions"): features are L2-normalised,
the train features are the memory bank, each test sample takes its k most cosine-similar bank
entries, and every neighbour votes for its class with weight exp(sim / T). The prediction is
the class with the largest total vote (ties go to the smallest class index, as argmax does).

A k larger than the bank means the whole bank votes. The top max(k) neighbours are found once
per test chunk and reused for every smaller k, and the test set is processed in chunks so that
only a [chunk_size, N_train] similarity block exists at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    ks: Sequence[int] = (5, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Top-1 accuracy in [0, 1] of the exp(sim / T)-weighted kNN vote, for each k in `ks`.

    Runs on the device of `train_feats` in float32. `num_classes` defaults to the largest label
    seen plus one.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    if len(train_feats) == 0 or len(test_feats) == 0:
        raise ValueError("kNN needs a non-empty train bank and test set")
    device = train_feats.device
    bank = F.normalize(train_feats.float(), dim=1)
    bank_labels = train_labels.to(device=device, dtype=torch.long)
    queries = F.normalize(test_feats.to(device).float(), dim=1)
    query_labels = test_labels.to(device=device, dtype=torch.long)
    if num_classes is None:
        num_classes = int(max(bank_labels.max(), query_labels.max())) + 1

    k_used = {k: min(k, len(bank)) for k in ks}
    k_max = max(k_used.values())
    correct = dict.fromkeys(ks, 0)
    for start in range(0, len(queries), chunk_size):
        q = queries[start : start + chunk_size]
        sims, idx = (q @ bank.T).topk(k_max, dim=1)  # sorted, most similar first
        # Subtracting each row's best similarity scales all its votes by one constant: the
        # argmax is unchanged and exp cannot overflow for small temperatures.
        weights = torch.exp((sims - sims[:, :1]) / temperature)
        neighbour_labels = bank_labels[idx]
        truth = query_labels[start : start + chunk_size]
        for k in ks:
            kk = k_used[k]
            votes = torch.zeros(len(q), num_classes, device=device)
            votes.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk])
            correct[k] += int((votes.argmax(dim=1) == truth).sum())
    return {k: correct[k] / len(queries) for k in ks}
