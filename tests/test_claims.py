"""Processes sharing a store: a run is claimed before it starts, so no spec runs twice; stale
claims are taken over, a process releases only its own, Ray keeps its claims fresh and frees
them when it cannot start, and runs claimed elsewhere are waited for."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from test_resume import cli_process

from crlbench.claims import CLAIM_TTL, try_claim
from crlbench.cli import main
from crlbench.loader import load_suite
from crlbench.store import record_path, scan
from crlbench.suite import expand


def test_claims_keep_two_processes_off_one_spec_and_stale_claims_are_taken_over(tmp_path):
    record = record_path(tmp_path, "s", "m", "d", "abc")
    assert try_claim(record)
    claim = record.with_suffix(".claim")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim.write_text(_claim_of(other.pid))
        assert not try_claim(record)  # held by another live process
    finally:
        other.kill()
        other.wait()
    assert try_claim(record)  # its owner has exited
    assert json.loads(claim.read_text())["pid"] == os.getpid()


def _claim_of(pid: int, **fields) -> str:
    from crlbench.claims import _boot_id, process_start

    return json.dumps({"host": socket.gethostname(), "pid": pid, "start": process_start(pid),
                       "boot": _boot_id(), "time": time.time(), **fields})


def test_an_old_claim_is_stale_only_when_its_owner_cannot_be_seen(tmp_path):
    """Same host: the owner process decides, however old the claim (a long epoch, a queued Ray
    run). Another host: a claim not refreshed for CLAIM_TTL is taken over."""
    record = record_path(tmp_path, "s", "m", "d", "abc")
    record.parent.mkdir(parents=True)
    claim = record.with_suffix(".claim")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim.write_text(_claim_of(other.pid))
        old = time.time() - CLAIM_TTL - 60
        os.utime(claim, (old, old))
        assert not try_claim(record)  # the other (live) process still owns it
    finally:
        other.kill()
        other.wait()
    assert try_claim(record)  # its process is gone
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "host": "elsewhere"}))
    os.utime(claim, (old, old))
    assert try_claim(record)
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "host": "elsewhere"}))
    assert not try_claim(record)  # fresh: the other host is presumed alive


def test_a_claim_whose_pid_was_reused_is_stale_and_a_process_never_waits_on_its_own(
        tmp_path):
    """A restarted container gives the new crlbench the dead one's pid: the claim's start
    time tells them apart. Before, the rerun waited for itself forever."""
    from crlbench.claims import is_claimed, process_start

    record = record_path(tmp_path, "s", "m", "d", "abc")
    record.parent.mkdir(parents=True)
    claim = record.with_suffix(".claim")
    claim.write_text(_claim_of(os.getpid(), start=process_start(os.getpid()) - 1))
    assert not is_claimed(record) and try_claim(record)  # taken over at once
    assert json.loads(claim.read_text())["start"] == process_start(os.getpid())
    assert try_claim(record) and not is_claimed(record)  # its own claim: no wait
    claim.write_text(_claim_of(os.getpid(), boot="another-boot"))
    assert try_claim(record)  # written before a reboot
    # a claim in the old format (no start time) keeps the pid rule: a live pid holds it
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    assert not try_claim(record)


def test_the_ray_driver_keeps_every_claim_of_its_grid_fresh(tmp_path):
    from crlbench.executors import ray as ray_executor

    specs = expand(load_suite("quickstart", ["seeds=[0,1,2]"]))  # raw and simclr: 6 runs
    store = tmp_path / "results"
    old = time.time() - 3 * CLAIM_TTL
    for spec in specs:
        path = ray_executor.spec_path(store, spec)
        assert try_claim(path)
        os.utime(path.with_suffix(".claim"), (old, old))
    ray_executor._LIVE[1] = (None, {s.run_id: s for s in specs}, store)
    try:
        ray_executor._Forward(1).on_step_begin(0, [])
    finally:
        ray_executor._LIVE.pop(1)
    ages = [time.time() - ray_executor.spec_path(store, s).with_suffix(".claim").stat().st_mtime
            for s in specs]
    assert len(ages) == 6 and max(ages) < 60


@pytest.mark.slow
def test_two_processes_on_one_store_share_the_work(tiny, tmp_path):
    args = ["run", "suite=quickstart", *tiny, "method=simclr", "seeds=[0,1,2,3,4,5]",
            "train.epochs=3"]
    first, second = cli_process(args), cli_process(args)
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0, outs
    started = [{line.split(" start ")[1].split(" (")[0] for line in out.splitlines()
                if " start " in line} for out in outs]
    assert not started[0] & started[1]  # no spec ran twice
    assert len(started[0] | started[1]) == 6
    records = scan(tmp_path / "results").records
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    assert not list((tmp_path / "results").rglob("*.claim"))  # every claim released


@pytest.mark.parametrize("content", ["[]", '{"host": "h"}', '{"host": "h", "pid": "x"}', "{"])
def test_a_malformed_claim_is_not_fatal_and_goes_stale(content, tmp_path):
    record = record_path(tmp_path, "s", "m", "d", "abc")
    record.parent.mkdir(parents=True)
    claim = record.with_suffix(".claim")
    claim.write_text(content)
    assert not try_claim(record)  # young: maybe a claim still being written
    os.utime(claim, (time.time() - 120, time.time() - 120))
    assert try_claim(record)


def test_a_process_releases_only_its_own_claim(tmp_path):
    from crlbench.claims import release_claim

    record = record_path(tmp_path, "s", "m", "d", "abc")
    assert try_claim(record)
    claim = record.with_suffix(".claim")
    claim.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": 0}))  # a successor's
    release_claim(record)
    assert claim.exists()


def test_ray_releases_its_claims_when_ray_cannot_start(tmp_path, monkeypatch):
    from contextlib import contextmanager

    from rich.console import Console

    from crlbench.executors import ray as ray_executor
    from crlbench.executors.progress import make_progress

    @contextmanager
    def broken(cfg, scratch):
        raise RuntimeError("no Ray today")
        yield

    monkeypatch.setattr(ray_executor, "_ray_session", broken)
    cfg = load_suite("quickstart", ["seeds=[0]"])
    store = tmp_path / "results"
    with pytest.raises(RuntimeError, match="no Ray today"):
        ray_executor.RayExecutor(cfg).run(expand(cfg), store, make_progress(Console()))
    assert not list(store.rglob("*.claim"))
    assert not (store / ".ray").exists()  # nor the driver's scratch folder and its claim


def test_runs_claimed_elsewhere_are_waited_for_and_taken_over_when_abandoned(
        tiny, tmp_path, monkeypatch, capsys):
    """`crlbench run` ends with the suite complete: it waits for a run another live process
    claimed, and runs it itself once that process is gone without finishing it."""
    import socket
    import threading

    from crlbench.executors import base

    monkeypatch.setattr(base, "POLL_S", 0.2)
    args = ["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]"]
    (spec,) = expand(load_suite("quickstart", args[2:]))
    path = base.spec_path(tmp_path / "results", spec)
    path.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    threading.Thread(target=other.wait, daemon=True).start()  # reaped when it exits
    path.with_suffix(".claim").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": other.pid, "time": time.time()}))
    started = time.monotonic()
    assert main(args) == 0
    assert time.monotonic() - started > 1.5  # it waited for the other process
    assert "waiting for 1 runs that another crlbench process is running" in \
        capsys.readouterr().err
    (record,) = scan(tmp_path / "results").records
    assert record["status"] == "ok"


def test_a_running_claim_is_refreshed_during_a_long_evaluation(tmp_path, monkeypatch):
    """Only epoch ends refreshed it: an evaluation longer than CLAIM_TTL let another host take
    over a live run. The local executor's heartbeat refreshes it whatever the run does."""
    from crlbench.claims import heartbeat

    record = record_path(tmp_path, "s", "m", "d", "abc")
    assert try_claim(record)
    claim = record.with_suffix(".claim")
    old = time.time() - CLAIM_TTL - 60
    os.utime(claim, (old, old))
    with heartbeat(record, every=0.05):
        time.sleep(0.5)  # a phase with no epoch end, as an evaluation
    assert time.time() - claim.stat().st_mtime < 5
    # and the local executor runs every run under one
    from crlbench.executors import local

    beats = []
    monkeypatch.setattr(local, "heartbeat", lambda path: _recorded(beats, path))
    assert main(["run", "suite=quickstart", "method=raw", "seeds=[0]", "executor=local",
                 "dataset=digits", "eval.metrics=[knn]", f"results.dir={tmp_path / 'r'}"]) == 0
    assert len(beats) == 1 and beats[0].name.endswith(".json")


def _recorded(beats: list, path):
    from contextlib import nullcontext

    beats.append(path)
    return nullcontext()
