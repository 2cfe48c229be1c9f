"""crlbench's losses against the equations as printed in the papers it was founded on.

Each ``paper_*`` function below is an independent, deliberately plain transcription of one
printed equation (Python loops over samples, columns and pairs; float64; no vectorised tricks),
written from the paper text and not from crlbench's code. The tests feed small random inputs to
both and require agreement to float32 tolerance, and check the closed forms that follow from the
equations on hand-picked inputs. Where a printed equation is ambiguous or misprinted, the reading
crlbench documents is the one tested, and a comment says so.

Papers (cited by title / authors):
- SimCLR & DeepCluster review: Senanou, Mensah, Mohamed, Sanya, "Self-supervised visual
  representation learning: SimCLR & Deep Clustering", sec. 2 (eq. for L_{i,j}) and Algorithm 1.
- C2BIN: "Learning Representations by Contrasting Clusters While Bootstrapping Instances"
  (anonymous ICLR submission), sec. 3.2-3.3, eq. 1, 3, 4, 5.
- RCC: Khan, Zhu, Duong, Katneni, "Robust Contrastive Learning", sec. 3.1 (CC's losses),
  sec. 3.2 (uniformity), sec. 4 (L = lambda L_cont + (1 - lambda) L_unif).
- CMC loss study: Wang, Zhang, Chen, Ding, "Effect of Contrastive Loss on Unsupervised
  Representation Learning", sec. 3.1 (softmax loss), 3.2 (spring-like, triplet, (N+1)-way
  softmax, NCE), 3.3 (alignment, uniformity).
- CueCo: Giakoumoglou, Stathaki, "Cluster Contrast for Unsupervised Visual Representation
  Learning", sec. 2 (L1, L2, L3 and the momentum updates of centroids and variances).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from crlbench.backbones import TinyConvNet
from crlbench.methods.cc import CC
from crlbench.methods.cueco import CueCo, centroid_contrast, variance_pull
from crlbench.methods.losses import (
    alignment,
    bca_contrast,
    cluster_contrast,
    cluster_mass_entropy,
    cosine_distance,
    info_nce,
    nce,
    nt_xent,
    spring,
    triplet_margin,
    uniformity,
)
from crlbench.methods.rcc import RCC
from crlbench.protocol import Batch, RunContext
from crlbench.testing import make_context

pytestmark = pytest.mark.usefixtures("one_thread")

REL = 1e-5  # the losses compute in float32
ABS = 1e-6  # for values that are (close to) zero


def approx(expected: float, tau: float = 1.0, rel: float = REL):
    """Float32 tolerance: relative, plus an absolute term for losses that are differences of
    float32 logits of size ~1/tau (a loss near 0 cannot be relatively exact then)."""
    return pytest.approx(expected, rel=rel, abs=rel * max(1.0, 1.0 / tau))

TEMPERATURES = [0.1, 0.5, 1.0]


# --------------------------------------------------------------------------------------------
# Inputs and scalar helpers (float64, plain Python where it matters)
# --------------------------------------------------------------------------------------------
def randn(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """Rows of soft cluster assignments, each summing to 1, computed by hand."""
    rows = []
    for row in logits.tolist():
        top = max(row)
        e = [math.exp(v - top) for v in row]
        s = sum(e)
        rows.append([v / s for v in e])
    return torch.tensor(rows, dtype=torch.float64)


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def norm(u: list[float]) -> float:
    return math.sqrt(dot(u, u))


def unit(u: list[float]) -> list[float]:
    n = norm(u)
    return [a / n for a in u]


def cos(u: list[float], v: list[float]) -> float:
    return dot(u, v) / (norm(u) * norm(v))


def dist(u: list[float], v: list[float]) -> float:
    """d(x_i, x_j) = ||x_i - x_j||_2 (CMC loss study, sec. 3.2)."""
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True)))


def columns(m: torch.Tensor) -> list[list[float]]:
    return m.T.tolist()


def value(t: torch.Tensor) -> float:
    assert t.dim() == 0, f"expected a scalar loss, got shape {tuple(t.shape)}"
    assert torch.isfinite(t)
    return t.item()


def orthonormal(n: int, d: int, seed: int) -> torch.Tensor:
    """n orthonormal rows in R^d (n <= d), randomly rotated."""
    q, _ = torch.linalg.qr(randn(d, d, seed=seed))
    return q[:n].clone()


# --------------------------------------------------------------------------------------------
# SimCLR, Algorithm 1 (NT-Xent)
# --------------------------------------------------------------------------------------------
def paper_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR review, Algorithm 1: z_{2k-1} = z1[k], z_{2k} = z2[k];
    s_ij = z_i^T z_j / (||z_i|| ||z_j||);
    L(i, j) = -log exp(s_ij / tau) / sum_{k=1}^{2N} 1[k != i] exp(s_ik / tau);
    L = 1/(2N) sum_k [L(2k-1, 2k) + L(2k, 2k-1)].

    (The printed s_ij has a stray "k" in its denominator, ``z_i^T z_j / k||z_i|| ||z_j||``;
    the text above Algorithm 1 defines sim(u, v) as plain cosine similarity, which is read here.)
    """
    n = z1.shape[0]
    z: list[list[float]] = []
    for k in range(n):  # interleaved, as in the algorithm (0-based: 2k and 2k+1)
        z.append(z1[k].tolist())
        z.append(z2[k].tolist())
    s = [[cos(z[i], z[j]) for j in range(2 * n)] for i in range(2 * n)]

    def pair_loss(i: int, j: int) -> float:
        denominator = sum(math.exp(s[i][k] / tau) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s[i][j] / tau) / denominator)

    total = sum(pair_loss(2 * k, 2 * k + 1) + pair_loss(2 * k + 1, 2 * k) for k in range(n))
    return total / (2 * n)


