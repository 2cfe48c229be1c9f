"""Resizing uint8 image tensors to a square side, in chunks to bound memory.

Antialiased bilinear interpolation on float copies, rounded and clamped back to uint8.
Non-square images are stretched to the square (no crop), so nothing of the image is lost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Float elements (input + output) per chunk: about 256 MB of float32 at a time.
CHUNK_ELEMENTS = 1 << 26


def resize_images(images: Tensor, size: int) -> Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size]; the same tensor when already that size."""
    if size <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = torch.empty((n, c, size, size), dtype=torch.uint8, device=images.device)
    per_image = c * (h * w + size * size)
    chunk = max(1, CHUNK_ELEMENTS // per_image)
    for start in range(0, n, chunk):
        part = images[start:start + chunk].float()
        resized = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)
        out[start:start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out
