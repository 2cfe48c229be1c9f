"""The speed benchmark's configuration: `BenchConfig`, and `load_bench_config(overrides)`.

Defaults are the H100 target setting (SimCLR, ResNet-18 with the small-image stem, batch
512, two views of 32x32, bf16 on a GPU). `key=value` overrides are parsed and validated exactly
as a suite's are (`crlbench.config.apply_overrides`): an unknown key or a wrong type is a
one-line UserError; the checks below add ranges and closed choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from crlbench.config import (
    OPTIMIZERS,
    PRECISIONS,
    AugmentConfig,
    DataConfig,
    EvalConfig,
)
from crlbench.errors import UserError
from crlbench.loader import apply_overrides, resolve_config

PARTS = ("fixed", "throughput", "baseline", "profile", "threads", "eval", "stream")
MIN_EVAL_SIZE = 100


def _cifar_augment() -> AugmentConfig:
    # the shipped cifar10 suite's views: SimCLR's CIFAR setting, jitter 0.5, no blur
    return AugmentConfig(family="simclr", jitter_strength=0.5, blur_p=0.0)


@dataclass
class BenchConfig:
    # (a) and (b): the training step
    method: str = "simclr"
    backbone: str = "resnet18"
    small_stem: bool | None = None  # None: for images <= 64 px, as in runs
    width: int = 32  # convnet_tiny's first layer
    batch_size: int = 512
    image_size: int = 32
    channels: int = 3  # 1 or 3
    precision: str = "auto"  # auto (bf16 on a GPU, fp32 on the CPU) | bf16 | fp32
    channels_last: bool | None = None  # None: on a GPU
    compile: bool | None = None  # also time the compiled step; None: on a GPU only
    optimizer: str = "lars"
    steps: int = 50  # timed steps
    warmup: int = 10  # untimed steps before them (compilation happens here)
    pool_batches: int = 4  # synthetic uint8 images on the device: this many batches' worth
    augment: AugmentConfig = field(default_factory=_cifar_augment)
    workers: list[int] = field(default_factory=lambda: [16])  # DataLoader baseline workers
    profile_steps: int = 10  # (e): steps timed phase by phase (crlbench.bench.profile)
    # (f), CPU only: torch thread counts to time the augmentation and the model step at
    # (crlbench.bench.threads); empty: 1, 2, 4, ... and the machine's cores
    thread_counts: list[int] = field(default_factory=list)
    # (c): evaluation cost on synthetic features, split 6:1 train/test
    eval_sizes: list[int] = field(default_factory=lambda: [10_000, 70_000, 200_000])
    feature_dim: int = 512
    classes: int = 10
    eval: EvalConfig = field(default_factory=EvalConfig)
    peers: bool = True  # time scikit-learn's counterpart of each evaluator beside it
    # torch threads (and the peers' BLAS threads) for the whole benchmark, as a run with
    # resources.cpu_per_run=threads sets them (a run's default is 1); None keeps torch's default
    threads: int | None = 1
    # (g): streaming an image folder (crlbench.bench.stream) against torchvision's ImageFolder
    # DataLoader, at each of `workers` worker processes; without stream_folder, stream_images
    # generated JPEGs of stream_source_size (width, height)
    stream_folder: str | None = None  # <folder>/<class>/<image>, e.g. ImageNet's train/
    stream_images: int = 2000
    stream_source_size: list[int] = field(default_factory=lambda: [500, 375])
    stream_side: int = 96  # decoded to side x side (shorter side resized, centre kept)
    stream_batch: int = 256
    # (d): the fixed cost of a run on a real dataset (embedded digits needs no files)
    dataset: str = "digits"
    data: DataConfig = field(default_factory=DataConfig)
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    device: str = "auto"
    seed: int = 0
    output: str | None = None  # None: results/bench/bench-<device>-<UTC time>.json


def load_bench_config(overrides: list[str]) -> DictConfig:
    """The validated, read-only benchmark config for a command line's overrides."""
    schema = OmegaConf.structured(BenchConfig)
    cfg = apply_overrides(schema, overrides)
    resolve_config(cfg)
    check(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _at_least(cfg: DictConfig, key: str, low: int) -> None:
    if OmegaConf.select(cfg, key) < low:
        raise UserError(f"'{key}' must be >= {low}, got {OmegaConf.select(cfg, key)}")


def _one_of(cfg: DictConfig, key: str, valid: tuple[str, ...]) -> None:
    if OmegaConf.select(cfg, key) not in valid:
        raise UserError(f"'{key}' is {OmegaConf.select(cfg, key)!r}; valid choices: "
                        f"{', '.join(valid)}")


def check(cfg: DictConfig) -> None:
    """Ranges and choices that the schema's types cannot express; plugins are looked up."""
    from crlbench.backbones import check_backbone_name
    from crlbench.resolve import resolve_dataset, resolve_evaluators, resolve_method
    from crlbench.validate import check_eval

    for key, low in (("batch_size", 2), ("image_size", 2), ("steps", 1), ("warmup", 0),
                     ("pool_batches", 1), ("profile_steps", 1), ("feature_dim", 1),
                     ("classes", 2), ("width", 1), ("stream_images", 1), ("stream_side", 8),
                     ("stream_batch", 1)):
        _at_least(cfg, key, low)
    _one_of(cfg, "precision", PRECISIONS)
    _one_of(cfg, "optimizer", OPTIMIZERS)
    if cfg.threads is not None and cfg.threads < 1:
        raise UserError(f"'threads' must be at least 1 (or null for torch's default), got "
                        f"{cfg.threads}")
    if any(n < 1 for n in cfg.thread_counts):
        raise UserError(f"'thread_counts' must be counts >= 1, got {list(cfg.thread_counts)}")
    if cfg.channels not in (1, 3):
        raise UserError(f"'channels' must be 1 or 3, got {cfg.channels}")
    if any(w < 0 for w in cfg.workers):
        raise UserError(f"'workers' must be counts >= 0, got {list(cfg.workers)}")
    if any(n < MIN_EVAL_SIZE for n in cfg.eval_sizes):
        raise UserError(f"'eval_sizes' must each be >= {MIN_EVAL_SIZE}, "
                        f"got {list(cfg.eval_sizes)}")
    if len(cfg.stream_source_size) != 2 or min(cfg.stream_source_size) < 8:
        raise UserError(f"'stream_source_size' must be [width, height], each >= 8, got "
                        f"{list(cfg.stream_source_size)}")
    if "stream" in cfg.parts and cfg.stream_folder and not Path(
            cfg.stream_folder).expanduser().is_dir():
        raise UserError(f"'stream_folder' {cfg.stream_folder} is not a folder; give an "
                        "ImageFolder tree <folder>/<class>/<image>")
    unknown = [p for p in cfg.parts if p not in PARTS]
    if unknown or not cfg.parts:
        raise UserError(f"'parts' must be a non-empty list of {', '.join(PARTS)}, "
                        f"got {list(cfg.parts)}")
    check_eval(cfg.eval)
    resolve_evaluators(cfg.eval.metrics)
    check_backbone_name(cfg.backbone)
    cls = resolve_method(cfg.method).obj
    if not cls.trainable:
        raise UserError(f"method {cfg.method!r} has no training step to time")
    channels = {"channels": cfg.channels}
    if "fixed" in cfg.parts:  # the fixed cost trains a step on a real dataset
        channels[f"dataset {cfg.dataset}"] = resolve_dataset(cfg.dataset,
                                                             dict(cfg.data.folders)).channels
    for what, n in channels.items():
        if cls.input_channels is not None and n not in cls.input_channels:
            raise UserError(f"method {cfg.method!r} needs images with "
                            f"{' or '.join(map(str, cls.input_channels))} channels; {what} "
                            f"gives {n} (set channels=3, dataset=digits_rgb)")
