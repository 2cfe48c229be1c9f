"""The record store: atomic writes, tolerant reads, finished runs recognised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlbench.store import (
    SCHEMA_VERSION,
    checkpoint_dir,
    is_done,
    record_path,
    scan,
    write_json_atomic,
    write_record,
)


def record(status: str = "ok", **extra) -> dict:
    return {"schema": SCHEMA_VERSION, "run_id": "abc", "status": status, "suite": "s",
            "method": "m", "dataset": "d", "seed": 0, "metrics": {"knn5_acc": 0.5}, **extra}


def test_layout_and_roundtrip(tmp_path: Path):
    path = record_path(tmp_path, "s", "m", "d", "abc")
    assert path == tmp_path / "s" / "m" / "d" / "abc.json"
    write_record(path, record())
    assert json.loads(path.read_text())["metrics"] == {"knn5_acc": 0.5}
    assert is_done(path)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_ok_record_removes_checkpoints_failed_keeps_them(tmp_path: Path):
    path = record_path(tmp_path, "s", "m", "d", "abc")
    ckpt = checkpoint_dir(path)
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_bytes(b"x")
    write_record(path, record("failed", error={"type": "X", "message": "y"}))
    assert ckpt.exists() and not is_done(path)
    write_record(path, record("ok"))
    assert not ckpt.exists() and is_done(path)


def test_failed_write_leaves_the_old_content(tmp_path: Path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # not serialisable: fails mid-write
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_scan_reports_corrupt_and_foreign_files_and_goes_on(tmp_path: Path):
    good = record_path(tmp_path, "s", "m", "d", "good")
    write_record(good, record(run_id="good"))
    (good.parent / "half.json").write_text('{"schema": 1, "run_')
    (good.parent / "foreign.json").write_text('{"hello": "world"}')
    (good.parent / "future.json").write_text(json.dumps(record(schema=99)))
    found = scan(tmp_path)
    assert [r["run_id"] for r in found.records] == ["good"]
    problems = "\n".join(found.problems)
    assert "half.json: not valid JSON" in problems
    assert "foreign.json: not a crlbench record (missing schema" in problems
    assert "future.json: record schema 99" in problems
    assert scan(tmp_path, ["other-suite"]).records == []


def test_the_benchmarks_folder_is_not_scanned_for_records(tmp_path: Path, capsys):
    from crlbench.cli import main

    write_record(record_path(tmp_path, "s", "m", "d", "good"), record(run_id="good"))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench-cpu-1.json").write_text('{"command": "crlbench bench"}')
    found = scan(tmp_path)
    assert [r["run_id"] for r in found.records] == ["good"] and not found.problems
    assert main(["run", "suite=quickstart", "name=bench", f"results.dir={tmp_path}"]) == 2
    assert "suite name 'bench' is reserved" in capsys.readouterr().err


@pytest.mark.parametrize(("field", "value", "why"), [
    ("metrics", [0.5], "metrics is list, not dict"),
    ("seed", "0", "seed is str, not int"),
    ("seed", True, "seed is bool, not int"),
    ("variant", "k=5", "variant is str, not dict"),
    ("history", {"loss": 1}, "history is dict, not list"),
    ("metrics", {"knn5_acc": "high"}, "metric 'knn5_acc' is not a number"),
])
def test_a_record_of_valid_json_with_wrong_types_is_reported_not_read(field, value, why,
                                                                       tmp_path, capsys):
    from crlbench.cli import main

    good = record_path(tmp_path, "s", "m", "d", "good")
    write_record(good, record(run_id="good"))
    (good.parent / "bad.json").write_text(json.dumps(record(run_id="bad", **{field: value})))
    found = scan(tmp_path)
    assert [r["run_id"] for r in found.records] == ["good"]
    assert found.problems == [f"{good.parent / 'bad.json'}: not a crlbench record ({why})"]
    # every reader goes on with the good records
    assert main(["table", f"results.dir={tmp_path}", "--format", "csv"]) == 0
    assert "bad.json: not a crlbench record" in capsys.readouterr().err
    assert main(["report", f"results.dir={tmp_path}", "--output", str(tmp_path / "r.md")]) == 0


def test_a_copied_record_is_counted_once(tmp_path: Path):
    path = record_path(tmp_path, "s", "m", "d", "abc")
    write_record(path, record())
    copy = path.parent / "abc (1).json"
    copy.write_bytes(path.read_bytes())
    earlier = path.parent / "aaa-copy.json"  # sorts before the original
    earlier.write_bytes(path.read_bytes())
    found = scan(tmp_path)
    assert len(found.records) == 1
    assert sorted(found.problems) == sorted(
        f"{p}: a copy of {path} (run abc), counted once" for p in (copy, earlier))


def test_a_fifo_named_like_a_record_is_reported_not_read(tmp_path: Path):
    import os

    write_record(record_path(tmp_path, "s", "m", "d", "abc"), record())
    fifo = tmp_path / "s" / "m" / "d" / "pipe.json"
    os.mkfifo(fifo)  # reading it would block for ever
    found = scan(tmp_path)
    assert [r["run_id"] for r in found.records] == ["abc"]
    assert found.problems == [f"{fifo}: not a regular file"]


def test_a_folder_that_vanishes_while_the_store_is_scanned_is_passed_over(tmp_path, monkeypatch):
    import os

    write_record(record_path(tmp_path, "s", "m", "d", "abc"), record())
    write_record(record_path(tmp_path, "s", "m", "e", "abd"), record(run_id="abd", dataset="e"))
    real = os.scandir
    gone = str(tmp_path / "s" / "m" / "e")

    def scandir(path="."):
        if str(path) == gone:  # as if a run's folder was removed between listing and walking
            raise FileNotFoundError(2, "No such file or directory", gone)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert [r["run_id"] for r in scan(tmp_path).records] == ["abc"]
