"""The trainer: one method on one dataset for the suite's epochs, with checkpoints and resume.

Every source of randomness is re-seeded from (seed, epoch) at the start of each epoch: the
sample order, the augmentation generator and torch's global generator (for methods that draw
random numbers themselves). A run resumed from its epoch-e checkpoint therefore replays epochs
e.. exactly as an uninterrupted run would (bit for bit on the CPU).

The loss is checked for NaN/inf on the host every step on the CPU and every few steps on a GPU
(one synchronisation per check); a non-finite loss stops the run with the step and its terms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crlbench import distributed
from crlbench.data.stream import ImageFiles, read_batches
from crlbench.errors import NonFiniteLoss
from crlbench.optim import build_optimizer, default_param_groups, warmup_cosine
from crlbench.protocol import Batch, EpochLoader, Method
from crlbench.seeding import derive_seed
from crlbench.store import write_atomic

CHECKPOINT_NAME = "last.pt"
GPU_CHECK_INTERVAL = 50  # steps between host-side finiteness checks on a GPU


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    steps: int = 0
    seconds: float = 0.0  # training time of this process (excludes resumed epochs)
    # training samples (not views) per second in this process; None when it trained none (a
    # method without training, or a run resumed from its last epoch's checkpoint)
    samples_per_s: float | None = None
    resumed_from_epoch: int = 0


@dataclass
class TrainSetup:
    """Everything the trainer needs besides the method."""

    images: Tensor | ImageFiles  # uint8 [N, C, H, W] training images (on the device when
    # they fit; ImageFiles when they stream)
    # (images, views, generator, rows) -> views; rows: see crlbench.augment.Augmenter
    augment: Callable[[Tensor, int, torch.Generator, tuple[int, int] | None], list[Tensor]]
    prepare: Callable[[Tensor], Tensor]  # uint8 or [0, 1] float -> normalised input
    cfg: Any  # the suite's train section
    seed: int
    device: torch.device
    checkpoint_dir: Path | None = None
    eval_batch_size: int = 1024
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None
    # learning curves: called with the epoch count after every `monitor_every` epochs and the
    # last; its metrics go into that epoch's history entry under "eval"
    monitor: Callable[[int], dict[str, float]] | None = None
    monitor_every: int = 0


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    return num_samples // batch_size  # the last incomplete batch is dropped


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically, through Python's file I/O: a full disk raises StoreWriteError (torch.save
    to a path would raise a RuntimeError of its zip writer) and leaves no partial file."""
    write_atomic(path, lambda f: torch.save(state, f))


class CheckpointError(RuntimeError):
    """A run's checkpoint exists but cannot be read (corrupt, or not made of plain tensors)."""


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint of an interrupted run, loaded with weights_only=True: a checkpoint that
    holds anything but tensors and plain containers is refused, never unpickled."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt files fail in many ways; each means "cannot resume"
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); delete it to start "
                              "the run over") from e
    if not isinstance(state, dict) or not {"epoch", "method", "optimizer"} <= set(state):
        raise CheckpointError(f"checkpoint {path} is not a crlbench checkpoint; delete it to "
                              "start the run over")
    return state


def _loss_terms(out: Any, step: int) -> dict[str, Tensor]:
    if not isinstance(out, dict) or "loss" not in out:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise TypeError(f"loss() must return a dict with a 'loss' entry, got {got} at step {step}")
    return {k: torch.as_tensor(v).detach().float().reshape(()) for k, v in out.items()}


