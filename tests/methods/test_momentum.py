"""MoCo v2, MoCo v3 and BYOL: the protocol, the momentum target networks, MoCo v2's queue, the
wiring of the losses, and short deterministic training runs on the CPU."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from crlbench import registry
from crlbench.augment import Augmenter
from crlbench.backbones import TinyConvNet
from crlbench.config import TrainConfig
from crlbench.methods.byol import BYOL
from crlbench.methods.losses import info_nce, normalized_mse
from crlbench.methods.moco_v2 import MoCoV2
from crlbench.methods.moco_v3 import MoCoV3
from crlbench.optim import default_param_groups
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.protocol import Batch
from crlbench.testing import check_method, make_context
from crlbench.train import TrainSetup, train

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = [MoCoV2, MoCoV3, BYOL]
SCHEDULED = [MoCoV3, BYOL]  # momentum raised to 1 along a cosine
SMALL = {
    MoCoV2: {"proj_hidden_dim": 64, "proj_dim": 16, "queue_size": 256},
    MoCoV3: {"proj_hidden_dim": 64, "pred_hidden_dim": 64, "proj_dim": 16},
    BYOL: {"proj_hidden_dim": 64, "pred_hidden_dim": 64, "proj_dim": 16},
}
TOTAL = 8  # ctx.total_steps of the methods built here


def build(cls, total_steps: int = TOTAL, **overrides):
    torch.manual_seed(0)
    ctx = make_context(total_steps=total_steps)
    cfg = dataclasses.replace(cls.Config(), **{**SMALL[cls], **overrides})
    return cls(TinyConvNet(1, 8), ctx, cfg).train()


def two_views(n: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(n, 1, 8, 8, generator=gen) for _ in range(2)]


BATCH = Batch(indices=torch.arange(16))


def target_of(method) -> nn.Module:
    return (method.target if isinstance(method, BYOL) else method.momentum_encoder).net


def online_of(method) -> nn.Module:
    return nn.Sequential(method.backbone, method.projector)


def expected_momentum(method, step: int) -> float:
    """The momentum after `step`, written out from the papers rather than taken from ema.py."""
    if isinstance(method, MoCoV2):
        return method.cfg.momentum
    base, total = method.cfg.momentum_base, method.ctx.total_steps
    if total == 0:
        return base
    return 1 - (1 - base) * (math.cos(math.pi * min(step / total, 1.0)) + 1) / 2


def sgd_step(method, views) -> dict[str, torch.Tensor]:
    optimizer = torch.optim.SGD(default_param_groups(method, False), lr=0.1)
    out = method.loss(views, BATCH)
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    return out


@torch.no_grad()
def perturb(module: nn.Module, scale: float = 0.5) -> None:
    gen = torch.Generator().manual_seed(2)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=gen))


def assert_moved(target: nn.Module, before: list[torch.Tensor], online: list[torch.Tensor],
                 momentum: float) -> None:
    after = [p.detach() for p in target.parameters()]
    for t, t0, o in zip(after, before, online, strict=True):
        torch.testing.assert_close(t, momentum * t0 + (1 - momentum) * o)
    # The fraction of the way travelled, fitted over all parameters: exactly 1 - m.
    moved = torch.cat([(t - t0).flatten() for t, t0 in zip(after, before, strict=True)])
    gap = torch.cat([(o - t0).flatten() for o, t0 in zip(online, before, strict=True)])
    assert (moved @ gap / (gap @ gap)).item() == pytest.approx(1 - momentum, rel=1e-3)


# tests/methods/test_protocol.py runs check_method on every built-in method with the paper defaults.
@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("cls", METHODS)
def test_check_method(cls, channels):
    check_method(cls, config=SMALL[cls], channels=channels, data_parallel=False)


@pytest.mark.parametrize("cls", METHODS)
def test_registered_under_its_name_with_a_summary(cls):
    assert registry.methods.get(cls.name) is cls
    assert cls.summary().split(" (")[0] in {"MoCo v2", "MoCo v3", "BYOL"}


@pytest.mark.parametrize("cls", METHODS)
def test_target_starts_equal_registered_and_outside_the_optimizer(cls):
    method = build(cls)
    target, online = target_of(method), online_of(method)
    for (name, t), o in zip(target.state_dict().items(), online.state_dict().values(),
                            strict=True):
        assert torch.equal(t, o), name
    assert target in list(method.modules())  # registered, so state_dict and .to() reach it
    assert all(not p.requires_grad for p in target.parameters())
    trainable = {id(p) for g in default_param_groups(method, True) for p in g["params"]}
    assert trainable.isdisjoint(id(p) for p in target.parameters())
    assert {id(p) for p in online.parameters()} <= trainable
    method.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in target.parameters())
    x = two_views()[0].double()
    torch.testing.assert_close(method.features(x), method.backbone(x))


@pytest.mark.parametrize("cls", METHODS)
def test_the_optimizer_step_alone_does_not_touch_the_target(cls):
    method = build(cls)
    target, online = target_of(method), online_of(method)
    before_target = [p.clone() for p in target.parameters()]
    before_online = [p.detach().clone() for p in online.parameters()]
    sgd_step(method, two_views())
    assert all(p.grad is None for p in target.parameters())
    assert all(torch.equal(p, b) for p, b in zip(target.parameters(), before_target,
                                                  strict=True))
    assert any(not torch.equal(p, b) for p, b in zip(online.parameters(), before_online,
                                                      strict=True))


@pytest.mark.parametrize("step", [0, 3, 7])
@pytest.mark.parametrize("cls", METHODS)
def test_after_step_moves_the_target_by_one_minus_momentum(cls, step):
    method = build(cls)
    target, online = target_of(method), online_of(method)
    sgd_step(method, two_views())
    # One step moves the online network too little to measure 1 - m = 1e-3 in float32.
    perturb(online)
    before = [p.clone() for p in target.parameters()]
    online_now = [p.detach().clone() for p in online.parameters()]
    method.after_step(step)
    assert_moved(target, before, online_now, expected_momentum(method, step))
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        assert torch.equal(t, o)  # BatchNorm statistics are copied


@pytest.mark.parametrize("cls", SCHEDULED)
def test_logged_momentum_follows_the_cosine_schedule(cls):
    method = build(cls)
    views = two_views()
    seen = []
    for step in range(TOTAL + 1):
        with torch.no_grad():
            seen.append(method.loss(views, BATCH)["momentum"].item())
        method.after_step(step)
    assert seen == pytest.approx([expected_momentum(method, s) for s in range(TOTAL + 1)])
    assert seen[0] == pytest.approx(method.cfg.momentum_base) and seen[-1] == 1.0
    assert seen == sorted(seen)


@pytest.mark.parametrize("cls", SCHEDULED)
def test_zero_total_steps_keeps_the_base_momentum(cls):
    method = build(cls, total_steps=0)
    target, online = target_of(method), online_of(method)
    perturb(online)
    before = [p.clone() for p in target.parameters()]
    online_now = [p.detach().clone() for p in online.parameters()]
    method.after_step(5)
    assert_moved(target, before, online_now, method.cfg.momentum_base)
    assert method.loss(two_views(), BATCH)["momentum"].item() == pytest.approx(
        method.cfg.momentum_base)


@pytest.mark.parametrize("symmetric", [False, True])
def test_moco_v2_enqueues_the_keys_of_the_step_after_it(symmetric):
    method = build(MoCoV2, symmetric=symmetric)
    method.queue.push(F.normalize(torch.randn(8, 16), dim=1))  # move the pointer off 0
    views = two_views()
    with torch.no_grad():  # train-mode BatchNorm: the same keys loss() computes
        k1, k2 = (method.momentum_encoder(v) for v in views)
    ptr, before = int(method.queue.ptr), method.queue.keys.clone()
    sgd_step(method, views)
    assert torch.equal(method.queue.keys, before), "the step's own keys must not be negatives"
    method.after_step(0)
    new = F.normalize(torch.cat([k1, k2] if symmetric else [k2]), dim=1)
    n = len(new)
    torch.testing.assert_close(method.queue.keys[ptr:ptr + n], new)
    assert int(method.queue.ptr) == ptr + n
    assert torch.equal(method.queue.keys[:ptr], before[:ptr])
    assert torch.equal(method.queue.keys[ptr + n:], before[ptr + n:])
    method.after_step(1)  # no new loss: nothing more to enqueue
    assert int(method.queue.ptr) == ptr + n


@pytest.mark.parametrize("cls", METHODS)
def test_a_bf16_autocast_step(cls):
    method = build(cls)
    optimizer = torch.optim.SGD(default_param_groups(method, False), lr=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.loss(two_views(), BATCH)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    optimizer.step()
    method.after_step(0)
    assert all(p.dtype == torch.float32 for p in target_of(method).parameters())
    if isinstance(method, MoCoV2):
        assert method.queue.keys.dtype == torch.float32 and int(method.queue.ptr) == 16


def test_moco_v2_state_dict_carries_the_queue():
    method = build(MoCoV2)
    sgd_step(method, two_views())
    method.after_step(0)
    state = method.state_dict()
    assert {"queue.keys", "queue.ptr"} <= set(state)
    assert any(k.startswith("momentum_encoder.") for k in state)
    fresh = build(MoCoV2)
    assert not torch.equal(fresh.queue.keys, method.queue.keys)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.queue.keys, method.queue.keys)
    assert torch.equal(fresh.queue.ptr, method.queue.ptr)


def by_hand(method, views) -> torch.Tensor:
    """Each method's loss from its parts and the loss functions, written out."""
    v1, v2 = views
    t = getattr(method.cfg, "temperature", None)
    if isinstance(method, MoCoV2):
        def term(a, b):
            q = method.projector(method.backbone(a))
            return info_nce(q, method.momentum_encoder(b), t, negatives=method.queue.keys)
        return term(v1, v2) + term(v2, v1) if method.cfg.symmetric else term(v1, v2)
    q1, q2 = (method.predictor(method.projector(method.backbone(v))) for v in views)
    k1, k2 = (target_of(method)(v) for v in views)
    if isinstance(method, MoCoV3):
        return 2 * t * (info_nce(q1, k2, t) + info_nce(q2, k1, t))
    return normalized_mse(q1, k2) + normalized_mse(q2, k1)


