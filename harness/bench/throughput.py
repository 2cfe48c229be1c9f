"""(a) Training throughput of the harness: `Stepper` steps fed from uint8 images on the device.

Each step draws a random batch of the synthetic images, augments it on the device (or, for the
no-augmentation timing, only normalises it once per view) and takes the optimiser step. The
clock is read after synchronising the device, before and after `steps` steps that follow
`warmup` untimed ones; nothing in the loop waits for the device. Throughput is training images
(samples, each seen as `num_views` views) per second.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from crlbench.bench.model import clock, describe_stepper, synthetic_images, synthetic_stepper
from crlbench.train import Stepper


def _loop(stepper: Stepper, images: Tensor, steps: int, first_step: int, augment: bool,
          gen: torch.Generator) -> Tensor:
    """`steps` training steps; the last loss, still on the device."""
    batch, views = stepper.setup.cfg.batch_size, stepper.method.num_views
    loss = torch.zeros(())
    for i in range(steps):
        idx = torch.randint(len(images), (batch,), generator=gen, device=images.device)
        x = images[idx]
        if augment:
            inputs = stepper.views(x, gen)
        else:
            inputs = stepper.layout([stepper.setup.prepare(x) for _ in range(views)])
        loss = stepper.step(inputs, idx, first_step + i)["loss"]
    return loss


def time_loop(stepper: Stepper, images: Tensor, cfg: DictConfig, augment: bool,
              first_step: int) -> dict[str, float]:
    """Warm up, then time `cfg.steps` steps; seconds, images/s and the last loss."""
    device = stepper.device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    start = clock(device)
    _loop(stepper, images, cfg.warmup, first_step, augment, gen)
    timed_start = clock(device)
    loss = _loop(stepper, images, cfg.steps, first_step + cfg.warmup, augment, gen)
    end = clock(device)
    seconds = end - timed_start
    return {"warmup_s": timed_start - start, "seconds": seconds,
            "images_per_s": cfg.batch_size * cfg.steps / seconds, "loss": float(loss)}


def measure_mode(cfg: DictConfig, device: torch.device, images: Tensor,
                 compile: bool) -> tuple[dict[str, Any], Stepper]:
    """Eager or compiled: with and without augmentation; the augmentation share of the step."""
    stepper = synthetic_stepper(cfg, device, images, compile)
    aug = time_loop(stepper, images, cfg, augment=True, first_step=0)
    plain = time_loop(stepper, images, cfg, augment=False, first_step=cfg.warmup + cfg.steps)
    result = {
        **describe_stepper(stepper),
        "views": stepper.method.num_views,
        "warmup_s": aug["warmup_s"],  # includes compilation when compiled
        "seconds": aug["seconds"],
        "images_per_s": aug["images_per_s"],
        "noaug_seconds": plain["seconds"],
        "noaug_images_per_s": plain["images_per_s"],
        "augment_share": 1.0 - plain["seconds"] / aug["seconds"],
        "loss": aug["loss"],
    }
    return result, stepper


def measure_throughput(cfg: DictConfig, device: torch.device,
                       compile: bool) -> tuple[dict[str, Any], Stepper]:
    """{"eager": ..., "compiled": ... or None} and the stepper of the last mode measured
    (the compiled one when compiled), which the DataLoader baseline reuses."""
    images = synthetic_images(cfg, device)
    eager, stepper = measure_mode(cfg, device, images, compile=False)
    out: dict[str, Any] = {"steps": cfg.steps, "warmup": cfg.warmup,
                           "batch_size": cfg.batch_size, "views": eager["views"],
                           "eager": eager, "compiled": None}
    if compile:
        del stepper  # free the eager model before building the compiled one
        out["compiled"], stepper = measure_mode(cfg, device, images, compile=True)
    return out, stepper