@pytest.mark.parametrize("n,d", [(2, 3), (5, 8), (9, 4)])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_nt_xent_matches_algorithm_1(n, d, tau):
    z1, z2 = randn(n, d, seed=1) * 3, randn(n, d, seed=2)
    assert value(nt_xent(z1, z2, tau)) == approx(paper_nt_xent(z1, z2, tau), tau)


@pytest.mark.parametrize("n", [2, 4, 6])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_nt_xent_closed_forms(n, tau):
    # identical, mutually orthogonal pairs: s = 1 for the positive, 0 for the 2N - 2 others
    e = orthonormal(n, 8, seed=3)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert value(nt_xent(e, 2.5 * e, tau)) == approx(expected, tau)
    # everything on one direction: all 2N - 1 similarities equal, loss = log(2N - 1)
    same = randn(1, 5, seed=4).repeat(n, 1)
    assert value(nt_xent(same, same * 0.3, tau)) == approx(math.log(2 * n - 1), tau)


def test_nt_xent_is_symmetric_in_the_views_and_scale_invariant():
    z1, z2 = randn(6, 5, seed=5), randn(6, 5, seed=6)
    base = value(nt_xent(z1, z2, 0.5))
    assert value(nt_xent(z2, z1, 0.5)) == approx(base)
    scale = torch.rand(6, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert value(nt_xent(z1 * (scale + 0.1), z2, 0.5)) == approx(base)


# --------------------------------------------------------------------------------------------
# C2BIN, eq. 1 (alignment by cosine distance)
# --------------------------------------------------------------------------------------------
def paper_cosine_distance(p: torch.Tensor, z: torch.Tensor) -> float:
    """C2BIN eq. 1: L_align = 1 - P^a(z_a) . z^_a / (||P^a(z_a)||_2 ||z^_a||_2), per sample;
    averaged over the batch."""
    rows = [1 - cos(a, b) for a, b in zip(p.tolist(), z.tolist(), strict=True)]
    return sum(rows) / len(rows)


@pytest.mark.parametrize("n,d", [(1, 4), (7, 3), (16, 10)])
def test_cosine_distance_matches_eq1(n, d):
    p, z = randn(n, d, seed=10), randn(n, d, seed=11) * 4
    assert value(cosine_distance(p, z)) == approx(paper_cosine_distance(p, z))


def test_cosine_distance_closed_forms():
    z = randn(5, 6, seed=12)
    assert value(cosine_distance(3 * z, z)) == pytest.approx(0.0, abs=ABS)
    assert value(cosine_distance(-z, z)) == approx(2.0)
    e = orthonormal(4, 4, seed=13)
    assert value(cosine_distance(e, e.roll(1, dims=0))) == approx(1.0)


# --------------------------------------------------------------------------------------------
# C2BIN, eq. 3-4 (contrast of batch-wise cluster assignments, BCAs)
# --------------------------------------------------------------------------------------------
def paper_bca(probs1: torch.Tensor, probs2: torch.Tensor, tau: float,
              similarity: str = "dot") -> float:
    """C2BIN eq. 3: c_k = Z^c_{:,k} (the k-th column of the n x K memberships); eq. 4:
    L = 1/K sum_i -log( exp(c'_i . c''_i / tau) / sum_j 1[j != i] exp(c'_i . c''_j / tau) ).

    As printed, the positive c''_i is *not* in the denominator, so the loss can be negative.
    "dot" is the printed dot product; "cosine" normalises the columns first (crlbench's reading
    used by the method).
    """
    c1, c2 = columns(probs1), columns(probs2)
    if similarity == "cosine":
        c1, c2 = [unit(c) for c in c1], [unit(c) for c in c2]
    k = len(c1)
    total = 0.0
    for i in range(k):
        numerator = math.exp(dot(c1[i], c2[i]) / tau)
        denominator = sum(math.exp(dot(c1[i], c2[j]) / tau) for j in range(k) if j != i)
        total += -math.log(numerator / denominator)
    return total / k


@pytest.mark.parametrize("n,k", [(4, 2), (8, 5), (16, 3), (3, 7)])
@pytest.mark.parametrize("tau", TEMPERATURES)
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_bca_contrast_matches_eq4(n, k, tau, similarity):
    p1 = softmax_rows(randn(n, k, seed=20) * 2)
    p2 = softmax_rows(randn(n, k, seed=21) * 2)
    got = value(bca_contrast(p1, p2, tau, similarity=similarity))
    assert got == approx(paper_bca(p1, p2, tau, similarity), tau)


@pytest.mark.parametrize("n,k", [(4, 2), (12, 3), (12, 4), (20, 5)])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_bca_contrast_closed_form_for_balanced_one_hot_columns(n, k, tau):
    # n/K images per cluster, same assignment in both views: c'_i . c''_i = n/K, others 0
    labels = torch.randperm(n, generator=torch.Generator().manual_seed(22)) % k
    onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)
    dot_loss = value(bca_contrast(onehot, onehot, tau, similarity="dot"))
    assert dot_loss == approx(math.log(k - 1) - n / (k * tau), tau)
    cosine_loss = value(bca_contrast(onehot, onehot, tau, similarity="cosine"))
    assert cosine_loss == approx(math.log(k - 1) - 1 / tau, tau)


