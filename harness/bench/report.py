"""The benchmark's output: the environment it ran in, terminal tables and the JSON file."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table


def environment(device: torch.device) -> dict[str, Any]:
    from crlbench.environment import cpu_name
    from crlbench.environment import environment as run_environment

    env = run_environment(device)
    env.update(cpu_name=cpu_name(), cpu_count=os.cpu_count(),
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
               else None)
    return env


def default_output(device: torch.device) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / "bench" / f"bench-{device.type}-{stamp}.json"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def training_table(results: dict[str, Any]) -> Table | None:
    tp, base = results.get("throughput"), results.get("baseline")
    if not tp and not base:
        return None
    views = (tp or base)["views"]
    table = Table("pipeline", "images/s", "s/step", "no-aug img/s", "aug share", "warm-up s",
                  "vs baseline", title=f"training images/s (samples, {views} views each)")
    for mode in ("eager", "compiled"):
        row = (tp or {}).get(mode)
        if row:
            table.add_row(f"harness {mode} {row['precision']}", _rate(row["images_per_s"]),
                          _secs(row["seconds"] / tp["steps"]), _rate(row["noaug_images_per_s"]),
                          f"{row['augment_share']:.1%}", f"{row['warmup_s']:.1f}", "")
    for row in (base or {}).get("runs", []):
        table.add_row(f"DataLoader {row['workers']} workers", _rate(row["images_per_s"]),
                      _secs(row["seconds"] / base["steps"]), "", "", f"{row['warmup_s']:.1f}",
                      "-" if row["ratio"] is None else f"x{row['ratio']:.2f}")
    return table


def profile_table(results: dict[str, Any]) -> Table | None:
    pr = results.get("profile")
    if not pr:
        return None
    syncs = pr["host_syncs_per_step"]
    table = Table("phase", "ms", "share",
                  title=f"one step, phase by phase ({pr['precision']}, "
                        f"{'compiled' if pr['compile'] else 'eager'}; median of {pr['steps']})")
    for name, seconds in pr["phases_s"].items():
        table.add_row(name, f"{1000 * seconds:.2f}", f"{pr['shares'][name]:.1%}")
    table.add_row("sum (synchronised at each cut)", f"{1000 * pr['cut_step_s']:.2f}", "")
    table.add_row("step without cuts", f"{1000 * pr['step_s']:.2f}", "")
    table.add_row("host syncs per step", "-" if syncs is None else f"{syncs:g}", "")
    return table


def threads_table(results: dict[str, Any]) -> Table | None:
    th = results.get("threads")
    if not th or "rows" not in th:
        return None
    fastest = th["fastest"]
    table = Table("torch threads", "augmentation ms", "model step ms", "step ms",
                  title=f"one step at each thread count (batch {th['batch_size']}, median of "
                        f"{th['steps']}); fastest: augmentation {fastest['augment']}, model "
                        f"{fastest['model']}, step {fastest['step']}; a split would gain "
                        f"x{th['split_gain']:.2f}")
    for row in th["rows"]:
        table.add_row(str(row["threads"]), *(f"{1000 * row[k]:.1f}"
                                             for k in ("augment_s", "model_s", "step_s")))
    return table


def eval_table(results: dict[str, Any]) -> Table | None:
    ev = results.get("eval")
    if not ev:
        return None
    names = [m for m in ev["metrics"] if any(m in s["seconds"] for s in ev["sizes"])]
    threads = f", {ev['threads']} thread{'s' * (ev['threads'] != 1)}" if "threads" in ev else ""
    table = Table("features", *names, "total s",
                  title=f"evaluation seconds ({ev['feature_dim']} dims, {ev['classes']} classes, "
                        f"6:1 train/test{threads})")
    for s in ev["sizes"]:
        table.add_row(f"{s['features']:,}", *(_secs(s["seconds"].get(m)) for m in names),
                      _secs(s["total_s"]))
    return table


def peers_table(results: dict[str, Any]) -> Table | None:
    ev = results.get("eval")
    rows = [(s["features"], name, cmp) for s in (ev or {}).get("sizes", [])
            for name, cmp in s.get("peers", {}).items()]
    if not rows:
        return None
    table = Table("features", "evaluator", "crlbench s", f"{ev['peer']} s", "ratio",
                  "metric: crlbench / peer", title="evaluation against scikit-learn (same "
                  "features, protocol and threads; ratio < 1: crlbench is faster)")
    for n, name, cmp in rows:
        agree = "; ".join(f"{m} {v['ours']:.4g} / {v['peer']:.4g}"
                          for m, v in cmp["metrics"].items())
        ratio = "-" if cmp["ratio"] is None else f"{cmp['ratio']:.2f}"
        table.add_row(f"{n:,}", name, _secs(cmp["seconds"]), _secs(cmp["peer_seconds"]), ratio,
                      agree)
    return table


def fixed_table(results: dict[str, Any]) -> Table | None:
    fc = results.get("fixed_cost")
    if not fc:
        return None
    table = Table("device init", "dataset load", "model build", "first step", "total s",
                  title=f"fixed cost per run ({fc['dataset']}, {fc['backbone']}, "
                        f"{fc['method']}, batch {fc['batch_size']})")
    s = fc["seconds"]
    table.add_row(*(_secs(s[k]) for k in ("device_init", "data", "build", "first_step")),
                  _secs(fc["total_s"]))
    return table


def stream_table(results: dict[str, Any]) -> Table | None:
    st = results.get("stream")
    if not st:
        return None
    source = (f"{st['images']} generated {st['source_size'][0]}x{st['source_size'][1]} JPEGs"
              if st["generated"] else f"{st['images']} images of {st['folder']}")
    table = Table("workers", "harness", "torchvision ImageFolder", "speed-up",
                  title=f"streaming a folder, decoded images/s ({source} to "
                        f"{st['side']}x{st['side']}, batch {st['batch_size']})")
    for row in st["runs"]:
        table.add_row(str(row["workers"]), _rate(row["harness_images_per_s"]),
                      _rate(row["torchvision_images_per_s"]), f"x{row['speedup']:.2f}")
    return table


def targets_table(results: dict[str, Any]) -> Table:
    table = Table("target", "goal", "measured", "status", title="speed targets")
    for t in results["targets"]:
        value = t["measured"]
        shown = "-" if value is None else f"{value:,.3g}" if value < 100 else f"{value:,.0f}"
        table.add_row(t["description"], t["target"], shown, t["status"])
    return table


def print_report(console: Console, results: dict[str, Any], path: Path) -> None:
    env = results["environment"]
    console.print(f"device: {env['device_name']} ({env['device']}), torch {env['torch']}, "
                  f"CUDA {env['cuda']}, {env['cpu_count']} CPUs", markup=False, highlight=False)
    console.print(f"torch threads: {results['threads_used']} (a run's resources.cpu_per_run"
                  f" sets them; threads=N to measure at N)", markup=False, highlight=False)
    for make in (training_table, profile_table, threads_table, eval_table, peers_table, fixed_table,
                 stream_table, targets_table):
        table = make(results)
        if table is not None:
            console.print(table)
    console.print(f"written: {path}", markup=False, highlight=False)
