"""(e) Where a training step's time goes: its phases timed one by one, and its host syncs.

Each of `profile_steps` steps is cut into data (drawing the batch from the uint8 images on the
device), augmentation (views, normalisation, memory layout), forward (the method's loss under
autocast), backward and optimiser (clipping, optimiser and schedule step, the method's
after_step hook); the device is synchronised at every cut, so each phase's seconds are its own
and their sum is one step without any overlap between phases. The median over the steps is
reported, with each phase's share of the sum, next to the step time of the same steps run
without cuts (which the overlap makes shorter).

Host syncs, on a GPU: the steps are run once more under `torch.cuda.set_sync_debug_mode`, which
warns at every operation that makes the host wait for the device (`.item()`, a data-dependent
shape, a device-to-host copy); the warnings per step are counted. A step with none keeps the GPU
fed; the trainer's own finiteness check, every `GPU_CHECK_INTERVAL` steps, is not in a step.
"""

from __future__ import annotations

import statistics
import warnings
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from crlbench.bench.model import clock, describe_stepper
from crlbench.train import Stepper

PHASES = ("data", "augment", "forward", "backward", "optimizer")


def _batch(stepper: Stepper, images: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    idx = torch.randint(len(images), (stepper.setup.cfg.batch_size,), generator=gen,
                        device=images.device)
    return images[idx], idx


def cut_step(stepper: Stepper, images: Tensor, gen: torch.Generator,
              step: int) -> dict[str, float]:
    device = stepper.device
    marks = [clock(device)]
    x, idx = _batch(stepper, images, gen)
    marks.append(clock(device))
    views = stepper.views(x, gen)
    marks.append(clock(device))
    out, _ = stepper.forward(views, idx, step)
    marks.append(clock(device))
    stepper.backward(out)
    marks.append(clock(device))
    stepper.update(step)
    marks.append(clock(device))
    return {name: b - a for name, a, b in zip(PHASES, marks, marks[1:], strict=False)}


def _whole_steps(stepper: Stepper, images: Tensor, gen: torch.Generator, steps: int,
                 first_step: int) -> None:
    for i in range(steps):
        x, idx = _batch(stepper, images, gen)
        stepper.step(stepper.views(x, gen), idx, first_step + i)


def _host_syncs(stepper: Stepper, images: Tensor, gen: torch.Generator, steps: int,
                first_step: int) -> float | None:
    if stepper.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _whole_steps(stepper, images, gen, steps, first_step)
            torch.cuda.synchronize(stepper.device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    return len(syncs) / steps


def measure_profile(stepper: Stepper, images: Tensor, cfg: DictConfig,
                    first_step: int) -> dict[str, Any]:
    """Median seconds of each phase of a step, their shares, the uncut step time and the host
    syncs per step, on a stepper that has already been warmed up (compiled, if it compiles)."""
    n, device = cfg.profile_steps, stepper.device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    cuts = [cut_step(stepper, images, gen, first_step + i) for i in range(n)]
    phases = {name: statistics.median(c[name] for c in cuts) for name in PHASES}
    total = sum(phases.values())
    start = clock(device)
    _whole_steps(stepper, images, gen, n, first_step + n)
    uncut = (clock(device) - start) / n
    return {
        **describe_stepper(stepper),
        "steps": n,
        "phases_s": phases,
        "shares": {name: s / total if total > 0 else 0.0 for name, s in phases.items()},
        "cut_step_s": total,
        "step_s": uncut,
        "host_syncs_per_step": _host_syncs(stepper, images, gen, n, first_step + 2 * n),
    }
