"""The method protocol: what a method plugin implements and what the harness hands it.

The suite fixes backbone, augmentation, epochs, batch size, optimiser and schedule; a method
only says how to turn augmented views into a loss. See docs/plugins.md, "The method protocol".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from crlbench.data.stream import ImageFiles, ranges, read_batches


def check_choice(key: str, value: Any, choices: tuple[Any, ...]) -> None:
    """For `check_config`: ValueError naming `key` and its valid choices unless value is one."""
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_positive(cfg: Any, *keys: str) -> None:
    """For `check_config`: ValueError naming the first of `keys` whose value is not > 0."""
    for key in keys:
        value = getattr(cfg, key)
        if not value > 0:  # also refuses NaN
            raise ValueError(f"{key} must be positive, got {value}")


@dataclass(frozen=True)
class RunContext:
    """What a method may know about the run it is built for."""

    feature_dim: int  # width of the backbone's output features
    num_classes: int  # classes in the dataset's labels (never shown to the method per sample)
    num_clusters: int  # K a clustering head should have (a variant may set it != num_classes)
    dataset_size: int  # samples in the training set (the range of Batch.indices)
    device: torch.device
    total_steps: int  # optimiser steps of the whole run
    steps_per_epoch: int
    epochs: int
    seed: int
    image_size: int
    channels: int
    # per-channel mean and std that normalised the images (to recover [0, 1] pixels, e.g. Lab)
    input_mean: tuple[float, ...] = ()
    input_std: tuple[float, ...] = ()


@dataclass
class Batch:
    """One training batch: the sample indices into the training set (for memory banks)."""

    indices: Tensor  # int64 [B], on the run's device


class EpochLoader(Iterable[tuple[Tensor, Tensor]]):
    """Un-augmented, normalised training images in fixed order, for `before_epoch` hooks.

    Iterating yields `(images, indices)` batches on the run's device.
    """

    def __init__(self, images: Tensor | ImageFiles, prepare, batch_size: int,
                 device: torch.device):
        self._images = images
        self._prepare = prepare
        self._batch_size = batch_size
        self._device = device

    def __len__(self) -> int:
        return -(-len(self._images) // self._batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        batches = ranges(len(self._images), self._batch_size)
        for rows, x in zip(batches, read_batches(self._images, batches), strict=True):
            idx = torch.arange(rows.start, rows.stop, device=self._device)
            yield self._prepare(x.to(self._device, non_blocking=True)), idx


class Method(nn.Module):
    """Base class of every method. Subclass it, set `name`, define `Config` and `loss`.

    A method owns the backbone it is given plus any heads it builds. `features` (the
    backbone output by default) is what every evaluator sees.
    """

    name: ClassVar[str] = ""
    #: augmented views per sample passed to `loss`
    num_views: ClassVar[int] = 2
    #: False for methods with nothing to learn (the harness then skips training)
    trainable: ClassVar[bool] = True
    #: image channel counts the method accepts (None: any); checked before a suite runs
    input_channels: ClassVar[tuple[int, ...] | None] = None
    #: the implementation's version, part of every run's identity (run_id): bump it whenever
    #: the method's numbers can change, so that records of the old code are not reused. A
    #: plugin's method is versioned by its package's version instead (see `method_version`).
    version: ClassVar[str] = "1"
    #: named settings of Config (e.g. one per table of the paper), chosen by the Config field
    #: `preset`: the preset's values replace Config's defaults, then method_cfg overrides apply
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: the state-dict entries (module or tensor names; a name keeps everything under it)
    #: that evaluation reads: what `features`, `cluster_logits` and `positive_pairs` use. A
    #: finished run keeps them as its weights (crlbench.weights), and a re-evaluation loads
    #: them into a freshly built method instead of training it again.
    kept_state: ClassVar[tuple[str, ...]] = ("backbone",)
    #: True when `loss` stays correct with data parallelism (one run on several workers, see
    #: crlbench.distributed): what a batch-level term reads is gathered over the workers
    #: (`crlbench.distributed.gather`), and state updated from a batch (a queue, a memory
    #: bank) is updated from the gathered batch, the same on every worker. `check_method`
    #: then checks that two workers compute what one process does. A method that leaves it
    #: False trains on one worker only.
    data_parallel: ClassVar[bool] = False
    #: batch norm over the global batch when one run trains on several workers (the
    #: distributed.sync_bn default): True as one process computes it; False for per-worker
    #: statistics, where the method's paper normalises per device
    sync_bn: ClassVar[bool] = True

    @dataclass
    class Config:
        pass

    def __init__(self, backbone: nn.Module, ctx: RunContext, cfg: Any):
        super().__init__()
        self.backbone = backbone
        self.ctx = ctx
        self.cfg = cfg

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring: what `crlbench methods` shows."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @classmethod
    def preset_values(cls, preset: str | None = None) -> dict[str, Any]:
        """The Config values of the named preset (None: the one Config's `preset` field names
        by default), `preset` included; {} for a method without presets. ValueError names the
        valid presets when `preset` is not one of them."""
        if not cls.presets:
            return {}
        name = cls.Config().preset if preset is None else preset
        if name not in cls.presets:
            raise ValueError(f"unknown preset {name!r}; {cls.name}'s presets: "
                             f"{', '.join(cls.presets)}")
        return {"preset": name, **cls.presets[name]}

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Raise ValueError for hyper-parameters the method cannot run with, naming the key and
        what is valid; suites call it before any run (and `__init__` may call it too)."""

    def describe(self) -> dict[str, Any]:
        """What the method resolved from its config and the run (e.g. cluster sizes from the
        number of classes, a queue cut to the training set), as JSON data for the record."""
        return {}

    def features(self, images: Tensor) -> Tensor:
        """Features the evaluators score: the backbone output, before any projection head."""
        return self.backbone(images)

    def loss(self, views: list[Tensor], batch: Batch) -> dict[str, Tensor]:
        """Return a dict with a scalar "loss" to minimise; other scalar entries are logged."""
        raise NotImplementedError(f"method {self.name!r} does not define loss()")

    # Optional hooks. The defaults do nothing.
    def before_epoch(self, epoch: int, loader: EpochLoader) -> None:
        """Called before each epoch with the un-augmented training set (e.g. k-means labels)."""

    def after_step(self, step: int) -> None:
        """Called after each optimiser step (e.g. EMA updates of a target network)."""

    def param_groups(self) -> list[dict[str, Any]] | None:
        """Optimiser parameter groups, or None for all parameters with the suite's settings."""
        return None

    # Optional hooks the harness looks for by name (so the base class does not define them):
    # `cluster_logits(features) -> Tensor | list[Tensor]`, a clustering method's heads, and
    # `positive_pairs(images) -> (Tensor, Tensor)`, the method's own positive pairs of
    # un-augmented images, which the geometry evaluator then scores instead of two views.
