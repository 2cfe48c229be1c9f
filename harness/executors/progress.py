"""Progress of a suite: live bars on a terminal, plain log lines anywhere else.

Executors call the same five methods whichever view is active, from one thread; runs may be
in flight several at once (Ray), so every line names its run. `make_progress` picks the view
from whether the console is a terminal.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBars

from crlbench.report.metrics import PROGRESS_METRICS

if TYPE_CHECKING:
    from crlbench.executors.base import RunSummary
    from crlbench.suite import RunSpec


def _terms(terms: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in terms.items()
                    if k not in ("seconds", "lr", "eval_seconds"))


def _headline(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        err = record["error"]
        return f"FAILED {err['type']}: {err['message']}"
    m = record["metrics"]
    shown = [f"{k}={100 * m[k]:.1f}" for k in PROGRESS_METRICS if k in m]
    return "ok " + " ".join(shown)


class Progress:
    """Plain log lines: what a log file or CI shows."""

    def __init__(self, console: Console):
        self.console = console
        self.total = 0
        self.finished = 0
        self.failed = 0
        self.running = 0
        self._started = 0.0

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def suite_started(self, total: int, skipped: int) -> None:
        self.total, self.finished = total, skipped
        self._started = time.perf_counter()
        self._line(f"suite: {total} runs, {skipped} already done, {total - skipped} to run")

    def run_started(self, spec: RunSpec) -> None:
        self.running += 1
        self._line(f"[{self.finished + self.running}/{self.total}] start {spec.label} "
                   f"({spec.run_id})")

    def epoch(self, spec: RunSpec, epoch: int, epochs: int, terms: dict[str, float]) -> None:
        self._line(f"  {spec.label} epoch {epoch}/{epochs} {_terms(terms)} "
                   f"({terms.get('seconds', 0):.1f}s)")

    def run_finished(self, spec: RunSpec, record: dict[str, Any]) -> None:
        self.running = max(0, self.running - 1)
        self.finished += 1
        self.failed += record["status"] != "ok"
        self._line(f"  {spec.label}: {_headline(record)}")

    def suite_finished(self, summary: RunSummary) -> None:
        elapsed = time.perf_counter() - self._started
        self._line(f"done in {elapsed:.1f}s: {len(summary.ok)} ok, {len(summary.failed)} failed, "
                   f"{len(summary.skipped)} skipped"
                   + (f", {len(summary.interrupted)} interrupted (run the same command again "
                      "to resume them)" if summary.interrupted else "")
                   + (f", {len(summary.elsewhere)} running in another crlbench process"
                      if summary.elsewhere else ""))
        for spec, error in summary.failed:
            self._line(f"  failed: {spec.label}: {error['type']}: {error['message']}")


class LiveProgress(Progress):
    """Rich bars: one for the suite (done / running / failed), one per run in flight."""

    def __init__(self, console: Console):
        super().__init__(console)
        self.bars = RichBars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                             console=console, transient=False)
        self._suite_task = None
        self._run_tasks: dict[str, Any] = {}

    def _suite_info(self) -> str:
        return f"running {self.running}, failed {self.failed}"

    def suite_started(self, total: int, skipped: int) -> None:
        super().suite_started(total, skipped)
        self.bars.start()
        self._suite_task = self.bars.add_task("suite", total=total, completed=skipped,
                                              info=self._suite_info())

    def run_started(self, spec: RunSpec) -> None:
        self.running += 1
        epochs = spec.config["train"]["epochs"]
        self._run_tasks[spec.run_id] = self.bars.add_task(f"  {spec.label}", total=epochs,
                                                          info="")
        self.bars.update(self._suite_task, info=self._suite_info())

    def epoch(self, spec: RunSpec, epoch: int, epochs: int, terms: dict[str, float]) -> None:
        task = self._run_tasks.get(spec.run_id)
        if task is not None:
            self.bars.update(task, completed=epoch, info=_terms(terms))

    def run_finished(self, spec: RunSpec, record: dict[str, Any]) -> None:
        self.running = max(0, self.running - 1)
        self.finished += 1
        self.failed += record["status"] != "ok"
        task = self._run_tasks.pop(spec.run_id, None)
        if task is not None:
            self.bars.remove_task(task)
        self.bars.update(self._suite_task, completed=self.finished, info=self._suite_info())
        self.bars.console.print(f"{spec.label}: {_headline(record)}", markup=False,
                                highlight=False)

    def suite_finished(self, summary: RunSummary) -> None:
        self.bars.stop()
        super().suite_finished(summary)


def make_progress(console: Console) -> Progress:
    return LiveProgress(console) if console.is_terminal else Progress(console)
