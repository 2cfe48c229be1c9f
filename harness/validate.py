"""Every rule a user can break beyond the schema's types, checked before the first run.

The names of a suite (its methods and datasets resolved once, through crlbench.resolve), the
ranges and values of the training and evaluation settings, the sweep and the harness
variants; suite expansion calls these before it makes a single run, the speed benchmark the
ones that concern it. Each broken rule is one `UserError` naming the key and what is valid.
The closed sets of choices are checked as the suite loads (crlbench.config.check_choices).
The rules that need the data read (a batch larger than a long-tailed split) are here too, and
the preflight applies them before the first run (the runner again, for a direct caller).
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig

from crlbench import registry
from crlbench.augment import check_augment
from crlbench.backbones import check_backbone_name
from crlbench.data import DatasetSource
from crlbench.errors import UserError
from crlbench.plugin import PluginEntry
from crlbench.resolve import resolve_dataset, resolve_method
from crlbench.store import RESERVED

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def check_names(cfg: DictConfig) -> tuple[dict[str, PluginEntry], dict[str, DatasetSource]]:
    """The suite's names checked, and its methods and datasets resolved (once each)."""
    for key in ("method", "dataset", "seeds"):
        if len(cfg[key]) == 0:
            raise UserError(f"'{key}' is empty; give at least one, e.g. {key}=[...]")
        if len(set(cfg[key])) != len(cfg[key]):
            raise UserError(f"'{key}' lists a value twice: {list(cfg[key])}")
    if not _SAFE_NAME.match(cfg.name):
        raise UserError(f"suite name {cfg.name!r} must be letters, digits, '_', '.', '+', '-'")
    if cfg.name in RESERVED:
        raise UserError(f"suite name {cfg.name!r} is reserved (results/{cfg.name}/ holds "
                        "crlbench's own output); name the suite otherwise")
    for kind, names in (("method", cfg.method), ("dataset", cfg.dataset)):
        for name in names:  # names become folders of the results store
            if not _SAFE_NAME.match(name):
                raise UserError(f"{kind} name {name!r} must be letters, digits, '_', '.', '+', "
                                "'-' (it names a folder of the results store)")
    methods = {name: resolve_method(name) for name in cfg.method}
    for name in cfg.method_cfg:
        if name not in registry.methods.names():
            raise UserError(
                f"method_cfg names unknown method {name!r}; valid methods: "
                f"{', '.join(registry.methods.names())}"
            )
    # unknown or unusable: one line naming it
    sources = {name: resolve_dataset(name, cfg.data.folders) for name in cfg.dataset}
    for method, entry in methods.items():
        accepts = entry.obj.input_channels
        for name, source in sources.items():
            if accepts is not None and source.channels not in accepts:
                raise UserError(
                    f"method {method!r} needs images with {' or '.join(map(str, accepts))} "
                    f"channels; dataset {name!r} has {source.channels} (drop one of them from "
                    "the suite)"
                )
    check_backbone_name(cfg.backbone.name)
    check_augment(cfg.augment)
    return methods, sources


def _at_least_1(values: dict[str, Any]) -> None:
    for key, value in values.items():
        if value < 1:
            raise UserError(f"'{key}' must be at least 1, got {value}")


