"""(b) The peer baseline: the same training step fed by torchvision PIL transforms in a
DataLoader, as a typical PyTorch SSL codebase does it.

The dataset holds the same synthetic uint8 images as HWC arrays and makes a PIL image per
sample, as torchvision's CIFAR-10 does; each view goes through a `transforms.v2` pipeline with
the harness's view parameters (for the default SimCLR CIFAR views: RandomResizedCrop with scale
0.08-1, RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, RandomGrayscale 0.2),
then ToImage, ToDtype(float32) and Normalize. Workers are persistent, memory pinned on a GPU,
batches moved with non_blocking. Timing as in `throughput`: warm-up batches (worker start-up
included) untimed, then `steps` steps between two synchronised clock reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.transforms import v2

from crlbench.augment import Augmenter, ViewParams
from crlbench.bench.model import clock
from crlbench.train import Stepper


def view_transform(p: ViewParams, size: int, blur_kernel: int, mean: list[float],
                   std: list[float]) -> v2.Compose:
    """torchvision v2 PIL transforms drawing one view as the harness's `ViewParams` says."""
    steps: list[Any] = []
    if p.crop_scale is not None:
        steps.append(v2.RandomResizedCrop(size, scale=p.crop_scale, ratio=p.crop_ratio,
                                          antialias=True))
    else:
        steps.append(v2.Resize((size, size), antialias=True))
    if p.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p.flip_p))
    if p.jitter_p > 0:
        jitter = v2.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue)
        steps.append(v2.RandomApply([jitter], p=p.jitter_p))
    if p.gray_p > 0:
        steps.append(v2.RandomGrayscale(p.gray_p))
    if p.blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(blur_kernel, p.blur_sigma)], p=p.blur_p))
    if p.solarize_p > 0:
        steps.append(v2.RandomSolarize(128, p.solarize_p))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class PilViews(Dataset):
    """uint8 HWC arrays -> (views, index), a PIL image made per sample."""

    def __init__(self, images: Tensor, transforms: list[v2.Compose], num_views: int):
        arrays = images.cpu().permute(0, 2, 3, 1).numpy()
        self.arrays = arrays[..., 0] if arrays.shape[-1] == 1 else np.ascontiguousarray(arrays)
        self.transforms = transforms
        self.num_views = num_views

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> tuple[list[Tensor], int]:
        image = Image.fromarray(self.arrays[i])
        views = [self.transforms[v % len(self.transforms)](image) for v in range(self.num_views)]
        return views, i


def _loader(stepper: Stepper, images: Tensor, augmenter: Augmenter, workers: int,
            batches: int, seed: int) -> DataLoader:
    prepare = stepper.setup.prepare
    mean = prepare.mean.flatten().tolist()
    std = prepare.std.flatten().tolist()
    transforms = [view_transform(p, augmenter.out_size, augmenter.blur_kernel_size, mean, std)
                  for p in augmenter.views]
    dataset = PilViews(images, transforms, stepper.method.num_views)
    batch = stepper.setup.cfg.batch_size
    sampler = RandomSampler(dataset, replacement=True, num_samples=batches * batch,
                            generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=stepper.device.type == "cuda")


def _steps(stepper: Stepper, batches, count: int, first_step: int) -> None:
    device = stepper.device
    for i in range(count):
        views, idx = next(batches)
        views = stepper.layout([v.to(device, non_blocking=True) for v in views])
        stepper.step(views, idx.to(device, non_blocking=True), first_step + i)


def measure_baseline(stepper: Stepper, images: Tensor, workers: int, warmup: int, steps: int,
                     seed: int) -> dict[str, Any]:
    """Images/s of `steps` training steps fed by the DataLoader with `workers` workers."""
    device = stepper.device
    loader = _loader(stepper, images, stepper.setup.augment, workers, warmup + steps, seed)
    start = clock(device)
    batches = iter(loader)
    _steps(stepper, batches, warmup, 0)
    timed_start = clock(device)
    _steps(stepper, batches, steps, warmup)
    seconds = clock(device) - timed_start
    del batches, loader  # shuts the persistent workers down
    batch = stepper.setup.cfg.batch_size
    return {"workers": workers, "warmup_s": timed_start - start, "seconds": seconds,
            "images_per_s": batch * steps / seconds}
