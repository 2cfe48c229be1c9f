"""Checks before a suite runs anything: every mistake a user can make stops here, as one line
with exit code 2, before a record or checkpoint is written.

- every dataset is read in full (missing, truncated or corrupt files are found now, not in the
  middle of the suite), and its training split measured: a batch larger than a (possibly
  long-tailed) training split is refused;

Methods are not exercised here: a plugin's code runs only inside runs, where whatever it does
(raise, diverge, even kill its process) is recorded as that run's failure. `crlbench methods
--check` runs `check_method` on every installed method on request.
"""

from __future__ import annotations

from typing import Any

import torch

from crlbench import registry
from crlbench.data import load_dataset, long_tail_counts
from crlbench.errors import UserError
from crlbench.suite import RunSpec


def _training_size(data, use_unlabeled: bool, rho: float) -> int:
    """Images a run of this dataset trains on, after the long tail of its variant."""
    size = len(data.pretrain_images(use_unlabeled))
    if rho == 1.0:
        return size
    n_max = int(torch.bincount(data.train_labels, minlength=data.num_classes).min())
    return sum(long_tail_counts(n_max, data.num_classes, rho))


def check_data(cfg: Any, specs: list[RunSpec]) -> None:
    batch = cfg.train.batch_size
    for name in dict.fromkeys(s.dataset for s in specs):
        data = load_dataset(name, root=cfg.data.root, download=cfg.data.download,
                            image_size=cfg.data.image_size, folders=dict(cfg.data.folders),
                            use_unlabeled=cfg.data.use_unlabeled)
        for spec in (s for s in specs if s.dataset == name):
            if not registry.methods.get(spec.method).trainable:
                continue
            rho = float(spec.variant.get("imbalance", 1.0))
            size = _training_size(data, cfg.data.use_unlabeled, rho)
            if batch > size:
                where = f" at imbalance {rho:g}" if rho != 1.0 else ""
                raise UserError(f"train.batch_size={batch} is larger than the {size} training "
                                f"images of {name}{where}; use train.batch_size<={size}")


def preflight(cfg: Any, specs: list[RunSpec]) -> None:
    check_data(cfg, specs)
