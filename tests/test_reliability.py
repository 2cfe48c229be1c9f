"""Faults a long suite meets: bad input, kills at any moment, two processes on one store, broken
checkpoints and plugins, hostile files. Each test fails without the behaviour it names."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crlbench.claims import CLAIM_TTL, try_claim
from crlbench.cli import main
from crlbench.errors import UserError
from crlbench.loader import load_suite
from crlbench.store import record_path, scan, write_json_atomic
from crlbench.suite import expand

# ---------------------------------------------------------------------------- bad input


def _mnist_root(tmp_path: Path, *, truncate: bool = False, corrupt_gz: bool = False) -> Path:
    """MNIST's four IDX files (4 train, 2 test images of 28x28), optionally damaged."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def images(n):
        return struct.pack(">IIII", 0x803, n, 28, 28) + bytes(range(256)) * (n * 784 // 256) \
            + bytes(n * 784 % 256)

    def labels(n):
        return struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))

    files = {"train-images-idx3-ubyte": images(4), "train-labels-idx1-ubyte": labels(4),
             "t10k-images-idx3-ubyte": images(2), "t10k-labels-idx1-ubyte": labels(2)}
    for name, payload in files.items():
        if truncate and name.startswith("train-images"):
            payload = payload[:-100]
        data = gzip.compress(payload, mtime=0)
        if corrupt_gz and name.startswith("t10k-images"):
            data = data[:20] + bytes([data[20] ^ 0xFF]) + data[21:]
        (raw / f"{name}.gz").write_bytes(data)
    return tmp_path / "data"


