"""Experiment tracking: a run's losses, learning curves and final metrics sent to loggers.

The JSON record stays the source of truth; loggers are a view of it for the tools researchers
already watch. One small interface (`Logger`: `log(epoch, values)` after each epoch, `finish
(record)` once the record is complete) and three implementations, chosen by
`results.loggers` (none by default):

- `tensorboard`: event files in `<run_id>.tb/` beside the record, written with tensorboardX
  (no TensorBoard server or TensorFlow needed; `tensorboard --logdir <results.dir>` shows each
  run as one TensorBoard run). Per epoch: `train/<term>` (mean loss terms, lr) and
  `eval/<metric>` (learning curves); at the end `metrics/<metric>` at the last epoch and the
  run's id, label, status and eval section as text. A re-evaluation from kept weights trains
  nothing, so its folder holds its final metrics only; the curves are in the folder of the run
  that trained (`weights_from`).
- `wandb`, `mlflow`: one run each per crlbench run, named by its label, with the resolved
  config as parameters; they must be installed (`pip install wandb` or `mlflow`) and set up
  as their own documentation says (login, tracking URI, offline mode).

A logger that fails (to start, during training, at the end) never fails the run: the record
lists the error under `tracking_errors`, the terminal shows it, and the run goes on without
that logger.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

LOGGERS = ("tensorboard", "wandb", "mlflow")
EpochCallback = Callable[[int, int, dict[str, float]], None]
_PACKAGES = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow"}


class Logger(Protocol):
    def log(self, epoch: int, values: dict[str, float]) -> None: ...
    def finish(self, record: dict[str, Any]) -> None: ...


def missing_packages(names: Iterable[str]) -> list[str]:
    """The packages that the named loggers need and this environment lacks."""
    return [_PACKAGES[n] for n in names if importlib.util.find_spec(_PACKAGES[n]) is None]


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) \
                else json.dumps(value)
    return out


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


class TensorBoardLogger:
    def __init__(self, folder: Path, label: str):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(folder))
        self.label = label

    def log(self, epoch: int, values: dict[str, float]) -> None:
        for key, value in _numbers(values).items():
            tag = key if key.startswith("eval/") else f"train/{key}"
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def finish(self, record: dict[str, Any]) -> None:
        epoch = len(record.get("history") or [])  # the training's last, a re-evaluation's too
        for key, value in _numbers(record.get("metrics") or {}).items():
            self.writer.add_scalar(f"metrics/{key}", value, epoch)
        summary = {"run_id": record["run_id"], "label": self.label,
                   "status": record["status"], "eval": record["config"].get("eval"),
                   "weights_from": (record.get("weights_from") or {}).get("run_id")}
        self.writer.add_text("run", json.dumps(summary, indent=1), epoch)
        self.writer.close()


class WandbLogger:
    def __init__(self, spec: Any):
        import wandb

        self.run = wandb.init(project=f"crlbench-{spec.suite}", name=spec.label,
                              config=_flat(spec.config), reinit=True,
                              tags=[spec.method, spec.dataset], id=spec.run_id,
                              resume="allow")

    def log(self, epoch: int, values: dict[str, float]) -> None:
        self.run.log({"epoch": epoch, **_numbers(values)})

    def finish(self, record: dict[str, Any]) -> None:
        self.run.summary.update(_numbers(record.get("metrics") or {}))
        self.run.finish(exit_code=0 if record["status"] == "ok" else 1)


class MlflowLogger:
    def __init__(self, spec: Any):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(f"crlbench-{spec.suite}")
        self.run = mlflow.start_run(run_name=spec.label)
        try:
            mlflow.log_params(_flat(spec.config))
            mlflow.set_tags({"run_id": spec.run_id, "method": spec.method,
                             "dataset": spec.dataset})
        except BaseException:  # end it, or every later run's start_run finds one active
            mlflow.end_run(status="FAILED")
            raise

    def log(self, epoch: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): v for k, v in _numbers(values).items()},
                                step=epoch)

    def finish(self, record: dict[str, Any]) -> None:
        self.mlflow.log_metrics(_numbers(record.get("metrics") or {}))
        self.mlflow.end_run(status="FINISHED" if record["status"] == "ok" else "FAILED")


class Trackers:
    """The loggers of one run. A logger that fails (to open, to log an epoch, to finish) never
    fails the run, whose record is the source of truth: the error is said on stderr and kept
    for the record's `tracking_errors`, and that logger is dropped."""

    def __init__(self, names: Iterable[str], spec: Any, record_path: Path):
        self.run_id = spec.run_id
        self.errors: list[str] = []
        self.loggers: list[Logger] = []
        for name in names:
            try:
                self.loggers.append(_open(name, spec, record_path))
            except Exception as e:  # a tracker that cannot start: the run goes on without it
                self._failed(name, e)

    def _failed(self, who: str, e: Exception) -> None:
        self.errors.append(f"{who}: {type(e).__name__}: {e}")
        print(f"crlbench: warning: {self.run_id}: {self.errors[-1]}", file=sys.stderr)

    def _each(self, call: Callable[[Logger], None]) -> None:
        for logger in list(self.loggers):
            try:
                call(logger)
            except Exception as e:  # a tracker's outage must not lose a run
                self.loggers.remove(logger)
                self._failed(type(logger).__name__, e)

    def on_epoch(self, on_epoch: EpochCallback | None) -> EpochCallback | None:
        """`on_epoch`, also reporting each epoch's values to the loggers."""
        if not self.loggers:
            return on_epoch

        def tracked(epoch: int, epochs: int, terms: dict[str, float]) -> None:
            self._each(lambda logger: logger.log(epoch, terms))
            if on_epoch:
                on_epoch(epoch, epochs, terms)

        return tracked

    def finish(self, record: dict[str, Any]) -> list[str]:
        """Hand the finished record to each logger; every error of the run's loggers."""
        self._each(lambda logger: logger.finish(record))
        return self.errors


def _open(name: str, spec: Any, record_path: Path) -> Logger:
    if name == "tensorboard":
        return TensorBoardLogger(record_path.parent / f"{spec.run_id}.tb", spec.label)
    if name == "wandb":
        return WandbLogger(spec)
    return MlflowLogger(spec)
