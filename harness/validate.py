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

import math
import re
from typing import Any

import torch
from omegaconf import DictConfig

from crlbench import registry
from crlbench.augment import check_augment
from crlbench.backbones import check_backbone_name
from crlbench.config import run_workers
from crlbench.data import DatasetSource
from crlbench.errors import UserError
from crlbench.plugin import PluginEntry
from crlbench.resolve import resolve_dataset, resolve_method
from crlbench.store import RESERVED, SAFE_NAME

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
MAX_IMAGE_SIZE = 1024  # a side beyond it is a typo here (ImageNet runs use 224)
MAX_RUNS = 100_000  # runs of one suite (an upper bound before any per-method filtering)


def check_names(cfg: DictConfig) -> tuple[dict[str, PluginEntry], dict[str, DatasetSource]]:
    """The suite's names checked, and its methods and datasets resolved (once each)."""
    for key in ("method", "dataset", "seeds"):
        if len(cfg[key]) == 0:
            raise UserError(f"'{key}' is empty; give at least one, e.g. {key}=[...]")
        if len(set(cfg[key])) != len(cfg[key]):
            raise UserError(f"'{key}' lists a value twice: {list(cfg[key])}")
    if not SAFE_NAME.match(cfg.name):
        raise UserError(f"suite name {cfg.name!r} must be letters, digits, '_', '.', '+', '-'")
    if cfg.name in RESERVED:
        raise UserError(f"suite name {cfg.name!r} is reserved (results/{cfg.name}/ holds "
                        "crlbench's own output); name the suite otherwise")
    for kind, names in (("method", cfg.method), ("dataset", cfg.dataset)):
        for name in names:  # names become folders of the results store
            if not SAFE_NAME.match(name):
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
    for key in ("knn_k", "retrieval_k"):
        if not len(ev[key]) or any(k < 1 for k in ev[key]):
            raise UserError(f"'eval.{key}' must list values of at least 1, got {list(ev[key])}")
    _at_least_1({"eval.kmeans_iters": ev.kmeans_iters})
    _in_range("eval.knn_temperature", ev.knn_temperature, 0, math.inf, low_open=True,
              high_open=True)
    if not len(ev.metrics):
        raise UserError("'eval.metrics' is empty; name at least one evaluator (crlbench "
                        "evaluators lists them)")
    if not 2 <= ev.kest_min_k <= ev.kest_max_k:
        raise UserError("K estimation needs 2 <= eval.kest_min_k <= eval.kest_max_k, got "
                        f"kest_min_k={ev.kest_min_k}, kest_max_k={ev.kest_max_k}")
    _at_least_1({"eval.kest_restarts": ev.kest_restarts})
    if ev.kest_sample < 3:
        raise UserError(f"'eval.kest_sample' must be at least 3, got {ev.kest_sample}")
    if len(set(ev.metrics)) != len(ev.metrics):
        raise UserError(f"'eval.metrics' lists an evaluator twice: {list(ev.metrics)}")
    if ev.every < 0:
        raise UserError(f"'eval.every' must be >= 0 (0: no learning curves), got {ev.every}")
    if ev.every:
        if not len(ev.every_metrics) or len(set(ev.every_metrics)) != len(ev.every_metrics):
            raise UserError("'eval.every_metrics' must name evaluators, each once, got "
                            f"{list(ev.every_metrics)}")
        if ev.every_samples < 2:
            raise UserError(f"'eval.every_samples' must be at least 2, got {ev.every_samples}")


