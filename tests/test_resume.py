"""Interruptions and faults inside runs: a killed or interrupted suite, rerun, ends with the
records of an uninterrupted one; a bad checkpoint or an unwritable record fails its run and the
suite goes on."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crlbench.cli import main
from crlbench.loader import load_suite
from crlbench.store import record_path, scan
from crlbench.suite import expand


def cli_process(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """`crlbench ARGS` as a child process, stdout and stderr merged."""
    return subprocess.Popen([sys.executable, "-m", "crlbench.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


KILLER = """
import os, signal
from pathlib import Path
from crlbench.methods.simclr import SimCLR

class Killer(SimCLR):
    '''SimCLR that signals its own process once, at a global step, to test resumption.'''
    name = "killer"

    def after_step(self, step):
        super().after_step(step)
        marker = Path(os.environ["KILL_MARKER"])
        if step == int(os.environ["KILL_AT_STEP"]) and not marker.exists():
            marker.write_text("done")
            os.kill(os.getpid(), getattr(signal, os.environ["KILL_SIGNAL"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_a_killed_suite_resumes_to_the_records_of_an_uninterrupted_one(
        sig, tiny, tmp_path, plugin_dir):
    plugin_dir("fake-killer", {"killer": "fake_killer:Killer"}, {"fake_killer": KILLER})
    marker = tmp_path / "killed"
    env = {"PYTHONPATH": str(tmp_path / "site"), "KILL_MARKER": str(marker),
           "KILL_AT_STEP": "25", "KILL_SIGNAL": sig}  # 11 steps an epoch: in epoch 3
    args = ["run", "suite=quickstart", *tiny, "method=raw,killer", "seeds=[0]",
            "train.epochs=4", "train.batch_size=128"]
    store = tmp_path / "results"

    first = cli_process(args, env)
    out = first.communicate(timeout=300)[0]
    assert first.returncode == (-signal.SIGKILL if sig == "SIGKILL" else 130), out
    assert marker.exists()
    (raw,) = [p for p in store.rglob("*.json") if "/raw/" in str(p)]
    finished = raw.read_bytes()
    (ckpt,) = store.rglob("last.pt")
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2

    second = cli_process(args, env)
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 0, out
    assert raw.read_bytes() == finished  # the finished run is kept bit for bit
    resumed = next(r for r in scan(store).records if r["method"] == "killer")
    assert resumed["train"]["resumed_from_epoch"] == 2

    reference = tmp_path / "reference"  # the same spec, never interrupted
    third = cli_process([*args, "method=killer", f"results.dir={reference}"], env)
    assert third.communicate(timeout=300) and third.returncode == 0
    (clean,) = scan(reference).records
    assert clean["run_id"] == resumed["run_id"]
    assert clean["metrics"] == resumed["metrics"]
    assert [e["loss"] for e in clean["history"]] == [e["loss"] for e in resumed["history"]]


class Evil:
    """Unpickling this would run code: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/crlbench-pwned",))


@pytest.mark.parametrize("content", ["garbage", "evil"])
def test_an_unreadable_checkpoint_fails_its_run_and_the_suite_goes_on(
        content, tiny, tmp_path, capsys):
    args = ["run", "suite=quickstart", *tiny, "seeds=[0]"]
    specs = expand(load_suite("quickstart", args[2:]))
    simclr = next(s for s in specs if s.method == "simclr")
    ckpt = record_path(tmp_path / "results", simclr.suite, simclr.method, simclr.dataset,
                       simclr.run_id).with_suffix(".ckpt") / "last.pt"
    ckpt.parent.mkdir(parents=True)
    if content == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint")
    else:
        ckpt.write_bytes(pickle.dumps({"epoch": 1, "method": Evil(), "optimizer": {}}))
    Path("/tmp/crlbench-pwned").unlink(missing_ok=True)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "1 ok, 1 failed" in out and "CheckpointError" in out
    by_method = {r["method"]: r for r in scan(tmp_path / "results").records}
    assert by_method["raw"]["status"] == "ok"
    error = by_method["simclr"]["error"]
    assert error["type"] == "CheckpointError" and "delete it to start the run over" in \
        error["message"]
    assert not Path("/tmp/crlbench-pwned").exists()  # nothing was unpickled


def test_a_record_that_cannot_be_written_becomes_a_failure_and_the_suite_goes_on(
        tiny, tmp_path, monkeypatch, capsys):
    from crlbench import runner
    from crlbench.evaluate import EvalResult

    monkeypatch.setattr(runner, "evaluate",
                        lambda emb, cfg, seed, evaluators: EvalResult({"m": 1.0}, {"x": object()}))
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0,1]"]) == 1
    records = scan(tmp_path / "results").records
    assert len(records) == 2 and {r["status"] for r in records} == {"failed"}
    assert all("not JSON serializable" in r["error"]["message"] for r in records)


def test_an_ok_record_is_never_replaced_by_a_failure(tiny, tmp_path, monkeypatch, capsys):
    """Under Ray, a worker lost after writing its ok record made the driver write a failed
    one over it (and the run trained again). A failing `--force` rerun did the same."""
    from crlbench import runner

    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]"]) == 0
    (path,) = (tmp_path / "results").rglob("*.json")
    ok = json.loads(path.read_text())
    (spec,) = expand(load_suite("quickstart", [*tiny, "method=raw", "seeds=[0]"]))
    lost = runner.record_failure(spec, tmp_path / "results",
                                 {"type": "RayActorError", "message": "the worker died"})
    assert lost["status"] == "ok" and json.loads(path.read_text()) == ok

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(runner, "evaluate", broken)
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]", "--force"]) == 1
    assert "evaluation broke" in capsys.readouterr().out  # the failure is reported ...
    assert json.loads(path.read_text()) == ok  # ... and the finished result kept


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_ctrl_c_in_the_first_seconds_exits_130_with_one_line(delay, tmp_path):
    """While the command still imports (torch, the methods) or reads the data, Ctrl-C gives
    the interrupted line and exit code 130, not a traceback."""
    import time

    child = subprocess.Popen(
        [str(Path(sys.executable).parent / "crlbench"), "run", "suite=quickstart",
         "executor=local", f"results.dir={tmp_path / 'results'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert err.strip().splitlines() == [
        "crlbench: interrupted; finished runs are kept and the next identical `crlbench run` "
        "resumes the others from their last epoch checkpoint"]
