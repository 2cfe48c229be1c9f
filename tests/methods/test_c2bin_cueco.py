"""C2BIN and CueCo: the protocol, the presets, the losses against formulas written out here,
the follower / key network, CueCo's momentum centroids and queue, and short deterministic CPU
training runs. (tests/methods/test_paper_equations.py checks the losses once more, against
transcriptions of the papers' printed equations.)"""

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
from crlbench.errors import UserError
from crlbench.methods.c2bin import C2BIN, resolve_cluster_sizes
from crlbench.methods.cueco import CueCo, centroid_contrast, variance_pull
from crlbench.methods.losses import bca_contrast, cluster_mass_entropy
from crlbench.optim import default_param_groups
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.protocol import Batch, RunContext
from crlbench.suite import method_config
from crlbench.testing import check_method, make_context
from crlbench.train import TrainSetup, train

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = [C2BIN, CueCo]
SMALL = {
    C2BIN: {"proj_hidden_dim": 32, "pred_hidden_dim": 32, "proj_dim": 16,
            "cluster_sizes": ["K", 8, 16]},
    CueCo: {"proj_hidden_dim": 32, "proj_dim": 16, "queue_size": 32},
}
K = 4  # ctx.num_clusters of the methods built here
TOTAL = 8  # ctx.total_steps
BATCH = Batch(indices=torch.arange(16))


