"""The local executor: runs specs one after another in this process."""

from __future__ import annotations

from pathlib import Path

from crlbench.executors.base import RunSummary, pending
from crlbench.executors.progress import Progress
from crlbench.runner import execute
from crlbench.suite import RunSpec


class LocalExecutor:
    def run(self, specs: list[RunSpec], store: Path, progress: Progress, *,
            force: bool = False) -> RunSummary:
        todo, skipped = pending(specs, store, force)
        summary = RunSummary(skipped=skipped)
        progress.suite_started(len(specs), len(skipped))
        for spec in todo:
            progress.run_started(spec)
            record = execute(spec, store,
                             on_epoch=lambda e, n, t, s=spec: progress.epoch(s, e, n, t))
            if record["status"] == "ok":
                summary.ok.append(spec)
            else:
                summary.failed.append((spec, record["error"]))
            progress.run_finished(spec, record)
        progress.suite_finished(summary)
        return summary