BAD_INPUT = [
    (["suite=nope"], "unknown suite 'nope'"),
    (["suite=quickstart", "method=simclr,nope"], "unknown method 'nope'"),
    (["suite=quickstart", "dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["suite=quickstart", "backbone.name=vgg"], "unknown backbone 'vgg'"),
    (["suite=quickstart", "augment.family=fancy"], "unknown augmentation family 'fancy'"),
    (["suite=quickstart", "train.epochz=3"], "unknown config key 'train.epochz'"),
    (["suite=quickstart", "train.epochs=abc"], "'train.epochs' must be an integer"),
    (["suite=quickstart", "train.epochs=0"], "'train.epochs' must be at least 1"),
    (["suite=quickstart", "train.epochs=-3"], "'train.epochs' must be at least 1"),
    (["suite=quickstart", "train.batch_size=5000"],
     "train.batch_size=5000 is larger than the 1437 training images of digits"),
    (["suite=quickstart", "train.batch_size=512", "variant.imbalance=[100]"],
     "larger than the 339 training images of digits at imbalance 100"),
    (["suite=quickstart", "method=cc", "variant.k=[1]"], "'variant.k' values must be at least 2"),
    (["suite=quickstart", "variant.imbalance=[0.5]"], "rho >= 1"),
    (["suite=quickstart", "seeds=[]"], "'seeds' is empty"),
    (["suite=quickstart", "dataset=cifar10", "data.root=/nonexistent"],
     "/nonexistent/cifar-10-batches-py"),
    (["suite=quickstart", "dataset=../../etc", "data.folders={../../etc: /tmp}"],
     "must be letters, digits"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, expected, tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", *args, f"results.dir={store}", "executor=local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crlbench: error: ") and expected in err, err
    assert len(err.splitlines()) == 1
    assert not store.exists()


def test_yaml_syntax_error_names_line_and_column(tmp_path, capsys):
    suite = tmp_path / "broken.yaml"
    suite.write_text("method: [simclr\ntrain:\n  epochs: 2\n")
    assert main(["run", f"suite={suite}", f"results.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "YAML syntax error at line" in err and "column" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("damage", "expected"), [
    ({"truncate": True}, "bytes"),
    ({"corrupt_gz": True}, "cannot read"),
])
def test_damaged_dataset_files_stop_the_suite_before_anything_runs(
        tmp_path, capsys, damage, expected):
    root = _mnist_root(tmp_path, **damage)
    store = tmp_path / "results"
    code = main(["run", "suite=quickstart", "dataset=mnist", f"data.root={root}",
                 "train.batch_size=2", "executor=local", f"results.dir={store}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "dataset mnist" in err and expected in err and len(err.splitlines()) == 1
    assert not store.exists()


def test_undamaged_small_dataset_passes_the_same_checks(tmp_path, tiny, capsys):
    root = _mnist_root(tmp_path)
    code = main(["run", "suite=quickstart", *tiny, "dataset=mnist", f"data.root={root}",
                 "train.batch_size=2", "method=raw", "seeds=[0]", "eval.knn_k=[1]",
                 "eval.metrics=[knn]"])
    assert code == 0


# ------------------------------------------------------------ overrides apply exactly

OVERRIDES = {
    "train.epochs": (st.integers(1, 500).map(str), st.sampled_from(["x", "1.5", "-"])),
    "train.optimizer.lr": (st.floats(1e-5, 10).map(lambda v: f"{v:.6g}"),
                           st.sampled_from(["fast", "[1]"])),
    "train.compile": (st.sampled_from(["true", "false"]), st.sampled_from(["maybe", "2"])),
    "augment.family": (st.sampled_from(["simclr", "byol", "crop", "none"]),
                       st.sampled_from(["[a]"])),
    "eval.knn_k": (st.lists(st.integers(1, 300), min_size=1, max_size=3).map(
        lambda ks: "[" + ",".join(map(str, ks)) + "]"), st.sampled_from(["[a]", "[1,b]"])),
}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_set_of_overrides_applies_exactly_or_is_refused_whole(data):
    chosen = data.draw(st.lists(st.sampled_from(sorted(OVERRIDES)), min_size=1, max_size=4,
                                unique=True))
    items, bad = [], []
    for key in chosen:
        good_values, bad_values = OVERRIDES[key]
        if data.draw(st.booleans()):
            items.append((key, data.draw(bad_values)))
            bad.append(key)
        else:
            items.append((key, data.draw(good_values)))
    try:
        cfg = load_suite("quickstart", [f"{k}={v}" for k, v in items])
    except UserError as e:
        assert bad and any(key in str(e) for key in bad)
        return
    assert not bad
    for key, value in items:
        node = cfg
        for part in key.split("."):
            node = node[part]
        got = list(node) if key == "eval.knn_k" else node
        expected = {"true": True, "false": False}.get(value, value)
        if key == "eval.knn_k":
            expected = json.loads(value)
        elif key == "train.epochs":
            expected = int(value)
        elif key == "train.optimizer.lr":
            expected = float(value)
        assert got == expected, key


@settings(max_examples=25, deadline=None)
@given(seeds=st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True),
       methods=st.lists(st.sampled_from(["raw", "simclr", "cc"]), min_size=1, max_size=3,
                        unique=True),
       rhos=st.lists(st.sampled_from([1, 10, 100]), max_size=2, unique=True))
def test_suite_expansion_is_a_product_with_unique_ids_whatever_the_override_order(
        seeds, methods, rhos):
    overrides = [f"seeds=[{','.join(map(str, seeds))}]", f"method=[{','.join(methods)}]",
                 f"variant.imbalance=[{','.join(map(str, rhos))}]"]
    specs = expand(load_suite("quickstart", overrides))
    assert len(specs) == len(seeds) * len(methods) * max(1, len(rhos))
    assert len({s.run_id for s in specs}) == len(specs)
    again = expand(load_suite("quickstart", overrides[::-1]))
    assert [s.run_id for s in again] == [s.run_id for s in specs]


# ------------------------------------------------------------------- atomic records

WRITER = """
import sys
from pathlib import Path
from crlbench.store import write_json_atomic
path = Path(sys.argv[1])
big = {"metrics": {f"m{i}": i / 7 for i in range(20000)}}
write_json_atomic(path, {"i": -1, **big})
print("ready", flush=True)
for i in range(100000):
    write_json_atomic(path, {"i": i, **big})
"""


def test_records_survive_a_kill_at_any_moment(tmp_path):
    target = tmp_path / "r.json"
    for delay in (0.0, 0.013, 0.05, 0.11, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"  # writing in a loop from here on
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        json.loads(target.read_text())  # whole, never half-written
    # temporary files a kill leaves behind are hidden and never read as records
    assert all(p.name.startswith(".") for p in tmp_path.iterdir() if p != target)
    assert not any(".tmp" in problem for problem in scan(tmp_path).problems)


def test_claims_keep_two_processes_off_one_spec_and_stale_claims_are_taken_over(tmp_path):
    record = record_path(tmp_path, "s", "m", "d", "abc")
    assert try_claim(record)
    assert not try_claim(record)  # held by a live process (this one)
    claim = record.with_suffix(".claim")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    info = json.loads(claim.read_text())
    claim.write_text(json.dumps({**info, "pid": int(dead.stdout)}))  # its owner has exited
    assert try_claim(record)
    assert json.loads(claim.read_text())["pid"] == os.getpid()


def test_an_old_claim_is_stale_only_when_its_owner_cannot_be_seen(tmp_path):
    """Same host: the owner's pid decides, however old the claim (a long epoch, a queued Ray
    run). Another host: a claim not refreshed for CLAIM_TTL is taken over."""
    record = record_path(tmp_path, "s", "m", "d", "abc")
    assert try_claim(record)
    claim = record.with_suffix(".claim")
    old = time.time() - CLAIM_TTL - 60
    os.utime(claim, (old, old))
    assert not try_claim(record)  # this (live) process still owns it
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "host": "elsewhere"}))
    os.utime(claim, (old, old))
    assert try_claim(record)
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "host": "elsewhere"}))
    assert not try_claim(record)  # fresh: the other host is presumed alive


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


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crlbench.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_two_processes_on_one_store_share_the_work(tiny, tmp_path):
    args = ["run", "suite=quickstart", *tiny, "method=simclr", "seeds=[0,1,2,3,4,5]",
            "train.epochs=3"]
    first, second = _cli(args), _cli(args)
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0, outs
    started = [{line.split(" start ")[1].split(" (")[0] for line in out.splitlines()
                if " start " in line} for out in outs]
    assert not started[0] & started[1]  # no spec ran twice
    assert len(started[0] | started[1]) == 6
    records = scan(tmp_path / "results").records
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    assert not list((tmp_path / "results").rglob("*.claim"))  # every claim released


