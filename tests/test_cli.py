"""The command line end to end on a tiny digits suite: records, skipping, tables, exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crlbench.cli import main
from crlbench.store import scan

FAILING = """
from dataclasses import dataclass
from crlbench import Method

class Failing(Method):
    '''Raises on its first step (a planted failure).'''
    name = "failing"

    @dataclass
    class Config:
        pass

    def loss(self, views, batch):
        raise RuntimeError("planted failure")
"""


def run(*args: str) -> int:
    return main(["run", *args])


def records(store: Path) -> list[dict]:
    return scan(store).records


def test_run_writes_records_skips_then_forces(tiny, tmp_path, capsys):
    store = tmp_path / "results"
    assert run("suite=quickstart", *tiny, "seeds=[0]") == 0
    out = capsys.readouterr().out
    assert "2 runs, 0 already done" in out and "simclr" in out and "kNN" in out
    found = records(store)
    assert sorted(r["method"] for r in found) == ["raw", "simclr"]
    rec = next(r for r in found if r["method"] == "simclr")
    assert rec["status"] == "ok" and rec["error"] is None
    retrieval = {f"retrieval_p{k}" for k in (1, 2, 10, 50, 100)}
    assert set(rec["metrics"]) == {"knn5_acc", "knn20_acc", "linear_acc", "kmeans_acc",
                                   "kmeans_nmi", "kmeans_ari", "align", "uniform", *retrieval}
    assert all(0 <= v <= 1 for k, v in rec["metrics"].items() if k not in ("align", "uniform"))
    assert rec["metrics"]["align"] >= 0 and rec["metrics"]["uniform"] <= 0
    assert len(rec["history"]) == 2 and rec["train"]["samples_per_s"] > 0
    assert rec["config"]["train"]["epochs"] == 2 and rec["seed"] == 0
    assert rec["method_package"]["name"] == "crlbench"
    assert rec["environment"]["torch"] and rec["environment"]["device"] == "cpu"
    assert rec["deterministic"] is True
    assert set(rec["wall_seconds"]) == {"data", "build", "train", "embed", "evaluate"}
    assert rec["eval_details"]["linear"]["l2"] in rec["config"]["eval"]["linear"]["l2"]
    path = store / "quickstart" / "simclr" / "digits" / f"{rec['run_id']}.json"
    assert path.is_file() and not path.with_suffix(".ckpt").exists()

    mtime = path.stat().st_mtime_ns
    assert run("suite=quickstart", *tiny, "seeds=[0]") == 0
    assert "2 already done, 0 to run" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == mtime

    assert run("suite=quickstart", *tiny, "seeds=[0]", "method=raw", "--force") == 0
    assert "1 runs, 0 already done" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == mtime  # only raw was rerun


def test_cpu_runs_are_deterministic(tiny, tmp_path):
    first = tmp_path / "a"
    second = tmp_path / "b"
    args = ["suite=quickstart", *tiny, "seeds=[1]", "method=simclr"]
    assert run(*args, f"results.dir={first}") == 0
    assert run(*args, f"results.dir={second}") == 0
    (a,), (b,) = records(first), records(second)
    assert a["run_id"] == b["run_id"]
    assert a["metrics"] == b["metrics"]
    assert a["history"][-1]["loss"] == b["history"][-1]["loss"]


def test_table_formats(tiny, tmp_path, capsys):
    store = tmp_path / "results"
    assert run("suite=quickstart", *tiny, "seeds=[0,1]") == 0
    capsys.readouterr()
    base = ["table", "suite=quickstart", f"results.dir={store}"]

    assert main([*base, "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    frame = pd.read_csv(io.StringIO(csv))
    assert set(frame["method"]) == {"raw", "simclr"}
    assert set(frame["n"]) == {2}
    knn = frame[(frame.method == "simclr") & (frame.metric == "knn5_acc")]["mean"].item()
    values = [r["metrics"]["knn5_acc"] for r in records(store) if r["method"] == "simclr"]
    assert knn == pytest.approx(sum(values) / 2)

    assert main([*base, "--format", "markdown", "metric=knn5_acc"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("|") and "simclr" in md and "KM ACC" not in md

    out = tmp_path / "t.tex"
    assert main([*base, "--format", "latex", "--output", str(out)]) == 0
    assert "\\toprule" in out.read_text() and "\\bottomrule" in out.read_text()

    assert main([*base]) == 0
    assert "simclr" in capsys.readouterr().out


def test_failed_run_is_recorded_and_others_finish(tiny, tmp_path, plugin_dir, capsys):
    plugin_dir("fake-failing", {"failing": "fake_failing:Failing"}, {"fake_failing": FAILING})
    store = tmp_path / "results"
    code = run("suite=quickstart", *tiny, "seeds=[0]", "method=failing,raw")
    assert code == 1
    out = capsys.readouterr().out
    assert "1 ok, 1 failed" in out and "planted failure" in out
    by_method = {r["method"]: r for r in records(store)}
    assert by_method["raw"]["status"] == "ok"
    failed = by_method["failing"]
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "RuntimeError"
    assert failed["error"]["message"] == "planted failure"
    # a failed run is not "done": the next run tries it again
    assert run("suite=quickstart", *tiny, "seeds=[0]", "method=failing,raw") == 1
    assert "2 runs, 1 already done" in capsys.readouterr().out


def test_table_warns_about_corrupt_files_and_mixed_configs(tiny, tmp_path, capsys):
    store = tmp_path / "results"
    assert run("suite=quickstart", *tiny, "seeds=[0]", "method=raw") == 0
    # another training of raw (an evaluation change would replace the first record instead)
    assert run("suite=quickstart", *tiny, "seeds=[0]", "method=raw", "data.image_size=10") == 0
    (store / "quickstart" / "raw" / "digits" / "junk.json").write_text("{nope")
    capsys.readouterr()
    assert main(["table", f"results.dir={store}", "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "junk.json" in err
    assert "raw on digits mixes 2 configurations" in err


def test_dry_run_lists_runs_and_writes_nothing(tiny, tmp_path, capsys):
    assert run("suite=quickstart", *tiny, "seeds=[0,1]", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "4 runs of suite quickstart" in out and "to run" in out
    assert not (tmp_path / "results").exists()


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "crlbench"
    done = subprocess.run([str(script), "methods"], capture_output=True, text=True, check=True)
    assert "simclr" in done.stdout and "raw" in done.stdout


NAN = """
from dataclasses import dataclass
from crlbench.methods.simclr import SimCLR

