"""Checks before a suite runs anything: every mistake a user can make stops here, as one line
with exit code 2, before a record or checkpoint is written.

- the results store can be written (not read-only, not full, not under a file), tried with a
  temporary file in its deepest existing folder, which nothing is left behind by;
- every dataset is read in full (missing, truncated or corrupt files are found now, not in the
  middle of the suite), and its training split measured: a batch larger than a (possibly
  long-tailed) training split is refused, and so is an image size the backbone cannot take;
- a run on several workers of this machine has a GPU for each (when it trains on GPUs);

Methods are not exercised here (only their `check_config`, on the config, when the suite
expands): a plugin's training code runs only inside runs, where whatever it does
(raise, diverge, even kill its process) is recorded as that run's failure. `crlbench methods
--check` runs `check_method` on every installed method on request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from crlbench.backbones import check_image_size
from crlbench.data import DatasetCache, long_tail_counts
from crlbench.errors import StoreWriteError, UserError
from crlbench.store import write_atomic
from crlbench.suite import RunSpec
from crlbench.validate import check_batch_fits, check_long_tail_source


def _training_size(data, d: dict, rho: float) -> int:
    """Images a run of this dataset trains on, after the long tail of its variant."""
    size = len(data.pretrain_images(d["use_unlabeled"], d["train_split"]))
    if rho == 1.0:
        return size
    n_max = int(torch.bincount(data.train_labels, minlength=data.num_classes).min())
    return sum(long_tail_counts(n_max, data.num_classes, rho))


def check_data(specs: list[RunSpec], cache: DatasetCache | None = None) -> None:
    """Each run's dataset read in full with that run's data settings (once per distinct
    setting, through the executor's cache, so that its first run need not read it again), and
    each run's batch size against its (possibly long-tailed) training split."""
    cache = cache if cache is not None else DatasetCache()
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in specs:
        key = (spec.dataset, json.dumps(spec.config["data"], sort_keys=True))
        groups.setdefault(key, []).append(spec)
    for (name, _), group in groups.items():
        d = group[0].config["data"]
        data = cache.load(group[0].source, root=d["root"], download=d["download"],
                          image_size=d["image_size"], use_unlabeled=d["use_unlabeled"],
                          stream=d["stream"])
        for spec in group:
            check_image_size(spec.config["backbone"]["name"], data.image_size)
            if not spec.plugin.obj.trainable:
                continue
            rho = float(spec.variant.get("imbalance", 1.0))
            if rho != 1.0:
                check_long_tail_source(name, data.unlabeled_images is not None,
                                       d["use_unlabeled"])
            check_batch_fits(spec.config["train"]["batch_size"], _training_size(data, d, rho),
                             name, rho)


def check_store(store: Path) -> None:
    """UserError unless files can be created in the store: a read-only or full file system, a
    folder without permission, a path through a regular file. Tried where the store's first
    write would go (its deepest existing folder), so no folder is made."""
    folder = Path(store).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    hint = "; give a writable folder with results.dir=PATH"
    if not folder.is_dir():
        raise UserError(f"results store {store} cannot be made: {folder} is not a folder{hint}")
    probe = folder / f".crlbench-write-test.{os.getpid()}"
    try:
        write_atomic(probe, lambda f: f.write(b"x"))
        probe.unlink()
    except StoreWriteError as e:
        raise UserError(f"results store {store} cannot be written ({folder}: "
                        f"{e.error.strerror or e.error}){hint}") from None


def check_local_workers(specs: list[RunSpec]) -> None:
    """A run on several workers of this machine's GPUs needs as many GPUs as workers (the
    Ray executor checks its cluster's when Ray is up)."""
    from crlbench.executors.workers import uses_gpus

    for spec in specs:
        workers = spec.config["distributed"]["workers"]
        if workers > 1 and uses_gpus(spec.config) and workers > torch.cuda.device_count():
            raise UserError(f"{spec.label} trains on distributed.workers={workers} GPUs, and "
                            f"this machine has {torch.cuda.device_count()}; lower "
                            "distributed.workers (or resources.gpu_per_run), or use "
                            "executor=ray on a cluster with enough GPUs")


def preflight(specs: list[RunSpec], cache: DatasetCache | None = None,
              store: Path | None = None, executor: str = "local") -> None:
    """Every check above on the runs still to do (the store's only when there are any)."""
    if specs and store is not None:
        check_store(store)
    if executor == "local":
        check_local_workers(specs)
    check_data(specs, cache)