def test_bca_contrast_default_is_the_printed_dot_product():
    p1 = softmax_rows(randn(6, 4, seed=23))
    p2 = softmax_rows(randn(6, 4, seed=24))
    assert value(bca_contrast(p1, p2, 0.5)) == approx(paper_bca(p1, p2, 0.5))


# --------------------------------------------------------------------------------------------
# C2BIN, eq. 5: H(s), s the cluster mass
# --------------------------------------------------------------------------------------------
def paper_mass_entropy(probs: torch.Tensor) -> float:
    """C2BIN eq. 5: s_k = sum_i c_k(i), H(s) = -sum_k s_k log s_k.

    The paper leaves s unnormalised (it sums to the batch size n for softmax rows); crlbench's
    documented reading normalises s to sum to 1 so that H is the entropy of a distribution,
    which is what is transcribed here. See the next test for how the two are related.
    """
    mass = [sum(c) for c in columns(probs)]
    total = sum(mass)
    return -sum((m / total) * math.log(m / total) for m in mass)


def paper_mass_entropy_unnormalised(probs: torch.Tensor) -> float:
    """Eq. 5 literally: the raw masses s_k = sum_i c_k(i)."""
    mass = [sum(c) for c in columns(probs)]
    return -sum(m * math.log(m) for m in mass)


@pytest.mark.parametrize("n,k", [(1, 3), (8, 4), (32, 10)])
def test_cluster_mass_entropy_matches_eq5(n, k):
    p = softmax_rows(randn(n, k, seed=30) * 2)
    assert value(cluster_mass_entropy(p)) == approx(paper_mass_entropy(p))
    # With softmax rows sum_k s_k = n, and the printed (unnormalised) H is an affine function of
    # the normalised one, -sum s log s = n H(s/n) - n log n: same maximiser, gradient scaled by n.
    literal = paper_mass_entropy_unnormalised(p)
    assert value(cluster_mass_entropy(p)) == pytest.approx((literal + n * math.log(n)) / n,
                                                           rel=REL, abs=ABS)


@pytest.mark.parametrize("k", [2, 5, 16])
def test_cluster_mass_entropy_closed_forms(k):
    uniform = torch.full((6, k), 1 / k, dtype=torch.float64)
    assert value(cluster_mass_entropy(uniform)) == approx(math.log(k))
    balanced = torch.eye(k, dtype=torch.float64).repeat(3, 1)  # one-hot, 3 per cluster
    assert value(cluster_mass_entropy(balanced)) == approx(math.log(k))
    collapsed = torch.zeros(6, k, dtype=torch.float64)
    collapsed[:, 0] = 1.0
    assert value(cluster_mass_entropy(collapsed)) == pytest.approx(0.0, abs=ABS)
    # two clusters with masses 2/3 and 1/3, the others empty
    two = torch.zeros(3, k, dtype=torch.float64)
    two[:2, 0], two[2, 1] = 1.0, 1.0
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert value(cluster_mass_entropy(two)) == approx(expected)


# --------------------------------------------------------------------------------------------
# CC's cluster-level contrast (described in RCC, sec. 3.1)
# --------------------------------------------------------------------------------------------
def paper_cluster_contrast(p1: torch.Tensor, p2: torch.Tensor, tau: float) -> float:
    """CC's cluster-level head, as described in the RCC paper, sec. 3.1: y_i^a is the i-th
    column of Y^a; the positive pair is {y_i^a, y_i^b} "while the rest 2M-2 pairs are
    negative"; S is cosine similarity; L = 1/(2M) sum_i (l^_i^a + l^_i^b).

    The RCC paper prints the denominator of l^_i^a as
        sum_j exp(S(y_i^a, y_j^b)/tau) + exp(S(y_i^a, y_i^b)/tau),
    which counts the positive twice and leaves out the same-view columns; that contradicts its
    own sentence about 2M - 2 negatives. CC's original definition (and code) is NT-Xent over the
    2M columns, each anchor's denominator holding all 2M - 1 columns other than itself; that is
    what crlbench documents and what is transcribed here.
    """
    cols = columns(p1) + columns(p2)  # y_1^a..y_M^a, y_1^b..y_M^b
    m = p1.shape[1]
    total = 0.0
    for i in range(2 * m):
        positive = (i + m) % (2 * m)
        sims = [cos(cols[i], cols[j]) / tau for j in range(2 * m)]
        denominator = sum(math.exp(sims[j]) for j in range(2 * m) if j != i)
        total += -math.log(math.exp(sims[positive]) / denominator)
    return total / (2 * m)


