"""Colour-space conversion for methods whose views are colour channels (CMC's L and ab).

`rgb_to_lab` maps sRGB in [0, 1] to CIE L*a*b* under the D65 white point: the sRGB transfer
curve is undone (IEC 61966-2-1), linear RGB goes to XYZ with the sRGB primaries' matrix, and
XYZ goes to Lab with the CIE 1976 formulas. Constants are Bruce Lindbloom's (the same as
skimage.color.rgb2lab to the fourth decimal of Lab).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Linear sRGB -> XYZ, D65 (rows X, Y, Z).
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)
_DELTA = 6 / 29  # CIE 1976: f is a cube root above DELTA^3 and linear below


def srgb_to_linear(rgb: Tensor) -> Tensor:
    """Undo the sRGB transfer curve of values in [0, 1]."""
    return torch.where(rgb <= 0.04045, rgb / 12.92,
                       ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def _lab_f(t: Tensor) -> Tensor:
    return torch.where(t > _DELTA**3, t.clamp_min(_DELTA**3) ** (1 / 3),
                       t / (3 * _DELTA**2) + 4 / 29)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB images [..., 3, H, W] with values in [0, 1] (clamped) to Lab [..., 3, H, W].

    L is in [0, 100]; a and b lie within about [-87, 99] and [-108, 95] for sRGB colours.
    Computed in float32 whatever the input dtype.
    """
    if rgb.ndim < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"rgb_to_lab needs images [..., 3, H, W], got {tuple(rgb.shape)}")
    lin = srgb_to_linear(rgb.float().clamp(0, 1)).unbind(dim=-3)
    # Weighted sums rather than a matmul, so that autocast leaves them in float32.
    x, y, z = (
        _lab_f(sum(w * c for w, c in zip(row, lin, strict=True)) / white)
        for row, white in zip(_RGB_TO_XYZ, _D65_WHITE, strict=True)
    )
    return torch.stack([116 * y - 16, 500 * (x - y), 200 * (y - z)], dim=-3)
