"""The Ray executor: each RunSpec is a Ray Tune trial, scheduled over the CPUs and GPUs of this
machine or of a Ray cluster.

- Local by default: Ray is started for the suite with this machine's cores, the GPUs torch
  sees and a modest object store, then shut down. `ray.address=auto` (or RAY_ADDRESS) joins a
  running cluster instead; a Ray already initialised in this process is used as it is.
- GPUs are detected, never assumed: without any, trials ask for none and run on the CPU (a
  trial waiting for a GPU that does not exist would wait forever).
- Every trial writes its own record into the results store (`crlbench.runner.execute`); the
  records are the truth. Ray's experiment folder is this driver's scratch space,
  `<store>/.ray/<host>-<pid>/`, claimed like a run and removed afterwards (or, after a killed
  driver, by the next `crlbench run`: `crlbench.leftovers`, which also stops the processes
  of the local Ray it started). Finished specs are skipped before any trial is created.
- `ray.address` (or RAY_ADDRESS) that nothing answers at stops with one line within
  CONNECT_TIMEOUT_S instead of Ray's endless retries.
- A run on several workers (distributed.workers > 1) is a trial that reserves almost nothing
  itself and starts a Ray Train TorchTrainer with one worker per GPU (or per cpu_per_run CPUs
  on the CPU), on any node of the cluster (crlbench.executors.workers); its epochs reach
  the progress view through Ray Tune as a single-process trial's do.
- A run that raises is recorded as failed by the trial itself. A trial whose process dies (out
  of memory, killed) gets a failed record written here from Ray's error; Ray may first retry it
  `ray.max_failures` times, and a retry resumes from the run's last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from crlbench.claims import process_start, refresh_claim, release_claim, try_claim
from crlbench.errors import StoreWriteError, UserError
from crlbench.executors.base import RunSummary, pending, spec_path
from crlbench.executors.progress import Progress
from crlbench.executors.workers import run_ray_train
from crlbench.leftovers import (
    PROCESSES,
    SCRATCH,
    descendants,
    record_processes,
    scratch_owner,
    stop_processes,
)
from crlbench.runner import execute, record_failure
from crlbench.store import is_done, read_record
from crlbench.suite import RunSpec

CONNECT_TIMEOUT_S = 10.0
CLAIM_REFRESH_S = 60.0
# Keep Tune's console table and its TensorBoard/CSV/JSON result loggers out: crlbench shows its
# own progress and writes its own records.
QUIET = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def _fields(spec: RunSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def _trial(config: dict[str, Any]) -> None:
    """One trial (runs in a Ray worker): execute the spec; report epochs for the progress view.
    It runs in the driver's working directory where this node has it (Tune moves trials into
    its scratch folder, which is deleted: a tracker writing to ./mlruns or ./wandb would lose
    its files), as the local executor does."""
    spec = RunSpec(**config["spec"])
    if Path(config["cwd"]).is_dir():
        os.chdir(config["cwd"])

    def on_epoch(epoch: int, epochs: int, terms: dict[str, float]) -> None:
        tune.report({"epoch": epoch, "epochs": epochs, **terms})

    try:
        if spec.config["distributed"]["workers"] > 1:
            record = run_ray_train(
                spec, Path(config["store"]), weights=config["weights"], cwd=config["cwd"],
                scratch=Path(config["scratch"]), cpu_per_worker=config["worker"]["cpu"],
                gpus=config["worker"]["gpu"])
        else:
            record = execute(spec, Path(config["store"]), on_epoch=on_epoch,
                             weights=config["weights"])
    except StoreWriteError as e:  # the driver stops the suite (_StoreStop); no record
        tune.report({STORE_ERROR: [str(e.path), e.error.errno, e.error.strerror]})
        return
    tune.report({"done": 1, "ok": int(record["status"] == "ok")})


STORE_ERROR = "crlbench_store_error"


class _StoreStop(tune.Stopper):
    """Stops every trial once one reports that the store cannot be written (a full disk), as
    the local executor stops the suite: the runs after it could not write either."""

    def __init__(self) -> None:
        self.error: StoreWriteError | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if STORE_ERROR in result and self.error is None:
            path, errno, strerror = result[STORE_ERROR]
            self.error = StoreWriteError(path, OSError(errno, strerror))
        return STORE_ERROR in result

    def stop_all(self) -> bool:
        return self.error is not None


@contextmanager
def _ray_session(cfg: Any, scratch: Path):
    """Ray for the suite: the one initialised already, a cluster to join, or a local one (whose
    processes are listed in `scratch`, so that they can be stopped if this driver is killed)."""
    if ray.is_initialized():
        yield
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    common = {"include_dashboard": False, "log_to_driver": False,
              "logging_level": logging.ERROR, "configure_logging": True}
    own = False
    if address:
        _check_reachable(address, "ray.address" if cfg.ray.address else "RAY_ADDRESS")
        ray.init(address=address, **common)
    else:
        try:
            ray.init(num_cpus=cfg.ray.num_cpus or os.cpu_count(),
                     num_gpus=torch.cuda.device_count(),
                     object_store_memory=cfg.ray.object_store_mb * 1024 * 1024, **common)
            own = True
        except ValueError as e:
            if "existing cluster" not in str(e):
                raise
            # `ray start` left a cluster running on this machine, and ray.init finds it: a
            # new local Ray cannot start beside it, so the suite joins it, and says so
            print("crlbench: note: joining the Ray cluster already running on this machine "
                  "(as ray.address=auto would; ray.num_cpus and ray.object_store_mb do not "
                  "apply to it; `ray stop` ends it)", file=sys.stderr)
            ray.init(address="auto", **common)
    # Tune saves its experiment state for its own resume, which crlbench never uses (runs
    # resume from their checkpoints): a failure to save it (a full disk) is not the user's news
    logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.CRITICAL)
    if own:
        record_processes(scratch / PROCESSES, descendants(os.getpid()))
    try:
        yield
    finally:
        ray.shutdown()
        if own:  # Ray's agents can outlive a shutdown by a minute
            stop_processes(scratch / PROCESSES)


def _check_reachable(address: str, key: str) -> None:
    """UserError when nothing answers at a cluster's address (Ray itself retries for ever)."""
    if address in ("auto", "local"):
        return  # Ray looks up the cluster on this machine, and says so when there is none
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"{key}={address} is not host:port (or ray://host:port, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UserError(f"{key}={address}: nothing answers at {host}:{port} "
                        f"({e.strerror or e or 'timed out'}); start the cluster's head there "
                        "(ray start --head), or leave ray.address empty for a local Ray") from None


