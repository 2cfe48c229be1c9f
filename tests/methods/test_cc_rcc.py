"""CC and RCC: the protocol, the loss against its formula by hand, collapse, RCC at lambda = 1
and short CPU training runs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from crlbench.augment import Augmenter
from crlbench.backbones import TinyConvNet
from crlbench.config import TrainConfig
from crlbench.methods.cc import CC
from crlbench.methods.losses import cluster_contrast, nt_xent
from crlbench.methods.rcc import RCC
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.protocol import Batch
from crlbench.testing import check_method, make_context
from crlbench.train import TrainSetup, train

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
SMALL = {"instance_dim": 16, "hidden_dim": 16}  # check_method runs the paper defaults


def build(cls, *, k=4, channels=3, total_steps=8, **overrides):
    torch.manual_seed(0)
    ctx = make_context(num_classes=k, total_steps=total_steps, channels=channels)
    cfg = dataclasses.replace(cls.Config(), **{**SMALL, **overrides})
    return cls(TinyConvNet(channels, 8), ctx, cfg)


def two_views(n=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 8, 8, generator=gen) for _ in range(2)]


BATCH = Batch(indices=torch.arange(8))


# The formulas, written out sample by sample.
def nt_xent_by_hand(a, b, tau):
    x = torch.cat([a, b]) / torch.cat([a, b]).norm(dim=1, keepdim=True)
    n2 = len(x)
    total = 0.0
    for i in range(n2):
        sims = x @ x[i] / tau
        others = torch.cat([sims[:i], sims[i + 1:]])
        total = total - (sims[(i + n2 // 2) % n2] - torch.logsumexp(others, dim=0))
    return total / n2


def mass_entropy_by_hand(p):
    m = p.sum(dim=0) / p.sum()
    return -(m * m.log()).sum()


def uniformity_by_hand(z, t=2.0):
    x = z / z.norm(dim=1, keepdim=True)
    terms = [torch.exp(-t * (x[i] - x[j]).pow(2).sum())
             for i in range(len(x)) for j in range(i + 1, len(x))]
    return torch.log(torch.stack(terms).mean())


def by_hand(method, views):
    """CC's loss (and RCC's) from the heads' outputs, as the CC code writes it: instance NT-Xent
    + column NT-Xent + sum over views of (log K - H(cluster mass))."""
    cfg = method.cfg
    h = [method.backbone(v) for v in views]
    z = [method.instance_projector(x) for x in h]
    p = [method.cluster_projector(x).softmax(dim=1) for x in h]
    k = p[0].shape[1]
    terms = {
        "instance": nt_xent_by_hand(z[0], z[1], cfg.instance_temperature),
        "cluster": nt_xent_by_hand(p[0].T, p[1].T, cfg.cluster_temperature),
        "entropy": mass_entropy_by_hand(p[0]) + mass_entropy_by_hand(p[1]),
    }
    terms["loss"] = (terms["instance"] + terms["cluster"]
                     + (math.log(k) - mass_entropy_by_hand(p[0]))
                     + (math.log(k) - mass_entropy_by_hand(p[1])))
    if isinstance(method, RCC):  # on the backbone's h by default, summed over the views
        on = h if cfg.uniformity_on == "backbone" else z
        terms["uniformity"] = (uniformity_by_hand(on[0], cfg.uniformity_t)
                               + uniformity_by_hand(on[1], cfg.uniformity_t))
        if cfg.uniformity_reduce == "mean":
            terms["uniformity"] = terms["uniformity"] / 2
        terms["loss"] = cfg.lam * terms["loss"] + (1 - cfg.lam) * terms["uniformity"]
    return terms


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("cls", [CC, RCC])
def test_check_method_with_the_paper_defaults(cls, channels):
    check_method(cls, channels=channels, data_parallel=False)
    check_method(cls, channels=channels, num_clusters=7, config={"batchnorm": True},
                 data_parallel=False)


def test_summaries_and_defaults_follow_the_paper_and_code():
    assert CC.summary().startswith("CC (Li et al. 2021):")
    assert RCC.summary().startswith("RCC (")
    assert (CC.name, RCC.name, CC.num_views, RCC.num_views) == ("cc", "rcc", 2, 2)
    cfg = RCC.Config()
    assert (cfg.instance_dim, cfg.instance_temperature, cfg.cluster_temperature) == (128, 0.5, 1.0)
    assert (cfg.lam, cfg.uniformity_t, cfg.hidden_dim, cfg.batchnorm) == (0.95, 2.0, None, False)
    method = build(CC, k=7, instance_dim=128, hidden_dim=None)
    for head, out in ((method.instance_projector, 128), (method.cluster_projector, 7)):
        assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]
        assert [(m.in_features, m.out_features) for m in head[::2]] == [(32, 32), (32, out)]
    with_bn = build(CC, batchnorm=True)
    assert any(isinstance(m, nn.BatchNorm1d) for m in with_bn.cluster_projector)


def test_cluster_logits_are_the_cluster_heads_logits():
    method = build(RCC, k=7).eval()
    feats = torch.randn(5, 32)
    with torch.no_grad():
        logits = method.cluster_logits(feats)
        assert logits.shape == (5, 7)
        assert torch.equal(logits, method.cluster_projector(feats))


@pytest.mark.parametrize(("cls", "overrides"), [
    (CC, {}), (CC, {"batchnorm": True, "cluster_temperature": 0.7}), (RCC, {}),
    (RCC, {"lam": 0.6, "uniformity_t": 1.0}),
    (RCC, {"lam": 0.6, "uniformity_on": "instance", "uniformity_reduce": "mean"}),
])
def test_loss_is_the_formula_of_the_heads_outputs(cls, overrides):
    method = build(cls, **overrides)
    views = two_views()
    out = method.loss(views, BATCH)
    with torch.no_grad():
        expected = by_hand(method, views)
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6), key
        assert out[key].ndim == 0
    assert all(not v.requires_grad for k, v in out.items() if k != "loss")


def test_a_collapsed_assignment_costs_more_and_the_entropy_gradient_empties_the_full_cluster():
    method = build(CC)
    n, k = 16, 4
    gen = torch.Generator().manual_seed(2)
    z = [torch.randn(n, 16, generator=gen) for _ in range(2)]
    balanced = 8 * F.one_hot(torch.arange(n) % k, k).float()
    collapsed = 8 * F.one_hot(torch.zeros(n, dtype=torch.long), k).float()
    out_b = method.cc_terms(z, [balanced, balanced])
    out_c = method.cc_terms(z, [collapsed, collapsed])
    assert out_b["entropy"].item() == pytest.approx(2 * math.log(k), abs=1e-6)
    assert out_c["entropy"].item() < 0.05
    assert out_c["loss"].item() > out_b["loss"].item() + 2 * math.log(k) - 0.1

    # Mostly in cluster 0: the gradient of the method's entropy term (total gradient minus the
    # two contrastive terms' gradients) lowers every sample's cluster-0 logit, raises the rest.
    logits = [(3 * F.one_hot(torch.zeros(n, dtype=torch.long), k).float()
               + 0.1 * torch.randn(n, k, generator=gen)).requires_grad_() for _ in range(2)]
    total = torch.autograd.grad(method.cc_terms(z, logits)["loss"], logits)
    probs = [c.softmax(dim=1) for c in logits]
    contrast = torch.autograd.grad(nt_xent(*z, 0.5) + cluster_contrast(*probs, 1.0), logits)
    for g_total, g_contrast, c in zip(total, contrast, logits, strict=True):
        g_entropy = g_total - g_contrast
        assert (g_entropy[:, 0] > 0).all() and (g_entropy[:, 1:] < 0).all()
        (expected,) = torch.autograd.grad(-mass_entropy_by_hand(c.softmax(dim=1)), c)
        assert torch.allclose(g_entropy, expected, atol=1e-6)
    # and a gradient step on the whole loss moves mass out of cluster 0
    stepped = [(c - 1.0 * g).detach() for c, g in zip(logits, total, strict=True)]
    for before, after in zip(logits, stepped, strict=True):
        assert after.softmax(dim=1)[:, 0].mean() < before.detach().softmax(dim=1)[:, 0].mean()


@pytest.mark.parametrize("cls", [CC, RCC])
def test_bf16_autocast_gives_finite_float32_terms_and_float32_state(cls):
    method = build(cls)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.loss(two_views(), BATCH)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert all(v.dtype == torch.float32 for v in method.state_dict().values()
               if v.is_floating_point())


def make(cls, epochs, **overrides):
    """The trainer's test setup (tests/test_train.py), with Adam and a small method config.

    The views are the images themselves: under the simclr augmentation two views of these
    random-noise images share too little for a few steps to learn from, while identical views
    leave instance discrimination and consistent cluster assignments to be learnt.
    """
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                          {"epochs": epochs, "batch_size": 16, "warmup_epochs": 1,
                           "optimizer": {"name": "adam", "lr": 0.01}})
    method = build(cls, channels=1, total_steps=4 * epochs, **overrides)
    setup = TrainSetup(images=images, augment=Augmenter("none", 8), cfg=cfg, seed=3,
                       prepare=Normalizer(*channel_stats(images), CPU), device=CPU)
    return method, setup


def test_rcc_with_lambda_one_is_cc_exactly():
    cc, rcc = build(CC), build(RCC, lam=1.0)
    for (name, x), y in zip(cc.state_dict().items(), rcc.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    views = two_views()
    out_cc, out_rcc = cc.loss(views, BATCH), rcc.loss(views, BATCH)
    assert torch.equal(out_cc["loss"], out_rcc["loss"])
    assert not torch.equal(out_cc["loss"], build(RCC).loss(views, BATCH)["loss"])

    a, setup_a = make(CC, 2)
    b, setup_b = make(RCC, 2, lam=1.0)
    hist_a, hist_b = train(a, setup_a).history, train(b, setup_b).history
    assert [h["loss"] for h in hist_a] == [h["loss"] for h in hist_b]
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("cls", [CC, RCC])
def test_short_training_lowers_the_loss_and_is_deterministic(cls):
    a, setup = make(cls, 6)
    result = train(a, setup)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.4, losses
    first, last = result.history[0], result.history[-1]
    assert last["instance"] < first["instance"] and last["cluster"] < first["cluster"]
    keys = {"loss", "instance", "cluster", "entropy", "lr", "seconds"}
    assert set(result.history[0]) == keys | ({"uniformity"} if cls is RCC else set())
    b, setup = make(cls, 6)
    assert [h["loss"] for h in train(b, setup).history] == losses
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
