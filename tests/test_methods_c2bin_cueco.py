"""C2BIN and CueCo: the protocol, the losses against formulas written out here, the EMA
follower / key network, CueCo's momentum centroids, and short deterministic CPU training runs."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from crlbench import registry
from crlbench.augment import Augmenter
from crlbench.backbones import TinyConvNet
from crlbench.config import TrainConfig
from crlbench.methods.c2bin import C2BIN, head_terms
from crlbench.methods.cueco import CueCo, centroid_contrast, variance_pull
from crlbench.optim import default_param_groups
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.protocol import Batch, RunContext
from crlbench.testing import check_method
from crlbench.train import TrainSetup, train

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = [C2BIN, CueCo]
SMALL = {
    C2BIN: {"proj_hidden_dim": 32, "pred_hidden_dim": 32, "proj_dim": 16,
            "cluster_hidden_dim": 32},
    CueCo: {"proj_hidden_dim": 32, "proj_dim": 16},
}
K = 4  # ctx.num_clusters of the methods built here
TOTAL = 8  # ctx.total_steps
BATCH = Batch(indices=torch.arange(16))


def context(total_steps: int = TOTAL) -> RunContext:
    return RunContext(feature_dim=32, num_classes=K, num_clusters=K, dataset_size=64,
                      device=torch.device("cpu"), total_steps=total_steps, steps_per_epoch=4,
                      epochs=total_steps // 4, seed=0, image_size=8, channels=1)


def build(cls, **overrides):
    torch.manual_seed(0)
    cfg = dataclasses.replace(cls.Config(), **{**SMALL[cls], **overrides})
    return cls(TinyConvNet(1, 8), context(), cfg).train()


def two_views(n: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(n, 1, 8, 8, generator=gen) for _ in range(2)]


def target_of(method) -> nn.Module:
    return (method.follower if isinstance(method, C2BIN) else method.key_encoder).net


def online_of(method) -> nn.Module:
    return nn.Sequential(method.backbone, method.projector)


def sgd_step(method, views) -> None:
    optimizer = torch.optim.SGD(default_param_groups(method, False), lr=0.1)
    optimizer.zero_grad()
    method.loss(views, BATCH)["loss"].backward()
    optimizer.step()


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.log()).sum()


def column_contrast(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """CC's cluster contrast written out: NT-Xent over the 2K columns of two [B, K] matrices."""
    k = a.shape[1]
    cols = F.normalize(torch.cat([a.T, b.T]), dim=1)
    total = 0.0
    for i in range(2 * k):
        sims = cols @ cols[i] / tau
        others = torch.cat([sims[:i], sims[i + 1:]])
        total = total - (sims[(i + k) % (2 * k)] - torch.logsumexp(others, 0))
    return total / (2 * k)


# The protocol.

@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("cls", METHODS)
def test_check_method(cls, channels):
    check_method(cls, config=SMALL[cls], channels=channels)


@pytest.mark.parametrize("cls", METHODS)
def test_registered_under_its_name_with_a_summary(cls):
    assert registry.methods.get(cls.name) is cls
    assert cls.summary().startswith({C2BIN: "C2BIN: ",
                                     CueCo: "CueCo (Giakoumoglou & Stathaki 2025): "}[cls])


@pytest.mark.parametrize("cls", METHODS)
def test_target_is_frozen_registered_and_outside_the_optimizer(cls):
    method = build(cls)
    target = target_of(method)
    assert target in list(method.modules())
    assert all(not p.requires_grad for p in target.parameters())
    trainable = {id(p) for g in default_param_groups(method, True) for p in g["params"]}
    assert trainable.isdisjoint(id(p) for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    sgd_step(method, two_views())
    assert all(p.grad is None for p in target.parameters())
    assert all(torch.equal(p, b) for p, b in zip(target.parameters(), before, strict=True))


@pytest.mark.parametrize("step", [0, 3])
@pytest.mark.parametrize("cls", METHODS)
def test_after_step_moves_the_target_by_one_minus_momentum(cls, step):
    method = build(cls)
    sgd_step(method, two_views())
    if cls is C2BIN:  # BYOL's cosine from the base to 1, written out
        base = method.cfg.momentum_base
        m = 1 - (1 - base) * (math.cos(math.pi * step / TOTAL) + 1) / 2
    else:
        m = method.cfg.momentum
    target, online = target_of(method), online_of(method)
    before = [p.clone() for p in target.parameters()]
    method.after_step(step)
    for t, t0, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, m * t0 + (1 - m) * o.detach())
    moved = torch.cat([(t - t0).flatten() for t, t0 in zip(target.parameters(), before,
                                                            strict=True)])
    gap = torch.cat([(o.detach() - t0).flatten() for o, t0 in zip(online.parameters(), before,
                                                                 strict=True)])
    assert gap.norm() > 0
    assert (moved @ gap / (gap @ gap)).item() == pytest.approx(1 - m, rel=1e-3)


