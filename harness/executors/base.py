"""The executor interface and the summary every executor returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from crlbench.executors.progress import Progress
from crlbench.store import is_done, record_path
from crlbench.suite import RunSpec


@dataclass
class RunSummary:
    ok: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, dict[str, Any]]] = field(default_factory=list)  # spec, error
    skipped: list[RunSpec] = field(default_factory=list)
    interrupted: list[RunSpec] = field(default_factory=list)  # stopped; the next run resumes
    elsewhere: list[RunSpec] = field(default_factory=list)  # claimed by another live process

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
            force: bool = False) -> RunSummary: ...
