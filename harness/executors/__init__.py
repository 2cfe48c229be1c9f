"""Executors run a list of RunSpecs; they differ only in where and how many at once.

`local` runs them one after another in this process (for debugging and CPU work). Ray comes
behind the same interface (`Executor.run`).
"""

from __future__ import annotations

from crlbench.errors import UserError
from crlbench.executors.base import Executor, RunSummary
from crlbench.executors.local import LocalExecutor

EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor}


def get_executor(name: str) -> Executor:
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()


__all__ = ["EXECUTORS", "Executor", "RunSummary", "get_executor"]
