"""Cosine nearest neighbours of test queries in the train bank, what kNN and retrieval share.

Features are L2-normalised in float32 on the device of the train features. The top max(k)
neighbours are found once per chunk of queries (so only a [chunk_size, N_train] similarity
block exists at a time) and reused for every smaller k; a k larger than the bank is clipped to
the bank's size. Ties in similarity are broken as torch.topk breaks them. `nearest` keeps the
whole table of the k nearest, so that kNN and retrieval of one run search once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Chunk:
    """The neighbours of one chunk of queries, most similar first."""

    sims: Tensor  # [q, k_max] cosine similarities
    labels: Tensor  # [q, k_max] the neighbours' labels
    truth: Tensor  # [q] the queries' own labels


def cosine_neighbours(
    train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, test_labels: Tensor,
    ks: Sequence[int], *, what: str, chunk_size: int, table: Chunk | None = None,
) -> tuple[dict[int, int], Iterable[Chunk]]:
    """({k: k clipped to the bank size}, the chunks); bad arguments raise here, not lazily.
    `table`: the neighbours already found (`nearest`), as one chunk, when it holds enough."""
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    if len(train_feats) == 0 or len(test_feats) == 0:
        raise ValueError(f"{what} needs a non-empty train bank and test set")
    k_used = {k: min(k, len(train_feats)) for k in ks}
    k_max = max(k_used.values())
    if table is not None:
        if len(table.sims) != len(test_feats) or table.sims.shape[1] < k_max:
            raise ValueError(f"the neighbour table holds {tuple(table.sims.shape)}, {what} "
                             f"needs {len(test_feats)} queries x {k_max}")
        return k_used, [table]
    return k_used, _chunks(train_feats, train_labels, test_feats, test_labels, k_max,
                           chunk_size)


def nearest(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, test_labels: Tensor,
            k: int, *, chunk_size: int = 1024) -> Chunk:
    """The k nearest bank entries (k clipped to the bank) of every query, as one chunk."""
    _, chunks = cosine_neighbours(train_feats, train_labels, test_feats, test_labels, [k],
                                  what="the neighbour search", chunk_size=chunk_size)
    parts = list(chunks)
    return Chunk(torch.cat([c.sims for c in parts]), torch.cat([c.labels for c in parts]),
                 torch.cat([c.truth for c in parts]))


def _chunks(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, test_labels: Tensor,
            k_max: int, chunk_size: int) -> Iterator[Chunk]:
    device = train_feats.device
    bank = F.normalize(train_feats.float(), dim=1)
    bank_labels = train_labels.to(device=device, dtype=torch.long)
    queries = F.normalize(test_feats.to(device).float(), dim=1)
    query_labels = test_labels.to(device=device, dtype=torch.long)
    for start in range(0, len(queries), chunk_size):
        sims, idx = (queries[start : start + chunk_size] @ bank.T).topk(k_max, dim=1)
        yield Chunk(sims, bank_labels[idx], query_labels[start : start + chunk_size])
