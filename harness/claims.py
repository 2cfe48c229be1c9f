"""Claims on runs, so that processes sharing a store never run the same spec at once.

A run about to start creates `<run_id>.claim` beside its record with O_EXCL, so two
`crlbench run` processes on one store never run it twice. A claim names its process by
host, pid, start time and boot. It is stale (and taken over), on the same host, when that
process is gone: its pid is dead, or alive but started at another time (a pid reused, as in
a restarted container), or the machine has rebooted since. From another host, whose processes
cannot be seen, it is stale when it has not been refreshed for CLAIM_TTL seconds (the local
executor refreshes its claim every epoch and every 10 minutes whatever the run does, the Ray
driver all of its claims every minute). A process never waits on a claim of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crlbench.store import store_writes

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
        if owner.get("boot") not in (None, _boot_id()):
            return True  # written before the machine rebooted
        if not _pid_alive(pid):
            return True
        # a live pid is the claimant only if it started when the claimant did: a restarted
        # container reuses the pids of the dead one (crlbench is often pid 1 in each)
        start = owner.get("start")
        return start is not None and process_start(pid) not in (None, start)
    return age > CLAIM_TTL


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from field 3 (the state) on; None without /proc or
    without that process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces and parentheses
    return stat.rsplit(")", 1)[1].split()


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot (field 22 of /proc/<pid>/stat);
    None without /proc or without that process."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


@functools.cache  # one per boot: read once
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


@functools.cache  # a process's start never changes; keyed by pid, so a forked child has its own
def _own_start(pid: int) -> int | None:
    return process_start(pid)


def _owner() -> dict[str, Any]:
    """Who claims: the host, the pid, and (where /proc tells) the process's start time and
    the boot, which together name one process even when pids are reused."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "start": _own_start(os.getpid()), "boot": _boot_id()}


def _is_own(path: Path) -> bool:
    """Whether the claim at `path` is this very process's."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and all(owner.get(k) == v for k, v in _owner().items())


LOCK_NAME = ".claims.lock"


@contextlib.contextmanager
def takeover_lock(record: Path) -> Iterator[None]:
    """Serialises the taking over of stale claims in one folder: without it, two processes
    that both judged one claim stale could each delete what the other then created. The lock
    file is removed by its holder before it unlocks, so none is left behind; a process that
    was waiting on a removed file's lock sees that and locks the new file instead."""
    path = record.parent / LOCK_NAME
    while True:
        with open(path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not _names(lock, path):  # its holder removed it while we waited
                    continue
                try:
                    yield
                finally:
                    path.unlink(missing_ok=True)
                return
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _names(f, path: Path) -> bool:
    """Whether `path` still names the open file `f`."""
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


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
    """Claim the run of `record` for this process; False when another live process has it.
    A claim that cannot be written (a full disk, a read-only store) raises StoreWriteError
    and leaves no empty claim behind (one would make the next process wait on nobody)."""
    path = claim_path(record)
    with store_writes(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if _is_own(path):
                    return True  # a process never waits on its own claim
                with takeover_lock(record):  # judged and removed as one step
                    if not _claim_is_stale(path):
                        return False
                    path.unlink(missing_ok=True)
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({**_owner(), "time": time.time()}, f)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return True
    return False


def is_claimed(record: Path) -> bool:
    """Whether a live claim (not stale) is held on the run of `record`."""
    path = claim_path(record)
    return path.exists() and not _claim_is_stale(path) and not _is_own(path)


def refresh_claim(record: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.utime(claim_path(record))


HEARTBEAT_S = CLAIM_TTL / 6  # how often a running claim is refreshed, whatever the run does


@contextlib.contextmanager
def heartbeat(record: Path, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Refresh the claim of `record` every `every` seconds from a background thread while the
    block runs: through the evaluation and any long phase, not only at epoch ends, so another
    host never takes over a live run."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            refresh_claim(record)

    thread = threading.Thread(target=beat, name="crlbench-claim-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def release_claim(record: Path) -> None:
    """Remove this process's claim (never one that a successor took over meanwhile)."""
    path = claim_path(record)
    if _is_own(path):
        path.unlink(missing_ok=True)
