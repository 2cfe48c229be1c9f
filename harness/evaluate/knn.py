"""Weighted k-nearest-neighbour classification accuracy on frozen features.

Definition (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", sec. 3.4; the README's "Evaluation" section): features are L2-normalised,
the train features are the memory bank, each test sample takes its k most cosine-similar bank
entries, and every neighbour votes for its class with weight exp(sim / T). The prediction is
the class with the largest total vote (ties go to the smallest class index, as argmax does).

A k larger than the bank means the whole bank votes. The neighbours are found by
`neighbours.cosine_neighbours`, shared with retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .neighbours import Chunk, cosine_neighbours


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
    neighbours: Chunk | None = None,
) -> dict[int, float]:
    """Top-1 accuracy in [0, 1] of the exp(sim / T)-weighted kNN vote, for each k in `ks`.

    Runs on the device of `train_feats` in float32. `num_classes` defaults to the largest label
    seen plus one. `neighbours`: the table `neighbours.nearest` found, reused.
    """
    k_used, chunks = cosine_neighbours(train_feats, train_labels, test_feats, test_labels, ks,
                                       what="kNN", chunk_size=chunk_size, table=neighbours)
    if num_classes is None:
        num_classes = max(int(train_labels.max()), int(test_labels.max())) + 1
    correct = dict.fromkeys(ks, 0)
    for chunk in chunks:
        # Subtracting each row's best similarity scales all its votes by one constant: the
        # argmax is unchanged and exp cannot overflow for small temperatures.
        weights = torch.exp((chunk.sims - chunk.sims[:, :1]) / temperature)
        for k in ks:
            kk = k_used[k]
            votes = torch.zeros(len(weights), num_classes, device=weights.device)
            votes.scatter_add_(1, chunk.labels[:, :kk], weights[:, :kk])
            correct[k] += int((votes.argmax(dim=1) == chunk.truth).sum())
    return {k: correct[k] / len(test_feats) for k in ks}
