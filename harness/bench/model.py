"""What every timed part of the benchmark shares: the device clock, synthetic uint8 images and a
method with its `Stepper` built as a run builds them."""

from __future__ import annotations

import time
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from crlbench.augment import Augmenter
from crlbench.backbones import build_backbone
from crlbench.config import OptimizerConfig, TrainConfig
from crlbench.errors import UserError
from crlbench.preprocess import Normalizer
from crlbench.protocol import EpochLoader, Method, RunContext
from crlbench.resolve import resolve_method
from crlbench.train import Stepper, TrainSetup


def device_of(cfg: DictConfig) -> torch.device:
    from crlbench.runner import resolve_device

    try:
        return resolve_device(str(cfg.device))
    except RuntimeError as e:
        raise UserError(f"device={cfg.device}: {e}") from None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    """The wall clock after the device has finished the work queued so far."""
    synchronize(device)
    return time.perf_counter()


def synthetic_images(cfg: DictConfig, device: torch.device) -> Tensor:
    """Random uint8 images [pool_batches * batch_size, C, S, S] on the device."""
    gen = torch.Generator().manual_seed(cfg.seed)
    shape = (cfg.pool_batches * cfg.batch_size, cfg.channels, cfg.image_size, cfg.image_size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen).to(device)


def train_config(cfg: DictConfig, batch_size: int, compile: bool) -> TrainConfig:
    return TrainConfig(batch_size=batch_size, precision=str(cfg.precision),
                       channels_last=cfg.channels_last, compile=compile,
                       optimizer=OptimizerConfig(name=str(cfg.optimizer)))


def build_method(cfg: DictConfig, device: torch.device, *, channels: int, image_size: int,
                 dataset_size: int, num_classes: int, total_steps: int,
                 mean: list[float], std: list[float]) -> Method:
    """The benchmark's method on a fresh backbone, on the device (a run's build phase)."""
    cls = resolve_method(cfg.method).obj
    backbone, dim = build_backbone(cfg.backbone, channels=channels, image_size=image_size,
                                   small_stem=cfg.small_stem, width=cfg.width)
    ctx = RunContext(feature_dim=dim, num_classes=num_classes, num_clusters=num_classes,
                     dataset_size=dataset_size, device=device, total_steps=total_steps,
                     steps_per_epoch=total_steps, epochs=1, seed=cfg.seed,
                     image_size=image_size, channels=channels, input_mean=tuple(mean),
                     input_std=tuple(std))
    return cls(backbone, ctx, cls.Config()).to(device)


def build_stepper(cfg: DictConfig, method: Method, images: Tensor, prepare: Normalizer,
                  device: torch.device, *, batch_size: int, image_size: int, compile: bool,
                  total_steps: int) -> Stepper:
    setup = TrainSetup(images=images, augment=Augmenter.from_config(cfg.augment, image_size),
                       prepare=prepare, cfg=train_config(cfg, batch_size, compile),
                       seed=cfg.seed, device=device)
    stepper = Stepper(method, setup, total_steps, warmup_steps=min(cfg.warmup, total_steps))
    method.train()
    # methods that prepare per epoch (pseudo-labels, banks) get the hook once, untimed
    method.before_epoch(0, EpochLoader(images, prepare, 1024, device))
    return stepper


def synthetic_stepper(cfg: DictConfig, device: torch.device, images: Tensor,
                      compile: bool) -> Stepper:
    """A Stepper over the synthetic images (normalised as uniform noise would be)."""
    total = 2 * (cfg.warmup + cfg.steps)  # with and without augmentation
    mean, std = [0.5] * cfg.channels, [0.29] * cfg.channels  # uniform uint8 noise
    method = build_method(cfg, device, channels=cfg.channels, image_size=cfg.image_size,
                          dataset_size=len(images), num_classes=cfg.classes, total_steps=total,
                          mean=mean, std=std)
    return build_stepper(cfg, method, images, Normalizer(mean, std, device), device,
                         batch_size=cfg.batch_size, image_size=cfg.image_size, compile=compile,
                         total_steps=total)


def describe_stepper(stepper: Stepper) -> dict[str, Any]:
    return {"precision": "bf16" if stepper.amp_dtype is torch.bfloat16 else "fp32",
            "channels_last": stepper.channels_last,
            "compile": bool(stepper.setup.cfg.compile)}
