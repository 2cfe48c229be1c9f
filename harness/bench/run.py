"""`run_bench`: the four measurements in one process, in the order that keeps each honest, then
the targets, the tables and the JSON.

The fixed cost goes first (it must pay the lazy CUDA initialisation), then the harness's
throughput, the DataLoader baseline and the phase-by-phase profile on the same model and step,
and the evaluation cost.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from crlbench.bench.baseline import measure_baseline
from crlbench.bench.evalcost import measure_eval
from crlbench.bench.fixedcost import measure_fixed_cost
from crlbench.bench.model import device_of, synthetic_images, synthetic_stepper
from crlbench.bench.profile import measure_profile
from crlbench.bench.report import default_output, environment, print_report
from crlbench.bench.stream import measure_stream
from crlbench.bench.targets import judge
from crlbench.bench.threads import measure_threads
from crlbench.bench.throughput import measure_throughput, time_loop
from crlbench.store import write_json_atomic


def _baseline(cfg: DictConfig, device: torch.device, stepper, throughput) -> dict[str, Any]:
    """Each worker count on the stepper the throughput part ended with (else a fresh eager one);
    the ratio is against that stepper's own harness figure."""
    images = synthetic_images(cfg, device)
    if throughput is None:
        stepper, harness = synthetic_stepper(cfg, device, images, compile=False), None
    else:
        harness = throughput["compiled"] or throughput["eager"]
    runs = [measure_baseline(stepper, images, w, cfg.warmup, cfg.steps, cfg.seed)
            for w in cfg.workers]
    for row in runs:
        row["ratio"] = harness["images_per_s"] / row["images_per_s"] if harness else None
    return {"steps": cfg.steps, "warmup": cfg.warmup, "views": stepper.method.num_views,
            "against": ("compiled" if stepper.setup.cfg.compile else "eager"),
            "pin_memory": device.type == "cuda", "runs": runs}


def _warm_stepper(cfg: DictConfig, device: torch.device, stepper, images):
    """The stepper the throughput part ended with, else a fresh eager one after `warmup`
    steps."""
    if stepper is None:
        stepper = synthetic_stepper(cfg, device, images, compile=False)
        cfg_warm = OmegaConf.merge(cfg, {"steps": max(cfg.warmup, 1), "warmup": 0})
        time_loop(stepper, images, cfg_warm, augment=True, first_step=0)
    return stepper


def run_bench(cfg: DictConfig, overrides: list[str], console: Console) -> Path:
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))  # a run's cpu_per_run, as a run sets it
    try:
        return _run_bench(cfg, overrides, console)
    finally:
        torch.set_num_threads(threads)


def _run_bench(cfg: DictConfig, overrides: list[str], console: Console) -> Path:
    device = device_of(cfg)
    compile = device.type == "cuda" if cfg.compile is None else bool(cfg.compile)
    results: dict[str, Any] = {
        "command": shlex.join(["crlbench", "bench", *overrides]),
        "argv": shlex.join(sys.argv),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "compile": compile,
        "threads_used": torch.get_num_threads(),
    }
    parts = set(cfg.parts)
    if "fixed" in parts:
        results["fixed_cost"] = measure_fixed_cost(cfg, device)
    results["environment"] = environment(device)  # after: naming a GPU initialises CUDA
    stepper = throughput = None
    if "throughput" in parts:
        throughput, stepper = measure_throughput(cfg, device, compile)
        results["throughput"] = throughput
    if "baseline" in parts and cfg.workers:
        results["baseline"] = _baseline(cfg, device, stepper, throughput)
    if parts & {"profile", "threads"}:
        images = synthetic_images(cfg, device)
        stepper = _warm_stepper(cfg, device, stepper, images)
        if "profile" in parts:
            results["profile"] = measure_profile(stepper, images, cfg, first_step=0)
        if "threads" in parts:
            results["threads"] = measure_threads(cfg, device, stepper, images)
    del stepper
    if "eval" in parts and cfg.eval_sizes:
        results["eval"] = measure_eval(cfg, device)
    if "stream" in parts and cfg.workers:
        results["stream"] = measure_stream(cfg)
    results["targets"] = judge(cfg, device.type, results)
    path = Path(cfg.output).expanduser() if cfg.output else default_output(device)
    write_json_atomic(path, results)
    print_report(console, results, path)
    return path