@pytest.mark.parametrize("cls", METHODS)
def test_loss_under_bf16_autocast_is_finite_float32_and_close(cls):
    method = build(cls)
    views = two_views()
    with torch.no_grad():
        ref = method.loss(views, BATCH)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = method.loss(views, BATCH)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    assert out["loss"].item() == pytest.approx(ref["loss"].item(), rel=0.05, abs=0.05)


# C2BIN.

def test_c2bin_has_heads_of_k_4k_16k_and_returns_them_all():
    method = build(C2BIN).eval()
    assert C2BIN.Config().cluster_scales == [1, 4, 16]
    assert C2BIN.Config().cluster_scales is not C2BIN.Config().cluster_scales
    with torch.no_grad():
        feats = method.features(two_views()[0])
        heads = method.cluster_logits(feats)
        assert [h.shape for h in heads] == [(16, K), (16, 4 * K), (16, 16 * K)]
        for head, logits in zip(method.heads, heads, strict=True):
            torch.testing.assert_close(head(feats), logits)
    assert [h.shape[1] for h in build(C2BIN, cluster_scales=[1, 2]).cluster_logits(feats)] == \
        [K, 2 * K]
    with pytest.raises(ValueError, match="cluster_scales"):
        build(C2BIN, cluster_scales=[1, 0])


def test_c2bin_loss_is_the_formula_on_the_heads_outputs():
    lc, le, tau = 0.7, 0.3, 0.5
    method = build(C2BIN, lambda_cluster=lc, lambda_entropy=le, cluster_temperature=tau)
    views = two_views()
    out = method.loss(views, BATCH)
    with torch.no_grad():
        h = [method.backbone(v) for v in views]
        p = [method.predictor(method.projector(x)) for x in h]
        z = [method.follower.net(v) for v in views]
        align = sum((2 - 2 * F.cosine_similarity(a, b, dim=1)).mean()
                    for a, b in [(p[0], z[1]), (p[1], z[0])])
        contrast, ent = [], []
        for head in method.heads:
            a, b = (head(x).softmax(dim=1) for x in h)
            contrast.append(column_contrast(a, b, tau))
            ent.append(entropy(a.mean(0)) + entropy(b.mean(0)))
        contrast, ent = sum(contrast) / 3, sum(ent) / 3
    for key, value in [("align", align), ("cluster", contrast), ("entropy", ent),
                       ("loss", align + lc * contrast - le * ent)]:
        assert out[key].item() == pytest.approx(value.item(), rel=1e-4), key
    assert out["momentum"].item() == pytest.approx(method.cfg.momentum_base)


def test_c2bin_collapse_costs_more_than_balance_and_the_entropy_pushes_back():
    b, k = 32, 4
    balanced = 10 * F.one_hot(torch.arange(b) % k, k).float()
    collapsed = 10 * F.one_hot(torch.zeros(b, dtype=torch.long), k).float()
    contrast_b, ent_b = head_terms(balanced, balanced, 1.0)
    contrast_c, ent_c = head_terms(collapsed, collapsed, 1.0)
    assert ent_b.item() == pytest.approx(2 * math.log(k), rel=1e-3) and ent_c.item() < 1e-2
    assert contrast_c > contrast_b
    assert contrast_c - ent_c > contrast_b - ent_b + 1

    gen = torch.Generator().manual_seed(0)
    logits = (collapsed * 0.3 + 0.1 * torch.randn(b, k, generator=gen)).requires_grad_()
    _, ent = head_terms(logits, logits, 1.0)
    (-ent).backward()  # the entropy enters the loss with a minus sign
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1:] < 0).all()
    with torch.no_grad():
        mass_before = logits.softmax(1).mean(0)[0]
        stepped = logits - 0.5 * logits.grad
        assert stepped.softmax(1).mean(0)[0] < mass_before
        assert head_terms(stepped, stepped, 1.0)[1] > ent


# CueCo.

def test_cueco_centroid_contrast_and_variance_pull_on_a_hand_computed_case():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assignments = torch.tensor([0, 0, 1])
    # cosines / 0.5: [2, 0], [0, 2], [1.414, 1.414]; targets 0, 0, 1
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2)) + math.log(2)) / 3
    assert centroid_contrast(q, centroids, assignments, 0.5).item() == pytest.approx(expected)
    # squared distances of the normalised queries: 0, 2, 2 - sqrt(2)
    variances = torch.tensor([0.5, 1.0])
    expected = (0 / 0.51 + 2 / 0.51 + (2 - math.sqrt(2)) / 1.01) / 3
    assert variance_pull(q, centroids, variances, assignments, 0.01).item() == \
        pytest.approx(expected)