def _scratch(store: Path) -> Path:
    """This driver's scratch folder: named by host, pid and start, so that drivers on one store
    never share one."""
    return store / SCRATCH / f"{socket.gethostname()}-{os.getpid()}-{process_start(os.getpid())}"


def _trial_resources(cfg: Any) -> dict[str, float]:
    """What each single-process trial reserves; UserError when no node of the cluster has the
    CPUs a run asks for (Ray would keep the trial pending forever, saying nothing)."""
    cpu = float(cfg.resources.cpu_per_run)
    largest = max((node.get("Resources", {}).get("CPU", 0.0) for node in ray.nodes()
                   if node.get("Alive")), default=0.0)
    if cpu > largest:
        raise UserError(f"resources.cpu_per_run={cpu:g} asks for more CPUs than any node of the "
                        f"Ray cluster has (at most {largest:g}); lower it, or give a local Ray "
                        "more with ray.num_cpus, or join a larger cluster with ray.address")
    gpus = ray.cluster_resources().get("GPU", 0)
    # one GPU at most: gpu_per_run > 1 means that many workers, and a one-process run (a
    # method that does not train) would otherwise wait for a node with them all
    gpu = min(float(cfg.resources.gpu_per_run), 1.0, gpus) if gpus > 0 else 0.0
    return {"cpu": cpu, "gpu": gpu}


# A trial of a run on several workers only starts its TorchTrainer and waits: it reserves
# next to nothing, so that the workers' CPUs and GPUs are theirs
LAUNCHER_CPU = 0.01