def _in_range(key: str, value: float, low: float, high: float, *, low_open: bool = False,
              high_open: bool = False) -> None:
    """`value` finite (not NaN or inf) and within [low, high], either end open if asked."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        ends = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise UserError(f"'{key}' must be a finite number in {ends}, got {value}")


def check_device(name: str) -> None:
    """`device`: auto, cpu, cuda or cuda:N, and a CUDA device only where torch sees one."""
    if not _DEVICE.match(name):
        raise UserError(f"'device' is {name!r}; valid choices: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} asked for, but torch sees no CUDA device here; use "
                        "device=auto or device=cpu")


def check_values(cfg: DictConfig) -> None:
    """The ranges of the training, data, device and results settings, then of `eval`."""
    if not str(cfg.results.dir).strip():
        raise UserError("'results.dir' is empty; give the results store's folder (default "
                        "results)")
    check_loggers(list(cfg.results.loggers))
    _at_least_1({"train.epochs": cfg.train.epochs, "train.batch_size": cfg.train.batch_size,
                 "train.checkpoint_every": cfg.train.checkpoint_every})
    size = cfg.data.image_size
    if size is not None and not 4 <= size <= MAX_IMAGE_SIZE:
        raise UserError(f"'data.image_size' must be between 4 and {MAX_IMAGE_SIZE} (or null "
                        f"for the native size), got {size}")
    if cfg.data.stream_workers < 0:
        raise UserError(f"'data.stream_workers' must be 0 (decode in the run's process) or "
                        f"more, got {cfg.data.stream_workers}")
    opt = cfg.train.optimizer
    _in_range("train.optimizer.lr", opt.lr, 0, math.inf, low_open=True, high_open=True)
    _in_range("train.optimizer.weight_decay", opt.weight_decay, 0, math.inf, high_open=True)
    _in_range("train.optimizer.momentum", opt.momentum, 0, 1, high_open=True)
    for beta in opt.betas:
        _in_range("train.optimizer.betas", beta, 0, 1, high_open=True)
    _in_range("train.optimizer.lars_eta", opt.lars_eta, 0, math.inf, low_open=True,
              high_open=True)
    _in_range("train.warmup_epochs", cfg.train.warmup_epochs, 0, math.inf, high_open=True)
    _in_range("train.min_lr_ratio", cfg.train.min_lr_ratio, 0, 1)
    if cfg.train.grad_clip is not None:
        _in_range("train.grad_clip", cfg.train.grad_clip, 0, math.inf, low_open=True,
                  high_open=True)
    check_device(cfg.device)
    check_distributed(cfg)
    check_eval(cfg.eval)


def check_distributed(cfg: DictConfig) -> None:
    """`distributed` and `resources.gpu_per_run` together: how many workers one run has, and
    that its global batch splits evenly over them."""
    workers, gpus = int(cfg.distributed.workers), float(cfg.resources.gpu_per_run)
    if workers < 1:
        raise UserError(f"'distributed.workers' must be at least 1, got {workers}")
    if gpus > 1:
        if gpus != int(gpus):
            raise UserError(f"'resources.gpu_per_run' above 1 must be a whole number of GPUs "
                            f"(one per worker), got {gpus:g}")
        if workers not in (1, int(gpus)):
            raise UserError(f"'resources.gpu_per_run'={gpus:g} and 'distributed.workers'="
                            f"{workers} disagree; each worker has one GPU, so set one of them "
                            "(or both to the same number)")
    elif workers > 1 and 0 < gpus < 1:
        raise UserError(f"each of distributed.workers={workers} needs a GPU of its own, and "
                        f"resources.gpu_per_run={gpus:g} shares one; set resources.gpu_per_run "
                        "to 1 (one GPU per worker) or 0 (the CPU)")
    workers = run_workers(cfg)
    if cfg.train.batch_size % workers:
        raise UserError(f"train.batch_size={cfg.train.batch_size} does not split over "
                        f"{workers} workers; use a multiple of {workers}")
    if workers > 1 and cfg.distributed.backend == "nccl" and (
            cfg.device == "cpu" or gpus == 0):
        raise UserError("distributed.backend=nccl needs GPUs; use distributed.backend=gloo (or "
                        "auto) to train on the CPU")
    if workers > 1 and str(cfg.device).startswith("cuda:"):
        raise UserError(f"device={cfg.device} names one GPU, and each of the {workers} workers "
                        "of a run has its own (worker r on GPU r, or the GPU Ray gives it); use "
                        "device=cuda or auto")
    _at_least_1({"distributed.timeout_s": cfg.distributed.timeout_s})


def check_loggers(names: list[str]) -> None:
    """`results.loggers`: known names, each once, their packages installed."""
    from crlbench.tracking import LOGGERS, missing_packages

    unknown = [n for n in names if n not in LOGGERS]
    if unknown or len(set(names)) != len(names):
        raise UserError(f"'results.loggers' must list each of {', '.join(LOGGERS)} at most "
                        f"once, got {names}")
    missing = missing_packages(names)
    if missing:
        raise UserError(f"'results.loggers' needs {', '.join(missing)}, which is not "
                        f"installed (pip install {' '.join(missing)})")


def check_method_values(name: str, resolved: dict[str, Any]) -> None:
    """Rules for every method's hyper-parameters, beyond its own check_config: numbers are
    finite, and a field named like a temperature (a softmax's) is positive."""
    for key, value in resolved.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            raise UserError(f"'method_cfg.{name}.{key}' must be a finite number, got {value}")
        if "temperature" in key and value <= 0:
            raise UserError(f"'method_cfg.{name}.{key}' is a softmax temperature and must be "
                            f"positive, got {value}")


def unused_method_cfg(cfg: DictConfig) -> list[str]:
    """Warnings for method_cfg sections of methods this run does not include (no effect)."""
    unused = [name for name in cfg.method_cfg if name not in cfg.method]
    return [f"method_cfg.{name} is set but {name} is not among this run's methods "
            f"({', '.join(cfg.method)}); it has no effect" for name in unused]


_NOT_SWEPT = ("name", "description", "method", "dataset", "seeds", "sweep", "results",
              "executor", "device", "resources", "ray", "variant")


def check_size(cfg: DictConfig) -> None:
    """A grid of at most MAX_RUNS runs (a typo in a sweep would otherwise expand for
    minutes before anything is said)."""
    size = len(cfg.method) * len(cfg.dataset) * len(cfg.seeds)
    for values in (*cfg.sweep.values(), cfg.variant.imbalance, cfg.variant.k):
        size *= max(1, len(values))
    if size > MAX_RUNS:
        raise UserError(f"the suite makes {size:,} runs (methods x datasets x seeds x sweep x "
                        f"variants), more than {MAX_RUNS:,}; split it into several suites")


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
