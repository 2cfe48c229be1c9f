"""Executors run a list of RunSpecs; they differ only in where and how many at once.

`ray` (the default) schedules runs as Ray Tune trials over the CPUs and GPUs of this machine or
a Ray cluster; `local` runs them one after another in this process (for debugging). Both
implement `Executor.run` and return a `RunSummary`. Ray is imported only by the `ray` executor,
so crlbench with `executor=local` works where Ray is not installed.
"""

from __future__ import annotations

from typing import Any

from crlbench.config import EXECUTORS
from crlbench.data import DatasetCache
from crlbench.errors import UserError
from crlbench.executors.base import Executor, RunSummary
from crlbench.executors.local import LocalExecutor


def get_executor(cfg: Any, cache: DatasetCache | None = None) -> Executor:
    """The executor a suite config names (`executor`), built from its settings. `cache`: the
    datasets already read (by the preflight), for an executor that runs in this process."""
    if cfg.executor == "local":
        return LocalExecutor(cache)
    if cfg.executor == "ray":
        return _ray_executor()(cfg)
    raise UserError(f"unknown executor {cfg.executor!r}; valid executors: {', '.join(EXECUTORS)}")


def _ray_executor() -> type[Executor]:
    """RayExecutor, importing Ray only now: everything else in crlbench runs without Ray."""
    try:
        from crlbench.executors.ray import RayExecutor
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "ray":
            raise
        raise UserError("executor=ray needs Ray, which is not installed here (pip install "
                        "'ray[tune]'); executor=local runs the suite's runs one after another "
                        "without it") from None
    return RayExecutor


__all__ = ["EXECUTORS", "Executor", "RunSummary", "get_executor"]
