"""Records on disk stay whole and inside the store: a writer killed at any moment leaves a
whole record, names never lead outside the store, and a store may hold symlinked folders."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
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