def _worker_resources(cfg: Any, specs: list[RunSpec]) -> dict[str, Any]:
    """What each worker of a run on several workers reserves: resources.cpu_per_run CPUs and,
    where the cluster has GPUs and the run may use them, one GPU. UserError when the cluster
    has fewer GPUs (or CPUs) than the widest run needs (Ray Train would wait for ever)."""
    wide = [s for s in specs if s.config["distributed"]["workers"] > 1]
    total = ray.cluster_resources()
    gpu = (total.get("GPU", 0) > 0 and float(cfg.resources.gpu_per_run) > 0
           and str(cfg.device) != "cpu")
    cpu = float(cfg.resources.cpu_per_run)
    if wide:
        workers = max(s.config["distributed"]["workers"] for s in wide)
        have, need = (total.get("GPU", 0), workers) if gpu else (total.get("CPU", 0),
                                                               workers * cpu + LAUNCHER_CPU)
        if need > have:
            what = "GPUs" if gpu else "CPUs"
            raise UserError(f"a run on distributed.workers={workers} needs {need:g} {what}, and "
                            f"the Ray cluster has {have:g}; lower distributed.workers (or "
                            "resources.cpu_per_run), or join a larger cluster with ray.address")
    return {"cpu": cpu, "gpu": bool(gpu)}


# Tune pickles its callbacks with the experiment state; the progress view (a console, locks)
# cannot be pickled, so the callback carries a key into this table instead.
_LIVE: dict[int, tuple[Progress, dict[str, RunSpec], Path]] = {}


class _Forward(tune.Callback):
    """Ray Tune's trial events, forwarded to crlbench's progress view (driver side)."""

    def __init__(self, key: int):
        self.key = key
        self._refreshed = 0.0

    def on_step_begin(self, iteration, trials, **info):
        # The driver holds a claim on every run of the grid, queued ones too, for as long as
        # the grid takes (days): keep them all fresh, once a minute, from Tune's driver loop.
        if time.monotonic() - self._refreshed >= CLAIM_REFRESH_S:
            self._refreshed = time.monotonic()
            _, specs, store = _LIVE[self.key]
            for spec in specs.values():
                refresh_claim(spec_path(store, spec))
            refresh_claim(scratch_owner(_scratch(store)))

    def _context(self, trial) -> tuple[Progress, RunSpec, Path]:
        progress, specs, store = _LIVE[self.key]
        return progress, specs[trial.config["spec"]["run_id"]], store

    def on_trial_start(self, iteration, trials, trial, **info):
        progress, spec, _ = self._context(trial)
        progress.run_started(spec)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "epoch" in result:
            progress, spec, _ = self._context(trial)
            terms = {k: v for k, v in result.items() if k not in _RAY_KEYS
                     and isinstance(v, int | float) and k not in ("epoch", "epochs")}
            progress.epoch(spec, int(result["epoch"]), int(result["epochs"]), terms)

    def on_trial_complete(self, iteration, trials, trial, **info):
        progress, spec, store = self._context(trial)
        path = spec_path(store, spec)
        if path.is_file():  # none when the trial stopped for a store it cannot write
            progress.run_finished(spec, read_record(path))

    def on_trial_error(self, iteration, trials, trial, **info):
        progress, spec, store = self._context(trial)
        progress.run_finished(spec, record_failure(spec, store, _trial_error(trial)))


_RAY_KEYS = frozenset({"timestamp", "time_this_iter_s", "time_total_s", "training_iteration",
                       "done", "pid", "hostname", "node_ip", "time_since_restore",
                       "iterations_since_restore", "date", "trial_id", "experiment_tag",
                       "timesteps_total", "episodes_total", "config", "checkpoint_dir_name",
                       "should_checkpoint"})


def _trial_error(trial) -> dict[str, Any]:
    """What Ray knows about a trial whose process failed, as a record's error."""
    message = "the trial's process failed"
    error_file = getattr(trial, "error_file", None)
    if error_file and Path(error_file).is_file():
        text = Path(error_file).read_text().strip()
        message = text.splitlines()[-1] if text else message
        return {"type": "TrialError", "message": message, "traceback": text[-20000:]}
    return {"type": "TrialError", "message": message}