@pytest.mark.parametrize("n,k", [(6, 2), (10, 4), (5, 9)])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_cluster_contrast_matches_cc(n, k, tau):
    p1 = softmax_rows(randn(n, k, seed=40) * 2)
    p2 = softmax_rows(randn(n, k, seed=41) * 2)
    got = value(cluster_contrast(p1, p2, tau))
    assert got == approx(paper_cluster_contrast(p1, p2, tau), tau)


@pytest.mark.parametrize("k", [2, 3, 6])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_cluster_contrast_closed_form_for_one_hot_columns(k, tau):
    # distinct one-hot columns, same in both views: S = 1 for the positive, 0 for 2K - 2 others
    labels = torch.arange(2 * k) % k
    onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)
    expected = math.log(1 + (2 * k - 2) * math.exp(-1 / tau))
    assert value(cluster_contrast(onehot, onehot, tau)) == approx(expected, tau)


# --------------------------------------------------------------------------------------------
# Alignment and uniformity (CMC loss study, sec. 3.3; RCC, sec. 3.2)
# --------------------------------------------------------------------------------------------
def paper_uniformity(z: torch.Tensor, t: float) -> float:
    """L_uniform(t) = log E_{x,y iid} [exp(-t ||x - y||_2^2)] on normalised features.

    The printed expectation is over i.i.d. x, y; the empirical estimate used by Wang & Isola
    (and documented by crlbench) averages over distinct pairs i < j, as here.
    """
    x = [unit(r) for r in z.tolist()]
    potentials = [math.exp(-t * dist(x[i], x[j]) ** 2)
                  for i in range(len(x)) for j in range(i + 1, len(x))]
    return math.log(sum(potentials) / len(potentials))


def paper_alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float) -> float:
    """L_align(alpha) = E_{(x,y) ~ p_pos} [||x - y||_2^alpha] on normalised features."""
    terms = [dist(unit(a), unit(b)) ** alpha
             for a, b in zip(z1.tolist(), z2.tolist(), strict=True)]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("n,d", [(2, 3), (7, 4), (20, 16)])
@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_matches_sec_3_3(n, d, t):
    z = randn(n, d, seed=50) * 2
    assert value(uniformity(z, t=t)) == approx(paper_uniformity(z, t))


@pytest.mark.parametrize("block", [20, 45, 1 << 24])
def test_uniformity_in_row_blocks_is_the_same_sum(block, monkeypatch):
    """The pairwise products are taken in blocks of rows (1, 2 and all 20 rows here)."""
    from crlbench.evaluate import geometry

    monkeypatch.setattr(geometry, "_BLOCK", block)
    z = randn(20, 16, seed=54) * 2
    assert value(uniformity(z, t=2.0)) == approx(paper_uniformity(z, 2.0))


def test_uniformity_default_t_is_2():
    z = randn(9, 5, seed=51)
    assert value(uniformity(z)) == approx(paper_uniformity(z, 2.0))


@pytest.mark.parametrize("t", [0.5, 2.0, 3.0])
def test_uniformity_closed_forms(t):
    x = randn(1, 6, seed=52)
    # two antipodal points: ||x - y||^2 = 4
    assert value(uniformity(torch.cat([x, -3 * x]), t=t)) == approx(-4 * t)
    # orthonormal points: every pair at squared distance 2
    assert value(uniformity(orthonormal(5, 6, seed=53), t=t)) == approx(-2 * t)
    # collapse: all on one point
    assert value(uniformity(x.repeat(4, 1), t=t)) == pytest.approx(0.0, abs=ABS)
    # regular simplex of d + 1 points in R^d: ||x - y||^2 = 2 + 2/d for every pair
    d = 3
    centred = torch.eye(d + 1, dtype=torch.float64) - 1 / (d + 1)  # lies in a d-dim subspace
    expected = -t * (2 + 2 / d)
    assert value(uniformity(centred, t=t)) == approx(expected)


@pytest.mark.parametrize("n,d", [(1, 3), (8, 5), (17, 12)])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_sec_3_3(n, d, alpha):
    z1, z2 = randn(n, d, seed=54), randn(n, d, seed=55) * 0.2
    got = value(alignment(z1, z2, alpha=alpha))
    assert got == approx(paper_alignment(z1, z2, alpha))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_alignment_closed_forms(alpha):
    z = randn(4, 5, seed=56)
    assert value(alignment(z, 2 * z, alpha=alpha)) == pytest.approx(0.0, abs=ABS)
    assert value(alignment(z, -z, alpha=alpha)) == approx(2.0 ** alpha)
    e = orthonormal(4, 5, seed=57)
    assert value(alignment(e, e.roll(1, dims=0), alpha=alpha)) == \
        approx(2.0 ** (alpha / 2))
    assert value(alignment(z, 2 * z)) == pytest.approx(0.0, abs=ABS)  # default alpha = 2


