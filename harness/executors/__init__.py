"""Executors run a list of RunSpecs; they differ only in where and how many at once.

`ray` (the default) schedules runs as Ray Tune trials over the CPUs and GPUs of this machine or
a Ray cluster; `local` runs them one after another in this process (for debugging). Both
implement `Executor.run` and return a `RunSummary`.
"""

from __future__ import annotations

from typing import Any

from crlbench.errors import UserError
from crlbench.executors.base import Executor, RunSummary
from crlbench.executors.local import LocalExecutor

EXECUTORS = ("ray", "local")


def get_executor(cfg: Any) -> Executor:
    """The executor a suite config names (`executor`), built from its settings."""
    if cfg.executor == "local":
        return LocalExecutor()
    if cfg.executor == "ray":
        from crlbench.executors.ray import RayExecutor  # imports Ray only when it is used

        return RayExecutor(cfg)
    raise UserError(f"unknown executor {cfg.executor!r}; valid executors: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "RunSummary", "get_executor"]
