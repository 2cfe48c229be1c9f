"""Batched image operations with per-sample parameters: pure functions, no randomness.

Images are float [N, C, H, W] in [0, 1] with C = 1 or 3; per-sample parameters are [N] tensors
on the images' device. Each op is a handful of tensor kernels for the whole batch. The colour ops
follow the semantics of `torchvision.transforms.v2.functional` (brightness, contrast, saturation,
hue, rgb_to_grayscale, solarize, gaussian_blur) image by image; the geometry follows
`resized_crop` with bilinear interpolation and no antialiasing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601-2 luma weights, the values torchvision's rgb_to_grayscale uses.
LUMA = (0.2989, 0.587, 0.114)


def to_float(images: Tensor) -> Tensor:
    """uint8 images to float32 in [0, 1]."""
    return images.to(torch.float32).div_(255.0)


def per_sample(mask: Tensor, if_true: Tensor, if_false: Tensor) -> Tensor:
    """Choose whole images: `if_true[i]` where `mask[i]`, else `if_false[i]`."""
    return torch.where(mask.view(-1, 1, 1, 1), if_true, if_false)


def resized_crop(x: Tensor, boxes: Tensor, flip: Tensor | None, out_size: int) -> Tensor:
    """Crop each image to its box, flip it horizontally where `flip`, resize to out_size².

    `boxes` is [N, 4] (top, left, height, width) in pixels. Crop, flip and resize are one affine
    map per sample, applied by a single bilinear `grid_sample`: output pixel centres land on the
    box's pixel grid exactly as `resize(crop(x))` with align_corners=False samples it. The map
    has no rotation, so the grid is built from its two 1-D axes rather than by `affine_grid`
    (whose batched matmul is the slowest part on CPU). Samples are clamped to the box's outer
    pixel centres, as resizing the cut-out crop clamps at its edges: nothing outside leaks in.
    """
    n = x.shape[0]
    height, width = x.shape[-2:]
    top, left, box_h, box_w = boxes.to(x.dtype).unbind(dim=1)
    # Output pixel centres in grid_sample's normalised coordinates (image edges at -1 and +1).
    base = (2 * torch.arange(out_size, device=x.device, dtype=x.dtype) + 1) / out_size - 1
    base_x = base if flip is None else torch.where(flip.view(n, 1), -base, base)
    grid_x = _box_axis(base_x, left, box_w, width)
    grid_y = _box_axis(base, top, box_h, height)
    grid = torch.stack(
        (
            grid_x.view(n, 1, out_size).expand(n, out_size, out_size),
            grid_y.view(n, out_size, 1).expand(n, out_size, out_size),
        ),
        dim=-1,
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _box_axis(base: Tensor, start: Tensor, size: Tensor, side: int) -> Tensor:
    """Normalised positions [N, out] along one axis of each box, clamped to its pixel centres."""
    start, size = start.view(-1, 1), size.view(-1, 1)
    pos = base * (size / side) + (2 * start + size) / side - 1
    lo = (2 * start + 1) / side - 1
    hi = (2 * (start + size) - 1) / side - 1
    return torch.minimum(torch.maximum(pos, lo), hi)


def _factor(f: Tensor) -> Tensor:
    return f.view(-1, 1, 1, 1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = _factor(factor)
    return (f * x + (1 - f) * other).clamp_(0.0, 1.0)


def luma(x: Tensor) -> Tensor:
    """Grayscale [N, 1, H, W] of RGB images; 1-channel images are returned as they are."""
    if x.shape[1] == 1:
        return x
    # Python-scalar weights: a weight tensor built from a tuple would be a host-to-device copy,
    # which synchronises the GPU stream on every call.
    r, g, b = x.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def grayscale(x: Tensor) -> Tensor:
    """Grayscale with the input's channel count (RGB stays 3 equal channels)."""
    return luma(x).expand_as(x)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Multiply by `factor`, clamp to [0, 1]."""
    return (x * _factor(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the mean of the image's grayscale: 0 gives flat grey, 1 the image."""
    mean = luma(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's grayscale: 0 gives grayscale, 1 the image; no-op for 1 channel."""
    if x.shape[1] == 1:
        return x
    return _blend(x, luma(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by `shift` (in turns, [-0.5, 0.5]) in HSV space; no-op for 1 channel."""
    if x.shape[1] == 1:
        return x
    h, s, v = _hsv(x)
    return _rgb(torch.remainder(h + shift.view(-1, 1, 1), 1.0), s, v)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB [N, 3, H, W] in [0, 1] to HSV [N, 3, H, W] with hue in turns [0, 1)."""
    return torch.stack(_hsv(x), dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV [N, 3, H, W] with hue in turns to RGB."""
    return _rgb(*x.unbind(dim=1))


def _hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = x.unbind(dim=1)
    v = x.amax(dim=1)
    delta = v - x.amin(dim=1)
    # Grey pixels (delta = 0) get hue 0 and saturation 0; the safe divisors avoid 0/0.
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = delta / torch.where(v > 0, v, torch.ones_like(v))
    # Hue sector by the largest channel, in sixths of a turn (comparisons, not argmax over
    # channels, which is slow on CPU). Ties give the same hue from either branch.
    h = torch.where(
        r == v,
        (g - b) / safe_delta,
        torch.where(g == v, (b - r) / safe_delta + 2, (r - g) / safe_delta + 4),
    )
    return torch.remainder(h / 6, 1.0), s, v


def _rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    # Branch-free: channel = v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6 and
    # n = 5, 3, 1 for R, G, B.
    h6, vs = 6 * h, v * s
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h6 + n, 6.0)
        channels.append(v - vs * torch.minimum(k, 4 - k).clamp_(0.0, 1.0))
    return torch.stack(channels, dim=1)


def color_jitter(
    x: Tensor,
    brightness: Tensor | None,
    contrast: Tensor | None,
    saturation: Tensor | None,
    hue: Tensor | None,
) -> Tensor:
    """Brightness, contrast, saturation, hue in this fixed order; None skips an op.

    torchvision's ColorJitter (and the SimCLR and BYOL pipelines) draw a random order per image.
    A fixed order changes little: brightness, contrast and saturation are linear blends that
    commute with each other up to the [0, 1] clamp (contrast's grey mean and saturation's grey
    image are unchanged by the other, since the luma weights sum to 1), so only the position of
    hue, which changes luma, matters. A per-image order would cost running every op four times.
    """
    if brightness is not None:
        x = adjust_brightness(x, brightness)
    if contrast is not None:
        x = adjust_contrast(x, contrast)
    if saturation is not None:
        x = adjust_saturation(x, saturation)
    if hue is not None:
        x = adjust_hue(x, hue)
    return x


def solarize(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert the pixels at or above `threshold`."""
    return torch.where(x >= threshold, 1.0 - x, x)


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """Normalised 1-D Gaussian kernels [N, kernel_size], one per sigma, centred on the middle."""
    offsets = torch.arange(kernel_size, device=sigma.device, dtype=sigma.dtype)
    offsets = offsets - (kernel_size - 1) / 2
    pdf = torch.exp(-0.5 * (offsets / sigma.unsqueeze(1)) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur, each image with its own sigma, reflect padding at the borders.

    The batch becomes one image with N*C channels, blurred by two grouped (depthwise)
    convolutions whose weights are each channel's 1-D kernel.
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    n, c, height, width = x.shape
    weights = gaussian_kernels(sigma.to(x.dtype), kernel_size).repeat_interleave(c, dim=0)
    pad = kernel_size // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect").reshape(1, n * c, height + 2 * pad, -1)
    y = F.conv2d(y, weights.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, weights.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, height, width)


def blur_kernel_size(side: int) -> int:
    """Odd kernel size of about 10% of the image side, at least 3 (SimCLR, appendix A)."""
    k = int(0.1 * side)
    return max(3, k if k % 2 == 1 else k + 1)
