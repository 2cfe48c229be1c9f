"""The trainer: optimisers, schedule, checkpoint/resume equality, non-finite losses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from crlbench import Method
from crlbench.augment import Augmenter
from crlbench.backbones import TinyConvNet
from crlbench.config import TrainConfig
from crlbench.errors import NonFiniteLoss
from crlbench.methods.simclr import SimCLR
from crlbench.optim import LARS, scaled_lr, warmup_cosine
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.testing import make_context
from crlbench.train import CHECKPOINT_NAME, TrainSetup, train


def make(cls=SimCLR, epochs=3, tmp: Path | None = None, **train_overrides):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                          {"epochs": epochs, "batch_size": 16, "warmup_epochs": 1,
                           "optimizer": {"name": "sgd", "lr": 0.5}, **train_overrides})
    ctx = make_context(epochs=epochs)
    method = cls(TinyConvNet(1, 8), ctx, cls.Config())
    setup = TrainSetup(images=images, augment=Augmenter("simclr", 8), cfg=cfg, seed=3,
                       prepare=Normalizer(*channel_stats(images), torch.device("cpu")),
                       device=torch.device("cpu"), checkpoint_dir=tmp)
    return method, setup


def test_training_reduces_the_loss_and_logs_history():
    method, setup = make(epochs=6, optimizer={"name": "adam", "lr": 0.01})
    result = train(method, setup)
    assert len(result.history) == 6 and result.steps == 24
    assert set(result.history[0]) == {"loss", "lr", "seconds"}
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.samples_per_s > 0


def test_same_seed_same_weights_on_cpu():
    a, setup_a = make()
    b, setup_b = make()
    train(a, setup_a)
    train(b, setup_b)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


class Interrupt(Exception):
    pass


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path: Path):
    full, setup = make(epochs=3)
    ref = train(full, setup)

    method, setup = make(epochs=3, tmp=tmp_path)

    def stop_after_two(epoch, epochs, terms):
        if epoch == 2:
            raise Interrupt

    setup.on_epoch = stop_after_two
    with pytest.raises(Interrupt):
        train(method, setup)
    assert (tmp_path / CHECKPOINT_NAME).is_file()

    resumed, setup = make(epochs=3, tmp=tmp_path)
    result = train(resumed, setup)
    assert result.resumed_from_epoch == 2
    assert [h["loss"] for h in result.history] == [h["loss"] for h in ref.history]
    for (name, x), y in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


class Exploding(SimCLR):
    name = "exploding"

    def loss(self, views, batch):
        out = super().loss(views, batch)
        if self.training and self.calls == 5:
            out["loss"] = out["loss"] * float("inf")
        self.calls += 1
        return out

    calls = 0


def test_non_finite_loss_stops_with_step_and_terms():
    method, setup = make(cls=Exploding)
    with pytest.raises(NonFiniteLoss) as info:
        train(method, setup)
    assert info.value.step == 5
    assert math.isinf(info.value.terms["loss"])
    assert "non-finite loss at step 5" in str(info.value)


class Terms(Method):
    name = "terms"

    @dataclass
    class Config:
        pass

    def __init__(self, backbone, ctx, cfg):
        super().__init__(backbone, ctx, cfg)
        self.steps_seen = []
        self.epochs_seen = []

    def loss(self, views, batch):
        a = self.backbone(views[0]).pow(2).mean()
        b = self.backbone(views[1]).abs().mean()
        return {"loss": a + b, "a": a, "b": b}

    def before_epoch(self, epoch, loader):
        self.epochs_seen.append((epoch, sum(len(idx) for _, idx in loader)))

    def after_step(self, step):
        self.steps_seen.append(step)


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adam", "adamw"])
def test_every_optimizer_trains_and_hooks_run(optimizer):
    method, setup = make(cls=Terms, epochs=2, optimizer={"name": optimizer, "lr": 0.01})
    before = [p.clone() for p in method.parameters()]
    result = train(method, setup)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.parameters(), strict=True))
    assert set(result.history[0]) == {"loss", "a", "b", "lr", "seconds"}
    assert result.history[0]["loss"] == pytest.approx(
        result.history[0]["a"] + result.history[0]["b"], rel=1e-5)
    assert method.steps_seen == list(range(8))
    assert method.epochs_seen == [(0, 64), (1, 64)]


def test_warmup_then_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2, min_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0)
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8))
    assert lrs[6] == pytest.approx(mid)
    assert lrs == sorted(lrs[:2]) + sorted(lrs[2:], reverse=True)


def test_lr_scaling():
    assert scaled_lr(0.3, 512, "linear") == pytest.approx(0.6)
    assert scaled_lr(0.3, 1024, "sqrt") == pytest.approx(0.6)
    assert scaled_lr(0.3, 512, "none") == 0.3


def test_lars_scales_the_update_by_the_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    w.grad = torch.tensor([0.0, 0.1])  # ||g|| = 0.1
    opt = LARS([w], lr=1.0, momentum=0.0, weight_decay=0.0, eta=0.02)
    opt.step()
    trust = 0.02 * 5 / 0.1
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0 - trust * 0.1]))


def test_compile_flag_compiles_the_backbone(monkeypatch):
    # Inductor takes ~30 s on 2 cores, so the wiring is checked here and the real compile by
    # `crlbench run ... train.compile=true` on a GPU; state_dict keys must stay unprefixed.
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append(self))
    method, setup = make(epochs=1, compile=True)
    train(method, setup)
    assert compiled == [method.backbone]
    assert all(not k.startswith("_orig_mod") for k in method.state_dict())
