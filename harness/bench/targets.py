"""The speed targets, each judged pass/fail only where this benchmark measured it on the
setting the target names; elsewhere "not applicable: <why>"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from crlbench.config import EvalConfig

# The GPU targets' setting (the README's H100 figures): key -> the values that match it.
GPU_SETTING: dict[str, tuple[Any, ...]] = {
    "method": ("simclr",), "backbone": ("resnet18",), "batch_size": (512,),
    "image_size": (32,), "channels": (3,), "precision": ("auto", "bf16"),
    "small_stem": (None, True), "channels_last": (None, True),
}
CPU_FIXED_SETTING: dict[str, tuple[Any, ...]] = {"dataset": ("digits",),
                                                 "backbone": ("convnet_tiny",)}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    op: str  # ">=" or "<="
    threshold: float
    device: str  # the device type the target is stated for
    setting: dict[str, tuple[Any, ...]]
    value: Callable[[dict[str, Any]], float | None]  # from the results; None: not measured


def _mode(results: dict[str, Any], mode: str, key: str) -> float | None:
    part = (results.get("throughput") or {}).get(mode)
    return part[key] if part else None


def _baseline_ratio(results: dict[str, Any], workers: int) -> float | None:
    for row in (results.get("baseline") or {}).get("runs", []):
        if row["workers"] == workers:
            return row["ratio"]
    return None


def _worst_baseline_ratio(results: dict[str, Any]) -> float | None:
    """The harness over the fastest DataLoader it was measured against."""
    ratios = [row["ratio"] for row in (results.get("baseline") or {}).get("runs", [])
              if row["ratio"] is not None]
    return min(ratios) if ratios else None


def _eval_total(results: dict[str, Any], n: int) -> float | None:
    for row in (results.get("eval") or {}).get("sizes", []):
        if row["features"] == n:
            return row["total_s"]
    return None


def _fixed(results: dict[str, Any]) -> float | None:
    part = results.get("fixed_cost")
    return part["total_s"] if part else None


def _worst_stream_speedup(results: dict[str, Any]) -> float | None:
    """The streaming reader over torchvision's ImageFolder loader, at its worst worker count."""
    runs = (results.get("stream") or {}).get("runs", [])
    return min(row["speedup"] for row in runs) if runs else None


def _default_eval(cfg: DictConfig) -> bool:
    return OmegaConf.to_container(cfg.eval) == OmegaConf.to_container(
        OmegaConf.structured(EvalConfig))


TARGETS = (
    Target("train_compiled", "training images/s, compiled", ">=", 30_000, "cuda", GPU_SETTING,
           lambda r: _mode(r, "compiled", "images_per_s")),
    Target("train_eager", "training images/s, eager", ">=", 22_000, "cuda", GPU_SETTING,
           lambda r: _mode(r, "eager", "images_per_s")),
    Target("baseline_ratio_16", "harness / DataLoader with 16 workers", ">=", 4.0, "cuda",
           GPU_SETTING, lambda r: _baseline_ratio(r, 16)),
    Target("augment_share_eager", "augmentation share of the eager step", "<=", 0.15, "cuda",
           GPU_SETTING, lambda r: _mode(r, "eager", "augment_share")),
    Target("augment_share_compiled", "augmentation share of the compiled step", "<=", 0.15,
           "cuda", GPU_SETTING, lambda r: _mode(r, "compiled", "augment_share")),
    Target("eval_70k_s", "full evaluation of 70,000 features of 512 dims, seconds", "<=", 20.0,
           "cuda", {"feature_dim": (512,), "classes": (10,)}, lambda r: _eval_total(r, 70_000)),
    Target("cpu_baseline_ratio", "harness / fastest DataLoader measured, at the run's torch "
           "threads", ">=", 1.3, "cpu", {"backbone": ("convnet_tiny",)}, _worst_baseline_ratio),
    Target("cpu_fixed_cost_s", "per-run fixed cost on the CPU, seconds", "<=", 2.0, "cpu",
           CPU_FIXED_SETTING, _fixed),
    Target("cpu_stream_speedup", "streaming folder reader / torchvision ImageFolder "
           "DataLoader, equal workers", ">=", 1.0, "cpu", {}, _worst_stream_speedup),
)


def _mismatch(cfg: DictConfig, setting: dict[str, tuple[Any, ...]]) -> list[str]:
    return [f"{key}={OmegaConf.select(cfg, key)}" for key, ok in setting.items()
            if OmegaConf.select(cfg, key) not in ok]


def judge(cfg: DictConfig, device_type: str, results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in TARGETS:
        value = t.value(results)
        row: dict[str, Any] = {"name": t.name, "description": t.description,
                               "target": f"{t.op} {t.threshold:g}", "device": t.device,
                               "measured": value}
        differs = _mismatch(cfg, t.setting)
        if t.name == "eval_70k_s" and not _default_eval(cfg):
            differs.append("eval.* changed from the defaults")
        if device_type != t.device:
            row["status"] = f"not applicable: stated for {t.device}, ran on {device_type}"
        elif differs:
            row["status"] = f"not applicable: setting differs ({', '.join(differs)})"
        elif value is None:
            row["status"] = "not applicable: not measured in this run"
        else:
            ok = value >= t.threshold if t.op == ">=" else value <= t.threshold
            row["status"] = "pass" if ok else "fail"
        rows.append(row)
    rows.append({"name": "cpu_quickstart_s", "description": "quickstart suite on 2 CPU cores, "
                 "seconds", "target": "<= 180", "device": "cpu", "measured": None,
                 "status": "not applicable: not measured by crlbench bench (time `crlbench run "
                           "suite=quickstart`)"})
    return rows
