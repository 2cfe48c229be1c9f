"""The local executor: runs specs one after another in this process.

The executor owns the suite's dataset cache (the preflight fills it with the first dataset).
Each run is claimed in the store just before it starts, so several local processes on one
store share the work instead of repeating it: a spec another live process has claimed, or has
finished in the meantime, is skipped. A run on several workers (distributed.workers > 1) is
started as that many processes of this machine (crlbench.executors.workers) and waited for.
"""

from __future__ import annotations

from pathlib import Path

from crlbench.claims import heartbeat, refresh_claim, release_claim, try_claim
from crlbench.data import DatasetCache
from crlbench.executors.base import RunSummary, pending, spec_path
from crlbench.executors.progress import Progress
from crlbench.executors.workers import run_processes
from crlbench.runner import execute
from crlbench.store import is_done
from crlbench.suite import RunSpec


class LocalExecutor:
    def __init__(self, cache: DatasetCache | None = None) -> None:
        # one dataset cache for the suite: consecutive runs on a dataset read it once
        self.cache = cache if cache is not None else DatasetCache()

    def run(self, specs: list[RunSpec], store: Path, progress: Progress, *,
            force: bool = False, weights: str = "reuse") -> RunSummary:
        todo, skipped = pending(specs, store, force)
        summary = RunSummary(skipped=skipped)
        progress.suite_started(len(specs), len(skipped))
        for spec in todo:
            path = spec_path(store, spec)
            if not try_claim(path):
                summary.elsewhere.append(spec)
                continue
            if not force and is_done(path):  # another process finished it meanwhile
                release_claim(path)
                summary.skipped.append(spec)
                continue
            try:
                progress.run_started(spec)

                def on_epoch(epoch, epochs, terms, spec=spec, path=path):
                    refresh_claim(path)
                    progress.epoch(spec, epoch, epochs, terms)

                with heartbeat(path):  # evaluation and long phases refresh it too
                    if spec.config["distributed"]["workers"] > 1:
                        record = run_processes(spec, store, weights=weights, on_epoch=on_epoch)
                    else:
                        record = execute(spec, store, on_epoch=on_epoch, cache=self.cache,
                                         weights=weights)
            finally:
                release_claim(path)
            if record["status"] == "ok":
                summary.ok.append(spec)
            else:
                summary.failed.append((spec, record["error"]))
            progress.run_finished(spec, record)
        progress.suite_finished(summary)
        return summary
