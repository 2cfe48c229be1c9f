"""What killed crlbench processes leave in a results store, found and removed before a suite runs.

A run killed at the wrong moment (SIGKILL, a lost node, a full disk) can leave beside its
record: a temporary record or weights file (`.<name>.<random>.tmp`), the checkpoint folder of a
run that finished (`<run_id>.ckpt/`), a claim (`<run_id>.claim`), a takeover lock
(`.claims.lock`); a Ray driver killed mid-suite leaves its scratch folder (`<store>/.ray/<driver>/`)
and its local Ray's processes. None of them changes a result (records are written atomically,
claims of dead processes are taken over), but they take space and confuse whoever looks.

`crlbench run` and `crlbench evaluate` remove them for the folders of the suite's runs, each only
when no live process can be using it:
- a checkpoint folder: its run has an ok record, and this process could claim the run;
- a claim: stale by the rules of `crlbench.claims` (taken over, then released);
- a temporary file: no live claim in its folder, and untouched for TMP_AGE_S seconds;
- a takeover lock: removed by taking it (`crlbench.claims` removes it when it unlocks);
- a Ray driver's scratch folder: its claim is stale (the driver is gone); the processes of the
  local Ray it started that still run are stopped (SIGTERM), recognised by pid and start time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from crlbench.claims import (
    LOCK_NAME,
    is_claimed,
    proc_stat,
    process_start,
    release_claim,
    takeover_lock,
    try_claim,
)
from crlbench.store import is_done, store_writes

SCRATCH = ".ray"  # the Ray drivers' scratch folders (Tune's experiment folders), in the store
TMP_AGE_S = 60.0  # a temporary file being written changes every moment; one this old is dead
STOP_GRACE_S = 5.0  # how long a stopped Ray process may take to exit before SIGKILL
PROCESSES = "processes.json"  # in a Ray driver's scratch folder: the local Ray it started


def clean(store: Path, folders: set[Path]) -> list[str]:
    """Remove the leftovers in `folders` (record folders of the store) and the scratch folders
    of the store's dead Ray drivers; what was removed, one line each. StoreWriteError where
    the store cannot be written (a finished suite on a read-only disk)."""
    removed: list[str] = []
    for folder in sorted(folders):
        if folder.is_dir():
            with store_writes(folder):
                removed += _clean_folder(folder)
    if (store / SCRATCH).is_dir():
        with store_writes(store / SCRATCH):
            removed += _clean_scratch(store / SCRATCH)
    return removed


def _clean_folder(folder: Path) -> list[str]:
    removed = []
    entries = list(folder.iterdir())
    for claim in [p for p in entries if p.suffix == ".claim"]:
        record = claim.with_suffix(".json")
        if not is_claimed(record) and try_claim(record):  # a stale claim: taken over
            release_claim(record)
            removed.append(f"{claim} (a claim of a process that is gone)")
    for ckpt in [p for p in entries if p.suffix == ".ckpt" and p.is_dir()]:
        record = ckpt.with_suffix(".json")
        if is_done(record) and try_claim(record):
            try:
                if is_done(record):
                    shutil.rmtree(ckpt, ignore_errors=True)
                    removed.append(f"{ckpt} (checkpoints of a finished run)")
            finally:
                release_claim(record)
    live = any(is_claimed(p.with_suffix(".json")) for p in folder.glob("*.claim"))
    if not live:
        now = time.time()
        temps = [p for p in entries if p.name.startswith(".") and p.name.endswith(".tmp")]
        temps += [p for ckpt in entries if ckpt.suffix == ".ckpt" and ckpt.is_dir()
                  for p in ckpt.iterdir() if p.name.endswith(".tmp")]
        for tmp in temps:
            try:
                if now - tmp.stat().st_mtime > TMP_AGE_S:
                    tmp.unlink()
                    removed.append(f"{tmp} (a temporary file of a write that was cut off)")
            except FileNotFoundError:
                pass  # its writer finished with it meanwhile
    if (folder / LOCK_NAME).exists():
        with takeover_lock(folder / "lock.json"):  # removed as it unlocks
            pass
        removed.append(f"{folder / LOCK_NAME} (a takeover lock)")
    return removed


def _clean_scratch(root: Path) -> list[str]:
    """The scratch folders of Ray drivers that are gone, and their local Rays' processes."""
    removed = []
    for folder in [p for p in root.iterdir() if p.is_dir()]:
        owner = scratch_owner(folder)
        if is_claimed(owner) or not try_claim(owner):
            continue  # a live driver's
        try:
            for pid in stop_processes(folder / PROCESSES):
                removed.append(f"Ray process {pid} of a driver that is gone (stopped)")
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"{folder} (the scratch folder of a Ray driver that is gone)")
        finally:
            release_claim(owner)
    if not any(root.iterdir()):
        root.rmdir()
    return removed


def scratch_owner(folder: Path) -> Path:
    """The path whose claim (`claim_path`) says that the driver of a scratch folder is alive:
    named after the folder whole (a host name may hold dots)."""
    return folder.parent / f"{folder.name}.json"


def record_processes(path: Path, pids: list[int]) -> None:
    """Write which processes a local Ray consists of (pid and start time), for `stop_processes`."""
    path.write_text(json.dumps([[pid, process_start(pid)] for pid in pids]))


def stop_processes(path: Path, grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop the processes listed at `path` that still run (the same pid and start time, so
    never a process that reused a pid): SIGTERM, then SIGKILL for those alive after
    `grace_s`; the pids stopped."""
    try:
        listed = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    starts = {pid: start for pid, start in listed}
    running = [pid for pid, start in starts.items() if start is not None and _runs(pid, start)]
    stopped = [pid for pid in running if _signal(pid, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_runs(p, starts[p]) for p in stopped):
        time.sleep(0.05)
    for pid in stopped:
        if _runs(pid, starts[pid]):
            _signal(pid, signal.SIGKILL)
    return stopped


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _runs(pid: int, start: int) -> bool:
    """Whether process `pid` that started at `start` still runs (a zombie does not)."""
    fields = proc_stat(pid)
    return fields is not None and int(fields[19]) == start and fields[0] != "Z"


def descendants(pid: int) -> list[int]:
    """The processes started, directly or not, by process `pid` (from /proc; empty without it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = proc_stat(int(entry.name))
        if fields is not None:  # field 4 is the parent's pid
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found

