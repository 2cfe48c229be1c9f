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

__all__ = ["alignment", "cluster_contrast", "cluster_mass_entropy", "info_nce", "nce",
           "normalized_mse", "nt_xent", "spring", "swapped_prediction", "triplet_margin",
           "uniformity", "vicreg_covariance", "vicreg_invariance", "vicreg_variance"]


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
def normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2): ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z),
    averaged over the batch. The target is used as given (detach it before calling)."""
    _pairwise_check("normalized_mse", prediction, target)
    p = F.normalize(prediction.float(), dim=1)
    z = F.normalize(target.float(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()


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
def nce(positive: Tensor, noise: Tensor, temperature: float, num_data: int) -> Tensor:
    """Noise-contrastive estimation of instance discrimination (Gutmann & Hyvarinen 2010 as
    used by NPID, Wu et al. 2018, eq. 5-8, and CMC, Tian et al. 2019).

    `positive` [B] and `noise` [B, m] are cosine similarities. The density of an instance is
    P = exp(s / tau) / Z, with Z estimated by Monte Carlo from the noise (num_data times the mean
    of exp(s / tau), held constant), and noise drawn uniformly, Pn = 1 / num_data. With
    h = P / (P + m Pn), the loss is -log h(positive) - sum over the m noise of log(1 - h).
    """
    m = noise.shape[1]
    pos = torch.exp(positive.float() / temperature)
    neg = torch.exp(noise.float() / temperature)
    z = (neg.mean() * num_data).detach()
    noise_mass = m / num_data
    p_pos, p_neg = pos / z, neg / z
    log_h_pos = torch.log(p_pos / (p_pos + noise_mass))
    log_1m_h_neg = torch.log(noise_mass / (p_neg + noise_mass))
    return -(log_h_pos + log_1m_h_neg.sum(dim=1)).mean()


@full_precision
def triplet_margin(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Triplet loss (Schroff et al. 2015) on L2-normalised embeddings:
    max(0, |a - p|^2 - |a - n|^2 + margin), averaged. `negative` may be [B, D] or [B, m, D]."""
    a = F.normalize(anchor.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    n = F.normalize(negative.float(), dim=-1)
    d_pos = (a - p).pow(2).sum(dim=-1)
    if n.ndim == 3:
        d_neg = (a[:, None] - n).pow(2).sum(dim=-1)
        d_pos = d_pos[:, None]
    else:
        d_neg = (a - n).pow(2).sum(dim=-1)
    return F.relu(d_pos - d_neg + margin).mean()


@full_precision
def spring(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """The spring-like contrastive loss of Hadsell, Chopra, LeCun 2006 on L2-normalised
    embeddings: positives pulled by d^2, negatives pushed by max(0, margin - d)^2 until they are
    `margin` apart. `negative` may be [B, D] or [B, m, D]; the two parts are averaged."""
    a = F.normalize(anchor.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    n = F.normalize(negative.float(), dim=-1)
    pull = (a - p).pow(2).sum(dim=-1)
    a_n = a[:, None] if n.ndim == 3 else a
    dist = torch.sqrt((a_n - n).pow(2).sum(dim=-1) + 1e-12)
    push = F.relu(margin - dist).pow(2)
    return 0.5 * (pull.mean() + push.mean())


@full_precision
def cluster_mass_entropy(probs: Tensor) -> Tensor:
    """Entropy H(m) of the cluster mass m_k = mean over the batch of p(k | x) (CC, Li et al.
    2021, eq. 5; PICA, Huang et al. 2020). It is log K for balanced assignments and 0 when every
    sample goes to one cluster; clustering losses subtract it to keep clusters from emptying."""
    mass = probs.float().mean(dim=0)
    return -(mass * torch.log(mass.clamp_min(1e-12))).sum()


def cluster_contrast(probs1: Tensor, probs2: Tensor, temperature: float) -> Tensor:
    """Cluster-level contrast (CC, Li et al. 2021, eq. 4-6): column k of the [B, K] assignment
    matrix of one view (cluster k's assignment vector over the batch) is the positive of column
    k of the other view; the other 2K - 2 columns are negatives. NT-Xent over the 2K columns."""
    if probs1.shape != probs2.shape or probs1.ndim != 2:
        raise ValueError(f"cluster_contrast needs two [B, K] tensors of one shape, got "
                         f"{probs1.shape}, {probs2.shape}")
    return nt_xent(probs1.T, probs2.T, temperature)