# --------------------------------------------------------------------------------------------
# CMC loss study, sec. 3.2: spring-like and triplet losses
# --------------------------------------------------------------------------------------------
def paper_spring(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 m: float, squared: bool = False) -> float:
    """CMC loss study, sec. 3.2: L(x_i, x_j) = d/2 if Y = 1, [m - d]_+/2 if Y = 0, with
    d the Euclidean distance between normalised vectors ("All x_i is normalized").

    The paper gives the per-pair loss only; crlbench's documented aggregation is the mean over
    the positive pairs (anchor_b, positive_b) plus the mean over the negative pairs
    (anchor_b, negative_{b,j}). squared=True is Hadsell et al.'s form, d^2/2 and [m - d]_+^2/2.
    """
    power = 2 if squared else 1
    a, p, n = anchor.tolist(), positive.tolist(), negative.tolist()
    pos = [dist(unit(a[b]), unit(p[b])) ** power / 2 for b in range(len(a))]
    neg = [max(0.0, m - dist(unit(a[b]), unit(x))) ** power / 2
           for b in range(len(a)) for x in n[b]]
    return sum(pos) / len(pos) + sum(neg) / len(neg)


def paper_triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                  alpha: float, squared: bool = False) -> float:
    """CMC loss study, sec. 3.2: L(x, x_p, x_n) = [d(x^p, x) - d(x^n, x) + alpha]_+, averaged
    over every (anchor, negative) triplet. squared=True uses squared distances (FaceNet's form).
    """
    power = 2 if squared else 1
    a, p, n = anchor.tolist(), positive.tolist(), negative.tolist()
    terms = []
    for b in range(len(a)):
        x = unit(a[b])
        d_pos = dist(unit(p[b]), x) ** power
        for neg in n[b]:
            terms.append(max(0.0, d_pos - dist(unit(neg), x) ** power + alpha))
    return sum(terms) / len(terms)


def triplet_inputs(b: int, m: int, d: int, seed: int):
    anchor = randn(b, d, seed=seed)
    positive = anchor + 0.7 * randn(b, d, seed=seed + 1)
    negative = randn(b, m, d, seed=seed + 2) * 1.5
    return anchor, positive, negative


@pytest.mark.parametrize("b,m,d", [(1, 1, 3), (5, 3, 4), (8, 6, 10)])
@pytest.mark.parametrize("margin", [0.2, 0.5, 1.0, 1.8])
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize(("loss", "paper"), [(spring, "spring"), (triplet_margin, "triplet")])
def test_margin_losses_match_sec_3_2(loss, paper, b, m, d, margin, squared):
    a, p, n = triplet_inputs(b, m, d, seed=60)
    expected = {"spring": paper_spring, "triplet": paper_triplet}[paper](a, p, n, margin, squared)
    got = value(loss(a, p, n, margin, squared=squared))
    assert got == pytest.approx(expected, rel=REL, abs=ABS)


@pytest.mark.parametrize("margin", [0.5, 1.5])
@pytest.mark.parametrize("squared", [False, True])
def test_spring_closed_forms(margin, squared):
    a = randn(4, 5, seed=61)
    power = 2 if squared else 1
    # positives on the anchor, negatives antipodal (d = 2 > m): nothing to pay
    far = (-a)[:, None, :].repeat(1, 3, 1)
    assert value(spring(a, 2 * a, far, margin, squared=squared)) == pytest.approx(0, abs=ABS)
    # negatives on the anchor (d = 0): [m - 0]_+ / 2 each; positives antipodal: d = 2
    near = a[:, None, :].repeat(1, 3, 1)
    expected = 2 ** power / 2 + margin ** power / 2
    got = value(spring(a, -a, near, margin, squared=squared))
    assert got == approx(expected)


@pytest.mark.parametrize("margin", [0.5, 2.5])
def test_triplet_closed_forms(margin):
    a = randn(3, 4, seed=63)
    far, near = (-a)[:, None, :].repeat(1, 2, 1), a[:, None, :].repeat(1, 2, 1)
    # positive on the anchor, negatives antipodal: [0 - 2 + alpha]_+
    assert value(triplet_margin(a, a, far, margin)) == pytest.approx(max(0.0, margin - 2),
                                                                     abs=ABS)
    # positive antipodal, negatives on the anchor: 2 + alpha
    assert value(triplet_margin(a, -a, near, margin)) == approx(2 + margin)
    assert value(triplet_margin(a, -a, near, margin, squared=True)) == \
        approx(4 + margin)
    # orthogonal positive and negatives at equal distance: exactly the margin
    e = orthonormal(3, 4, seed=64)
    neg = torch.stack([e[1], e[2]])[None].repeat(1, 1, 1)
    assert value(triplet_margin(e[:1], e[1:2], neg, margin)) == approx(margin)


