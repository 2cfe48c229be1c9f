"""Tests of crlbench.augment: per-sample randomness, reproducibility, torchvision semantics.

Reference values come from torchvision.transforms.v2.functional applied image by image. Float
tolerances: 1e-6 for the blends, grayscale and blur (the same arithmetic, in a different order);
1e-5 for hue (a different but exact RGB<->HSV formulation) and for the crop (grid_sample's
sampling positions come from an affine map in normalised coordinates, rounded differently).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from omegaconf import OmegaConf

from crlbench.augment import FAMILIES, Augmenter, ViewParams, ops, params
from crlbench.config import AugmentConfig
from crlbench.errors import UserError

ATOL = 1e-6
HUE_ATOL = 1e-5
GEOMETRY_ATOL = 1e-5


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), generator=gen(seed), dtype=torch.uint8)


def floats(n: int, c: int = 3, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=gen(seed))


def changed(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per image: does `out` differ from `ref`?"""
    return (out - ref).abs().flatten(1).amax(dim=1) > 1e-4


# Everything off except the op under test (crop_min 1 on a square image is the whole image).
ALL_OFF = {"crop_min": 1.0, "flip_p": 0.0, "jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0,
           "solarize_p": 0.0}


# ---------------------------------------------------------------- per sample, reproducible


@pytest.mark.parametrize(
    ("family", "overrides"),
    [
        ("simclr", None),
        ("byol", None),
        ("crop", None),  # geometry alone
        ("simclr", {**ALL_OFF, "jitter_p": 1.0}),  # colour jitter alone
        ("none", {"blur_p": 1.0}),  # blur sigma alone
    ],
)
def test_identical_images_get_different_views(family, overrides):
    batch = images(1, h=16, w=16).expand(12, -1, -1, -1).contiguous()
    (view,) = Augmenter(family, 16, overrides)(batch, 1, gen())
    flat = view.flatten(1)
    distance = torch.cdist(flat, flat) + torch.eye(12) * 1e9
    assert distance.min() > 1e-3, "two images of the batch got the same parameters"


