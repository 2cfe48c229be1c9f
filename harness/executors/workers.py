"""One run on several workers: the launchers that start its workers and wait for them.

Every worker runs `crlbench.runner.execute` on the same spec; worker 0 evaluates and writes
the record, the others train beside it (crlbench.distributed). Two launchers, one worker code:

- `run_processes`: N processes on this machine (torch.multiprocessing), for the local
  executor; worker r has GPU r when the run is on GPUs.
- `run_ray_train`: N Ray Train workers (a TorchTrainer), on this machine or across the nodes
  of a Ray cluster, started from the Ray executor's trial for the run.

A failure of any worker stops all of them. The run's record then says why: worker 0's own
failed record when it wrote one in this attempt, else the error of the worker that failed.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from crlbench.runner import execute, record_failure
from crlbench.store import is_done, read_record, record_path
from crlbench.suite import RunSpec

EpochCallback = Callable[[int, int, dict[str, float]], None]


def uses_gpus(config: dict[str, Any]) -> bool:
    """Whether the workers of a run train on GPUs (one each)."""
    device = str(config["device"])
    return device != "cpu" and (device.startswith("cuda") or torch.cuda.is_available())


def backend_of(config: dict[str, Any], gpus: bool) -> str:
    """The collective backend: distributed.backend, or for auto NCCL on GPUs and gloo else."""
    backend = config["distributed"]["backend"]
    return ("nccl" if gpus else "gloo") if backend == "auto" else backend


def _fields(spec: RunSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def _path(spec: RunSpec, store: Path) -> Path:
    return record_path(store, spec.suite, spec.method, spec.dataset, spec.run_id)


def _outcome(spec: RunSpec, store: Path, started: float,
             error: dict[str, Any] | None) -> dict[str, Any]:
    """The run's record once its workers are gone: the one worker 0 wrote, unless another
    worker failed (its error is the cause; worker 0's is then at best a lost connection) or
    none was written in this attempt."""
    path = _path(spec, store)
    mine = path.is_file() and path.stat().st_mtime >= started
    if error is None and mine:
        return read_record(path)
    if mine and (is_done(path) or error is None or error.get("worker") in (0, None)):
        return read_record(path)
    return record_failure(spec, store, error or {
        "type": "WorkerError", "message": "the workers ended without a record"})


# ---- local processes ------------------------------------------------------------------------

def _process_main(rank: int, workers: int, init: str, backend: str, gpus: bool,
                  timeout_s: int, fields: dict[str, Any], store: str, weights: str,
                  events: Any, environ: dict[str, str]) -> None:
    """One worker: join the process group, execute the run, leave the group."""
    # The fork server passes on the command's folder and sys.path but keeps the environment
    # it started with (a plugin's settings, CUDA_VISIBLE_DEVICES): the command's, as spawn has
    os.environ.clear()
    os.environ.update(environ)
    if gpus:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=workers,
                            timeout=timedelta(seconds=timeout_s))
    try:
        on_epoch = (lambda e, n, terms: events.put((e, n, terms))) if rank == 0 else None
        # the others return once training is over (crlbench.distributed.end_training),
        # while worker 0 evaluates alone: no collective is pending then
        execute(RunSpec(**fields), Path(store), on_epoch=on_epoch, weights=weights)
    finally:
        dist.destroy_process_group()


def run_processes(spec: RunSpec, store: Path, *, weights: str = "reuse",
                  on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Run `spec` on distributed.workers spawned processes of this machine; its record."""
    cfg = spec.config
    workers, gpus = cfg["distributed"]["workers"], uses_gpus(cfg)
    started = time.time()
    # Workers fork from a server process that has imported crlbench once (torch, scikit-learn:
    # seconds a worker), not from this process, whose threads and CUDA state a fork would copy
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    events = context.SimpleQueue()
    error: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="crlbench-workers-") as tmp:
        init = (Path(tmp) / "rendezvous").as_uri()
        procs = mp.start_processes(
            _process_main, nprocs=workers, join=False, start_method="forkserver",
            args=(workers, init, backend_of(cfg, gpus), gpus, cfg["distributed"]["timeout_s"],
                  _fields(spec), str(store), weights, events, dict(os.environ)))

        def drain() -> None:
            while not events.empty():
                event = events.get()
                if on_epoch is not None:
                    on_epoch(*event)

        try:
            while not procs.join(timeout=0.5):
                drain()
        except mp.ProcessRaisedException as e:
            error = {"type": "WorkerError", "worker": e.error_index,
                     "message": _last_line(e.msg), "traceback": e.msg[-20000:]}
        except mp.ProcessExitedException as e:
            error = {"type": "WorkerError", "worker": e.error_index,
                     "message": f"worker {e.error_index} ended with exit code {e.exit_code}"}
        except BaseException:  # Ctrl-C: no worker may outlive the command
            for p in procs.processes:
                if p.is_alive():
                    p.terminate()
            for p in procs.processes:
                p.join()
            raise
        drain()
    return _outcome(spec, store, started, error)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "a worker failed"


# ---- Ray Train ------------------------------------------------------------------------------

def _ray_main(config: dict[str, Any]) -> None:
    """One Ray Train worker (the process group is Ray Train's): execute the run, reporting its
    epochs to the Ray Tune trial that started it (all workers report, worker 0's are shown)."""
    import ray.train
    import ray.train.torch

    if Path(config["cwd"]).is_dir():
        os.chdir(config["cwd"])
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)

    def on_epoch(epoch: int, epochs: int, terms: dict[str, float]) -> None:
        ray.train.report({"epoch": epoch, "epochs": epochs, **terms})

    execute(RunSpec(**config["spec"]), Path(config["store"]), on_epoch=on_epoch,
            weights=config["weights"])


def run_ray_train(spec: RunSpec, store: Path, *, weights: str, cwd: str, scratch: Path,
                  cpu_per_worker: float, gpus: bool, max_failures: int = 0,
                  report_to_tune: bool = True) -> dict[str, Any]:
    """Run `spec` on distributed.workers Ray Train workers (each with `cpu_per_worker` CPUs
    and, with `gpus`, one GPU); Ray Train's files go under `scratch`. Its record."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg = spec.config
    callbacks = []
    if report_to_tune:
        from ray.tune.integration.ray_train import TuneReportCallback
        callbacks.append(TuneReportCallback())
    trainer = TorchTrainer(
        _ray_main,
        train_loop_config={"spec": _fields(spec), "store": str(store), "weights": weights,
                           "cwd": cwd},
        torch_config=TorchConfig(backend=backend_of(cfg, gpus),
                                 timeout_s=cfg["distributed"]["timeout_s"]),
        scaling_config=ScalingConfig(
            num_workers=cfg["distributed"]["workers"], use_gpu=gpus,
            resources_per_worker={"CPU": cpu_per_worker, **({"GPU": 1} if gpus else {})}),
        run_config=RunConfig(name=spec.run_id, storage_path=str(scratch), callbacks=callbacks,
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    started = time.time()
    error = None
    try:
        trainer.fit()
    except Exception as e:  # Ray Train's error wraps the worker's; the record keeps it
        text = "".join(traceback.format_exception(e))
        error = {"type": type(e).__name__, "message": _last_line(str(e) or text),
                 "traceback": text[-20000:], "worker": _failed_worker(text)}
    return _outcome(spec, store, started, error)


def _failed_worker(text: str) -> int | None:
    """Which worker failed, where Ray's error text says (None: not said)."""
    import re

    match = re.search(r"[Ww]orker(?:[ _]rank)?[ =:]*(\d+)", text)
    return int(match.group(1)) if match else None