class RayExecutor:
    def __init__(self, cfg: Any):
        self.cfg = cfg  # the suite config: its resources and ray sections

    def run(self, specs: list[RunSpec], store: Path, progress: Progress, *,
            force: bool = False, weights: str = "reuse") -> RunSummary:
        store = Path(store).resolve()  # trials run in other working directories
        for name, value in QUIET.items():
            os.environ.setdefault(name, value)
        todo, skipped = pending(specs, store, force)
        progress.suite_started(len(specs), len(skipped))
        # claimed here, by the driver, for the whole suite: trials may run on other nodes
        claimed = [s for s in todo if try_claim(spec_path(store, s))]
        elsewhere = [s for s in todo if s not in claimed]
        todo = claimed
        try:
            if todo:
                self._fit(todo, store, progress, weights)
        finally:  # also when Ray cannot start: the claims must not outlive this attempt
            for spec in todo:
                release_claim(spec_path(store, spec))
        summary = _summarise(todo, skipped, store)
        summary.elsewhere = elsewhere
        progress.suite_finished(summary)
        return summary

    def _fit(self, todo: list[RunSpec], store: Path, progress: Progress,
             weights: str) -> None:
        """The grid of `todo` as one Ray Tune experiment in this driver's scratch folder,
        which is claimed for as long as the driver runs and removed after."""
        scratch = _scratch(store)
        owner = scratch_owner(scratch)  # its claim says that this driver is alive
        try_claim(owner)
        scratch.mkdir(parents=True, exist_ok=True)
        key = id(progress)
        _LIVE[key] = (progress, {s.run_id: s for s in todo}, store)
        try:
            with _ray_session(self.cfg, scratch):
                single = _trial_resources(self.cfg)
                worker = _worker_resources(self.cfg, todo)
                trainable = tune.with_resources(_trial, lambda config: _placement(config, single))
                stop = _StoreStop()
                tuner = tune.Tuner(
                    trainable,
                    param_space={
                        # shallow: the resolved plugins travel as objects, not as dicts
                        "spec": tune.grid_search([_fields(s) for s in todo]),
                        "store": str(store),
                        "weights": weights,
                        "cwd": os.getcwd(),
                        "scratch": str(scratch / "train"),
                        "worker": worker,
                    },
                    tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
                    run_config=tune.RunConfig(
                        name=todo[0].suite, storage_path=str(scratch), verbose=0, stop=stop,
                        failure_config=tune.FailureConfig(max_failures=self.cfg.ray.max_failures),
                        callbacks=[_Forward(key)],
                    ),
                )
                tuner.fit()
                if stop.error is not None:
                    raise stop.error
        finally:
            _LIVE.pop(key, None)
            shutil.rmtree(scratch, ignore_errors=True)
            release_claim(owner)
            with contextlib.suppress(OSError):  # another driver may still use it
                scratch.parent.rmdir()


def _placement(config: dict[str, Any], single: dict[str, float]):
    """A trial's reservation: `single` for a one-process run, LAUNCHER_CPU for a run on several
    workers (whose TorchTrainer reserves the workers')."""
    from ray.tune import PlacementGroupFactory

    if config["spec"]["config"]["distributed"]["workers"] > 1:
        return PlacementGroupFactory([{"CPU": LAUNCHER_CPU}])
    bundle = {"CPU": single["cpu"], **({"GPU": single["gpu"]} if single["gpu"] else {})}
    return PlacementGroupFactory([bundle])


def _summarise(todo: list[RunSpec], skipped: list[RunSpec], store: Path) -> RunSummary:
    """The summary, from the records on disk (the truth), not from Ray's view of the trials."""
    summary = RunSummary(skipped=skipped)
    for spec in todo:
        path = spec_path(store, spec)
        if is_done(path):
            summary.ok.append(spec)
        elif path.is_file():
            summary.failed.append((spec, read_record(path)["error"]))
        else:  # stopped before it finished (Ctrl-C): the next run resumes it
            summary.interrupted.append(spec)
    return summary