# --------------------------------------------------------------------------------------------
# CMC loss study, sec. 3.1-3.2: (N+1)-way softmax (InfoNCE); CueCo L1
# --------------------------------------------------------------------------------------------
def paper_info_nce(query: torch.Tensor, key: torch.Tensor, tau: float,
                   negatives: torch.Tensor | None = None) -> float:
    """CMC loss study, sec. 3.2: L_N(x) = -log exp(x_1 . x/tau) / sum_i exp(x_i . x/tau),
    x_1 the positive, features normalised; sec. 3.1 averages it over the N queries,
    -1/N sum_i log h(v_1^i, v_2^i) / sum_j h(v_1^i, v_2^j), h = exp(cos / tau).
    (The printed numerator reads h(v_1^i, v_2^1); v_2^i, the positive, is meant.)
    With a set of M negatives the candidates x_i are the query's key then the M negatives (the
    form of CueCo's L1); without, the candidates are all keys of the batch.
    """
    q, k = query.tolist(), key.tolist()
    total = 0.0
    for b in range(len(q)):
        if negatives is None:
            candidates, positive = k, b
        else:
            candidates, positive = [k[b], *negatives.tolist()], 0
        logits = [cos(q[b], c) / tau for c in candidates]
        total += -math.log(math.exp(logits[positive]) / sum(math.exp(v) for v in logits))
    return total / len(q)


@pytest.mark.parametrize("b,d", [(2, 3), (6, 5), (12, 8)])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_info_nce_in_batch_matches_sec_3_2(b, d, tau):
    q, k = randn(b, d, seed=70), randn(b, d, seed=71) * 2
    assert value(info_nce(q, k, tau)) == approx(paper_info_nce(q, k, tau), tau)


@pytest.mark.parametrize("b,m,d", [(1, 1, 3), (4, 7, 5), (9, 20, 6)])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_info_nce_with_negatives_matches_sec_3_2(b, m, d, tau):
    q, k, neg = randn(b, d, seed=72), randn(b, d, seed=73), randn(m, d, seed=74) * 3
    got = value(info_nce(q, k, tau, negatives=neg))
    assert got == approx(paper_info_nce(q, k, tau, neg), tau)


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_info_nce_closed_forms(tau):
    e = orthonormal(6, 6, seed=75)
    # in-batch, key = query, all others orthogonal: log(1 + (B - 1) e^{-1/tau})
    q = e[:4]
    expected = math.log(1 + 3 * math.exp(-1 / tau))
    assert value(info_nce(q, 2 * q, tau)) == approx(expected, tau)
    # one query, key on it, M orthogonal negatives: log(1 + M e^{-1/tau})
    got = value(info_nce(e[:1], e[:1], tau, negatives=e[1:]))
    assert got == approx(math.log(1 + 5 * math.exp(-1 / tau)), tau)
    # all candidates identical (key and the M = 3 negatives): log(M + 1)
    same = e[:1].repeat(2, 1)
    got = value(info_nce(same, same, tau, negatives=same[:1].repeat(3, 1)))
    assert got == approx(math.log(4), tau)


# --------------------------------------------------------------------------------------------
# CMC loss study, sec. 3.2: NCE
# --------------------------------------------------------------------------------------------
def paper_nce(positive: torch.Tensor, noise: torch.Tensor, tau: float, num_data: int,
              normaliser: float | None = None) -> float:
    """CMC loss study, sec. 3.2: P(i|x) = exp(x_i . x / tau) / Z, P_n = 1/n (n = num_data),
    h(i, x) = P(i|x) / (P(i|x) + m P_n(i)),
    L_NCE = -E_{P_d}[log h(i, x)] - m E_{P_n}[log(1 - h(i, x'))],
    the second expectation estimated by the mean over the m noise samples (so m * mean = sum),
    averaged over the batch. Z is not computable over the whole data set; when not given it is
    estimated as n * mean(exp(noise / tau)) over the batch's noise scores (NPID / CMC's
    estimate, as crlbench documents). positive: [B] scores, noise: [B, m] scores.
    """
    pos, noi = positive.tolist(), noise.tolist()
    m = len(noi[0])
    pn = 1 / num_data
    if normaliser is None:
        flat = [math.exp(s / tau) for row in noi for s in row]
        normaliser = num_data * sum(flat) / len(flat)

    def h(score: float) -> float:
        p = math.exp(score / tau) / normaliser
        return p / (p + m * pn)

    total = 0.0
    for b in range(len(pos)):
        total += -math.log(h(pos[b])) - sum(math.log(1 - h(s)) for s in noi[b])
    return total / len(pos)