class Stepper:
    """The optimiser step of the trainer, usable on its own (the speed benchmark times it):
    optimiser and schedule, precision, memory layout and compilation as the suite sets them."""

    def __init__(self, method: Method, setup: TrainSetup, total_steps: int, warmup_steps: int):
        cfg, device = setup.cfg, setup.device
        self.method, self.setup, self.device = method, setup, device
        groups = method.param_groups() or default_param_groups(
            method, cfg.optimizer.exclude_bias_and_norm)
        self.optimizer = build_optimizer(groups, cfg.optimizer, cfg.batch_size)
        self.schedule = warmup_cosine(self.optimizer, total_steps, warmup_steps,
                                      cfg.min_lr_ratio)
        self.amp_dtype = _autocast_dtype(cfg.precision, device)
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None
                              else device.type == "cuda")
        if self.channels_last:
            method.to(memory_format=torch.channels_last)
        if cfg.compile:
            method.backbone.compile()

    def layout(self, views: list[Tensor]) -> list[Tensor]:
        if self.channels_last:
            return [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views

    def views(self, images: Tensor, generator: torch.Generator,
              rows: tuple[int, int] | None = None) -> list[Tensor]:
        """Augmented, normalised views of a uint8 batch already on the device; `rows`: which
        rows of a global batch it is (crlbench.augment.Augmenter)."""
        augmented = self.setup.augment(images, self.method.num_views, generator, rows)
        return self.layout([self.setup.prepare(v) for v in augmented])

    def step(self, views: list[Tensor], indices: Tensor, step: int) -> dict[str, Tensor]:
        """Loss, backward, optimiser and schedule step, after_step hook; the detached terms."""
        out, terms = self.forward(views, indices, step)
        self.backward(out)
        self.update(step)
        return terms

    # The step's three phases, apart so that the speed benchmark can time each one.
    def forward(self, views: list[Tensor], indices: Tensor,
                step: int) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The method's loss under autocast: its output and its detached terms."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = self.method.loss(views, Batch(indices=indices))
        return out, _loss_terms(out, step)

    def backward(self, out: dict[str, Any]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()

    def update(self, step: int) -> None:
        """Gradients averaged over workers, gradient clipping, the optimiser and schedule step,
        the method's after_step hook."""
        distributed.average_gradients(self.method.parameters())
        if self.setup.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), self.setup.cfg.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        self.method.after_step(step)


def train(method: Method, setup: TrainSetup) -> TrainResult:
    """Train `method` for the suite's epochs. In a run on several workers (crlbench.distributed)
    every worker draws the same order and augmentation parameters and takes its slice of each
    global batch of cfg.batch_size; worker 0 alone writes checkpoints."""
    cfg, device = setup.cfg, setup.device
    n, batch_size = len(setup.images), cfg.batch_size
    workers, rank = distributed.world_size(), distributed.rank()
    if batch_size % workers:
        raise ValueError(f"batch size {batch_size} does not split over {workers} workers")
    local = batch_size // workers
    mine = slice(rank * local, (rank + 1) * local)
    rows = (mine.start, batch_size) if workers > 1 else None  # this worker's rows of a batch
    per_epoch = steps_per_epoch(n, batch_size)
    stepper = Stepper(method, setup, per_epoch * cfg.epochs,
                      round(cfg.warmup_epochs * per_epoch))
    result = TrainResult()
    ckpt_path = setup.checkpoint_dir / CHECKPOINT_NAME if setup.checkpoint_dir else None
    state = _load_checkpoint(ckpt_path) if ckpt_path else None
    if state is not None:
        method.load_state_dict(state["method"])
        stepper.optimizer.load_state_dict(state["optimizer"])
        stepper.schedule.load_state_dict(state["schedule"])
        result.history = state["history"]
        result.resumed_from_epoch = state["epoch"]

    check_every = GPU_CHECK_INTERVAL if device.type == "cuda" else 1
    loader = EpochLoader(setup.images, setup.prepare, setup.eval_batch_size, device)

    step = result.resumed_from_epoch * per_epoch
    started = time.perf_counter()
    for epoch in range(result.resumed_from_epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        torch.manual_seed(derive_seed(setup.seed, epoch, 0))
        # the order is drawn on the CPU wherever the images are, so that it is the same for
        # images on the GPU, in host memory or streamed, and on every worker
        order_gen = torch.Generator()
        order_gen.manual_seed(derive_seed(setup.seed, epoch, 1))
        aug_gen = torch.Generator(device=device)
        aug_gen.manual_seed(derive_seed(setup.seed, epoch, 2))

        method.train()
        method.before_epoch(epoch, loader)
        distributed.broadcast_state(method)  # what the hook set (k-means labels) is worker 0's
        order = torch.randperm(n, generator=order_gen)
        pending: list[tuple[int, dict[str, Tensor]]] = []
        sums: dict[str, Tensor] = {}
        # this worker's rows of each step; streamed images are decoded ahead of the steps
        rows_of = [order[i * batch_size:(i + 1) * batch_size][mine] for i in range(per_epoch)]
        batches = read_batches(setup.images, rows_of, pin=device.type == "cuda")
        for i, (idx, batch) in enumerate(zip(rows_of, batches, strict=True)):
            x = batch.to(device, non_blocking=True)
            terms = _mean_over_workers(stepper.step(stepper.views(x, aug_gen, rows),
                                                    idx.to(device), step))
            for k, v in terms.items():
                sums[k] = sums[k] + v if k in sums else v
            pending.append((step, terms))
            step += 1
            if len(pending) >= check_every or i == per_epoch - 1:
                _check_finite(pending)
                pending = []

        entry = {k: float(v) / per_epoch for k, v in sums.items()}
        entry["lr"] = stepper.optimizer.param_groups[0]["lr"]
        entry["seconds"] = time.perf_counter() - epoch_start
        if setup.monitor and setup.monitor_every and distributed.is_main() and (
                (epoch + 1) % setup.monitor_every == 0 or epoch + 1 == cfg.epochs):
            monitor_start = time.perf_counter()
            entry["eval"] = _untouched_rng(setup.monitor, epoch + 1)
            entry["eval_seconds"] = time.perf_counter() - monitor_start
            method.train()
        result.history.append(entry)
        if ckpt_path and distributed.is_main() and (
                (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
            _save_checkpoint(ckpt_path, {
                "epoch": epoch + 1, "method": method.state_dict(),
                "optimizer": stepper.optimizer.state_dict(),
                "schedule": stepper.schedule.state_dict(), "history": result.history,
            })
        if setup.on_epoch:  # flat scalars: the curve's metrics as eval/<name>
            flat = {k: v for k, v in entry.items() if k != "eval"}
            flat.update({f"eval/{k}": v for k, v in entry.get("eval", {}).items()})
            setup.on_epoch(epoch + 1, cfg.epochs, flat)

    result.steps = step
    result.seconds = time.perf_counter() - started
    trained = (cfg.epochs - result.resumed_from_epoch) * per_epoch * batch_size
    result.samples_per_s = trained / result.seconds if result.seconds > 0 and trained else None
    return result


def _mean_over_workers(terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """The loss terms averaged over workers (one collective), so that every worker logs and
    checks the same values; the terms themselves in a single process."""
    if distributed.world_size() == 1:
        return terms
    mean = distributed.mean_over_workers(torch.stack(list(terms.values())))
    return dict(zip(terms, mean.unbind(), strict=True))


def _untouched_rng(fn: Callable[[int], dict[str, float]], epoch: int) -> dict[str, float]:
    """`fn(epoch)` with torch's global random state restored after it: a learning-curve
    evaluation never changes the draws of the training that goes on."""
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        return fn(epoch)
    finally:
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _check_finite(pending: list[tuple[int, dict[str, Tensor]]]) -> None:
    """Raise NonFiniteLoss at the first step whose loss terms are not all finite."""
    if not pending:
        return
    stacked = torch.stack([torch.stack(list(t.values())) for _, t in pending]).cpu()
    bad = (~torch.isfinite(stacked)).any(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        step, terms = pending[first]
        raise NonFiniteLoss(step, {k: float(v) for k, v in terms.items()})