def test_cueco_loss_is_the_formula():
    tau, tau_c, lc, lv, eps = 0.3, 0.4, 0.6, 0.2, 0.05
    method = build(CueCo, temperature=tau, centroid_temperature=tau_c, lambda_centroid=lc,
                   lambda_variance=lv, variance_eps=eps)
    with torch.no_grad():
        method.variances.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
    views = two_views()
    out = method.loss(views, BATCH)
    with torch.no_grad():
        q = [F.normalize(method.projector(method.backbone(v)), dim=1) for v in views]
        k = [F.normalize(method.key_encoder.net(v), dim=1) for v in views]
        nce = [F.cross_entropy(a @ b.T / tau, torch.arange(16)) for a, b in [(q[0], k[1]),
                                                                           (q[1], k[0])]]
        instance = (nce[0] + nce[1]) / 2
        queries, keys = torch.cat(q), torch.cat([k[1], k[0]])
        c = method.centroids
        assigned = (keys @ c.T).argmax(1)
        centroid = F.cross_entropy(queries @ c.T / tau_c, assigned)
        variance = ((queries - c[assigned]).pow(2).sum(1)
                    / (method.variances[assigned] + eps)).mean()
    for key, value in [("instance", instance), ("centroid", centroid), ("variance", variance),
                       ("loss", instance + lc * centroid + lv * variance)]:
        assert out[key].item() == pytest.approx(value.item(), rel=1e-4), key
    assert out["clusters_used"].item() == len(assigned.unique())


def known_keys(e: torch.Tensor) -> torch.Tensor:
    """Two keys for cluster e[0], one for e[2], none for e[1] and e[3] (not of unit length)."""
    return torch.stack([2 * (e[0] + 0.3 * e[5]), e[0] - 0.2 * e[6] + 0.1 * e[4],
                        e[2] + 0.5 * e[7]])


def test_cueco_buffers_follow_the_momentum_formula():
    b1, b2 = 0.9, 0.8
    method = build(CueCo, beta_centroid=b1, beta_variance=b2)
    d = method.cfg.proj_dim
    e = torch.eye(d)
    with torch.no_grad():
        method.centroids.copy_(e[:K])
        method.variances.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
        method.usage.fill_(1 / K)  # all clusters alive: none is relocated
    c0, v0 = method.centroids.clone(), method.variances.clone()
    keys = known_keys(e)
    unit = F.normalize(keys, dim=1)
    method.update_clusters(keys)
    torch.testing.assert_close(method.usage, b1 / K + (1 - b1) * torch.tensor([2, 0, 1, 0]) / 3)
    for cluster, members in [(0, unit[:2]), (2, unit[2:])]:
        mean = members.mean(0)
        moved = b1 * c0[cluster] + (1 - b1) * mean
        torch.testing.assert_close(method.centroids[cluster], moved / moved.norm())
        d2 = (members - c0[cluster]).pow(2).sum(1).mean()
        torch.testing.assert_close(method.variances[cluster], b2 * v0[cluster] + (1 - b2) * d2)
    for cluster in (1, 3):
        assert torch.equal(method.centroids[cluster], c0[cluster])
        assert torch.equal(method.variances[cluster], v0[cluster])
    torch.testing.assert_close(method.centroids.norm(dim=1), torch.ones(K))


def test_cueco_relocates_dead_clusters_onto_the_worst_represented_keys():
    method = build(CueCo)
    e = torch.eye(method.cfg.proj_dim)
    with torch.no_grad():
        method.centroids.copy_(e[:K])
        method.variances.fill_(0.5)
        method.usage.copy_(torch.tensor([0.5, 0.5, 0.5, 0.0]))  # cluster 3 is dead
    alive = copy.deepcopy(method)
    with torch.no_grad():
        alive.usage.fill_(0.5)
    keys = known_keys(e)
    method.update_clusters(keys)
    alive.update_clusters(keys)
    # cosines to their centroids: 0.958, 0.976, 0.894: key 2 is the worst represented
    torch.testing.assert_close(method.centroids[3], F.normalize(keys[2], dim=0))
    assert method.variances[3].item() == 2.0
    assert torch.equal(method.centroids[:3], alive.centroids[:3])  # cluster 1 is empty but alive
    assert torch.equal(method.variances[:3], alive.variances[:3])
    assert torch.equal(alive.centroids[3], e[3])

    off = build(CueCo, relocate_below=0.0)
    with torch.no_grad():
        off.centroids.copy_(e[:K])
    off.update_clusters(keys)
    assert torch.equal(off.centroids[[1, 3]], e[[1, 3]])


