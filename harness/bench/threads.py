"""(f) The torch thread count of a CPU run: augmentation and model step timed at each count.

A run sets torch's thread count to its `resources.cpu_per_run` for all of its work. Whether
some phase would be faster on fewer threads (the batched augmentation is many small kernels,
which oversubscription can slow down) is measured here: for each count in `thread_counts`
(default 1, 2, 4, ... up to the machine's cores), `profile_steps` steps are cut into the
augmentation (views, normalisation, layout) and the model (forward, backward, optimiser), with
the median of each. The result names the fastest count for each phase and for the whole step,
and how much a split (each phase on its own fastest count) would gain over the best single
count. CPU only: on a GPU the thread count does not feed the kernels.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from crlbench.bench.profile import cut_step
from crlbench.train import Stepper

MODEL_PHASES = ("forward", "backward", "optimizer")


def default_counts(cores: int | None = None) -> list[int]:
    """1, 2, 4, ... below the machine's cores, and the cores themselves."""
    cores = cores or os.cpu_count() or 1
    counts = [1]
    while counts[-1] * 2 < cores:
        counts.append(counts[-1] * 2)
    return sorted({*counts, cores})


def _at(stepper: Stepper, images: Tensor, cfg: DictConfig, threads: int,
        first_step: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    gen = torch.Generator(device=stepper.device).manual_seed(cfg.seed)
    cut_step(stepper, images, gen, first_step)  # one untimed step at this count
    cuts = [cut_step(stepper, images, gen, first_step + 1 + i) for i in range(cfg.profile_steps)]
    augment = statistics.median(c["augment"] for c in cuts)
    model = statistics.median(sum(c[p] for p in MODEL_PHASES) for c in cuts)
    return {"threads": threads, "augment_s": augment, "model_s": model, "step_s": augment + model}


def measure_threads(cfg: DictConfig, device: torch.device, stepper: Stepper,
                    images: Tensor) -> dict[str, Any]:
    """{"rows": per count, "fastest": per phase and step, "split_gain": best single count's
    step / the step with each phase on its own fastest count} (or {"skipped": why})."""
    if device.type != "cpu":
        return {"skipped": f"on {device.type} the thread count does not feed the kernels"}
    counts = list(cfg.thread_counts) if cfg.thread_counts else default_counts()
    before = torch.get_num_threads()
    try:
        rows = [_at(stepper, images, cfg, n, first_step=i * (cfg.profile_steps + 1))
                for i, n in enumerate(counts)]
    finally:
        torch.set_num_threads(before)
    fastest = {key: min(rows, key=lambda r: r[f"{key}_s"])["threads"]
               for key in ("augment", "model", "step")}
    single = min(r["step_s"] for r in rows)
    split = min(r["augment_s"] for r in rows) + min(r["model_s"] for r in rows)
    return {"steps": cfg.profile_steps, "batch_size": stepper.setup.cfg.batch_size,
            "rows": rows, "fastest": fastest, "split_gain": single / split}
