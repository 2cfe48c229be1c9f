"""Augmentation families: the per-view parameters of the published pipelines.

Each family is a tuple of `ViewParams`, one per view; asking for more views cycles through it.
Values are the papers' own:

- `simclr`: Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
  Representations", appendix A: random resized crop (0.08, 1) with flip, colour jitter of
  strength s = 1 (brightness, contrast, saturation 0.8 s, hue 0.2 s) with p 0.8, grayscale
  p 0.2, Gaussian blur p 0.5 with sigma in (0.1, 2.0) and a kernel of 10% of the image side.
- `byol`: Grill et al. 2020, "Bootstrap Your Own Latent", table 6: the same crop and flip,
  jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2, and two asymmetric views: blur p 1.0
  and no solarisation, then blur p 0.1 and solarisation p 0.2.
- `crop`: random resized crop and flip only.
- `none`: the identity (the whole image, resized only if out_size differs from its size).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewParams:
    """How one view is drawn. The defaults are the identity."""

    crop_scale: tuple[float, float] | None = None  # area fraction range; None: the whole image
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range, sampled log-uniform
    flip_p: float = 0.0
    brightness: float = 0.0  # factor uniform in [max(0, 1 - b), 1 + b]
    contrast: float = 0.0  # factor uniform in [max(0, 1 - c), 1 + c]
    saturation: float = 0.0  # factor uniform in [max(0, 1 - s), 1 + s]
    hue: float = 0.0  # shift uniform in [-h, h] turns, h <= 0.5
    jitter_p: float = 0.0  # probability of applying the colour jitter to an image
    gray_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


def _simclr(s: float = 1.0) -> ViewParams:
    return ViewParams(
        crop_scale=(0.08, 1.0),
        flip_p=0.5,
        brightness=0.8 * s,
        contrast=0.8 * s,
        saturation=0.8 * s,
        hue=0.2 * s,
        jitter_p=0.8,
        gray_p=0.2,
        blur_p=0.5,
    )


def _byol(blur_p: float, solarize_p: float) -> ViewParams:
    return ViewParams(
        crop_scale=(0.08, 1.0),
        flip_p=0.5,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        jitter_p=0.8,
        gray_p=0.2,
        blur_p=blur_p,
        solarize_p=solarize_p,
    )


FAMILIES: dict[str, tuple[ViewParams, ...]] = {
    "simclr": (_simclr(),),
    "byol": (_byol(blur_p=1.0, solarize_p=0.0), _byol(blur_p=0.1, solarize_p=0.2)),
    "crop": (ViewParams(crop_scale=(0.08, 1.0), flip_p=0.5),),
    "none": (ViewParams(),),
}
