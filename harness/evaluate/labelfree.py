"""Label-free quality of a representation: its effective rank (RankMe) and a collapse check.

Both read the features only, never the labels, so they can judge a run (or an epoch of it)
without any annotated data.

- RankMe (Garrido, Balestriero, Najman, LeCun 2023, "RankMe: Assessing the Downstream
  Performance of Pretrained Self-Supervised Representations by Their Rank", eq. 1): with
  sigma_1..sigma_min(N, D) the singular values of the embedding matrix Z [N, D] (as it is,
  neither centred nor normalised), p_k = sigma_k / ||sigma||_1 + eps and

      RankMe(Z) = exp(- sum_k p_k log p_k),     eps = 1e-7 (the paper's value).

  It lies in [1, min(N, D)] (up to eps): 1 when one direction holds every embedding, min(N, D)
  when all singular values are equal. The singular values are computed in float64.
- Collapse std (Chen & He 2021, "Exploring Simple Siamese Representation Learning", sec. 4.1,
  Fig. 2 middle): the standard deviation over the samples of each dimension of the
  L2-normalised embeddings, averaged over the dimensions. For embeddings spread uniformly on
  the sphere it is about 1 / sqrt(D); at complete collapse, 0. Reported times sqrt(D), so that
  about 1 means spread and 0 means collapsed, whatever the width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

RANKME_EPS = 1e-7


def rankme(z: Tensor, eps: float = RANKME_EPS) -> float:
    """RankMe of the rows of `z` [N, D] (see the module's docstring); NaN when z is all zero."""
    sigma = torch.linalg.svdvals(z.double())
    total = sigma.sum()
    if not total > 0:
        return math.nan
    p = sigma / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_std(z: Tensor) -> float:
    """sqrt(D) times the mean over dimensions of the per-dimension std (population) of the
    L2-normalised rows of `z` [N, D]."""
    normed = F.normalize(z.double(), dim=1)
    return float(normed.std(dim=0, unbiased=False).mean() * math.sqrt(z.shape[1]))