def nce_scores(b: int, m: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    positive = torch.rand(b, generator=gen, dtype=torch.float64) * 1.6 - 0.6  # cosines
    noise = torch.rand(b, m, generator=gen, dtype=torch.float64) * 2 - 1
    return positive, noise


@pytest.mark.parametrize("b,m", [(1, 1), (4, 8), (10, 32)])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("num_data", [100, 5000])
def test_nce_with_estimated_normaliser_matches_sec_3_2(b, m, tau, num_data):
    pos, noise = nce_scores(b, m, seed=80)
    got = value(nce(pos, noise, tau, num_data))
    assert got == approx(paper_nce(pos, noise, tau, num_data), tau)


@pytest.mark.parametrize("z", [50.0, 1234.5])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nce_with_given_normaliser_matches_sec_3_2(z, tau):
    pos, noise = nce_scores(6, 16, seed=81)
    got = value(nce(pos, noise, tau, 1000, normaliser=torch.tensor(z, dtype=torch.float64)))
    assert got == approx(paper_nce(pos, noise, tau, 1000, z), tau)


@pytest.mark.parametrize("m", [1, 4, 16])
@pytest.mark.parametrize("num_data", [10, 1000])
def test_nce_closed_form_when_data_and_noise_are_indistinguishable(m, num_data):
    # all scores 0: the estimated Z is n, P(i|x) = 1/n = P_n, h = 1/(1 + m) everywhere:
    # L = log(1 + m) + m log((1 + m)/m)
    pos, noise = torch.zeros(5, dtype=torch.float64), torch.zeros(5, m, dtype=torch.float64)
    expected = math.log(1 + m) + m * math.log((1 + m) / m)
    assert value(nce(pos, noise, 0.5, num_data)) == approx(expected)


# --------------------------------------------------------------------------------------------
# CueCo, sec. 2: L2 (centroid contrast) and L3 (variance loss)
# --------------------------------------------------------------------------------------------
def paper_centroid_contrast(query: torch.Tensor, centroids: torch.Tensor,
                            assignments: torch.Tensor, tau: float) -> float:
    """CueCo L2 = -log exp(z . c_{i[z]}/tau) / (exp(z . c_{i[z]}/tau) + sum_l exp(z . c_l/tau)),
    z the normalised query, centroids as stored (not renormalised), averaged over the batch.

    The printed sum over l = 1..L does not say which centroids; crlbench reads it as the L = K - 1
    other clusters, making L2 a plain softmax cross-entropy over all K centroids.
    """
    c = centroids.tolist()
    total = 0.0
    for z_raw, i in zip(query.tolist(), assignments.tolist(), strict=True):
        z = unit(z_raw)
        own = math.exp(dot(z, c[i]) / tau)
        others = sum(math.exp(dot(z, c[j]) / tau) for j in range(len(c)) if j != i)
        total += -math.log(own / (own + others))
    return total / len(assignments)


def paper_variance_pull(query: torch.Tensor, centroids: torch.Tensor, variances: torch.Tensor,
                        assignments: torch.Tensor, eps: float) -> float:
    """CueCo L3 = ||z - c_{i[z]}||^2 / (2 sigma_{i[z]}^2 + eps), z normalised; batch mean."""
    c, var = centroids.tolist(), variances.tolist()
    total = 0.0
    for z_raw, i in zip(query.tolist(), assignments.tolist(), strict=True):
        total += dist(unit(z_raw), c[i]) ** 2 / (2 * var[i] + eps)
    return total / len(assignments)


def cueco_inputs(b: int, k: int, d: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    query = randn(b, d, seed=seed) * 2
    centroids = randn(k, d, seed=seed + 1) * 0.4  # means of unit keys: shorter than 1
    variances = torch.rand(k, generator=gen, dtype=torch.float64) + 0.05
    assignments = torch.randint(0, k, (b,), generator=gen)
    return query, centroids, variances, assignments


@pytest.mark.parametrize("b,k,d", [(1, 2, 3), (8, 4, 6), (16, 10, 5)])
@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_centroid_contrast_matches_cueco_l2(b, k, d, tau):
    q, c, _, a = cueco_inputs(b, k, d, seed=90)
    got = value(centroid_contrast(q, c, a, tau))
    assert got == approx(paper_centroid_contrast(q, c, a, tau), tau)


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_centroid_contrast_closed_form(k, tau):
    # unit orthogonal centroids, each query on its own centroid: log(1 + (K - 1) e^{-1/tau})
    c = orthonormal(k, 6, seed=91)
    a = torch.arange(k).repeat(2)
    expected = math.log(1 + (k - 1) * math.exp(-1 / tau))
    assert value(centroid_contrast(3 * c[a], c, a, tau)) == approx(expected, tau)


@pytest.mark.parametrize("b,k,d", [(1, 2, 3), (8, 4, 6), (16, 10, 5)])
@pytest.mark.parametrize("eps", [0.0, 0.01, 1.0])
def test_variance_pull_matches_cueco_l3(b, k, d, eps):
    q, c, var, a = cueco_inputs(b, k, d, seed=92)
    got = value(variance_pull(q, c, var, a, eps))
    assert got == approx(paper_variance_pull(q, c, var, a, eps))


def test_variance_pull_closed_forms():
    c = orthonormal(3, 4, seed=93)
    var = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    a = torch.tensor([0, 1, 2])
    assert value(variance_pull(5 * c, c, var, a, 0.01)) == pytest.approx(0.0, abs=ABS)
    # queries antipodal to their centroids: ||z - c||^2 = 4
    expected = sum(4 / (2 * v + 0.1) for v in [0.5, 1.0, 2.0]) / 3
    assert value(variance_pull(-c, c, var, a, 0.1)) == approx(expected)


# --------------------------------------------------------------------------------------------
# CueCo, sec. 2: momentum updates of the centroids and variances
# --------------------------------------------------------------------------------------------
K = 4


def context() -> RunContext:
    return make_context(num_classes=K)


def paper_momentum(centroids: list[list[float]], variances: list[float],
                   assignments: list[int], keys: list[list[float]], b1: float, b2: float):
    """CueCo, "Momentum Clustering":
    c_i <- b1 c_i + (1 - b1) (1/|S_i|) sum_{z in S_i} z',
    sigma_i^2 <- b2 sigma_i^2 + (1 - b2) (1/|S_i|) sum_{z in S_i} (z' - mu_i)^2,
    S_i the batch's samples assigned to cluster i, z' their keys. The paper does not define
    mu_i or say how a vector is squared; crlbench reads mu_i as the mean key of S_i and the
    square as ||z' - mu_i||^2. Clusters with an empty S_i keep their values.
    """
    new_c, new_v = [list(c) for c in centroids], list(variances)
    for i in range(len(centroids)):
        members = [keys[n] for n, a in enumerate(assignments) if a == i]
        if not members:
            continue
        d = len(members[0])
        mu = [sum(z[j] for z in members) / len(members) for j in range(d)]
        spread = sum(dist(z, mu) ** 2 for z in members) / len(members)
        new_c[i] = [b1 * centroids[i][j] + (1 - b1) * mu[j] for j in range(d)]
        new_v[i] = b2 * variances[i] + (1 - b2) * spread
    return new_c, new_v


@pytest.mark.parametrize("b1,b2", [(0.9, 0.8), (0.5, 0.99)])
@pytest.mark.parametrize("n", [3, 12])
def test_cueco_momentum_updates(b1, b2, n):
    torch.manual_seed(0)
    cfg = dataclasses.replace(CueCo.Config(), proj_hidden_dim=32, proj_dim=16, queue_size=32,
                              beta_centroid=b1, beta_variance=b2, normalize_centroids=False,
                              relocate_below=0.0)  # no dead-cluster relocation: the plain rule
    method = CueCo(TinyConvNet(1, 8), context(), cfg).train()
    d = cfg.proj_dim
    gen = torch.Generator().manual_seed(100 + n)
    with torch.no_grad():
        method.centroids.copy_(torch.randn(K, d, generator=gen) * 0.3)
        method.variances.copy_(torch.rand(K, generator=gen) + 0.1)
    keys = torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=1)
    assignments = torch.randint(0, K - 1, (n,), generator=gen)  # cluster K - 1 stays empty
    c0 = method.centroids.to(torch.float64).tolist()
    v0 = method.variances.to(torch.float64).tolist()
    expected_c, expected_v = paper_momentum(c0, v0, assignments.tolist(),
                                            keys.to(torch.float64).tolist(), b1, b2)
    method.update_clusters(assignments, keys)
    got_c, got_v = method.centroids.to(torch.float64), method.variances.to(torch.float64)
    for i in range(K):
        assert got_c[i].tolist() == pytest.approx(expected_c[i], rel=REL, abs=ABS)
        assert got_v[i].item() == pytest.approx(expected_v[i], rel=REL, abs=ABS)


# --------------------------------------------------------------------------------------------
# RCC, sec. 4: L = lambda L_cont + (1 - lambda) L_unif
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.95, 0.6, 0.0])
def test_rcc_total_is_lambda_cc_plus_uniformity(lam):
    """RCC sec. 4: L = lambda L_cont + (1 - lambda) L_unif, lambda = 1 recovering CC. L_unif is
    on the L2-normalised backbone features h of both views (sec. 5: "an L2 Norm after the final
    pass over the backbone"), the two summed as the first author's code does."""
    ctx = make_context(num_classes=K, channels=3)
    small = {"instance_dim": 16, "hidden_dim": 16}
    torch.manual_seed(0)
    cc = CC(TinyConvNet(3, 8), ctx, dataclasses.replace(CC.Config(), **small))
    torch.manual_seed(0)
    cfg = dataclasses.replace(RCC.Config(), **small, lam=lam)
    rcc = RCC(TinyConvNet(3, 8), ctx, cfg)
    rcc.load_state_dict(cc.state_dict())
    cc.eval()
    rcc.eval()
    gen = torch.Generator().manual_seed(110)
    views = [torch.randn(8, 3, 8, 8, generator=gen) for _ in range(2)]
    batch = Batch(indices=torch.arange(8))
    with torch.no_grad():
        l_cont = value(cc.loss(views, batch)["loss"])
        h = [rcc.backbone(v).to(torch.float64) for v in views]
        l_total = value(rcc.loss(views, batch)["loss"])
    l_unif = paper_uniformity(h[0], cfg.uniformity_t) + paper_uniformity(h[1], cfg.uniformity_t)
    assert l_total == pytest.approx(lam * l_cont + (1 - lam) * l_unif, rel=REL, abs=ABS)