# --------------------------------------------------------------- kills and resumption

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

    first = _cli(args, env)
    out = first.communicate(timeout=300)[0]
    assert first.returncode == (-signal.SIGKILL if sig == "SIGKILL" else 130), out
    assert marker.exists()
    (raw,) = [p for p in store.rglob("*.json") if "/raw/" in str(p)]
    finished = raw.read_bytes()
    (ckpt,) = store.rglob("last.pt")
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2

    second = _cli(args, env)
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 0, out
    assert raw.read_bytes() == finished  # the finished run is kept bit for bit
    resumed = next(r for r in scan(store).records if r["method"] == "killer")
    assert resumed["train"]["resumed_from_epoch"] == 2

    reference = tmp_path / "reference"  # the same spec, never interrupted
    third = _cli([*args, "method=killer", f"results.dir={reference}"], env)
    assert third.communicate(timeout=300) and third.returncode == 0
    (clean,) = scan(reference).records
    assert clean["run_id"] == resumed["run_id"]
    assert clean["metrics"] == resumed["metrics"]
    assert [e["loss"] for e in clean["history"]] == [e["loss"] for e in resumed["history"]]


# ---------------------------------------------------------- faults inside runs


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


# ----------------------------------------------------------------------- plugins

BREAKS_PROTOCOL = """
from dataclasses import dataclass
from crlbench import Method

class NoLoss(Method):
    '''Returns its loss under the wrong key.'''
    name = "noloss"

    @dataclass
    class Config:
        pass

    def loss(self, views, batch):
        return {"total": self.backbone(views[0]).mean()}
"""


