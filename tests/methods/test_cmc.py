"""CMC: protocol, Lab conversion, the L/ab split, loss wiring, and a short training run."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from crlbench.augment import Augmenter
from crlbench.backbones import TinyConvNet
from crlbench.config import TrainConfig
from crlbench.errors import UserError
from crlbench.methods.cmc import CMC, other_indices, sample_other_indices
from crlbench.methods.color import rgb_to_lab, srgb_to_linear
from crlbench.methods.losses import info_nce, nce, spring, triplet_margin
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.protocol import Batch, RunContext
from crlbench.suite import method_config
from crlbench.testing import check_method, make_context
from crlbench.train import TrainSetup, train

LOSSES = ["softmax", "nce", "triplet", "spring"]
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def context(channels: int = 3, **overrides) -> RunContext:
    return make_context(**{"channels": channels, "input_mean": MEAN[:channels],
                           "input_std": STD[:channels], **overrides})


def build(**cfg) -> CMC:
    torch.manual_seed(0)
    return CMC(TinyConvNet(3, 8), context(), CMC.Config(**cfg))


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def random_rgb(n: int = 8, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# Protocol and construction

@pytest.mark.parametrize("loss", LOSSES)
def test_check_method_passes_for_each_loss(loss):
    check_method(CMC, config={"loss": loss}, channels=3, data_parallel=False)


def test_accepts_only_rgb():
    assert CMC.input_channels == (3,)
    with pytest.raises(ValueError, match="needs 3 input channels; this dataset has 1"):
        CMC(TinyConvNet(1, 8), context(channels=1), CMC.Config())


def test_unknown_loss_and_bad_values_are_refused_before_any_run():
    with pytest.raises(ValueError, match="loss must be one of softmax, nce, triplet, spring, "
                                         "got 'infonce'"):
        CMC(TinyConvNet(3, 8), context(), CMC.Config(loss="infonce"))
    for key, value, expected in [("loss", "infonce", "loss must be one of"),
                                 ("temperature", -0.1, "temperature must be positive"),
                                 ("nce_negatives", 0, "nce_negatives must be positive"),
                                 ("spring_margin", -1.0, "spring_margin must be at least 0")]:
        with pytest.raises(UserError, match=f"method_cfg.cmc: {expected}"):
            method_config("cmc", {key: value})


def test_missing_input_normalisation_is_refused():
    with pytest.raises(ValueError, match="input_mean and ctx.input_std"):
        CMC(TinyConvNet(3, 8), context(input_mean=(), input_std=()), CMC.Config())


def test_the_two_encoders_share_no_parameters():
    method = build()
    ids_l = {id(p) for p in method.backbone.parameters()}
    assert not ids_l & {id(p) for p in method.backbone_ab.parameters()}


# Lab conversion

# Bruce Lindbloom's sRGB (D65) values, published to 4 decimals; mid grey is sRGB 0.5, whose
# linear value ((0.5 + 0.055) / 1.055) ** 2.4 = 0.214041 gives L = 116 * 0.214041^(1/3) - 16.
LAB_REFERENCE = [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
]


@pytest.mark.parametrize(("rgb", "lab"), LAB_REFERENCE)
def test_rgb_to_lab_matches_reference_values_within_1e_3(rgb, lab):
    image = torch.tensor(rgb).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = rgb_to_lab(image)
    assert out.shape == (2, 3, 4, 4)
    assert torch.allclose(out, torch.tensor(lab).view(1, 3, 1, 1).expand_as(out), atol=1e-3)


def test_rgb_to_lab_clamps_to_the_unit_range_and_checks_its_input():
    assert torch.equal(rgb_to_lab(torch.full((1, 3, 2, 2), 1.7)),
                       rgb_to_lab(torch.ones(1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, H, W\]"):
        rgb_to_lab(torch.rand(1, 1, 4, 4))


# The L / ab split

def same_luminance_gray(rgb: torch.Tensor) -> torch.Tensor:
    """A gray image whose CIE Y (hence L) equals that of `rgb` at every pixel."""
    r, g, b = srgb_to_linear(rgb).unbind(1)
    y = (0.2126729 * r + 0.7151522 * g + 0.0721750 * b).clamp(0, 1)
    gray = torch.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055)
    return gray[:, None].expand(-1, 3, -1, -1)


def test_split_undoes_the_normalisation_and_zeroes_the_other_view():
    method = build()
    rgb = random_rgb()
    x_l, x_ab = method.split(normalise(rgb))
    lab = rgb_to_lab(rgb)
    assert torch.allclose(x_l[:, 0], lab[:, 0] / 100, atol=1e-5)
    assert torch.allclose(x_ab[:, 1:], lab[:, 1:] / 110, atol=1e-5)
    assert (x_l[:, 1:] == 0).all() and (x_ab[:, 0] == 0).all()


def test_the_l_encoder_sees_only_luminance():
    method = build().eval()
    colour = random_rgb()
    gray = same_luminance_gray(colour)
    assert not torch.allclose(colour, gray, atol=0.05)  # really a different colour
    with torch.no_grad():
        (l1, ab1), (l2, ab2) = (method.split(normalise(x)) for x in (colour, gray))
        assert torch.allclose(method.backbone(l1), method.backbone(l2), atol=1e-5)
        assert not torch.allclose(method.backbone_ab(ab1), method.backbone_ab(ab2), atol=1e-3)


def test_features_concatenate_both_encoders_at_twice_the_backbone_width():
    method = build().eval()
    x = normalise(random_rgb())
    with torch.no_grad():
        for p in method.backbone_ab.parameters():  # the copy starts equal: tell them apart
            p.add_(0.1 * torch.randn_like(p))
        feats = method.features(x)
        x_l, x_ab = method.split(x)
        expected = torch.cat([method.backbone(x_l), method.backbone_ab(x_ab)], dim=1)
    assert feats.shape == (8, 2 * method.ctx.feature_dim)
    assert torch.allclose(feats, expected)


# Loss wiring: each loss equals the loss function applied by hand to the projections

def others_by_loop(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([z[[j for j in range(len(z)) if j != i]] for i in range(len(z))])


def hand_loss(loss: str, z_l, z_ab, cfg, dataset_size: int, seed: int):
    if loss == "softmax":
        return info_nce(z_l, z_ab, 0.07), info_nce(z_ab, z_l, 0.07)
    if loss == "nce":
        torch.manual_seed(seed)  # replay the method's two draws: ab noise, then L noise
        b, m = len(z_l), cfg.nce_negatives
        rows = torch.arange(b)[:, None]
        noise_ab = (rows + torch.randint(1, b, (b, m))) % b
        noise_l = (rows + torch.randint(1, b, (b, m))) % b
        pos = (z_l * z_ab).sum(1)
        return (nce(pos, (z_l[:, None] * z_ab[noise_ab]).sum(-1), 0.07, dataset_size),
                nce(pos, (z_ab[:, None] * z_l[noise_l]).sum(-1), 0.07, dataset_size))
    fn, margin = ((triplet_margin, cfg.triplet_margin) if loss == "triplet"
                  else (spring, cfg.spring_margin))
    return (fn(z_l, z_ab, others_by_loop(z_ab), margin),
            fn(z_ab, z_l, others_by_loop(z_l), margin))


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_is_the_loss_function_on_the_projections(loss):
    # A small triplet margin leaves some hinges inactive; with all of them active the two
    # directions would be equal (the mean over all off-diagonal pairs either way).
    method = build(loss=loss, nce_negatives=32, triplet_margin=0.05)
    x = normalise(random_rgb())
    batch = Batch(indices=torch.arange(8))
    torch.manual_seed(7)
    out = method.loss([x], batch)
    with torch.no_grad():
        z_l, z_ab = method.embed(x)
    l_to_ab, ab_to_l = hand_loss(loss, z_l, z_ab, method.cfg, method.ctx.dataset_size, seed=7)
    if loss != "spring":  # spring over all in-batch negatives is symmetric in L and ab
        assert not torch.isclose(l_to_ab, ab_to_l, rtol=1e-4)  # the directions are told apart
    assert torch.isclose(out["loss_l_to_ab"], l_to_ab, rtol=1e-5)
    assert torch.isclose(out["loss_ab_to_l"], ab_to_l, rtol=1e-5)
    assert torch.isclose(out["loss"], l_to_ab + ab_to_l, rtol=1e-5)  # the study's sum


def test_nce_fixes_its_two_normalisers_from_the_first_training_batch():
    method = build(loss="nce", nce_negatives=32)
    x = normalise(random_rgb())
    batch = Batch(indices=torch.arange(8))
    assert method.z_l_to_ab.value == 0 and method.z_ab_to_l.value == 0
    method.eval()
    method.loss([x], batch)
    assert method.z_l_to_ab.value == 0  # scoring in eval mode estimates, but keeps nothing
    method.train()
    method.loss([x], batch)
    z1, z2 = method.z_l_to_ab.value.clone(), method.z_ab_to_l.value.clone()
    assert z1 > 0 and z2 > 0 and z1 != z2
    method.loss([normalise(random_rgb(seed=5))], batch)
    assert method.z_l_to_ab.value == z1 and method.z_ab_to_l.value == z2
    assert {"z_l_to_ab.value", "z_ab_to_l.value"} <= set(method.state_dict())


@pytest.mark.parametrize("loss", ["triplet", "spring"])
def test_squared_distances_switch_to_the_squared_forms(loss):
    method = build(loss=loss, squared_distances=True)
    x = normalise(random_rgb())
    out = method.loss([x], Batch(indices=torch.arange(8)))
    with torch.no_grad():
        z_l, z_ab = method.embed(x)
    fn, margin = ((triplet_margin, method.cfg.triplet_margin) if loss == "triplet"
                  else (spring, method.cfg.spring_margin))
    expected = (fn(z_l, z_ab, others_by_loop(z_ab), margin, squared=True)
                + fn(z_ab, z_l, others_by_loop(z_l), margin, squared=True))
    assert torch.isclose(out["loss"], expected, rtol=1e-5)
    plain = build(loss=loss).loss([x], Batch(indices=torch.arange(8)))["loss"]
    assert not torch.isclose(out["loss"], plain)


def test_positive_pairs_are_the_normalised_l_and_ab_embeddings():
    method = build().eval()
    x = normalise(random_rgb())
    with torch.no_grad():
        a, b = method.positive_pairs(x)
        z_l, z_ab = method.embed(x)
    assert torch.equal(a, z_l) and torch.equal(b, z_ab)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(len(a)))


def test_embeddings_are_unit_projections_of_each_encoder():
    method = build().eval()
    x = normalise(random_rgb())
    with torch.no_grad():
        z_l, z_ab = method.embed(x)
        x_l, x_ab = method.split(x)
        raw_l = method.proj_l(method.backbone(x_l))
        raw_ab = method.proj_ab(method.backbone_ab(x_ab))
    assert z_l.shape == z_ab.shape == (8, 128)
    assert torch.allclose(z_l.norm(dim=1), torch.ones(8), atol=1e-5)
    assert torch.allclose(z_l, raw_l / raw_l.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(z_ab, raw_ab / raw_ab.norm(dim=1, keepdim=True), atol=1e-6)


def test_negative_indices_never_hit_the_positive():
    rows = torch.arange(6)[:, None]
    every = other_indices(6)
    assert every.shape == (6, 5)
    assert (every.sort(dim=1).values == torch.tensor(
        [[j for j in range(6) if j != i] for i in range(6)])).all()
    torch.manual_seed(0)
    drawn = sample_other_indices(6, 500)
    assert drawn.shape == (6, 500) and (drawn != rows).all()
    assert all(set(drawn[i].tolist()) == set(range(6)) - {i} for i in range(6))


# Training

def make(loss: str = "softmax", epochs: int = 3, seed: int = 3, **train_overrides):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                          {"epochs": epochs, "batch_size": 16, "warmup_epochs": 1,
                           "optimizer": {"name": "sgd", "lr": 0.5}, **train_overrides})
    mean, std = channel_stats(images)
    ctx = make_context(epochs=epochs, channels=3, input_mean=tuple(mean),
                       input_std=tuple(std))
    method = CMC(TinyConvNet(3, 8), ctx, CMC.Config(loss=loss, nce_negatives=64))
    setup = TrainSetup(images=images, augment=Augmenter("simclr", 8), cfg=cfg, seed=seed,
                       prepare=Normalizer(mean, std, torch.device("cpu")),
                       device=torch.device("cpu"))
    return method, setup


def test_training_lowers_the_softmax_loss_and_logs_both_directions():
    method, setup = make(epochs=6, optimizer={"name": "adam", "lr": 0.01})
    history = train(method, setup).history
    assert {"loss", "loss_l_to_ab", "loss_ab_to_l"} <= set(history[0])
    assert history[-1]["loss"] < history[0]["loss"] - 0.1


@pytest.mark.parametrize("loss", ["softmax", "nce"])
def test_training_is_deterministic_for_a_seed(loss):
    runs = [make(loss) for _ in range(2)] + [make(loss, seed=4)]
    for method, setup in runs:
        train(method, setup)
    (a, _), (b, _), (c, _) = runs
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.proj_l.weight, c.proj_l.weight)  # the seed matters


def test_config_defaults():
    assert dataclasses.asdict(CMC.Config()) == {
        "loss": "softmax", "temperature": 0.07, "feat_dim": 128, "nce_negatives": 4096,
        "triplet_margin": 0.5, "spring_margin": 1.0, "squared_distances": False}
    assert CMC.summary().startswith("CMC (Tian et al. 2019):")
    assert CMC.num_views == 1