def context(total_steps: int = TOTAL) -> RunContext:
    return make_context(num_classes=K, total_steps=total_steps, epochs=total_steps // 4)


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


def bca_by_hand(p1: torch.Tensor, p2: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 4 of the C2BIN paper, column by column: view 1's columns anchor, view 2's other
    columns are the negatives, the positive is not in the denominator; dot products."""
    k = p1.shape[1]
    total = 0.0
    for i in range(k):
        positive = torch.exp(p1[:, i] @ p2[:, i] / tau)
        negatives = sum(torch.exp(p1[:, i] @ p2[:, j] / tau) for j in range(k) if j != i)
        total = total - torch.log(positive / negatives)
    return total / k


# The protocol.

@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("cls", METHODS)
def test_check_method(cls, channels):
    check_method(cls, config=SMALL[cls], channels=channels, data_parallel=False)
    check_method(cls, channels=channels, data_parallel=False)  # the paper defaults


@pytest.mark.parametrize("preset", ["representation", "clustering"])
def test_check_method_of_each_c2bin_preset(preset):
    check_method(C2BIN, config={"preset": preset}, channels=1, data_parallel=False)


@pytest.mark.parametrize("cls", METHODS)
def test_registered_under_its_name_with_a_summary_and_version_2(cls):
    assert registry.methods.get(cls.name) is cls
    assert cls.summary().startswith({C2BIN: "C2BIN: ",
                                     CueCo: "CueCo (Giakoumoglou & Stathaki 2025): "}[cls])
    assert registry.method_version(registry.methods.entry(cls.name)) == "2"


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


@pytest.mark.parametrize("step", [0, 5])
@pytest.mark.parametrize("cls", METHODS)
def test_after_step_moves_the_target_by_a_constant_one_minus_momentum(cls, step):
    """Eq. 8 of C2BIN (and CueCo's key network): phi <- gamma phi + (1 - gamma) theta, with the
    same gamma at every step."""
    method = build(cls)
    sgd_step(method, two_views())
    m = method.cfg.momentum
    target, online = target_of(method), online_of(method)
    before = [p.clone() for p in target.parameters()]
    method.after_step(step)
    for t, t0, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, m * t0 + (1 - m) * o.detach())


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


# C2BIN: presets and cluster sizes.

def test_c2bin_presets_are_the_papers_tables_and_config_defaults_are_table_10():
    table5 = {"lambda_cluster": 2.0, "lambda_entropy": 1.0, "momentum": 0.990,
              "temperature": 0.5, "cluster_sizes": [32, 64, 128], "proj_hidden_dim": 512,
              "pred_hidden_dim": 512}
    table10 = {"lambda_cluster": 1.0, "lambda_entropy": 1.0, "momentum": 0.995,
               "temperature": 1.0, "cluster_sizes": ["K", 40, 160], "proj_hidden_dim": 512,
               "pred_hidden_dim": 512}
    assert C2BIN.presets == {"representation": table5, "clustering": table10}
    cfg = C2BIN.Config()
    assert cfg.preset == "clustering"
    assert {k: getattr(cfg, k) for k in table10} == table10
    assert (cfg.proj_dim, cfg.bca_similarity, cfg.mlp_batchnorm) == (128, "cosine", True)


def test_c2bin_preset_then_overrides_through_method_config():
    cfg = method_config("c2bin", {"preset": "representation", "temperature": 0.3})
    assert cfg["preset"] == "representation" and cfg["temperature"] == 0.3
    assert cfg["cluster_sizes"] == [32, 64, 128] and cfg["lambda_cluster"] == 2.0
    assert method_config("c2bin", {}) == {**dataclasses.asdict(C2BIN.Config())}
    assert method_config("c2bin", {"cluster_sizes": [8, "2K"]})["cluster_sizes"] == [8, "2K"]
    with pytest.raises(UserError, match=r"method_cfg.c2bin.preset: unknown preset 'table7'; "
                                        r"c2bin's presets: representation, clustering"):
        method_config("c2bin", {"preset": "table7"})
    with pytest.raises(UserError, match="method_cfg.c2bin: cluster_sizes entries"):
        method_config("c2bin", {"cluster_sizes": ["many"]})
    with pytest.raises(UserError, match="method_cfg.c2bin: bca_similarity must be one of"):
        method_config("c2bin", {"bca_similarity": "l2"})


def test_cluster_sizes_are_absolute_or_relative_to_k():
    assert resolve_cluster_sizes([32, 64, 128], 10) == [32, 64, 128]
    assert resolve_cluster_sizes(["K", 40, 160], 10) == [10, 40, 160]  # Table 10, CIFAR-10
    assert resolve_cluster_sizes(["K", 40, 160], 20) == [20, 40, 160]  # Table 10, CIFAR-100
    assert resolve_cluster_sizes(["4K", "16K", "7"], 5) == [20, 80, 7]
    for bad in (["K2"], [1], ["0K"], [], [2.5], [True]):
        with pytest.raises(ValueError):
            resolve_cluster_sizes(bad, 10)


def test_c2bin_heads_are_linear_of_the_resolved_sizes_in_order():
    method = build(C2BIN).eval()
    assert method.cluster_sizes == [K, 8, 16]
    assert method.describe() == {"cluster_sizes": [K, 8, 16]}
    assert all(type(head) is nn.Linear for head in method.heads)
    with torch.no_grad():
        feats = method.features(two_views()[0])
        heads = method.cluster_logits(feats)
    assert [h.shape for h in heads] == [(16, K), (16, 8), (16, 16)]
    for head, logits in zip(method.heads, heads, strict=True):
        torch.testing.assert_close(head(feats), logits)
    assert build(C2BIN, cluster_sizes=[32, 64, 128]).cluster_sizes == [32, 64, 128]


# C2BIN: the loss.

def test_bca_contrast_is_eq_4_and_its_closed_forms():
    gen = torch.Generator().manual_seed(0)
    p1 = torch.randn(12, 5, generator=gen).softmax(1)
    p2 = torch.randn(12, 5, generator=gen).softmax(1)
    for tau in (0.5, 1.0):
        assert bca_contrast(p1, p2, tau).item() == pytest.approx(
            bca_by_hand(p1, p2, tau).item(), rel=1e-5)
    cos1, cos2 = F.normalize(p1, dim=0), F.normalize(p2, dim=0)
    assert bca_contrast(p1, p2, 0.5, "cosine").item() == pytest.approx(
        bca_by_hand(cos1, cos2, 0.5).item(), rel=1e-5)
    # balanced one-hot assignments, equal in both views: s_ii = n / K, s_ij = 0, so every
    # column costs log(K - 1) - n / (K tau) (the positive is not in the denominator)
    n, k, tau = 12, 4, 0.5
    onehot = F.one_hot(torch.arange(n) % k, k).float()
    assert bca_contrast(onehot, onehot, tau).item() == pytest.approx(
        math.log(k - 1) - n / (k * tau), rel=1e-6)
    assert bca_contrast(onehot, onehot, tau, "cosine").item() == pytest.approx(
        math.log(k - 1) - 1 / tau, rel=1e-6)
    # one-sided: swapping the views changes the value in general
    assert bca_contrast(p1, p2, 1.0).item() != pytest.approx(bca_contrast(p2, p1, 1.0).item())
    with pytest.raises(ValueError, match="K >= 2"):
        bca_contrast(p1[:, :1], p2[:, :1], 1.0)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_c2bin_loss_is_eq_7_on_the_networks_outputs(similarity):
    lc, le, tau = 0.7, 0.3, 0.5
    method = build(C2BIN, lambda_cluster=lc, lambda_entropy=le, temperature=tau,
                   bca_similarity=similarity)
    columns = (lambda p: F.normalize(p, dim=0)) if similarity == "cosine" else (lambda p: p)
    views = two_views()
    out = method.loss(views, BATCH)
    with torch.no_grad():
        r1, r2 = (method.backbone(v) for v in views)
        p = method.predictor(method.projector(r1))
        z_hat = method.follower.net(views[1])
        align = (1 - F.cosine_similarity(p, z_hat, dim=1)).mean()  # eq. 1, x' -> runner
        bca = ent = 0.0
        for head in method.heads:  # eq. 6: a sum over the heads
            a, b = head(r1).softmax(1), head(r2).softmax(1)
            bca = bca + bca_by_hand(columns(a), columns(b), tau)
            ent = ent + entropy(a.mean(0))  # H(s), s the normalised mass of view x'
    expected = align + lc * (bca - le * ent)  # eq. 5 and 7
    for key, value in [("align", align), ("bca", bca), ("entropy", ent), ("loss", expected)]:
        assert out[key].item() == pytest.approx(value.item(), rel=1e-4), key


def test_c2bin_mlps_without_batchnorm():
    method = build(C2BIN, mlp_batchnorm=False)
    for mlp_ in (method.projector, method.predictor):
        assert not any(isinstance(m, nn.BatchNorm1d) for m in mlp_.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in build(C2BIN).projector.modules())


def test_c2bin_entropy_term_pushes_mass_out_of_a_full_cluster():
    b, k = 32, 4
    gen = torch.Generator().manual_seed(0)
    collapsed = 3 * F.one_hot(torch.zeros(b, dtype=torch.long), k).float()
    logits = (collapsed + 0.1 * torch.randn(b, k, generator=gen)).requires_grad_()
    (-cluster_mass_entropy(logits.softmax(1))).backward()  # -lambda_ent H(s) in eq. 5
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1:] < 0).all()


# CueCo.

def test_cueco_centroid_contrast_and_variance_pull_on_a_hand_computed_case():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    centroids = torch.tensor([[1.0, 0.0], [0.0, 0.5]])  # not of unit length: not renormalised
    assignments = torch.tensor([0, 1, 1])
    # dot products of the unit queries / 0.5: [2, 0], [0, 1], [1.414, 0.707]; targets 0, 1, 1
    r = 1 / math.sqrt(2)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))
                + math.log(1 + math.exp(2 * r - r))) / 3
    assert centroid_contrast(q, centroids, assignments, 0.5).item() == pytest.approx(expected)
    # squared distances of the unit queries to their centroids: 0, 0.25, r^2 + (r - 0.5)^2
    variances = torch.tensor([0.5, 1.0])
    expected = (0 / 1.01 + 0.25 / 2.01 + (r ** 2 + (r - 0.5) ** 2) / 2.01) / 3
    assert variance_pull(q, centroids, variances, assignments, 0.01).item() == \
        pytest.approx(expected)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("negatives", ["queue", "batch"])
def test_cueco_loss_is_the_formula(negatives, symmetric):
    tau, l1, l2, l3, eps = 0.3, 0.9, 0.6, 0.2, 0.05
    method = build(CueCo, temperature=tau, lambda_instance=l1, lambda_centroid=l2,
                   lambda_variance=l3, variance_eps=eps, negatives=negatives,
                   symmetric=symmetric)
    with torch.no_grad():
        method.variances.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
        method.centroids.mul_(torch.tensor([1.0, 0.8, 0.6, 0.9])[:, None])
    views = two_views()
    out = method.loss(views, BATCH)
    with torch.no_grad():
        q = [F.normalize(method.projector(method.backbone(v)), dim=1) for v in views]
        k = [F.normalize(method.key_encoder.net(v), dim=1) for v in views]

        def l1_term(z, z_key):
            pos = (z * z_key).sum(1, keepdim=True)
            if negatives == "queue":
                logits = torch.cat([pos, z @ method.queue.keys.T], 1) / tau
                return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long))
            return F.cross_entropy(z @ z_key.T / tau, torch.arange(len(z)))

        pairs = [(q[0], k[1]), (q[1], k[0])] if symmetric else [(q[0], k[1])]
        instance = sum(l1_term(a, b) for a, b in pairs) / len(pairs)
        queries, keys = torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])
        c = method.centroids
        assigned = ((keys[:, None] - c[None]).pow(2).sum(-1)).argmin(1)  # i[z]: the key's
        centroid = F.cross_entropy(queries @ c.T / tau, assigned)
        variance = ((queries - c[assigned]).pow(2).sum(1)
                    / (2 * method.variances[assigned] + eps)).mean()
    for key, value in [("instance", instance), ("centroid", centroid), ("variance", variance),
                       ("loss", l1 * instance + l2 * centroid + l3 * variance)]:
        assert out[key].item() == pytest.approx(value.item(), rel=1e-4), key
    assert out["clusters_used"].item() == len(assigned.unique())


def test_cueco_queue_is_cut_to_the_training_set_and_takes_the_keys_after_the_step():
    method = build(CueCo, queue_size=10_000)
    # 64 images in 4 steps of 16: at most 64 - 16 keys
    assert len(method.queue.keys) == 48 and method.describe() == {"queue_length": 48}
    assert build(CueCo, negatives="batch").describe() == {"queue_length": None}
    views = two_views()
    with torch.no_grad():
        key = F.normalize(method.key_encoder.net(views[1]), dim=1)
    before = method.queue.keys.clone()
    method.loss(views, BATCH)
    assert torch.equal(method.queue.keys, before)  # loss() has no side effect
    method.after_step(0)
    torch.testing.assert_close(method.queue.keys[:16], key)
    assert torch.equal(method.queue.keys[16:], before[16:])


def known_keys(e: torch.Tensor) -> torch.Tensor:
    """Unit keys: two for cluster 0, one for cluster 2, none for clusters 1 and 3."""
    return F.normalize(torch.stack([e[0] + 0.3 * e[5], e[0] - 0.2 * e[6] + 0.1 * e[4],
                                    e[2] + 0.5 * e[7]]), dim=1)


ASSIGNED = torch.tensor([0, 0, 2])  # i[z] of the images whose keys are known_keys


@pytest.mark.parametrize("normalize", [False, True])
def test_cueco_buffers_follow_the_momentum_formula(normalize):
    b1, b2 = 0.9, 0.8
    method = build(CueCo, beta_centroid=b1, beta_variance=b2, normalize_centroids=normalize)
    e = torch.eye(method.cfg.proj_dim)
    with torch.no_grad():
        method.centroids.copy_(e[:K])
        method.variances.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
        method.usage.fill_(1 / K)  # all clusters alive: none is relocated
    c0, v0 = method.centroids.clone(), method.variances.clone()
    keys = known_keys(e)
    method.update_clusters(ASSIGNED, keys)
    torch.testing.assert_close(method.usage, b1 / K + (1 - b1) * torch.tensor([2, 0, 1, 0]) / 3)
    for cluster, members in [(0, keys[:2]), (2, keys[2:])]:
        mu = members.mean(0)
        moved = b1 * c0[cluster] + (1 - b1) * mu
        torch.testing.assert_close(method.centroids[cluster],
                                   moved / moved.norm() if normalize else moved)
        spread = (members - mu).pow(2).sum(1).mean()  # 0 for a cluster of one key
        torch.testing.assert_close(method.variances[cluster],
                                   b2 * v0[cluster] + (1 - b2) * spread)
    for cluster in (1, 3):
        assert torch.equal(method.centroids[cluster], c0[cluster])
        assert torch.equal(method.variances[cluster], v0[cluster])
    if not normalize:
        assert method.centroids[0].norm() < 1  # a mean of unit vectors, not renormalised


def test_cueco_relocates_dead_clusters_onto_the_farthest_keys():
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
    method.update_clusters(ASSIGNED, keys)
    alive.update_clusters(ASSIGNED, keys)
    # distances to their centroids: key 2 (0.5 off its axis) is the farthest
    torch.testing.assert_close(method.centroids[3], keys[2])
    assert method.variances[3].item() == 1.0
    assert torch.equal(method.centroids[:3], alive.centroids[:3])  # cluster 1 is empty but alive
    assert torch.equal(alive.centroids[3], e[3])

    off = build(CueCo, relocate_below=0.0)
    with torch.no_grad():
        off.centroids.copy_(e[:K])
    off.update_clusters(ASSIGNED, keys)
    assert torch.equal(off.centroids[[1, 3]], e[[1, 3]])


def test_cueco_updates_the_centroids_after_a_training_step_only_from_key_assignments():
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
        keys = F.normalize(method.key_encoder.net(views[1]), dim=1)
        assigned = torch.cdist(keys, c0).argmin(1)
    first = method.loss(views, BATCH)
    assert torch.equal(method.centroids, c0)  # loss() itself has no side effect
    assert method.loss(views, BATCH)["loss"].item() == first["loss"].item()
    expected = copy.deepcopy(method)
    expected.update_clusters(assigned, keys)
    method.after_step(0)
    assert not torch.equal(method.centroids, c0)
    torch.testing.assert_close(method.centroids, expected.centroids)
    torch.testing.assert_close(method.variances, expected.variances)


def test_cueco_cluster_logits_rank_the_centroids_by_distance_and_survive_state_dict():
    method = build(CueCo).eval()
    with torch.no_grad():
        method.centroids.copy_(0.7 * F.normalize(torch.randn(K, method.cfg.proj_dim), dim=1))
        feats = method.features(two_views()[0])
        logits = method.cluster_logits(feats)
        assert logits.shape == (16, K) and logits.dtype == torch.float32
        z = F.normalize(method.projector(feats), dim=1)
        torch.testing.assert_close(logits, -(z[:, None] - method.centroids[None]).pow(2).sum(-1))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert method.cluster_logits(feats).dtype == torch.float32
    assert {"centroids", "variances", "queue.keys"} <= set(method.state_dict())
    fresh = build(CueCo).eval()
    fresh.load_state_dict(method.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.cluster_logits(feats), logits)


def test_cueco_refuses_unknown_negatives_before_any_run():
    with pytest.raises(UserError, match="method_cfg.cueco: negatives must be one of queue, batch"):
        method_config("cueco", {"negatives": "bank"})


# Short training runs (the pattern of tests/test_train.py's make()).

def make(cls, epochs: int = 6, tmp: Path | None = None):
    """Views are the images themselves, as in tests/methods/test_momentum.py: two simclr views
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
    terms = {C2BIN: {"align", "bca", "entropy"},
             CueCo: {"instance", "centroid", "variance", "clusters_used"}}[cls]
    assert terms <= set(ref.history[0])
    # CueCo's first epoch contrasts against a queue of random vectors, an easy task, so its
    # loss rises as the queue fills with real keys: compare with the second epoch
    losses = [h["loss"] for h in ref.history][cls is CueCo:]
    assert losses[-1] < losses[0] - 0.05 * abs(losses[0]), losses

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