def test_methods_check_names_the_plugin_that_breaks_the_protocol(plugin_dir, capsys, tiny,
                                                                 tmp_path):
    plugin_dir("fake-noloss", {"noloss": "fake_noloss:NoLoss"}, {"fake_noloss": BREAKS_PROTOCOL})
    assert main(["methods", "--check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    (row,) = [line for line in lines if "noloss" in line]
    assert "fake-noloss" in row and "broken" in row
    assert "dict without 'loss'" in "\n".join(lines)
    assert any("simclr" in line and " ok " in line for line in lines)
    # in a suite, the broken plugin fails its own runs only
    assert main(["run", "suite=quickstart", *tiny, "method=noloss,raw", "seeds=[0]"]) == 1
    by_method = {r["method"]: r for r in scan(tmp_path / "results").records}
    assert by_method["raw"]["status"] == "ok"
    assert "'loss' entry" in by_method["noloss"]["error"]["message"]


# ---------------------------------------------------------------------- security


def test_record_paths_never_leave_the_store(tmp_path):
    with pytest.raises(ValueError, match="leaves the store"):
        record_path(tmp_path, "suite", "../../outside", "d", "id")
    with pytest.raises(ValueError, match="leaves the store"):
        record_path(tmp_path, "suite", "m", "a/b", "id")
    write_json_atomic(record_path(tmp_path, "s", "m", "d", "ok"), {"a": 1})


def test_a_suite_name_cannot_point_outside_the_store(tmp_path):
    suite = tmp_path / "x.yaml"
    suite.write_text(textwrap.dedent("""
        name: ../../escape
        method: [raw]
    """))
    with pytest.raises(UserError, match="suite name '../../escape' must be"):
        expand(load_suite(str(suite)))


# ------------------------------------------------------------- found by a second reading


def test_interpolations_pass_the_boolean_check_and_resolve(tmp_path):
    cfg = load_suite("quickstart", ["data.download=${data.use_unlabeled}",
                                    "train.epochs=${train.batch_size}"])
    assert cfg.data.download is True and cfg.train.epochs == cfg.train.batch_size
    from crlbench.bench import load_bench_config

    assert load_bench_config(["warmup=${steps}", "steps=7"]).warmup == 7


def test_a_store_may_hold_symlinked_folders(tmp_path, tiny):
    elsewhere = tmp_path / "scratch"
    elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "quickstart").symlink_to(elsewhere)
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]"]) == 0
    assert len(list(elsewhere.rglob("*.json"))) == 1


def test_preflight_judges_each_run_by_its_own_batch_size():
    from crlbench.preflight import preflight

    sweep = "sweep={train.batch_size: [64, 128]}"
    preflight(expand(load_suite("quickstart", ["train.batch_size=4096", sweep])))
    with pytest.raises(UserError, match="train.batch_size=4096 is larger than the 1437"):
        preflight(expand(load_suite("quickstart", ["sweep={train.batch_size: [64, 4096]}"])))


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
    def broken(cfg):
        raise RuntimeError("no Ray today")
        yield

    monkeypatch.setattr(ray_executor, "_ray_session", broken)
    cfg = load_suite("quickstart", ["seeds=[0]"])
    store = tmp_path / "results"
    with pytest.raises(RuntimeError, match="no Ray today"):
        ray_executor.RayExecutor(cfg).run(expand(cfg), store, make_progress(Console()))
    assert not list(store.rglob("*.claim"))


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
