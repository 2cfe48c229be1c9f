"""Self-supervised losses as pure functions of embeddings.

Every function takes embeddings of any dtype, computes in float32, and returns a scalar tensor.
Each docstring names its source. The methods in this package combine them; none keeps state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Wang & Isola's alignment and uniformity are both metrics and losses (RCC); one definition.
from crlbench.evaluate.geometry import alignment, uniformity
from crlbench.precision import full_precision

__all__ = ["alignment", "bca_contrast", "cluster_contrast", "cluster_mass_entropy",
           "cosine_distance", "info_nce", "nce", "nce_normaliser", "normalized_mse", "nt_xent",
           "spring", "swapped_prediction", "triplet_margin", "uniformity", "vicreg_covariance",
           "vicreg_invariance", "vicreg_variance"]


def _pairwise_check(name: str, a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"{name} needs two [N, D] tensors of one shape, got {a.shape}, {b.shape}")


@full_precision
def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

    For 2N embeddings of N positive pairs, each embedding's positive is its partner and its
    negatives are the other 2N - 2; similarities are cosines divided by the temperature. The
    loss is the mean over all 2N anchors of -log softmax(positive).
    """
    _pairwise_check("nt_xent", z1, z2)
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


@full_precision
def info_nce(query: Tensor, key: Tensor, temperature: float,
             negatives: Tensor | None = None) -> Tensor:
    """InfoNCE (van den Oord et al. 2018) of queries against their keys, on cosine similarity.

    With `negatives` [M, D] (MoCo v2's queue, He et al. 2020 / Chen et al. 2020b) each query's
    logits are its own key then the M negatives: an (M+1)-way softmax. Without, the other keys
    of the batch are the negatives (MoCo v3, Chen, Xie, He 2021; CMC's softmax loss): an N-way
    softmax whose target is the diagonal.
    """
    _pairwise_check("info_nce", query, key)
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(key.float(), dim=1)
    if negatives is None:
        logits = q @ k.T / temperature
        return F.cross_entropy(logits, torch.arange(len(q), device=q.device))
    neg = F.normalize(negatives.float(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([pos, q @ neg.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


@full_precision
def cosine_distance(prediction: Tensor, target: Tensor) -> Tensor:
    """1 - cos(p, z), averaged over the batch: C2BIN's alignment (eq. 1). The target is used as
    given (detach it before calling)."""
    _pairwise_check("cosine_distance", prediction, target)
    return 1 - F.cosine_similarity(prediction.float(), target.float(), dim=1).mean()


def normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2): ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z),
    averaged over the batch. The target is used as given (detach it before calling)."""
    return 2 * cosine_distance(prediction, target)


@full_precision
def vicreg_invariance(z1: Tensor, z2: Tensor) -> Tensor:
    """VICReg's invariance term s (Bardes, Ponce, LeCun 2022): mean squared distance of pairs."""
    _pairwise_check("vicreg_invariance", z1, z2)
    return F.mse_loss(z1.float(), z2.float())


@full_precision
def vicreg_variance(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg's variance term v: mean over dimensions of max(0, gamma - sqrt(Var(z_j) + eps)).

    A collapsed batch (all rows equal) gives gamma - sqrt(eps), the largest value.
    """
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return F.relu(gamma - std).mean()


@full_precision
def vicreg_covariance(z: Tensor) -> Tensor:
    """VICReg's covariance term c: the squared off-diagonal entries of the covariance matrix of
    the batch, summed and divided by the dimension d."""
    z = z.float()
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


@full_precision
def swapped_prediction(scores1: Tensor, scores2: Tensor, codes1: Tensor, codes2: Tensor,
                       temperature: float) -> Tensor:
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1): each view predicts the other's code
    from its prototype scores, -sum_k q_k log softmax(s / tau)_k, averaged over both swaps."""
    log_p1 = F.log_softmax(scores1.float() / temperature, dim=1)
    log_p2 = F.log_softmax(scores2.float() / temperature, dim=1)
    return -0.5 * ((codes2 * log_p1).sum(dim=1).mean() + (codes1 * log_p2).sum(dim=1).mean())


@full_precision
def nce_normaliser(noise: Tensor, temperature: float, num_data: int) -> Tensor:
    """NPID's Monte-Carlo estimate of the partition function Z (Wu et al. 2018, eq. 7):
    num_data times the mean of exp(s / tau) over the noise similarities, detached. (The
    authors' code averages over its m + 1 columns, the positive included: one column in 4097 at
    its m = 4096.)"""
    return (torch.exp(noise.detach().float() / temperature).mean() * num_data).detach()


@full_precision
def nce(positive: Tensor, noise: Tensor, temperature: float, num_data: int,
        normaliser: Tensor | None = None) -> Tensor:
    """Noise-contrastive estimation of instance discrimination (Gutmann & Hyvarinen 2010 as
    used by NPID, Wu et al. 2018, eq. 5-8, and CMC, Tian et al. 2019).

    `positive` [B] and `noise` [B, m] are cosine similarities. The density of an instance is
    P = exp(s / tau) / Z, a constant Z (`normaliser`; estimated from this noise by
    `nce_normaliser` when not given), and noise drawn uniformly, Pn = 1 / num_data. With
    h = P / (P + m Pn), the loss is -log h(positive) - sum over the m noise of log(1 - h).
    """
    m = noise.shape[1]
    pos = torch.exp(positive.float() / temperature)
    neg = torch.exp(noise.float() / temperature)
    z = nce_normaliser(noise, temperature, num_data) if normaliser is None else normaliser
    noise_mass = m / num_data
    p_pos, p_neg = pos / z, neg / z
    log_h_pos = torch.log(p_pos / (p_pos + noise_mass))
    log_1m_h_neg = torch.log(noise_mass / (p_neg + noise_mass))
    return -(log_h_pos + log_1m_h_neg.sum(dim=1)).mean()


def _distances(anchor: Tensor, other: Tensor, squared: bool) -> Tensor:
    """Euclidean distances (or their squares) of L2-normalised anchors [B, D] to `other`
    [B, D] (row by row) or [B, m, D] (each anchor to its m rows)."""
    a = F.normalize(anchor.float(), dim=-1)
    o = F.normalize(other.float(), dim=-1)
    sq = ((a[:, None] if o.ndim == 3 else a) - o).pow(2).sum(dim=-1)
    return sq if squared else torch.sqrt(sq + 1e-12)  # the epsilon keeps d's gradient at 0


@full_precision
def triplet_margin(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float,
                   squared: bool = False) -> Tensor:
    """The triplet loss [d(x^p, x) - d(x^n, x) + alpha]_+ (Schroff et al. 2015), on
    L2-normalised embeddings with d the Euclidean distance, as the CMC loss study prints it
    (its sec. 3.2), averaged over the triplets. `squared` uses squared distances (FaceNet's
    form). `negative` may be [B, D] or [B, m, D] (m negatives per anchor)."""
    d_pos = _distances(anchor, positive, squared)
    d_neg = _distances(anchor, negative, squared)
    if d_neg.ndim == 2:
        d_pos = d_pos[:, None]
    return F.relu(d_pos - d_neg + margin).mean()


@full_precision
def spring(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float,
           squared: bool = False) -> Tensor:
    """The spring-like loss (Hadsell, Chopra, LeCun 2006) as the CMC loss study prints it (its
    sec. 3.2), on L2-normalised embeddings: d / 2 for a positive pair and [m - d]_+ / 2 for a
    negative one, with d the Euclidean distance; the mean over the positive pairs plus the mean
    over the negative ones. `squared` is Hadsell's form: d^2 / 2 and [m - d]_+^2 / 2.
    `negative` may be [B, D] or [B, m, D]."""
    d_pos = _distances(anchor, positive, squared)
    push = F.relu(margin - _distances(anchor, negative, squared=False))
    if squared:
        push = push.pow(2)
    return 0.5 * (d_pos.mean() + push.mean())


@full_precision
def cluster_mass_entropy(probs: Tensor) -> Tensor:
    """Entropy H(m) of the cluster mass m_k = mean over the batch of p(k | x) (CC, Li et al.
    2021, eq. 5; PICA, Huang et al. 2020). It is log K for balanced assignments and 0 when every
    sample goes to one cluster; clustering losses subtract it to keep clusters from emptying."""
    mass = probs.float().mean(dim=0)
    return -(mass * torch.log(mass.clamp_min(1e-12))).sum()


@full_precision
def bca_contrast(probs1: Tensor, probs2: Tensor, temperature: float,
                 similarity: str = "dot") -> Tensor:
    """C2BIN's contrast of batch-wise cluster assignments (eq. 4), as printed: column i of the
    [B, K] assignments of view 1 (the anchor) against column i of view 2 (its positive) and the
    K - 1 other columns of view 2 (its negatives), the positive left out of the denominator:

        (1/K) sum_i -log(exp(s_ii / tau) / sum_{j != i} exp(s_ij / tau)),  s_ij = c'_i . c''_j

    `similarity` "dot" is the plain dot product of the columns (as printed), "cosine" divides by
    their norms."""
    if probs1.shape != probs2.shape or probs1.ndim != 2 or probs1.shape[1] < 2:
        raise ValueError(f"bca_contrast needs two [B, K] tensors of one shape with K >= 2, got "
                         f"{probs1.shape}, {probs2.shape}")
    c1, c2 = probs1.float().T, probs2.float().T  # [K, B]: one row per cluster
    if similarity == "cosine":
        c1, c2 = F.normalize(c1, dim=1), F.normalize(c2, dim=1)
    elif similarity != "dot":
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
    sim = c1 @ c2.T / temperature
    eye = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    negatives = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1)
    return (negatives - sim.diagonal()).mean()


def cluster_contrast(probs1: Tensor, probs2: Tensor, temperature: float) -> Tensor:
    """Cluster-level contrast (CC, Li et al. 2021, eq. 4-6): column k of the [B, K] assignment
    matrix of one view (cluster k's assignment vector over the batch) is the positive of column
    k of the other view; the other 2K - 2 columns are negatives. NT-Xent over the 2K columns."""
    if probs1.shape != probs2.shape or probs1.ndim != 2:
        raise ValueError(f"cluster_contrast needs two [B, K] tensors of one shape, got "
                         f"{probs1.shape}, {probs2.shape}")
    return nt_xent(probs1.T, probs2.T, temperature)
