"""A 2-D t-SNE map of L2-normalised features, for plots drawn from the record.

t-SNE: van der Maaten & Hinton 2008, "Visualizing Data using t-SNE" (JMLR 9), as implemented by
scikit-learn's `TSNE` (Barnes-Hut approximation, PCA initialisation). Barnes-Hut t-SNE bases
each point's affinities on its 3 * perplexity nearest neighbours, so the perplexity is capped at
(N - 1) / 3, the check of van der Maaten's reference implementation (bhtsne). The map only
draws the features: it yields no metric, and distances between far-apart groups in it carry no
meaning.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from sklearn.manifold import TSNE
from torch import Tensor


def tsne_perplexity(n: int, perplexity: float) -> float:
    """The perplexity used for `n` points: `perplexity`, capped at (n - 1) / 3."""
    return min(float(perplexity), (n - 1) / 3)


def tsne_2d(x: Tensor, *, perplexity: float = 30.0, seed: int) -> np.ndarray:
    """2-D t-SNE coordinates float64 [N, 2] of the L2-normalised rows of `x` [N, D], N >= 2."""
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"t-SNE needs [N, D] features with N >= 2, got {tuple(x.shape)}")
    feats = F.normalize(x.detach().float(), dim=1).cpu().double().numpy()
    tsne = TSNE(
        n_components=2,
        perplexity=tsne_perplexity(len(feats), perplexity),
        init="pca",
        random_state=seed,
    )
    return tsne.fit_transform(feats)
