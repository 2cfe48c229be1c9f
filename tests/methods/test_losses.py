"""Shared method pieces on hand-computed cases: losses, Sinkhorn, EMA, queue, memory bank."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from crlbench.methods.banks import FeatureQueue, MemoryBank
from crlbench.methods.ema import cosine_momentum, ema_update, frozen_copy
from crlbench.methods.losses import (
    alignment,
    cluster_contrast,
    cluster_mass_entropy,
    info_nce,
    nce,
    normalized_mse,
    nt_xent,
    spring,
    swapped_prediction,
    triplet_margin,
    uniformity,
    vicreg_covariance,
    vicreg_invariance,
    vicreg_variance,
)
from crlbench.methods.sinkhorn import sinkhorn

GEN = torch.Generator().manual_seed(0)


def test_nt_xent_of_orthogonal_pairs():
    # z1_i = z2_i = e_i: each anchor's positive has cosine 1, its 2N-2 negatives cosine 0.
    n, t = 4, 0.5
    z = torch.eye(n)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (2 * n - 2)))
    assert nt_xent(z, z, t).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_with_a_queue_of_orthogonal_negatives():
    # q = k = e_0; the M negatives are orthogonal: logits [1/t, 0, ..., 0].
    t, m = 0.2, 5
    q = torch.eye(6)[:1]
    negatives = torch.eye(6)[1:1 + m]
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + m))
    assert info_nce(q, q, t, negatives=negatives).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_in_batch_matches_a_loop():
    q, k = torch.randn(5, 3, generator=GEN), torch.randn(5, 3, generator=GEN)
    qn, kn = nn.functional.normalize(q, dim=1), nn.functional.normalize(k, dim=1)
    total = sum(-torch.log_softmax(qn[i] @ kn.T / 0.5, 0)[i].item() for i in range(5))
    assert info_nce(q, k, 0.5).item() == pytest.approx(total / 5, rel=1e-5)
    # orthogonal pairs: N-1 in-batch negatives at cosine 0
    e = torch.eye(4)
    assert info_nce(e, e, 1.0).item() == pytest.approx(-math.log(math.e / (math.e + 3)))


def test_normalized_mse_is_two_minus_two_cosine():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert normalized_mse(z, 3 * z).item() == pytest.approx(0.0, abs=1e-7)
    assert normalized_mse(z, -z).item() == pytest.approx(4.0)
    assert normalized_mse(z, z.flip(1)).item() == pytest.approx(2.0)


def test_vicreg_terms():
    collapsed = torch.ones(8, 4)
    assert vicreg_variance(collapsed).item() == pytest.approx(1.0 - math.sqrt(1e-4))
    spread = torch.randn(4096, 4, generator=GEN) * 3  # std 3 > gamma: no penalty
    assert vicreg_variance(spread).item() == 0.0
    # two copies of one dimension: the off-diagonal covariance is Var(x) twice
    x = torch.tensor([[-1.0], [1.0], [-1.0], [1.0]])
    var = 4 / 3  # sample variance of +-1 over 4 rows
    assert vicreg_covariance(torch.cat([x, x], 1)).item() == pytest.approx(2 * var**2 / 2)
    assert vicreg_covariance(torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]])).item() == 0
    a, b = torch.randn(6, 3, generator=GEN), torch.randn(6, 3, generator=GEN)
    assert vicreg_invariance(a, b).item() == pytest.approx(((a - b) ** 2).mean().item())


def test_sinkhorn_marginals():
    scores = torch.rand(64, 8, generator=GEN) * 2 - 1  # cosines, as SwAV's prototype scores
    q = sinkhorn(scores, epsilon=0.05, iterations=100)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-5)
    assert torch.allclose(q.sum(dim=0), torch.full((8,), 64 / 8), atol=1e-3)
    # three iterations (SwAV's default) already end with exact row sums
    assert torch.allclose(sinkhorn(scores).sum(dim=1), torch.ones(64), atol=1e-5)
    # equal scores: the equipartition is uniform
    assert torch.allclose(sinkhorn(torch.zeros(4, 2)), torch.full((4, 2), 0.5))


def test_swapped_prediction_of_uniform_scores_is_log_k():
    k = 6
    scores = torch.zeros(3, k)
    codes = torch.softmax(torch.randn(3, k, generator=GEN), dim=1)
    assert swapped_prediction(scores, scores, codes, codes, 0.1).item() == pytest.approx(
        math.log(k))


def test_nce_hand_computed():
    # one anchor, its positive at cosine 1, two noise samples at cosine 0; tau 1, N = 10.
    pos, noise = torch.tensor([1.0]), torch.tensor([[0.0, 0.0]])
    z = 1.0 * 10  # mean exp(0) times N
    p_pos, p_neg, mass = math.e / z, 1 / z, 2 / 10
    expected = -(math.log(p_pos / (p_pos + mass)) + 2 * math.log(mass / (p_neg + mass)))
    assert nce(pos, noise, 1.0, 10).item() == pytest.approx(expected, rel=1e-6)


def test_margin_losses_as_the_cmc_loss_study_prints_them():
    a = torch.tensor([[1.0, 0.0]])
    ortho = torch.tensor([[0.0, 1.0]])
    r2 = math.sqrt(2)  # |a - ortho|
    # triplet [d(p, x) - d(n, x) + alpha]_+ on distances: a positive equal to the anchor and an
    # orthogonal negative cost nothing unless alpha > sqrt(2)...
    assert triplet_margin(a, a, ortho, 0.5).item() == 0.0
    assert triplet_margin(a, a, ortho, 2.5).item() == pytest.approx(2.5 - r2)
    assert triplet_margin(a, ortho, a, 0.5).item() == pytest.approx(r2 + 0.5)
    # ...and FaceNet's squared form compares d^2 (2 for orthogonal unit vectors)
    assert triplet_margin(a, a, ortho, 2.5, squared=True).item() == pytest.approx(0.5)
    assert triplet_margin(a, ortho, a, 0.5, squared=True).item() == pytest.approx(2.5)
    # spring: d / 2 for positives, [m - d]_+ / 2 for negatives (Hadsell's squares if asked)
    assert spring(a, a, ortho, 1.0).item() == pytest.approx(0.0, abs=1e-6)  # sqrt(2) > m
    assert spring(a, a, a, 1.0).item() == pytest.approx(0.5, abs=1e-5)  # 0.5 * (0 + 1)
    assert spring(a, ortho, ortho, 1.0).item() == pytest.approx(0.5 * r2)
    assert spring(a, ortho, ortho, 1.0, squared=True).item() == pytest.approx(0.5 * 2)
    assert spring(a, a, a, 1.5, squared=True).item() == pytest.approx(0.5 * 1.5 ** 2, abs=1e-5)
    # [B, m, D] negatives average over all of them
    negs = torch.stack([ortho, a], dim=1)
    assert triplet_margin(a, a, negs, 0.5).item() == pytest.approx(0.25)
    # the distance keeps a finite gradient where a positive pair coincides
    x = a.clone().requires_grad_()
    spring(x, a, ortho, 1.0).backward()
    assert torch.isfinite(x.grad).all()


def test_alignment_and_uniformity():
    e = torch.eye(3)
    assert alignment(e, e).item() == 0.0
    assert alignment(e, -e).item() == pytest.approx(4.0)
    assert uniformity(torch.tensor([[1.0, 0], [-1.0, 0]])).item() == pytest.approx(-8.0)
    assert uniformity(torch.ones(5, 3)).item() == pytest.approx(0.0, abs=1e-6)
    z = torch.nn.functional.normalize(torch.randn(7, 4, generator=GEN), dim=1)
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7)]
    brute = math.log(sum(math.exp(-2 * (z[i] - z[j]).pow(2).sum().item())
                         for i, j in pairs) / len(pairs))
    assert uniformity(z).item() == pytest.approx(brute, rel=1e-5)


def test_ema_update_and_cosine_momentum():
    online = nn.Linear(2, 2)
    target = frozen_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    before = target.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    ema_update(target, online, 0.9)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * online.weight)
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)


def test_queue_is_fifo_and_wraps():
    queue = FeatureQueue(size=5, dim=2)
    queue.push(torch.full((3, 2), 1.0))
    queue.push(torch.full((3, 2), 2.0))  # wraps: rows 3, 4, 0
    assert queue.keys[:, 0].tolist() == [2.0, 1.0, 1.0, 2.0, 2.0]
    assert int(queue.ptr) == 1
    assert set(queue.state_dict()) == {"keys", "ptr"}


def test_memory_bank_updates_only_given_rows_by_momentum():
    bank = MemoryBank(size=6, dim=3, momentum=0.5)
    before = bank.bank.clone()
    new = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    bank.update(torch.tensor([1, 4]), new)
    expected = nn.functional.normalize(0.5 * before[[1, 4]] + 0.5 * new, dim=1)
    assert torch.allclose(bank.bank[[1, 4]], expected)
    untouched = [0, 2, 3, 5]
    assert torch.equal(bank.bank[untouched], before[untouched])
    assert torch.allclose(bank.bank.norm(dim=1), torch.ones(6))
    assert bank.sample(4, rows=3).shape == (3, 4, 3)


def test_losses_run_in_float32_inside_bf16_autocast():
    # Under autocast even float32 inputs are multiplied in bf16 unless autocast is turned off.
    a, b = torch.randn(64, 32, generator=GEN), torch.randn(64, 32, generator=GEN)
    queue = torch.randn(512, 32, generator=GEN)
    exact = (nt_xent(a, b, 0.07), info_nce(a, b, 0.2, negatives=queue), uniformity(a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = (nt_xent(a, b, 0.07), info_nce(a, b, 0.2, negatives=queue), uniformity(a))
    for x, y in zip(exact, inside, strict=True):
        assert y.dtype == torch.float32
        assert torch.equal(x, y)


def test_cluster_mass_entropy_of_balanced_and_collapsed_assignments():
    k = 4
    balanced = torch.eye(k).repeat(3, 1)  # every cluster gets a quarter of the batch
    assert cluster_mass_entropy(balanced).item() == pytest.approx(math.log(k))
    collapsed = torch.zeros(12, k)
    collapsed[:, 2] = 1.0  # all samples in one cluster
    assert cluster_mass_entropy(collapsed).item() == pytest.approx(0.0, abs=1e-6)
    # the entropy term pushes back against collapse: its gradient moves mass to empty clusters
    logits = torch.zeros(12, k)
    logits[:, 2] = 5.0
    logits.requires_grad_(True)
    (-cluster_mass_entropy(torch.softmax(logits, dim=1))).backward()
    grad = logits.grad.mean(dim=0)
    assert grad[2] > 0 and (grad[[0, 1, 3]] < 0).all()  # descent lowers cluster 2, raises others


def test_cluster_contrast_is_nt_xent_over_columns():
    p1 = torch.softmax(torch.randn(16, 5, generator=GEN), dim=1)
    p2 = torch.softmax(torch.randn(16, 5, generator=GEN), dim=1)
    assert cluster_contrast(p1, p2, 1.0).item() == pytest.approx(nt_xent(p1.T, p2.T, 1.0).item())
    # one-hot, balanced, identical assignments: column k's positive has cosine 1, the other
    # 2K - 2 columns are orthogonal to it
    onehot = torch.eye(5).repeat(2, 1)
    expected = -math.log(math.e / (math.e + 2 * 5 - 2))
    assert cluster_contrast(onehot, onehot, 1.0).item() == pytest.approx(expected, rel=1e-6)
