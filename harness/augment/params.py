"""Per-sample random parameters for a batch, drawn in a few batched calls from one generator.

Every function takes the `torch.Generator` explicitly and draws on its device, so a batch on the
GPU never waits for the host and the same seed gives the same parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# torchvision's RandomResizedCrop tries this many boxes before falling back to a centre crop.
CROP_ATTEMPTS = 10


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """`n` float32 draws from U[low, high) on the generator's device."""
    u = torch.rand(n, generator=generator, device=generator.device)
    return low + (high - low) * u


def bernoulli(n: int, p: float, generator: torch.Generator) -> Tensor:
    """`n` booleans, each True with probability `p`."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> Tensor:
    """Random resized crop boxes as float32 [n, 4] rows (top, left, height, width) in pixels.

    The same distribution as torchvision's `RandomResizedCrop.get_params`, vectorised: all ten
    attempts are drawn at once (area fraction uniform in `scale`, aspect ratio log-uniform in
    `ratio`, sides rounded to whole pixels) and each sample keeps its first box that fits; a
    sample with none falls back to the largest centred box whose aspect ratio is in `ratio`.
    """
    dev = generator.device
    area = height * width
    draws = torch.rand(n, 2 * CROP_ATTEMPTS + 2, generator=generator, device=dev)
    target = area * (scale[0] + (scale[1] - scale[0]) * draws[:, :CROP_ATTEMPTS])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[:, CROP_ATTEMPTS : 2 * CROP_ATTEMPTS])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    found = fits.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)

    fb_h, fb_w = _fallback_size(height, width, ratio)
    w = torch.where(found, w, torch.full_like(w, fb_w))
    h = torch.where(found, h, torch.full_like(h, fb_h))
    # Offsets uniform over the whole-pixel positions, as torch.randint(0, side - box + 1).
    u_top, u_left = draws[:, -2], draws[:, -1]
    top = torch.minimum(torch.floor(u_top * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u_left * (width - w + 1)), width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fb_h) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fb_w) // 2))
    return torch.stack((top, left, h, w), dim=1)


def full_boxes(n: int, height: int, width: int, device: torch.device) -> Tensor:
    """Boxes covering the whole image, in the layout of `crop_boxes`."""
    # Filled on the device: a tensor built from a Python list would be a host-to-device copy.
    boxes = torch.zeros(n, 4, device=device)
    boxes[:, 2] = height
    boxes[:, 3] = width
    return boxes


def _fallback_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return round(width / min(ratio)), width
    if in_ratio > max(ratio):
        return height, round(height * max(ratio))
    return height, width
