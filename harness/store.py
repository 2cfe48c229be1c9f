"""The results store: one JSON record per run, written atomically, read back tolerantly.

Layout: `<store>/<suite>/<method>/<dataset>/<run_id>.json`, with the run's checkpoints in
`<run_id>.ckpt/` beside it until the record is written. A record is written to a temporary file
in the same directory, fsynced, then renamed over the final name, so a reader (or a crash) never
sees half a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
REQUIRED_FIELDS = ("schema", "run_id", "status", "suite", "method", "dataset", "seed", "metrics")


def record_path(store: Path, suite: str, method: str, dataset: str, run_id: str) -> Path:
    """Where a run's record lives; a name that would leave the store (a separator, `..`) is
    refused. Judged on the names, not on resolved paths: folders of a store may be symlinks."""
    for name in (suite, method, dataset, run_id):
        if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise ValueError(f"record path for {suite}/{method}/{dataset} leaves the store "
                             f"{store}: {name!r} is not a plain folder name")
    return Path(store) / suite / method / dataset / f"{run_id}.json"


def checkpoint_dir(record: Path) -> Path:
    return record.with_suffix(".ckpt")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that `path` holds either its old content or all of the new, never part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from the group
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a run record; on success, the run's checkpoints are no longer needed."""
    write_json_atomic(path, record)
    if record.get("status") == "ok":
        shutil.rmtree(checkpoint_dir(path), ignore_errors=True)


def read_record(path: Path) -> dict[str, Any]:
    """Read one record; raise ValueError saying why a file is not a valid record."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON (line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("not a crlbench record (top level is not an object)")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise ValueError(f"not a crlbench record (missing {', '.join(missing)})")
    if data["schema"] != SCHEMA_VERSION:
        raise ValueError(f"record schema {data['schema']!r}, this crlbench reads {SCHEMA_VERSION}")
    return data


def is_done(path: Path) -> bool:
    """True when a finished (status ok) record exists at `path`."""
    try:
        return read_record(path)["status"] == "ok"
    except ValueError:
        return False


# Claims: a run about to start creates `<run_id>.claim` beside its record with O_EXCL, so two
# `crlbench run` processes on one store never run the same spec at once. A claim is stale (and
# taken over) when its process is gone, on the same host; from another host, whose processes
# cannot be seen, when it has not been refreshed for CLAIM_TTL seconds (the local executor
# refreshes its claim every epoch, the Ray driver all of its claims every minute).
CLAIM_TTL = 3600.0


def claim_path(record: Path) -> Path:
    return record.with_suffix(".claim")


def _claim_is_stale(path: Path) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return True  # released while we looked
    try:
        owner = json.loads(text)
        host, pid = owner["host"], int(owner["pid"])
    except (ValueError, TypeError, KeyError):
        return age > 60  # half-written by a dying process, or not a claim crlbench wrote
    if host == socket.gethostname():
        return not _pid_alive(pid)
    return age > CLAIM_TTL


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


@contextlib.contextmanager
def _takeover_lock(record: Path) -> Iterator[None]:
    """Serialises the taking over of stale claims in one folder: without it, two processes
    that both judged one claim stale could each delete what the other then created."""
    with open(record.parent / ".claims.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def try_claim(record: Path) -> bool:
    """Claim the run of `record` for this process; False when another live process has it."""
    path = claim_path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with _takeover_lock(record):  # judged and removed as one step
                if not _claim_is_stale(path):
                    return False
                path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({**_owner(), "time": time.time()}, f)
        return True
    return False


def is_claimed(record: Path) -> bool:
    """Whether a live claim (not stale) is held on the run of `record`."""
    path = claim_path(record)
    return path.exists() and not _claim_is_stale(path)


def refresh_claim(record: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.utime(claim_path(record))


def release_claim(record: Path) -> None:
    """Remove this process's claim (never one that a successor took over meanwhile)."""
    path = claim_path(record)
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(owner, dict) and {k: owner.get(k) for k in ("host", "pid")} == _owner():
        path.unlink(missing_ok=True)


@dataclass
class StoreScan:
    records: list[dict[str, Any]]
    problems: list[str]  # "path: why" for every file that is not a readable record


# Top-level folders of a store that hold no records: `crlbench bench` writes its JSON to
# results/bench/ by default. A suite may not take these names.
RESERVED = ("bench",)


def _record_files(root: Path, top: bool) -> Iterator[Path]:
    """JSON files under root, except hidden ones and those in hidden folders or checkpoints
    (Ray keeps its own experiment folder in <store>/.ray), and at the top of a store
    (`top`) the RESERVED folders."""
    for path in sorted(root.rglob("*.json")):
        parts = path.relative_to(root).parts
        if top and parts[0] in RESERVED:
            continue
        if not any(p.startswith(".") for p in parts) and ".ckpt" not in path.parent.name:
            yield path


def scan(store: Path, suites: list[str] | None = None) -> StoreScan:
    """Read every record under the store (or under the given suites' folders)."""
    store = Path(store)
    roots = [store / s for s in suites] if suites else [store]
    records, problems = [], []
    for root in roots:
        if not root.is_dir():
            continue
        for path in _record_files(root, top=not suites):
            try:
                records.append(read_record(path))
            except ValueError as e:
                problems.append(f"{path}: {e}")
    return StoreScan(records, problems)
