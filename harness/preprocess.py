"""Turning uint8 images into the normalised float input every backbone sees.

Per-channel mean and standard deviation are measured on the training split of each dataset
(so no dataset needs a hard-coded table) and applied both to augmented views and to the
un-augmented images that are embedded for evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crlbench.data.stream import ImageFiles, ranges, read_batches

# Images summed at a time: at most 4096, fewer for large images so that a chunk's float64
# copy stays near 256 MB (a chunk of 4096 ImageNet images at 224 px would take 4.9 GB)
STATS_CHUNK, STATS_ELEMENTS = 4096, 1 << 25


def channel_stats(images: Tensor | ImageFiles,
                  chunk: int | None = None) -> tuple[list[float], list[float]]:
    """Mean and std per channel of uint8 images [N, C, H, W], on the [0, 1] scale (of
    streamed ones too, in one decoding pass: the same numbers as in memory, since the chunks
    are the same)."""
    channels = images.shape[1]
    if chunk is None:
        chunk = min(STATS_CHUNK, max(1, STATS_ELEMENTS // (images.shape[1:].numel())))
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for batch in read_batches(images, ranges(len(images), chunk)):
        x = batch.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3)).cpu()
        total_sq += (x * x).sum(dim=(0, 2, 3)).cpu()
    count = images.numel() // channels
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


class Normalizer:
    """Maps uint8 images, or floats already in [0, 1], to standardised float32."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, images: Tensor) -> Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return (x - self.mean) / self.std
