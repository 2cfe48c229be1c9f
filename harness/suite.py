"""Expand a validated suite config into RunSpecs, one per method x dataset x seed x variant.

Each RunSpec carries the fully resolved configuration of its run (method hyper-parameters with
their defaults filled in) and a `run_id`: a hash of everything that changes the run's result,
and of nothing else (not the results folder, the data root or the executor). Two runs with the
same run_id compute the same thing, so a finished record lets the executor skip the run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from crlbench import registry
from crlbench.config import SuiteConfig, check_choices, run_workers, to_dict
from crlbench.data import DatasetSource
from crlbench.errors import UserError
from crlbench.plugin import PluginEntry
from crlbench.resolve import resolve_evaluators, resolve_method
from crlbench.validate import (
    check_method_values,
    check_names,
    check_size,
    check_sweep,
    check_values,
    check_variants,
)


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: what to train and evaluate, fully resolved."""

    suite: str
    method: str
    dataset: str
    seed: int
    config: dict[str, Any]  # resolved: method_cfg, backbone, augment, train, eval, data, device
    run_id: str
    config_id: str  # the hash without the seed: runs that differ only in seed share it
    # the hash of what training alone depends on (run_id without the evaluation): runs that
    # differ only in eval.* share it, and with it the kept weights of one training
    train_id: str = ""
    variant: dict[str, Any] = field(default_factory=dict)
    method_version: str = ""  # the method's implementation version (in run_id)
    # Resolved once, at expansion: what the run receives instead of names (not in run_id,
    # which hashes the names and the method's version).
    plugin: PluginEntry | None = field(default=None, repr=False)  # the method
    source: DatasetSource | None = field(default=None, repr=False)  # the dataset
    evaluators: tuple[PluginEntry, ...] = field(default=(), repr=False)  # eval.metrics'
    # eval.every_metrics', for the learning curves (empty without them)
    curve_evaluators: tuple[PluginEntry, ...] = field(default=(), repr=False)

    @property
    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.variant.items()))
        return f"{self.method}/{self.dataset} seed={self.seed}{extra}"


