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
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from crlbench import registry
from crlbench.augment import Augmenter
from crlbench.backbones import check_backbone_name
from crlbench.config import SuiteConfig, check_choices, to_dict
from crlbench.data import dataset_channels, resolve_dataset
from crlbench.errors import UserError
from crlbench.store import RESERVED

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


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
    variant: dict[str, Any] = field(default_factory=dict)
    method_version: str = ""  # the method's implementation version (in run_id)

    @property
    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.variant.items()))
        return f"{self.method}/{self.dataset} seed={self.seed}{extra}"


def method_config(name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The method's Config dataclass with its preset's values (for a method with presets: the
    one `overrides` names, else Config's default) and then the suite's overrides merged in,
    validated."""
    cls = registry.methods.get(name)
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
    return resolved


def unused_method_cfg(cfg: DictConfig) -> list[str]:
    """Warnings for method_cfg sections of methods this run does not include (no effect)."""
    unused = [name for name in cfg.method_cfg if name not in cfg.method]
    return [f"method_cfg.{name} is set but {name} is not among this run's methods "
            f"({', '.join(cfg.method)}); it has no effect" for name in unused]


def run_id_of(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _hashed_part(run_cfg: dict[str, Any], trainable: bool, method_version: str) -> dict[str, Any]:
    """What changes a run's result: the configuration and the method's implementation version.
    A method that does not train ignores training settings."""
    keep = ["method", "method_cfg", "dataset", "seed", "variant", "eval"]
    data = ["image_size"]
    if trainable:
        keep += ["backbone", "augment", "train"]
        data += ["use_unlabeled", "train_split"]  # what training sees
    part = {k: run_cfg[k] for k in keep}
    part["data"] = {k: run_cfg["data"][k] for k in data}
    part["method_version"] = method_version
    return part


def _check_names(cfg: DictConfig) -> None:
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
    for name in cfg.method:
        registry.methods.get(name)
    for name in cfg.method_cfg:
        if name not in registry.methods.names():
            raise UserError(
                f"method_cfg names unknown method {name!r}; valid methods: "
                f"{', '.join(registry.methods.names())}"
            )
    for name in cfg.dataset:
        resolve_dataset(name, cfg.data.folders)  # unknown or unusable: one line naming it
    for method in cfg.method:
        accepts = registry.methods.get(method).input_channels
        for name in cfg.dataset:
            channels = dataset_channels(name, cfg.data.folders)
            if accepts is not None and channels not in accepts:
                raise UserError(
                    f"method {method!r} needs images with {' or '.join(map(str, accepts))} "
                    f"channels; dataset {name!r} has {channels} (drop one of them from the suite)"
                )
    check_backbone_name(cfg.backbone.name)
    Augmenter.from_config(cfg.augment, out_size=32)  # family and overrides, checked up front


def _at_least_1(values: dict[str, Any]) -> None:
    for key, value in values.items():
        if value < 1:
            raise UserError(f"'{key}' must be at least 1, got {value}")


def check_eval(ev: DictConfig) -> None:
    """The ranges of an `eval` section (a suite's, or the speed benchmark's)."""
    _at_least_1({"eval.batch_size": ev.batch_size, "eval.kmeans_restarts": ev.kmeans_restarts,
                 "eval.linear.epochs": ev.linear.epochs})
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
    for name in ev.metrics:
        registry.evaluators.get(name)  # unknown, duplicate or broken: one line naming it


def _check_values(cfg: DictConfig) -> None:
    _at_least_1({"train.epochs": cfg.train.epochs, "train.batch_size": cfg.train.batch_size,
                 "train.checkpoint_every": cfg.train.checkpoint_every})
    if cfg.data.image_size is not None and cfg.data.image_size < 4:
        raise UserError(f"'data.image_size' must be at least 4, got {cfg.data.image_size}")
    if cfg.train.optimizer.lr <= 0:
        raise UserError(f"'train.optimizer.lr' must be positive, got {cfg.train.optimizer.lr}")
    check_eval(cfg.eval)


_NOT_SWEPT = ("name", "description", "method", "dataset", "seeds", "sweep", "results",
              "executor", "device", "resources", "ray", "variant")


def _harness_variants(cfg: DictConfig, method: str) -> list[dict[str, Any]]:
    """variant.imbalance and variant.k combinations; K only varies methods with cluster heads."""
    axes: list[tuple[str, list[Any]]] = []
    if len(cfg.variant.imbalance):
        rhos = [float(r) for r in cfg.variant.imbalance]
        if any(r < 1 for r in rhos):
            raise UserError(f"'variant.imbalance' values are ratios rho >= 1, got {rhos}")
        if cfg.data.train_split != "train" and any(r != 1 for r in rhos):
            raise UserError("'variant.imbalance' makes the train split long-tailed; training "
                            f"on data.train_split={cfg.data.train_split} would add the balanced "
                            "test split to it: use data.train_split=train")
        axes.append(("imbalance", rhos))
    if len(cfg.variant.k) and hasattr(registry.methods.get(method), "cluster_logits"):
        ks = [int(k) for k in cfg.variant.k]
        if any(k < 2 for k in ks):
            raise UserError(f"'variant.k' values must be at least 2, got {ks}")
        axes.append(("k", ks))
    return [dict(zip([a for a, _ in axes], combo, strict=True))
            for combo in itertools.product(*(values for _, values in axes))]


def _variants(cfg: DictConfig, method: str) -> list[dict[str, Any]]:
    """The sweep's combinations that concern `method` (its own method_cfg keys and all others),
    times the harness variants (imbalance ratio, number of clusters)."""
    keys = []
    for key in sorted(cfg.sweep):
        top = key.split(".")[0]
        if top in _NOT_SWEPT:
            raise UserError(f"sweep cannot vary '{key}'; list values of {top} directly instead")
        if len(cfg.sweep[key]) == 0:
            raise UserError(f"sweep.{key} lists no values")
        if top != "method_cfg" or key.split(".")[1:2] == [method]:
            keys.append(key)
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


def expand(cfg: DictConfig) -> list[RunSpec]:
    """All runs of a suite in a stable order: method, dataset, variant, then seed."""
    _check_names(cfg)
    _check_values(cfg)
    specs = []
    for method in cfg.method:
        trainable = registry.methods.get(method).trainable
        version = registry.method_version(method)
        for variant in _variants(cfg, method):
            run = _apply(cfg, variant)
            _check_values(run)
            plain = to_dict(run)
            method_cfg = method_config(method, plain["method_cfg"].get(method))
            for dataset in cfg.dataset:
                for seed in cfg.seeds:
                    run_cfg = {
                        "method": method, "method_cfg": method_cfg, "dataset": dataset,
                        "seed": int(seed), "variant": variant, "backbone": plain["backbone"],
                        "augment": plain["augment"], "train": plain["train"],
                        "eval": plain["eval"], "data": plain["data"], "device": plain["device"],
                        # torch threads of the run, whichever executor runs it: float sums
                        # depend on them, so one spec gives one record (not hashed)
                        "threads": max(1, int(cfg.resources.cpu_per_run)),
                    }
                    hashed = _hashed_part(run_cfg, trainable, version)
                    specs.append(RunSpec(
                        suite=cfg.name, method=method, dataset=dataset, seed=int(seed),
                        config=run_cfg, run_id=run_id_of(hashed), variant=variant,
                        method_version=version,
                        config_id=run_id_of({k: v for k, v in hashed.items() if k != "seed"}),
                    ))
    order = {m: i for i, m in enumerate(cfg.method)}
    datasets = {d: i for i, d in enumerate(cfg.dataset)}
    return sorted(specs, key=lambda s: (order[s.method], datasets[s.dataset]))