class Nan(SimCLR):
    '''SimCLR whose loss turns NaN at its fourth step (a planted divergence).'''
    name = "nan"
    calls = 0

    def loss(self, views, batch):
        out = super().loss(views, batch)
        self.calls += 1
        if self.calls == 4:
            out["loss"] = out["loss"] * float("nan")
        return out
"""


def test_non_finite_loss_fails_the_run_with_step_and_terms(tiny, tmp_path, plugin_dir, capsys):
    plugin_dir("fake-nan", {"nan": "fake_nan:Nan"}, {"fake_nan": NAN})
    assert run("suite=quickstart", *tiny, "seeds=[0]", "method=nan") == 1
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "NonFiniteLoss"
    assert rec["error"]["step"] == 3
    assert rec["error"]["loss_terms"]["loss"] != rec["error"]["loss_terms"]["loss"]  # NaN
    assert "non-finite loss at step 3" in rec["error"]["message"]


def test_live_progress_on_a_terminal(tiny, tmp_path):
    from rich.console import Console

    from crlbench.executors import get_executor
    from crlbench.executors.progress import LiveProgress, make_progress
    from crlbench.loader import load_suite
    from crlbench.suite import expand

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress = make_progress(console)
    assert isinstance(progress, LiveProgress)
    cfg = load_suite("quickstart", [*tiny, "seeds=[0]"])
    summary = get_executor(cfg).run(expand(cfg), tmp_path / "results", progress)
    assert len(summary.ok) == 2 and summary.exit_code == 0
    shown = console.file.getvalue()
    assert "simclr/digits seed=0" in shown and "done in" in shown and "2 ok, 0 failed" in shown


def test_table_prints_where_its_numbers_come_from(tiny, tmp_path, capsys):
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]"]) == 0
    capsys.readouterr()
    store = f"results.dir={tmp_path / 'results'}"
    assert main(["table", store, "--format", "markdown"]) == 0
    source, conventions = capsys.readouterr().out.strip().splitlines()[-3::2]
    assert source.startswith("From 1 records of suite quickstart, made 20") and "(cpu)" in source
    # the conventions of the numbers shown, from the record
    assert conventions.startswith("Conventions: ")
    for part in ("kNN: k = ", "cosine similarity to the train features, votes weighted "
                 "exp(s / 0.07)", "NMI with the arithmetic mean", "clustering: scored on "
                 "train+test", "trained on: train", "linear probe: L-BFGS on the full batch",
                 "after the last epoch"):
        assert part in conventions, part
    assert main(["table", store, "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("% From 1 records") and "\n% Conventions: " in out
    assert main(["table", store, "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "From" not in out and "Conventions" not in out  # CSV stays tidy


LIGHT_COMMANDS = [
    ["--help"],
    ["suites"],
    ["table", "suite=fashion_cpu", "results.dir={store}", "--format", "markdown"],
    ["plot", "all", "suite=fashion_cpu", "results.dir={store}", "--output", "{out}/figures"],
    ["report", "suite=fashion_cpu", "results.dir={store}", "--output", "{out}/report.md"],
]


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=lambda argv: argv[0].lstrip("-"))
def test_commands_that_read_records_do_not_import_torch(argv, tmp_path):
    # torch takes about a second to import: commands that only read configs and records
    # (here the committed CPU board's) must not pay for it
    store = Path(__file__).resolve().parents[1] / "results"
    args = [a.format(store=store, out=tmp_path) for a in argv]
    code = ("import sys\nfrom crlbench.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = sorted(m for m in ('torch', 'sklearn') if m in sys.modules)\n"
            "print('HEAVY', heavy, 'RC', rc)")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY [] RC 0", out.stderr
    if argv[0] == "plot":
        assert list((tmp_path / "figures").glob("*.png"))
    if argv[0] == "report":
        assert (tmp_path / "report.md").read_text().startswith("#")