def test_cueco_first_batch_seeds_the_clusters_it_did_not_reach():
    method = build(CueCo)
    e = torch.eye(method.cfg.proj_dim)
    with torch.no_grad():
        method.centroids.copy_(e[:K])
    keys = known_keys(e)
    method.update_clusters(keys)  # usage starts at 0: clusters 1 and 3 take keys 2 and 0
    torch.testing.assert_close(method.centroids[1], F.normalize(keys[2], dim=0))
    torch.testing.assert_close(method.centroids[3], F.normalize(keys[0], dim=0))
    assert method.usage[1] == 0 and method.usage[0] > 0


def test_cueco_updates_the_centroids_after_a_training_step_only():
    method = build(CueCo)
    views = two_views()
    c0, v0 = method.centroids.clone(), method.variances.clone()
    method.eval()
    with torch.no_grad():
        method.loss(views, BATCH)
    method.after_step(0)
    assert torch.equal(method.centroids, c0) and torch.equal(method.variances, v0)

    method.train()
    with torch.no_grad():
        keys = torch.cat([method.key_encoder.net(views[1]), method.key_encoder.net(views[0])])
    first = method.loss(views, BATCH)
    assert torch.equal(method.centroids, c0)  # loss() itself has no side effect
    assert method.loss(views, BATCH)["loss"].item() == first["loss"].item()
    expected = copy.deepcopy(method)
    expected.update_clusters(keys)
    method.after_step(0)
    assert not torch.equal(method.centroids, c0) and not torch.equal(method.variances, v0)
    torch.testing.assert_close(method.centroids, expected.centroids)
    torch.testing.assert_close(method.variances, expected.variances)


def test_cueco_cluster_logits_are_cosines_to_the_k_centroids_and_survive_state_dict():
    method = build(CueCo).eval()
    with torch.no_grad():
        method.centroids.copy_(F.normalize(torch.randn(K, method.cfg.proj_dim), dim=1))
        feats = method.features(two_views()[0])
        logits = method.cluster_logits(feats)
        assert logits.shape == (16, K) and logits.dtype == torch.float32
        expected = F.normalize(method.projector(feats), dim=1) @ method.centroids.T
        torch.testing.assert_close(logits, expected)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert method.cluster_logits(feats).dtype == torch.float32
    assert {"centroids", "variances"} <= set(method.state_dict())
    fresh = build(CueCo).eval()
    fresh.load_state_dict(method.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.cluster_logits(feats), logits)


# Short training runs (the pattern of tests/test_train.py's make()).

def make(cls, epochs: int = 6, tmp: Path | None = None):
    """Views are the images themselves, as in tests/test_methods_momentum.py: two simclr views
    of random noise share too little for a few steps to learn from."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                          {"epochs": epochs, "batch_size": 16, "warmup_epochs": 1,
                           "optimizer": {"name": "adam", "lr": 0.01}})
    method = cls(TinyConvNet(1, 8), context(4 * epochs),
                 dataclasses.replace(cls.Config(), **SMALL[cls]))
    setup = TrainSetup(images=images, augment=Augmenter("none", 8), cfg=cfg, seed=3,
                       prepare=Normalizer(*channel_stats(images), torch.device("cpu")),
                       device=torch.device("cpu"), checkpoint_dir=tmp)
    return method, setup


class Interrupt(Exception):
    pass


def _stop_after_three(epoch, epochs, terms):
    if epoch == 3:
        raise Interrupt


@pytest.mark.parametrize("cls", METHODS)
def test_training_lowers_the_loss_is_deterministic_and_resumes_exactly(cls, tmp_path: Path):
    full, setup = make(cls)
    ref = train(full, setup)
    terms = {C2BIN: {"align", "cluster", "entropy", "momentum"},
             CueCo: {"instance", "centroid", "variance", "clusters_used"}}[cls]
    assert terms <= set(ref.history[0])
    assert ref.history[-1]["loss"] < 0.95 * ref.history[0]["loss"], [h["loss"] for h in ref.history]

    again, setup = make(cls)
    train(again, setup)
    for (name, x), y in zip(full.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(x, y), name

    method, setup = make(cls, tmp=tmp_path)
    setup.on_epoch = _stop_after_three
    with pytest.raises(Interrupt):
        train(method, setup)
    resumed, setup = make(cls, tmp=tmp_path)
    result = train(resumed, setup)
    assert result.resumed_from_epoch == 3
    assert [h["loss"] for h in result.history] == [h["loss"] for h in ref.history]
    for (name, x), y in zip(full.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(x, y), name
