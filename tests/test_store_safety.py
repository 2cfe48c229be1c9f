"""Records on disk stay whole and inside the store: a writer killed at any moment leaves a
whole record, names never lead outside the store, a store may hold symlinked folders, and a
store that cannot be written (full, read-only) stops the suite with one line and leaves no
partial file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from crlbench.cli import main
from crlbench.errors import UserError
from crlbench.loader import load_suite
from crlbench.store import record_path, scan, write_json_atomic
from crlbench.suite import expand

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


def test_a_store_may_hold_symlinked_folders(tmp_path, tiny):
    elsewhere = tmp_path / "scratch"
    elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "quickstart").symlink_to(elsewhere)
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]"]) == 0
    assert len(list(elsewhere.rglob("*.json"))) == 1


# --- a store that cannot be written: a full disk, a read-only file system -------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 64 MB tmpfs of its own (the review's reproduction used one): `mount` needs root."""
    root = tmp_path / "fs"
    root.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(root)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield root
    subprocess.run(["umount", "-l", str(root)], check=True)


def _fill(fs) -> None:
    """Take every free byte of the file system `fs`."""
    with open(fs / "filler", "ab", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)


def _leftovers(store) -> list[str]:
    """Temporary files and claims in a store: a failed write must leave none."""
    return sorted(str(p) for p in store.rglob("*")
                  if p.name.endswith((".tmp", ".claim")) or p.name == ".claims.lock")


def _metrics(store) -> dict:
    return {r["run_id"]: (r["status"], r["metrics"]) for r in scan(store).records}


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_disk_that_fills_mid_suite_stops_it_with_one_line_and_the_rerun_resumes(
        executor, small_fs, tiny, tmp_path, capsys):
    """The disk fills up as the first checkpoint lands: the suite stops with one line and
    exit 1, no traceback, no failed record, no temporary file or claim left; once space is
    freed the same command finishes, and the store equals an untroubled run's."""
    if executor == "ray":
        pytest.importorskip("ray")
    store = small_fs / "results"
    args = ["run", "suite=quickstart", *tiny, "method=simclr", "seeds=[0,1]",
            "train.epochs=4", f"executor={executor}", "ray.num_cpus=1"]

    def fill_at_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while not list(store.rglob("last.pt")) and time.monotonic() < deadline:
            time.sleep(0.005)
        _fill(small_fs)

    filler = threading.Thread(target=fill_at_first_checkpoint)
    filler.start()
    assert main([*args, f"results.dir={store}"]) == 1
    filler.join()
    err = capsys.readouterr().err
    assert "crlbench: error: cannot write " in err and "No space left on device" in err
    assert "Traceback" not in err
    assert all(r["status"] == "ok" for r in scan(store).records)  # no failure recorded
    assert _leftovers(store) == []

    (small_fs / "filler").unlink()
    assert main([*args, f"results.dir={store}"]) == 0
    reference = tmp_path / "reference"
    assert main([*args, f"results.dir={reference}"]) == 0
    assert _metrics(store) == _metrics(reference) and len(_metrics(store)) == 2
    assert _leftovers(store) == []


def test_a_read_only_or_full_store_is_refused_before_any_run(small_fs, tiny, capsys):
    store = small_fs / "results"
    args = ["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]"]
    assert main([*args, f"results.dir={store}"]) == 0
    (record,) = store.rglob("*.json")
    leftover = record.parent / f".{record.name}.cut.tmp"  # what a killed write left
    leftover.write_text("{")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        # a finished suite on a read-only store is fine: nothing needs writing, and what
        # cannot be removed is noted, not a traceback
        assert main([*args, f"results.dir={store}"]) == 0
        err = capsys.readouterr().err
        assert "note: leftovers of killed runs stay in the store" in err
        assert "Read-only file system" in err and "Traceback" not in err
        for more in (["seeds=[0,1]"], ["seeds=[0]", f"results.dir={small_fs / 'new'}"]):
            assert main([*args, f"results.dir={store}", *more]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("crlbench: error: results store ") and "\n" not in err
            assert "Read-only file system); give a writable folder with results.dir=" in err
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    leftover.unlink()
    _fill(small_fs)
    assert main([*args, f"results.dir={store}", "seeds=[1]"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert _leftovers(store) == [] and len(scan(store).records) == 1


def test_a_store_under_a_file_is_refused_before_any_run(tiny, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]",
                 f"results.dir={tmp_path / 'file' / 'store'}"]) == 2
    assert "is not a folder; give a writable folder" in capsys.readouterr().err


class _FullFile:
    """A file on a disk with `room` bytes left: writes past it fail as a full disk's do."""

    def __init__(self, f, room: int):
        self._f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("what", ["json", "checkpoint", "weights"])
def test_a_write_that_meets_a_full_disk_raises_one_error_and_leaves_no_file(
        what, tmp_path, monkeypatch):
    """Every writer of the store reports a full disk as StoreWriteError (torch.save's own
    RuntimeError and safetensors' error included) and leaves neither the file nor a
    temporary one; an earlier version of the file stays whole."""
    import torch

    from crlbench import store as store_module
    from crlbench.errors import StoreWriteError
    from crlbench.train import _save_checkpoint
    from crlbench.weights import save_weights

    model = torch.nn.Linear(64, 64)
    model.kept_state = ("weight", "bias")
    writers = {"json": lambda p: write_json_atomic(p, {"a": list(range(5000))}),
               "checkpoint": lambda p: _save_checkpoint(p, {"method": model.state_dict()}),
               "weights": lambda p: save_weights(model, p, {})}
    path = tmp_path / "out"
    writers[what](path)
    before = path.read_bytes()
    real = os.fdopen
    monkeypatch.setattr(store_module.os, "fdopen", lambda fd, mode: _FullFile(real(fd, mode), 100))
    with pytest.raises(StoreWriteError, match=f"cannot write {path}: No space left on device"):
        writers[what](path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_claim_that_cannot_be_written_is_not_left_empty(tmp_path, monkeypatch):
    """A claim on a full disk: before, an empty claim was left and the next run waited 60 s
    on nobody."""
    from crlbench import claims
    from crlbench.errors import StoreWriteError

    record = record_path(tmp_path, "s", "m", "d", "abc")
    monkeypatch.setattr(claims.json, "dump", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    with pytest.raises(StoreWriteError, match="No space left on device"):
        claims.try_claim(record)
    assert not claims.claim_path(record).exists()