def check_eval(ev: DictConfig) -> None:
    """The ranges of an `eval` section (a suite's, or the speed benchmark's)."""
    _at_least_1({"eval.batch_size": ev.batch_size, "eval.kmeans_restarts": ev.kmeans_restarts,
                 "eval.linear.epochs": ev.linear.epochs})
    if ev.linear.optimizer == "lbfgs":
        _at_least_1({"eval.linear.max_iter": ev.linear.max_iter})
        if not len(ev.linear.l2) or not all(lam >= 0 for lam in ev.linear.l2):
            raise UserError("'eval.linear.l2' must list penalties lambda >= 0, got "
                            f"{list(ev.linear.l2)}")
    elif not len(ev.linear.lrs) or not all(lr > 0 for lr in ev.linear.lrs):
        raise UserError(f"'eval.linear.lrs' must list learning rates > 0, got "
                        f"{list(ev.linear.lrs)}")
    if not 0 < ev.linear.val_fraction < 1:
        raise UserError("'eval.linear.val_fraction' must be between 0 and 1, got "
                        f"{ev.linear.val_fraction}")
    if ev.geometry_samples is not None and ev.geometry_samples < 2:
        raise UserError("'eval.geometry_samples' must be at least 2 (uniformity needs pairs) or "
                        f"null for every test image, got {ev.geometry_samples}")
    if any(k < 1 for k in ev.knn_k):
        raise UserError(f"'eval.knn_k' values must be at least 1, got {list(ev.knn_k)}")
    if any(k < 1 for k in ev.retrieval_k):
        raise UserError(f"'eval.retrieval_k' values must be at least 1, got {list(ev.retrieval_k)}")
    if not 2 <= ev.kest_min_k <= ev.kest_max_k:
        raise UserError("K estimation needs 2 <= eval.kest_min_k <= eval.kest_max_k, got "
                        f"kest_min_k={ev.kest_min_k}, kest_max_k={ev.kest_max_k}")
    _at_least_1({"eval.kest_restarts": ev.kest_restarts})
    if ev.kest_sample < 3:
        raise UserError(f"'eval.kest_sample' must be at least 3, got {ev.kest_sample}")
    if len(set(ev.metrics)) != len(ev.metrics):
        raise UserError(f"'eval.metrics' lists an evaluator twice: {list(ev.metrics)}")


def check_values(cfg: DictConfig) -> None:
    _at_least_1({"train.epochs": cfg.train.epochs, "train.batch_size": cfg.train.batch_size,
                 "train.checkpoint_every": cfg.train.checkpoint_every})
    if cfg.data.image_size is not None and cfg.data.image_size < 4:
        raise UserError(f"'data.image_size' must be at least 4, got {cfg.data.image_size}")
    if cfg.train.optimizer.lr <= 0:
        raise UserError(f"'train.optimizer.lr' must be positive, got {cfg.train.optimizer.lr}")
    check_eval(cfg.eval)


def unused_method_cfg(cfg: DictConfig) -> list[str]:
    """Warnings for method_cfg sections of methods this run does not include (no effect)."""
    unused = [name for name in cfg.method_cfg if name not in cfg.method]
    return [f"method_cfg.{name} is set but {name} is not among this run's methods "
            f"({', '.join(cfg.method)}); it has no effect" for name in unused]


_NOT_SWEPT = ("name", "description", "method", "dataset", "seeds", "sweep", "results",
              "executor", "device", "resources", "ray", "variant")


def check_sweep(cfg: DictConfig) -> None:
    """What a sweep may vary, and that each of its keys lists values."""
    for key in sorted(cfg.sweep):
        top = key.split(".")[0]
        if top in _NOT_SWEPT:
            raise UserError(f"sweep cannot vary '{key}'; list values of {top} directly instead")
        if len(cfg.sweep[key]) == 0:
            raise UserError(f"sweep.{key} lists no values")


def check_variants(cfg: DictConfig) -> None:
    """The harness variants: imbalance ratios rho >= 1 on the train split only, K >= 2."""
    rhos = [float(r) for r in cfg.variant.imbalance]
    if any(not r >= 1 for r in rhos):  # NaN fails it too
        raise UserError(f"'variant.imbalance' values are ratios rho >= 1, got {rhos}")
    if cfg.data.train_split != "train" and any(r != 1 for r in rhos):
        raise UserError("'variant.imbalance' makes the train split long-tailed; training "
                        f"on data.train_split={cfg.data.train_split} would add the balanced "
                        "test split to it: use data.train_split=train")
    ks = [int(k) for k in cfg.variant.k]
    if any(k < 2 for k in ks):
        raise UserError(f"'variant.k' values must be at least 2, got {ks}")


def check_long_tail_source(dataset: str, has_unlabeled: bool, use_unlabeled: bool) -> None:
    """A long-tailed training split needs classes: not with an unlabeled split trained on."""
    if has_unlabeled and use_unlabeled:
        raise UserError(f"an imbalanced {dataset} needs data.use_unlabeled=false: the "
                        "unlabeled split has no classes to make long-tailed")


def check_batch_fits(batch_size: int, images: int, dataset: str, rho: float = 1.0) -> None:
    """A training batch must fit in the (possibly long-tailed) training split."""
    if batch_size > images:
        where = f" at imbalance {rho:g}" if rho != 1.0 else ""
        raise UserError(f"train.batch_size={batch_size} is larger than the {images} training "
                        f"images of {dataset}{where}; use train.batch_size<={images}")