def test_same_seed_same_views_other_seed_other_views():
    aug = Augmenter("byol", 16)
    batch = images(8)
    a = aug(batch, 2, gen(1))
    b = aug(batch, 2, gen(1))
    c = aug(batch, 2, gen(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    assert not torch.equal(a[0], a[1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize(("c", "h", "w", "out"), [(3, 16, 16, 16), (1, 16, 16, 16),
                                                  (3, 12, 20, 8), (1, 20, 12, 24)])
def test_shape_dtype_range(family, c, h, w, out):
    batch = images(6, c=c, h=h, w=w)
    views = Augmenter(family, out)(batch, 3, gen())
    assert len(views) == 3
    for v in views:
        assert v.shape == (6, c, out, out)
        assert v.dtype == torch.float32
        assert torch.isfinite(v).all()
        assert v.min() >= 0.0 and v.max() <= 1.0
    assert torch.equal(batch, images(6, c=c, h=h, w=w)), "the input was modified"


def test_output_is_float32_under_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        views = Augmenter("simclr", 16)(images(4), 1, gen())
    assert views[0].dtype == torch.float32


def test_views_cycle_through_the_family():
    aug = Augmenter("none", 16)
    aug.views = (ViewParams(), ViewParams(flip_p=1.0))
    batch = images(3)
    v0, v1, v2 = aug(batch, 3, gen())
    x = batch.float() / 255
    assert torch.equal(v0, x) and torch.equal(v2, x)
    torch.testing.assert_close(v1, x.flip(-1), atol=GEOMETRY_ATOL, rtol=0)


# ---------------------------------------------------------------- geometry


def test_family_none_is_the_identity():
    batch = images(5, c=3)
    views = Augmenter("none", 16)(batch, 2, gen())
    for v in views:
        assert torch.equal(v, batch.float() / 255)


def test_full_crop_without_flip_is_the_identity():
    x = floats(5, h=16, w=16)
    boxes = params.crop_boxes(5, 16, 16, (1.0, 1.0), (1.0, 1.0), gen())
    assert torch.equal(boxes, torch.tensor([[0.0, 0.0, 16.0, 16.0]]).expand(5, 4))
    torch.testing.assert_close(ops.resized_crop(x, boxes, None, 16), x, atol=GEOMETRY_ATOL,
                               rtol=0)


def test_flip_with_p_one_is_torch_flip():
    batch = images(5)
    (view,) = Augmenter("none", 16, {"flip_p": 1.0})(batch, 1, gen())
    ref = torch.flip(batch.float() / 255, dims=[-1])
    torch.testing.assert_close(view, ref, atol=GEOMETRY_ATOL, rtol=0)


@pytest.mark.parametrize("out", [8, 24])
def test_resized_crop_matches_torchvision(out):
    x = floats(4, h=16, w=20)
    boxes = torch.tensor([[0, 0, 16, 20], [3, 5, 7, 9], [8, 1, 8, 19], [2, 11, 13, 4]]).float()
    flip = torch.tensor([False, True, False, True])
    got = ops.resized_crop(x, boxes, flip, out)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[i], top, left, h, w, [out, out], antialias=False)
        if flip[i]:
            ref = TF.horizontal_flip(ref)
        torch.testing.assert_close(got[i], ref, atol=GEOMETRY_ATOL, rtol=0)


def test_crop_boxes_follow_torchvision_distribution():
    n, height, width, scale, ratio = 4000, 24, 32, (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = params.crop_boxes(n, height, width, scale, ratio, gen())
    top, left, h, w = boxes.unbind(1)
    assert (boxes == boxes.round()).all()
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()

    torch.manual_seed(0)  # torchvision draws from the global generator
    ref = torch.tensor([T.RandomResizedCrop.get_params(torch.zeros(1, height, width), list(scale),
                                                       list(ratio)) for _ in range(n)]).float()
    pairs = [(h * w, ref[:, 2] * ref[:, 3]), ((w / h).log(), (ref[:, 3] / ref[:, 2]).log()),
             (top, ref[:, 0]), (left, ref[:, 1])]
    for got, want in pairs:
        se = math.sqrt((got.var() + want.var()).item() / n)
        assert abs(got.mean() - want.mean()) < 5 * se


@pytest.mark.parametrize(("height", "width", "scale", "ratio"), [
    (16, 16, (0.9, 1.0), (2.0, 3.0)),  # too wide to fit: full width, height from max ratio
    (8, 16, (1.0, 1.0), (1.0, 1.0)),  # non-square with ratio 1: centred square
    (16, 8, (0.95, 1.0), (0.9, 1.1)),
])
def test_crop_boxes_fallback_matches_torchvision(height, width, scale, ratio):
    boxes = params.crop_boxes(50, height, width, scale, ratio, gen())
    ref = T.RandomResizedCrop.get_params(torch.zeros(1, height, width), list(scale), list(ratio))
    assert (boxes == torch.tensor(ref).float()).all()


# ---------------------------------------------------------------- colour, against torchvision


FACTORS = torch.tensor([0.0, 0.3, 0.9, 1.0, 1.4, 2.5])


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(("ours", "theirs"), [
    (ops.adjust_brightness, TF.adjust_brightness),
    (ops.adjust_contrast, TF.adjust_contrast),
    (ops.adjust_saturation, TF.adjust_saturation),
])
def test_blends_match_torchvision(ours, theirs, c):
    x = floats(len(FACTORS), c=c)
    got = ours(x, FACTORS)
    for i, f in enumerate(FACTORS.tolist()):
        torch.testing.assert_close(got[i], theirs(x[i], f), atol=ATOL, rtol=0)


@pytest.mark.parametrize("c", [1, 3])
def test_hue_matches_torchvision(c):
    shifts = torch.tensor([-0.5, -0.3, -0.05, 0.0, 0.1, 0.45])
    x = floats(len(shifts), c=c)
    x[0, :, :3] = 0.5  # grey pixels: hue undefined, must stay grey
    got = ops.adjust_hue(x, shifts)
    for i, s in enumerate(shifts.tolist()):
        torch.testing.assert_close(got[i], TF.adjust_hue(x[i], s), atol=HUE_ATOL, rtol=0)


def test_hsv_round_trip():
    x = floats(4)
    torch.testing.assert_close(ops.hsv_to_rgb(ops.rgb_to_hsv(x)), x, atol=HUE_ATOL, rtol=0)


@pytest.mark.parametrize("c", [1, 3])
def test_grayscale_and_solarize_match_torchvision(c):
    x = floats(3, c=c)
    gray, sol = ops.grayscale(x), ops.solarize(x, 0.5)
    assert gray.shape == x.shape
    for i in range(3):
        torch.testing.assert_close(gray[i], TF.rgb_to_grayscale(x[i], c), atol=ATOL, rtol=0)
        torch.testing.assert_close(sol[i], TF.solarize(x[i], 0.5), atol=0, rtol=0)


@pytest.mark.parametrize(("c", "k"), [(3, 3), (1, 5), (3, 7)])
def test_blur_matches_torchvision(c, k):
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    x = floats(4, c=c, h=10, w=13)
    got = ops.gaussian_blur(x, sigma, k)
    for i, s in enumerate(sigma.tolist()):
        torch.testing.assert_close(got[i], TF.gaussian_blur(x[i], [k, k], [s, s]), atol=ATOL,
                                   rtol=0)


@pytest.mark.parametrize(("side", "k"), [(8, 3), (32, 3), (64, 7), (96, 9), (224, 23)])
def test_blur_kernel_is_a_tenth_of_the_side(side, k):
    assert ops.blur_kernel_size(side) == k


# ---------------------------------------------------------------- probabilities


@pytest.mark.parametrize("key", ["flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"])
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_probabilities_are_per_sample_and_respected(key, p):
    n = 2000
    batch = images(n, h=8, w=8)
    aug = Augmenter("simclr", 8, {**ALL_OFF, key: p})
    # Sigma below about 0.3 leaves an 8-pixel image visibly unchanged: draw only large ones.
    aug.views = tuple(dataclasses.replace(v, blur_sigma=(1.0, 2.0)) for v in aug.views)
    (view,) = aug(batch, 1, gen())
    frac = changed(view, batch.float() / 255).float().mean().item()
    # 2000 Bernoulli(0.5) draws: standard error 0.011, so 0.05 is about 4.5 standard errors.
    assert abs(frac - p) < 0.05, f"{key}={p}: {frac:.3f} of the images changed"


@pytest.mark.parametrize(("key", "reference"), [
    ("gray_p", lambda x: TF.rgb_to_grayscale(x, 3)),
    ("solarize_p", lambda x: TF.solarize(x, 0.5)),
])
def test_deterministic_ops_with_p_one_are_torchvisions(key, reference):
    batch = images(20, h=8, w=8)
    (view,) = Augmenter("none", 8, {key: 1.0})(batch, 1, gen())
    torch.testing.assert_close(view, reference(batch.float() / 255), atol=ATOL, rtol=0)


def test_jitter_factors_stay_in_range():
    # Brightness alone on a constant 0.5 image: the factor is the output / 0.5.
    aug = Augmenter("none", 4)
    aug.views = (ViewParams(brightness=0.4, jitter_p=1.0),)
    batch = torch.full((3000, 3, 4, 4), 100, dtype=torch.uint8)
    (view,) = aug(batch, 1, gen())
    factor = view[:, 0, 0, 0] / (100 / 255)
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5
    assert factor.min() < 0.62 and factor.max() > 1.38 and abs(factor.mean() - 1.0) < 0.02


# ---------------------------------------------------------------- families, overrides, errors


def test_family_values_are_the_papers():
    (simclr,) = FAMILIES["simclr"]
    assert (simclr.brightness, simclr.contrast, simclr.saturation, simclr.hue) == (0.8, 0.8, 0.8,
                                                                                   0.2)
    assert (simclr.jitter_p, simclr.gray_p, simclr.blur_p, simclr.solarize_p) == (0.8, 0.2, 0.5, 0)
    assert simclr.crop_scale == (0.08, 1.0) and simclr.blur_sigma == (0.1, 2.0)
    b1, b2 = FAMILIES["byol"]
    assert (b1.blur_p, b1.solarize_p, b2.blur_p, b2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert (b1.brightness, b1.contrast, b1.saturation, b1.hue) == (0.4, 0.4, 0.2, 0.1)
    assert FAMILIES["none"] == (ViewParams(),)


def test_overrides_apply():
    aug = Augmenter("simclr", 32, {"jitter_strength": 0.5, "crop_min": 0.2, "blur_p": 0.0,
                                   "flip_p": None})
    (v,) = aug.views
    assert v.crop_scale == (0.2, 1.0) and v.blur_p == 0.0 and v.flip_p == 0.5
    assert (v.brightness, v.contrast, v.saturation, v.hue) == pytest.approx((0.4, 0.4, 0.4, 0.1))
    described = aug.describe()
    assert described["family"] == "simclr" and described["blur_kernel_size"] == 3
    assert described["views"][0]["crop_scale"] == [0.2, 1.0]
    assert described["views"][0]["brightness"] == pytest.approx(0.4)

    byol = Augmenter("byol", 32, {"solarize_p": 0.5})
    assert [v.solarize_p for v in byol.views] == [0.5, 0.5]
    assert [v.blur_p for v in byol.views] == [1.0, 0.1]
    assert Augmenter("none", 32, {"crop_min": 0.3}).views[0].crop_scale == (0.3, 1.0)


def test_jitter_strength_zero_leaves_colours_alone():
    batch = images(50, h=8, w=8)
    (view,) = Augmenter("simclr", 8, {**ALL_OFF, "jitter_p": 1.0, "jitter_strength": 0.0})(
        batch, 1, gen())
    assert torch.equal(view, batch.float() / 255)


def test_from_config():
    cfg = OmegaConf.structured(AugmentConfig(family="byol", gray_p=0.0, jitter_strength=2.0))
    aug = Augmenter.from_config(cfg, 24)
    assert aug.out_size == 24 and len(aug.views) == 2
    assert all(v.gray_p == 0.0 and v.hue == pytest.approx(0.2) for v in aug.views)
    assert Augmenter.from_config(OmegaConf.structured(AugmentConfig()), 8).views == FAMILIES[
        "simclr"]


@pytest.mark.parametrize(("family", "overrides", "message"), [
    ("simclrr", None, "unknown augmentation family 'simclrr'; valid families: byol, crop, none"),
    ("simclr", {"blur": 0.5}, "unknown augment override 'blur'; valid keys: blur_p, crop_min"),
    ("simclr", {"flip_p": 1.5}, "augment.flip_p must be a probability in [0, 1]"),
    ("simclr", {"crop_min": 0.0}, "augment.crop_min must be in (0, 1]"),
    ("simclr", {"jitter_strength": -1.0}, "augment.jitter_strength must be >= 0"),
    ("simclr", {"gray_p": "high"}, "augment.gray_p must be a number"),
])
def test_bad_input_raises_user_error(family, overrides, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Augmenter(family, 32, overrides)


def test_bad_images_are_refused():
    aug = Augmenter("simclr", 8)
    with pytest.raises(UserError, match="1 or 3 channels"):
        aug(torch.zeros(2, 2, 8, 8, dtype=torch.uint8), 1, gen())
    with pytest.raises(TypeError, match="uint8"):
        aug(torch.zeros(2, 3, 8, 8), 1, gen())