@pytest.mark.parametrize(("cls", "overrides"), [
    (MoCoV2, {}), (MoCoV2, {"symmetric": True}), (MoCoV3, {"temperature": 0.3}), (BYOL, {}),
])
def test_loss_is_the_loss_function_of_the_heads_outputs(cls, overrides):
    method = build(cls, **overrides)
    perturb(online_of(method), scale=0.1)  # so that online and target differ
    views = two_views()
    out = method.loss(views, BATCH)
    with torch.no_grad():
        expected = by_hand(method, views)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(not v.requires_grad for k, v in out.items() if k != "loss")


def make(cls, epochs: int, **overrides):
    """The trainer's test setup (tests/test_train.py) with a small method config.

    The views are the images themselves: under the simclr augmentation two views of these
    random-noise images share too little for a few steps to learn from (SimCLR stays near
    chance there too), while identical views leave instance discrimination to be learnt.
    """
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                          {"epochs": epochs, "batch_size": 16, "warmup_epochs": 1,
                           "optimizer": {"name": "adam", "lr": 0.01}})
    method = build(cls, total_steps=4 * epochs, **overrides)
    setup = TrainSetup(images=images, augment=Augmenter("none", 8), cfg=cfg, seed=3,
                       prepare=Normalizer(*channel_stats(images), torch.device("cpu")),
                       device=torch.device("cpu"))
    return method, setup


# MoCo v2: a key encoder at m = 0.999 would hardly move in 24 steps; a queue of 32 keys holds
# real keys from the third step on (before, its random initial keys are easy negatives, so the
# first epoch's loss is low and the comparison starts at the second).
@pytest.mark.parametrize(("cls", "overrides", "first"), [
    (MoCoV2, {"queue_size": 32, "momentum": 0.99}, 1), (MoCoV3, {}, 0), (BYOL, {}, 0),
])
def test_short_training_lowers_the_loss_and_is_deterministic(cls, overrides, first):
    a, setup = make(cls, 6, **overrides)
    result = train(a, setup)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.9 * losses[first], losses
    if cls in SCHEDULED:
        assert result.history[-1]["momentum"] > result.history[0]["momentum"]
    b, setup = make(cls, 6, **overrides)
    again = train(b, setup)
    assert [h["loss"] for h in again.history] == losses
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