def method_config(method: str | PluginEntry, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The method's Config dataclass with its preset's values (for a method with presets: the
    one `overrides` names, else Config's default) and then the suite's overrides merged in,
    validated. `method`: a resolved method, or a registered name."""
    entry = resolve_method(method) if isinstance(method, str) else method
    name, cls = entry.name, entry.obj
    schema = OmegaConf.structured(cls.Config)
    overrides = overrides or {}
    try:
        preset = cls.preset_values(overrides.get("preset"))
    except ValueError as e:
        raise UserError(f"method_cfg.{name}.preset: {e}") from None
    except Exception as e:  # a plugin's presets may raise anything; name it
        raise UserError(f"method_cfg.{name}.preset: {type(e).__name__}: {e}") from e
    try:
        merged = OmegaConf.merge(schema, preset, overrides)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        valid = ", ".join(str(k) for k in schema) or "none"
        if key and key not in schema:
            raise UserError(
                f"method_cfg.{name}: unknown key '{key}'; {name}'s keys: {valid}"
            ) from None
        raise UserError(f"method_cfg.{name}.{key}: {str(e).strip().splitlines()[0]}") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise UserError(f"method_cfg.{name}: {', '.join(missing)} has no value ({cls.__name__}."
                        f"Config gives no default); set method_cfg.{name}.{missing[0]}=VALUE, "
                        "or give the field the paper's value as its default")
    resolved: dict[str, Any] = OmegaConf.to_container(merged, resolve=True)  # type: ignore
    try:
        cls.check_config(cls.Config(**resolved))
    except ValueError as e:
        raise UserError(f"method_cfg.{name}: {e}") from None
    except Exception as e:  # a plugin's check may raise anything; name it, keep the cause
        raise UserError(f"method_cfg.{name}: check_config raised {type(e).__name__}: {e}") from e
    check_method_values(name, resolved)  # after the method's own, more specific checks
    return resolved


def run_id_of(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# The probe's settings that only the other way of training it reads
_UNUSED_PROBE_KEYS = {"lbfgs": ("lrs", "epochs", "batch_size", "weight_decay"),
                      "adam": ("l2", "max_iter"), "sgd": ("l2", "max_iter")}


# The learning-curve settings: keys added after run ids were first hashed, so hashed only when
# curves are on (which keeps the ids of every run made without them)
CURVE_KEYS = ("every", "every_metrics", "every_samples")


def _used_eval(ev: dict[str, Any], trainable: bool) -> dict[str, Any]:
    """The eval section without the probe settings its optimizer ignores, and without the
    learning-curve settings when the run makes no curves (none set, or nothing trains)."""
    lin = ev["linear"]
    unused = _UNUSED_PROBE_KEYS.get(lin["optimizer"], ())
    used = {**ev, "linear": {k: v for k, v in lin.items() if k not in unused}}
    if not ev.get("every") or not trainable:
        used = {k: v for k, v in used.items() if k not in CURVE_KEYS}
    if not ev.get("options"):  # added later too: hashed once an evaluator declares options
        used.pop("options", None)
    return used


def _hashed_part(run_cfg: dict[str, Any], trainable: bool, method_version: str) -> dict[str, Any]:
    """What changes a run's result: the configuration and the method's implementation version.
    A method that does not train ignores training settings."""
    keep = ["method", "method_cfg", "dataset", "seed", "variant", "eval"]
    data = ["image_size"]
    if trainable:
        keep += ["backbone", "augment", "train"]
        data += ["use_unlabeled", "train_split"]  # what training sees
    part = {k: run_cfg[k] for k in keep}
    part["eval"] = _used_eval(run_cfg["eval"], trainable)
    part["data"] = {k: run_cfg["data"][k] for k in data}
    part["method_version"] = method_version
    # torch's thread count changes float sums, so numbers on the CPU; hashed only when it is
    # not the default 1, which keeps the ids of the runs made before it was hashed
    if run_cfg["threads"] != 1:
        part["threads"] = run_cfg["threads"]
    # so do several workers (and per-worker batch norm changes the numbers): hashed for a
    # training on more than one, which keeps the ids of every one-process run
    if trainable and run_cfg["distributed"]["workers"] > 1:
        part["distributed"] = {k: run_cfg["distributed"][k] for k in ("workers", "sync_bn")}
    return part


def distributed_of(cfg: DictConfig, method: PluginEntry) -> dict[str, Any]:
    """The run's `distributed` settings, resolved: its workers (1 for a method that does not
    train), its batch norm (the method's `sync_bn` unless the suite sets it), its backend.
    UserError for several workers and a method that does not declare `data_parallel`."""
    cls, dist = method.obj, cfg.distributed
    workers = run_workers(cfg) if cls.trainable else 1
    if workers > 1 and not cls.data_parallel:
        raise UserError(f"{method.describe('method')} does not support data parallelism "
                        f"(its class does not set data_parallel = True), and this suite trains "
                        f"each run on {workers} workers; use distributed.workers=1 and "
                        "resources.gpu_per_run<=1 for it")
    sync_bn = bool(cls.sync_bn if dist.sync_bn is None else dist.sync_bn)
    return {"workers": workers, "sync_bn": sync_bn, "backend": str(dist.backend),
            "timeout_s": int(dist.timeout_s)}


def _training_part(hashed: dict[str, Any], trainable: bool) -> dict[str, Any]:
    """The part of `_hashed_part` that training depends on: all but the evaluation (the eval
    section, and eval.* keys of the variant). eval.batch_size stays for a method that trains:
    it also batches the feature passes of training hooks (DeepCluster's k-means). With
    learning curves the whole eval section stays: the curves are evaluations made while
    training, and their evaluators may read any of it (kNN's k and temperature, the probe's
    settings, their eval.options), so a re-evaluation could not remake them."""
    part = {k: v for k, v in hashed.items() if k != "eval"}
    part["variant"] = {k: v for k, v in hashed["variant"].items() if not k.startswith("eval.")}
    if trainable:
        part["eval_batch_size"] = hashed["eval"]["batch_size"]
        if hashed["eval"].get("every"):
            part["curves"] = hashed["eval"]
    return part


def _harness_variants(cfg: DictConfig, method: PluginEntry) -> list[dict[str, Any]]:
    """variant.imbalance and variant.k combinations; K only varies methods with cluster heads."""
    axes: list[tuple[str, list[Any]]] = []
    if len(cfg.variant.imbalance):
        axes.append(("imbalance", [float(r) for r in cfg.variant.imbalance]))
    if len(cfg.variant.k) and hasattr(method.obj, "cluster_logits"):
        axes.append(("k", [int(k) for k in cfg.variant.k]))
    return [dict(zip([a for a, _ in axes], combo, strict=True))
            for combo in itertools.product(*(values for _, values in axes))]


def _variants(cfg: DictConfig, method: PluginEntry) -> list[dict[str, Any]]:
    """The sweep's combinations that concern `method` (its own method_cfg keys and all others),
    times the harness variants (imbalance ratio, number of clusters)."""
    keys = [key for key in sorted(cfg.sweep)
            if not key.startswith("method_cfg.") or key.split(".")[1] == method.name]
    values = [list(cfg.sweep[k]) for k in keys]
    sweeps = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    return [{**s, **h} for s in sweeps for h in _harness_variants(cfg, method)]


def _apply(cfg: DictConfig, variant: dict[str, Any]) -> DictConfig:
    """The suite config with one variant's swept values set (type-checked like an override);
    harness variants (imbalance, k) are read by the runner from the spec instead."""
    variant = {k: v for k, v in variant.items() if "." in k}
    if not variant:
        return cfg
    out = OmegaConf.create(to_dict(cfg), flags={"readonly": False})
    out = OmegaConf.merge(OmegaConf.structured(SuiteConfig), out)
    for key, value in variant.items():
        try:
            OmegaConf.update(out, key, value, merge=False)
        except OmegaConfBaseException as e:
            raise UserError(f"sweep.{key}: cannot set {value!r}: "
                            f"{str(e).strip().splitlines()[0]}") from None
    check_choices(out)
    return out


def _resolved(cache: dict[tuple[str, ...], tuple[PluginEntry, ...]], names: Any,
              curves: bool = False) -> tuple[PluginEntry, ...]:
    """The evaluators of `names`, each list resolved once per suite. For learning curves,
    UserError for one that reads more than the features (curves compute nothing else)."""
    key = tuple(names)
    if key not in cache:
        cache[key] = resolve_evaluators(key)
    if curves:
        from crlbench.evaluate import evaluator_needs

        for entry in cache[key]:
            if evaluator_needs(entry):
                raise UserError(f"eval.every_metrics: {entry.name} needs "
                                f"{', '.join(sorted(evaluator_needs(entry)))}, which learning "
                                "curves do not compute; name evaluators of the features only "
                                "(knn, linear, kmeans, retrieval, rankme, collapse)")
    return cache[key]


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def resolve_options(evaluators: tuple[PluginEntry, ...], given: dict[str, Any]) -> dict[str, Any]:
    """eval.options resolved: for each evaluator of the run that declares settings, its
    defaults with the suite's values over them (names and types checked against the
    declaration); UserError for a setting of an evaluator the run lacks or does not declare."""
    from crlbench.evaluate import evaluator_options

    declared = {e.name: evaluator_options(e) for e in evaluators}
    for name, values in given.items():
        if name not in declared:
            raise UserError(f"eval.options.{name}: {name} is not an evaluator of this run "
                            f"(eval.metrics, eval.every_metrics: {', '.join(declared)})")
        valid = declared[name]
        if not valid:
            raise UserError(f"eval.options.{name}: evaluator {name} declares no settings of its "
                            "own (the built-in evaluators read eval.* keys)")
        if not isinstance(values, dict):
            raise UserError(f"eval.options.{name} must map settings to values, got {values!r}")
        for key, value in values.items():
            if key not in valid:
                raise UserError(f"eval.options.{name}.{key}: unknown setting; {name}'s "
                                f"settings: {', '.join(valid)}")
            if not _same_type(value, valid[key]):
                raise UserError(f"eval.options.{name}.{key} must be "
                                f"{type(valid[key]).__name__} like its default "
                                f"{valid[key]!r}, got {value!r}")
    # an int given for a float default is that float: 1 and 1.0 are one setting, one run id
    return {name: {key: float(value) if isinstance(default, float) else value
                   for key, default in defaults.items()
                   for value in [given.get(name, {}).get(key, default)]}
            for name, defaults in declared.items() if defaults}


def expand(cfg: DictConfig) -> list[RunSpec]:
    """All runs of a suite in a stable order: method, dataset, variant, then seed."""
    check_size(cfg)
    methods, sources = check_names(cfg)
    check_values(cfg)
    check_sweep(cfg)
    check_variants(cfg)
    # the evaluators of eval.metrics (which a sweep may vary), each list resolved once
    evaluators_of: dict[tuple[str, ...], tuple[PluginEntry, ...]] = {}
    specs = []
    for method, entry in methods.items():
        trainable = entry.obj.trainable
        version = registry.method_version(entry)
        for variant in _variants(cfg, entry):
            run = _apply(cfg, variant)
            check_values(run)
            plain = to_dict(run)
            method_cfg = method_config(entry, plain["method_cfg"].get(method))
            evaluators = _resolved(evaluators_of, plain["eval"]["metrics"])
            curves = (_resolved(evaluators_of, plain["eval"]["every_metrics"], curves=True)
                      if plain["eval"]["every"] else ())
            # the same options for every method of the suite, whether it makes curves or not
            plain["eval"]["options"] = resolve_options(
                tuple({e.name: e for e in (*evaluators, *curves)}.values()),
                plain["eval"]["options"])
            if not entry.obj.trainable:
                curves = ()  # nothing trains, nothing to follow
            for dataset in cfg.dataset:
                for seed in cfg.seeds:
                    run_cfg = {
                        "method": method, "method_cfg": method_cfg, "dataset": dataset,
                        "seed": int(seed), "variant": variant, "backbone": plain["backbone"],
                        "augment": plain["augment"], "train": plain["train"],
                        "eval": plain["eval"], "data": plain["data"], "device": plain["device"],
                        # torch threads of the run, whichever executor runs it: float sums
                        # depend on them, so they are part of the run's identity
                        "threads": max(1, int(cfg.resources.cpu_per_run)),
                        "distributed": distributed_of(run, entry),
                        "keep_weights": bool(cfg.results.keep_weights),  # not in any id
                        "loggers": [str(n) for n in cfg.results.loggers],  # nor this
                    }
                    hashed = _hashed_part(run_cfg, trainable, version)
                    specs.append(RunSpec(
                        suite=cfg.name, method=method, dataset=dataset, seed=int(seed),
                        config=run_cfg, run_id=run_id_of(hashed), variant=variant,
                        method_version=version,
                        config_id=run_id_of({k: v for k, v in hashed.items() if k != "seed"}),
                        train_id=run_id_of(_training_part(hashed, trainable)),
                        plugin=entry, source=sources[dataset], evaluators=evaluators,
                        curve_evaluators=curves,
                    ))
    order = {m: i for i, m in enumerate(cfg.method)}
    datasets = {d: i for i, d in enumerate(cfg.dataset)}
    return sorted(specs, key=lambda s: (order[s.method], datasets[s.dataset]))
