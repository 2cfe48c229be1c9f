"""Claims on runs, so that processes sharing a store never run the same spec at once.

A run about to start creates `<run_id>.claim` beside its record with O_EXCL, so two
`crlbench run` processes on one store never run it twice. A claim is stale (and
taken over) when its process is gone, on the same host; from another host, whose processes
cannot be seen, when it has not been refreshed for CLAIM_TTL seconds (the local executor
refreshes its claim every epoch, the Ray driver all of its claims every minute).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
