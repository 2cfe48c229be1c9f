"""The results store: one JSON record per run, written atomically, read back tolerantly.

Layout: `<store>/<suite>/<method>/<dataset>/<run_id>.json`, with the run's checkpoints in
`<run_id>.ckpt/` beside it until the record is written. A record is written to a temporary file
in the same directory, fsynced, then renamed over the final name, so a reader (or a crash) never
sees half a record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from crlbench.errors import StoreWriteError

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


@contextlib.contextmanager
def store_writes(path: Path) -> Iterator[None]:
    """Writes to the store inside this block that fail for want of space or permission raise
    StoreWriteError naming `path` (the suite stops with one line) instead of an OSError's
    traceback in the middle of a suite."""
    try:
        yield
    except OSError as e:
        raise StoreWriteError(path, e) from e


class _WatchedFile:
    """A file whose failed writes are remembered: torch.save reports a full disk as a
    RuntimeError of its zip writer, which the OSError it met is recovered from."""

    def __init__(self, f: BinaryIO):
        self._f, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file with `write(f)` so that `path` holds either its old content or all of the
    new, never part: a hidden temporary file in the same folder, fsynced, renamed over `path`.
    A failed write (a full disk) leaves no temporary file and raises StoreWriteError."""
    with store_writes(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from the group
            with os.fdopen(fd, "wb") as f:
                watched = _WatchedFile(f)
                try:
                    write(watched)
                except Exception:
                    if watched.error is not None:  # the serialiser's error hides the OSError
                        raise watched.error from None
                    raise
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (`write_atomic`); a value that is not JSON data raises
    TypeError or ValueError before anything is written."""
    text = (json.dumps(data, indent=1, sort_keys=True, allow_nan=True) + "\n").encode()
    write_atomic(path, lambda f: f.write(text))


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


# The types of the fields every reader relies on (tables, plots, reports, executors)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "status": (str,), "suite": (str,), "method": (str,), "dataset": (str,),
    "seed": (int,), "metrics": (dict,), "variant": (dict,), "config": (dict,),
    "history": (list,),
}


def _check_types(data: dict[str, Any]) -> None:
    for key, types in FIELD_TYPES.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool)):
            raise ValueError(f"not a crlbench record ({key} is {type(data[key]).__name__}, "
                             f"not {' or '.join(t.__name__ for t in types)})")
    bad = [k for k, v in data["metrics"].items()
           if v is not None and (isinstance(v, bool) or not isinstance(v, int | float))]
    if bad:
        raise ValueError(f"not a crlbench record (metric {bad[0]!r} is not a number)")


def read_record(path: Path) -> dict[str, Any]:
    """Read one record; raise ValueError saying why a file is not a valid record (a FIFO or
    a folder named like one is not read: it would block or fail)."""
    if not path.is_file():
        raise ValueError("not a regular file" if path.exists() else "cannot read: it is gone")
    try:
        return parse_record(path.read_bytes())
    except OSError as e:
        raise ValueError(f"cannot read: {e}") from None


def parse_record(raw: bytes) -> dict[str, Any]:
    """A record from its file's bytes; ValueError saying why they are not a valid record."""
    try:
        data = json.loads(raw.decode())
    except UnicodeDecodeError as e:
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
    _check_types(data)
    return data


def is_done(path: Path) -> bool:
    """True when a finished (status ok) record exists at `path`."""
    try:
        return read_record(path)["status"] == "ok"
    except ValueError:
        return False


RECORD_KEY = ("suite", "method", "dataset", "run_id")  # what names a record in a store
# the names that become folders and files of a store (suites, methods, datasets, run ids)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def safe_names(record: dict[str, Any]) -> bool:
    """True when the record's suite, method, dataset and run_id are all SAFE_NAMEs (a record
    written by hand, or edited, may hold a name that would leave a folder built from it)."""
    return all(isinstance(record.get(k), str) and SAFE_NAME.match(record[k]) for k in RECORD_KEY)


def record_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record[k] for k in RECORD_KEY)


@dataclass
class StoreScan:
    records: list[dict[str, Any]]
    problems: list[str]  # "path: why" for every file that is not a readable record
    # the file each record was read from, by record_key
    paths: dict[tuple[Any, ...], Path] = field(default_factory=dict)

    def path_of(self, record: dict[str, Any]) -> Path:
        return self.paths[record_key(record)]


# Top-level folders of a store that hold no records: `crlbench bench` writes its JSON to
# results/bench/ by default, `crlbench site` its pages (and copies of the records) to
# results/site/. A suite may not take these names.
RESERVED = ("bench", "site")


def _record_files(root: Path, top: bool) -> Iterator[Path]:
    """JSON files under root, except hidden ones and those in hidden folders or checkpoints
    (Ray keeps its own experiment folder in <store>/.ray), and at the top of a store
    (`top`) the RESERVED folders. A folder that vanishes while it is walked (a run's
    checkpoint folder removed as its record lands) is passed over."""
    found = []
    for folder, dirs, files in os.walk(root):  # os.walk ignores folders it cannot list
        rel = Path(folder).relative_to(root).parts
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(".ckpt")
                   and not (top and not rel and d in RESERVED)]
        found += [Path(folder) / f for f in files
                  if f.endswith(".json") and not f.startswith(".")]
    yield from sorted(found)


def scan(store: Path, suites: list[str] | None = None) -> StoreScan:
    """Read every record under the store (or under the given suites' folders)."""
    store = Path(store)
    roots = [store / s for s in suites] if suites else [store]
    records, problems, paths = [], [], {}
    found: dict[tuple[Any, ...], list[tuple[Path, dict[str, Any]]]] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in _record_files(root, top=not suites):
            try:
                record = read_record(path)
            except ValueError as e:
                problems.append(f"{path}: {e}")
                continue
            key = record_key(record)
            found.setdefault(key, []).append((path, record))
    for key, copies in found.items():
        # a copied record ("abc (1).json") is counted once: the file named by its run_id wins
        copies.sort(key=lambda item: item[0].stem != key[3])
        records.append(copies[0][1])
        paths[key] = copies[0][0]
        problems += [f"{path}: a copy of {copies[0][0]} (run {key[3]}), counted once"
                     for path, _ in copies[1:]]
    return StoreScan(records, problems, paths)
