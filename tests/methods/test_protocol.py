"""Built-in methods pass check_method; check_method catches broken methods with clear advice."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from crlbench import Method, registry
from crlbench.errors import MethodCheckError
from crlbench.methods.losses import nt_xent
from crlbench.testing import check_method

BUILTINS = [e.name for e in registry.methods.entries() if e.package == "crlbench"]


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_method_passes_check_method(name):
    check_method(registry.methods.get(name), data_parallel=False)  # tests/test_distributed.py


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_method_passes_on_grayscale(name):
    cls = registry.methods.get(name)
    if cls.input_channels is not None and 1 not in cls.input_channels:
        pytest.skip(f"{name} needs colour; the suite refuses grayscale data for it")
    check_method(cls, channels=1, data_parallel=False)


def test_builtins_are_all_registered():
    assert set(BUILTINS) == {"raw", "simclr", "moco_v2", "moco_v3", "byol", "swav", "vicreg",
                             "npid", "cmc", "deepcluster", "pica", "cc", "rcc", "c2bin", "cueco"}


def test_nt_xent_against_a_loop_over_anchors():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(10):
        j = (i + 5) % 10
        logits = torch.stack([z[i] @ z[k] / 0.2 for k in range(10) if k != i])
        pos = [k for k in range(10) if k != i].index(j)
        total += -torch.log_softmax(logits, 0)[pos].item()
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(total / 10, rel=1e-5)


def test_nt_xent_is_invariant_to_scale_and_decreases_with_alignment():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(8, 16, generator=gen)
    noisy = a + 0.5 * torch.randn(8, 16, generator=gen)
    assert nt_xent(a, noisy, 0.5).item() == pytest.approx(nt_xent(3 * a, noisy, 0.5).item())
    assert nt_xent(a, a, 0.5) < nt_xent(a, noisy, 0.5)


# Broken methods, each with the advice check_method must give.

class _Base(Method):
    name = "broken"

    @dataclass
    class Config:
        pass

    def __init__(self, backbone, ctx, cfg):
        super().__init__(backbone, ctx, cfg)
        self.head = torch.nn.Linear(ctx.feature_dim, 4)

    def loss(self, views, batch):
        return {"loss": self.head(self.backbone(views[0])).pow(2).mean()}


class NoLossKey(_Base):
    def loss(self, views, batch):
        return {"total": super().loss(views, batch)["loss"]}


class NotFinite(_Base):
    def loss(self, views, batch):
        return {"loss": super().loss(views, batch)["loss"] * float("nan")}


class Detached(_Base):
    def loss(self, views, batch):
        return {"loss": super().loss(views, batch)["loss"].detach()}


class WrongHead(_Base):
    def cluster_logits(self, feats):
        return torch.zeros(len(feats), 7)


class NoDefaults(_Base):
    @dataclass
    class Config:
        temperature: float


class Unnamed(_Base):
    name = ""


class DropsBackbone(_Base):
    def __init__(self, backbone, ctx, cfg):
        super().__init__(torch.nn.Flatten(), ctx, cfg)


class StateOutsideModule(_Base):
    def __init__(self, backbone, ctx, cfg):
        super().__init__(backbone, ctx, cfg)
        self.scale = torch.randn(1)  # a plain attribute: not saved in state_dict

    def features(self, images):
        return self.backbone(images) * self.scale

    def after_step(self, step):
        self.scale = self.scale + 1


@pytest.mark.parametrize(("cls", "expected"), [
    (NoLossKey, "loss() returned a dict without 'loss'"),
    (NotFinite, "loss is not finite on a random batch"),
    (Detached, "loss has no gradient"),
    (WrongHead, "cluster_logits returns 7 columns but ctx.num_clusters is 4"),
    (NoDefaults, "Config fields without a default: temperature"),
    (Unnamed, "set the class attribute `name`"),
    (DropsBackbone, "must keep the backbone it is given"),
    (StateOutsideModule, "features differ after a state_dict round trip"),
])
def test_check_method_says_what_is_wrong(cls, expected):
    with pytest.raises(MethodCheckError) as info:
        check_method(cls)
    assert expected in str(info.value)


def test_check_method_accepts_a_correct_head():
    class GoodHead(_Base):
        kept_state = ("backbone", "head")

        def cluster_logits(self, feats):
            return [self.head(feats), torch.zeros(len(feats), 16)]

    check_method(GoodHead)


def test_check_method_refuses_a_head_that_kept_state_leaves_out():
    class UnkeptHead(_Base):  # kept_state stays ("backbone",): the head would not be kept
        def cluster_logits(self, feats):
            return self.head(feats)

    with pytest.raises(MethodCheckError, match=r"read state that kept_state \('backbone',\) "
                                               "leaves out: add its name"):
        check_method(UnkeptHead)

    class MisNamed(_Base):
        kept_state = ("backbone", "heads")

    with pytest.raises(MethodCheckError, match="kept_state names heads, which the method's "
                                               "state dict does not hold"):
        check_method(MisNamed)


def test_check_method_refuses_features_that_read_unkept_buffers():
    class Centred(_Base):
        def __init__(self, backbone, ctx, cfg):
            super().__init__(backbone, ctx, cfg)
            self.register_buffer("centre", torch.zeros(ctx.feature_dim))

        def features(self, images):
            return self.backbone(images) - self.centre

    with pytest.raises(MethodCheckError, match="leaves out"):
        check_method(Centred)
    Centred.kept_state = ("backbone", "centre")
    check_method(Centred)


def test_make_context_defaults_and_derived_fields():
    from crlbench.testing import make_context

    ctx = make_context()
    assert (ctx.feature_dim, ctx.num_classes, ctx.num_clusters, ctx.dataset_size) == (32, 4, 4, 64)
    assert (ctx.steps_per_epoch, ctx.epochs, ctx.total_steps) == (4, 2, 8)
    assert (ctx.image_size, ctx.channels, ctx.device.type, ctx.seed) == (8, 1, "cpu", 0)
    # num_clusters follows num_classes, total_steps the schedule, unless given
    ctx = make_context(num_classes=10, epochs=5, steps_per_epoch=3)
    assert (ctx.num_clusters, ctx.total_steps) == (10, 15)
    assert make_context(num_classes=10, num_clusters=20, total_steps=7).num_clusters == 20
