"""The executor interface, the summary every executor returns, and the wait for runs that
another crlbench process has claimed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from crlbench.claims import is_claimed
from crlbench.executors.progress import Progress
from crlbench.store import is_done, record_path
from crlbench.suite import RunSpec

POLL_S = 10.0  # how often a process waiting on another one's runs looks at the store


@dataclass
class RunSummary:
    ok: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, dict[str, Any]]] = field(default_factory=list)  # spec, error
    skipped: list[RunSpec] = field(default_factory=list)
    interrupted: list[RunSpec] = field(default_factory=list)  # stopped; the next run resumes
    elsewhere: list[RunSpec] = field(default_factory=list)  # claimed by another live process

    def merge(self, other: RunSummary) -> None:
        """Add the outcome of a later pass over some of the runs."""
        for name in ("ok", "failed", "skipped", "interrupted", "elsewhere"):
            getattr(self, name).extend(getattr(other, name))

    @property
    def exit_code(self) -> int:
        if self.failed:
            return 1
        return 130 if self.interrupted else 0


def spec_path(store: Path, spec: RunSpec) -> Path:
    return record_path(store, spec.suite, spec.method, spec.dataset, spec.run_id)


def pending(specs: list[RunSpec], store: Path, force: bool) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split specs into (to run, skipped because a finished record exists)."""
    if force:
        return list(specs), []
    todo, done = [], []
    for spec in specs:
        (done if is_done(spec_path(store, spec)) else todo).append(spec)
    return todo, done


class Executor(Protocol):
    def run(self, specs: list[RunSpec], store: Path, progress: Progress, *,
            force: bool = False, weights: str = "reuse") -> RunSummary:
        """Run `specs` (all of them with `force`, else those without a finished record);
        `weights`: what to do with a training's kept weights (crlbench.runner.WEIGHT_MODES)."""


def wait_for_elsewhere(summary: RunSummary, store: Path) -> list[RunSpec]:
    """Block until each run that another process claimed is finished there (its record is
    ok: counted as skipped) or abandoned (its claim released or stale without an ok record,
    e.g. that process failed or was killed); empty `summary.elsewhere`; return the abandoned."""
    waiting, abandoned = list(summary.elsewhere), []
    while waiting:
        still = []
        for spec in waiting:
            path = spec_path(store, spec)
            if is_done(path):
                summary.skipped.append(spec)
            elif is_claimed(path):
                still.append(spec)
            else:
                abandoned.append(spec)
        waiting = still
        if waiting:
            time.sleep(POLL_S)
    summary.elsewhere = []
    return abandoned
