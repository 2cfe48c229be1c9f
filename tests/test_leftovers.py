"""Clean stores: what killed processes leave beside records (temporary files, checkpoints of
finished runs, claims, takeover locks, a killed Ray driver's scratch folder and processes) is
removed by the next `crlbench run`, and nothing a live process uses is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from test_claims import _claim_of
from test_resume import cli_process

from crlbench.claims import LOCK_NAME, takeover_lock, try_claim
from crlbench.cli import main
from crlbench.leftovers import PROCESSES, SCRATCH, TMP_AGE_S, _runs, record_processes
from crlbench.store import scan


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(tiny, tmp_path, capsys):
    args = ["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0,1]"]
    assert main(args) == 0
    records = sorted(p for p in (tmp_path / "results").rglob("*.json"))
    folder = records[0].parent
    done = records[0].stem
    # what a SIGKILL at each write point leaves (the review's list)
    tmp = folder / f".{done}.json.x1y2.tmp"
    tmp.write_text("{")
    _age(tmp, 2 * TMP_AGE_S)
    (folder / f"{done}.ckpt").mkdir()
    (folder / f"{done}.ckpt" / "last.pt").write_bytes(b"checkpoint")
    (folder / f"{done}.ckpt" / ".last.pt.abc.tmp").write_bytes(b"half")
    _age(folder / f"{done}.ckpt" / ".last.pt.abc.tmp", 2 * TMP_AGE_S)
    (folder / f"{records[1].stem}.claim").write_text(_claim_of(_dead_pid()))
    (folder / LOCK_NAME).write_text("")
    # a killed Ray driver: its scratch folder, and a process of its local Ray still running
    scratch = tmp_path / "results" / SCRATCH / "host-1-2"
    scratch.mkdir(parents=True)
    scratch.with_suffix(".claim").write_text(_claim_of(_dead_pid()))
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    record_processes(scratch / PROCESSES, [agent.pid])
    capsys.readouterr()

    assert main(args) == 0
    assert agent.wait(timeout=10) != 0  # stopped by SIGTERM
    err = capsys.readouterr().err
    assert "note: removed 5 things that killed runs left: " in err and "; and 2 more" in err
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in records)
    assert not (tmp_path / "results" / SCRATCH).exists()
    assert len(scan(tmp_path / "results").records) == 2


def test_what_live_processes_use_is_left_alone(tiny, tmp_path, capsys):
    args = ["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0,1]"]
    assert main(args) == 0
    records = sorted((tmp_path / "results").rglob("*.json"))
    folder = records[0].parent
    fresh = folder / f".{records[0].stem}.json.new.tmp"  # being written right now
    fresh.write_text("{")
    unfinished = folder / "0123456789ab.ckpt"  # a run not finished: its resume point
    unfinished.mkdir()
    (unfinished / "last.pt").write_bytes(b"checkpoint")
    # a live driver's scratch (this process's own pid is alive)
    scratch = tmp_path / "results" / SCRATCH / "live"
    scratch.mkdir(parents=True)
    assert try_claim(scratch.with_suffix(".json"))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        scratch.with_suffix(".claim").write_text(_claim_of(other.pid))
        record_processes(scratch / PROCESSES, [other.pid])
        assert main(args) == 0
        assert other.poll() is None  # its processes run on
    finally:
        other.kill()
        other.wait()
    assert fresh.exists() and (unfinished / "last.pt").exists() and scratch.is_dir()
    assert "removed" not in capsys.readouterr().err

    # a live claim in a folder protects its temporary files, whatever their age
    _age(fresh, 2 * TMP_AGE_S)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / "fedcba987654.claim").write_text(_claim_of(other.pid))
        assert main(args) == 0
        assert fresh.exists()
    finally:
        other.kill()
        other.wait()


def test_the_takeover_lock_is_removed_by_its_holder_and_waiters_lock_the_new_one(tmp_path):
    record = tmp_path / "r.json"
    with takeover_lock(record):
        assert (tmp_path / LOCK_NAME).exists()
        # a second process waits on the lock, then finds it removed and takes a new one
        waiter = subprocess.Popen(
            [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from crlbench.claims import takeover_lock\n"
             "with takeover_lock(Path(sys.argv[1])): print('in', flush=True)", str(record)],
            stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert waiter.poll() is None  # blocked while this process holds the lock
    assert waiter.communicate(timeout=30)[0].strip() == "in"
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_killed_ray_driver_leaves_nothing_after_the_next_run(tiny, tmp_path):
    """SIGKILL of the Ray driver mid-suite: its claims, scratch folder and local Ray's
    processes (orphaned to pid 1, alive a minute later in the review) are all gone after the
    next `crlbench run`, which finishes the suite."""
    pytest.importorskip("ray")
    store = tmp_path / "results"
    args = ["run", "suite=quickstart", *tiny, "method=simclr", "seeds=[0]",
            "train.epochs=40", "executor=ray", "ray.num_cpus=1", f"results.dir={store}"]
    driver = cli_process(args)
    deadline = time.monotonic() + 120
    while not list(store.rglob("last.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    (listed,) = list((store / SCRATCH).glob(f"*/{PROCESSES}"))
    ray_processes = json.loads(listed.read_text())
    driver.kill()
    driver.wait()
    assert any(_runs(pid, start) for pid, start in ray_processes)  # orphans still alive

    rerun = subprocess.run([sys.executable, "-m", "crlbench.cli", *args, "executor=local"],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "things that killed runs left" in rerun.stderr
    assert [pid for pid, start in ray_processes if _runs(pid, start)] == []
    assert not (store / SCRATCH).exists()
    # the record and its kept weights, nothing else
    assert sorted(p.suffix for p in store.rglob("*") if p.is_file()) == [".json", ".safetensors"]

