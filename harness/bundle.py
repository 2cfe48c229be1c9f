"""`crlbench bundle` and `crlbench verify`: one archive that publishes a suite's results, and
the check that it is whole.

A bundle is a gzipped tar with one top folder, `<suite>-bundle/`:

    manifest.json   what is inside: every file's SHA-256 and size, each run's record and kept
                    weights, the suite's planned runs against the recorded ones, versions
    suite.yaml      the resolved suite (every default filled in, as `crlbench run --dry-run`
                    resolves it), which re-expands to the planned run ids
    store/<suite>/<method>/<dataset>/<run_id>.json       the records, as the store has them
    store/<suite>/<method>/<dataset>/<train_id>.safetensors   kept weights, where kept
    site/           the suite's `crlbench site`

`store/` is a results store: `crlbench table results.dir=<bundle>/store` and `crlbench evaluate`
read it after extraction. `verify_bundle` reads the archive without extracting it: each file
against the manifest (nothing missing, nothing unlisted, no link or path leaving the folder),
each record valid and named by its run_id, each record's weights hash against the weights file,
and the resolved suite against the manifest's plan. Files are hashed as they stream, so
neither command holds a large weights file in memory; only the manifest, the records and the
suite are read whole.

`verify` trusts nothing in the archive: the suite name, the paths and the record fields must
agree with each other (a record's suite, method, dataset and run_id are its path), and every
name must be a plain one before anything is built from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from crlbench.errors import UserError
from crlbench.store import (
    SAFE_NAME,
    parse_record,
    record_key,
    safe_names,
    sha256_of,
    write_atomic,
)

FORMAT = "crlbench-bundle"
VERSION = 1
MANIFEST = "manifest.json"
SUITE_FILE = "suite.yaml"
READ_WHOLE = (".json", ".yaml")  # records, the manifest and the suite; the rest is hashed only
MAX_READ = 64 << 20  # a record or a suite larger than this is not one
BLOCK = 1 << 20


@dataclass
class Bundled:
    """What `write_bundle` put in the archive."""

    path: Path
    sha256: str  # of the archive itself, to publish beside it
    records: int
    weights: int
    files: int
    notes: list[str] = field(default_factory=list)


def _weights_file(record: dict[str, Any], record_file: Path) -> Path | None:
    name = (record.get("weights") or {}).get("file")
    return record_file.parent / name if name else None


def _plan(cfg) -> list[str]:
    from crlbench.suite import expand

    return sorted(spec.run_id for spec in expand(cfg))


def _not_ok(runs: dict[str, dict[str, Any]]) -> str | None:
    bad = sum(1 for entry in runs.values() if entry.get("status") != "ok")
    return f"{bad} of the {len(runs)} runs did not finish ok" if bad else None


def write_bundle(cfg, records: list[dict[str, Any]], path_of: Callable[[dict], Path],
                 output: Path, *, weights: bool = True, figures: bool = True) -> Bundled:
    """Write the bundle of suite `cfg` (a resolved suite config) and its `records` (read from
    the store; `path_of(record)` is the file of each) to `output`, atomically."""
    from omegaconf import OmegaConf

    from crlbench.report.page import suite_description
    from crlbench.site import build_site

    suite = str(cfg.name)
    files: dict[str, bytes | Path] = {}  # archive path under the top folder -> content or file
    runs, notes = {}, []
    for record in sorted(records, key=record_key):
        source = path_of(record)
        if not safe_names(record) or record["suite"] != suite:
            notes.append(f"left out {source}: its suite, method, dataset or run_id is not a "
                         f"plain name of suite {suite}")
            continue
        name = f"store/{suite}/{record['method']}/{record['dataset']}/{record['run_id']}.json"
        files[name] = source
        entry = {"record": name, "status": record.get("status"), "weights": None}
        kept = _weights_file(record, source)
        if kept is not None and weights:
            if not kept.is_file():
                notes.append(f"run {record['run_id']}: its kept weights {kept.name} are not "
                             "in the store; left out")
            elif sha256_of(kept) != record["weights"].get("sha256"):
                notes.append(f"run {record['run_id']}: {kept} does not have the SHA-256 its "
                             "record gives; left out")
            else:
                entry["weights"] = f"{name.rsplit('/', 1)[0]}/{kept.name}"
                files[entry["weights"]] = kept
        runs[record["run_id"]] = entry
    notes += [note] if (note := _not_ok(runs)) else []
    planned = _plan(cfg)
    files[SUITE_FILE] = OmegaConf.to_yaml(cfg, resolve=True).encode()

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        shown = [r for r in records if safe_names(r) and r["suite"] == suite]
        notes += build_site({suite: shown}, path_of, site, {suite: suite_description(suite)},
                            figures=figures)
        files.update({f"site/{path.relative_to(site).as_posix()}": path
                      for path in sorted(site.rglob("*")) if path.is_file()})
        manifest = _manifest(suite, files, runs, planned)
        files[MANIFEST] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        output = Path(output)
        write_atomic(output, lambda f: _write_tar(f, f"{suite}-bundle", files))
    return Bundled(path=output, sha256=sha256_of(output), records=len(runs),
                   weights=sum(1 for r in runs.values() if r["weights"]),
                   files=len(manifest["files"]), notes=notes)


def _manifest(suite: str, files: dict[str, bytes | Path], runs: dict[str, dict[str, Any]],
              planned: list[str]) -> dict[str, Any]:
    from crlbench import __version__

    def entry(value: bytes | Path) -> dict[str, Any]:
        if isinstance(value, bytes):
            return {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}
        return {"sha256": sha256_of(value), "bytes": value.stat().st_size}

    recorded = set(runs)
    return {
        "format": FORMAT, "version": VERSION, "suite": suite, "crlbench": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {name: entry(value) for name, value in sorted(files.items())},
        "runs": runs,
        "plan": {"planned": len(planned), "recorded": len(recorded & set(planned)),
                 "missing": [r for r in planned if r not in recorded],
                 "extra": sorted(recorded - set(planned))},
    }


def _write_tar(raw: BinaryIO, top: str, files: dict[str, bytes | Path]) -> None:
    """The gzipped tar of `files` under `top`, the manifest first; each file streamed."""
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in [MANIFEST, *sorted(set(files) - {MANIFEST})]:
            value = files[name]
            info = tarfile.TarInfo(f"{top}/{name}")
            info.mode, info.mtime = 0o644, 0  # the same contents give the same members
            if isinstance(value, bytes):
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            else:
                info.size = value.stat().st_size
                with value.open("rb") as f:
                    tar.addfile(info, f)


@dataclass
class Verified:
    """What `verify_bundle` found: problems (each one line; none means the bundle is whole)
    and notes (checks it could not make, facts a reader should know)."""

    suite: str
    files: int
    records: int
    weights: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Member:
    sha256: str
    size: int
    data: bytes | None  # the content, for READ_WHOLE names


def _hash_member(stream: BinaryIO, keep: bool) -> Member:
    digest, size, kept = hashlib.sha256(), 0, []
    for block in iter(lambda: stream.read(BLOCK), b""):
        digest.update(block)
        size += len(block)
        if keep:
            kept.append(block)
    return Member(digest.hexdigest(), size, b"".join(kept) if keep else None)


def _read_members(path: Path) -> tuple[dict[str, Member], list[str]]:
    """The regular files of the archive by name, hashed as they stream, and a problem per
    member that is not a plain file inside one top folder."""
    if not path.is_file():
        raise UserError(f"bundle {path} does not exist or is not a file")
    members, problems = {}, []
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    problems.append(f"{member.name}: a path that leaves the bundle")
                elif member.isdir():
                    continue
                elif not member.isfile():
                    problems.append(f"{member.name}: not a regular file (a link or a device)")
                else:
                    keep = member.name.endswith(READ_WHOLE) and member.size <= MAX_READ
                    members[member.name] = _hash_member(tar.extractfile(member), keep)
    except (tarfile.TarError, OSError, EOFError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path} is not a crlbench bundle (not a readable .tar.gz: "
                        f"{why})") from None
    return members, problems


def _manifest_of(path: Path, members: dict[str, Member]) -> tuple[str, dict[str, Any]]:
    """The top folder and the checked manifest; UserError when there is none or it is not a
    crlbench bundle's (a wrong type anywhere in its structure included)."""
    found = [name for name in members if PurePosixPath(name).name == MANIFEST
             and len(PurePosixPath(name).parts) == 2]
    if len(found) != 1 or members[found[0]].data is None:
        raise UserError(f"{path} is not a crlbench bundle (no {MANIFEST} in one top folder)")
    try:
        manifest = json.loads(members[found[0]].data)
    except ValueError as e:
        raise UserError(f"{path}: its {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            manifest.get("version") != VERSION:
        raise UserError(f"{path} is not a crlbench bundle of version {VERSION}")
    shapes = {"suite": str, "files": dict, "runs": dict, "plan": dict}
    wrong = [key for key, kind in shapes.items() if not isinstance(manifest.get(key), kind)]
    if not wrong:  # each file's and each run's entry is an object too
        wrong = [f"{key}.{name}" for key in ("files", "runs")
                 for name, entry in manifest[key].items() if not isinstance(entry, dict)]
    if wrong:
        raise UserError(f"{path}: its {MANIFEST} is not a crlbench bundle's ({wrong[0]} is "
                        "missing or of the wrong type)")
    if not SAFE_NAME.match(manifest["suite"]) or \
            PurePosixPath(found[0]).parts[0] != f"{manifest['suite']}-bundle":
        raise UserError(f"{path}: its {MANIFEST} names suite {manifest['suite']!r}, which is "
                        f"not a plain name or not its folder's {PurePosixPath(found[0]).parts[0]}")
    return PurePosixPath(found[0]).parts[0], manifest


def verify_bundle(path: Path) -> Verified:
    """Check a bundle against its manifest; UserError when it is not a bundle at all."""
    path = Path(path)
    members, problems = _read_members(path)
    top, manifest = _manifest_of(path, members)
    inside: dict[str, Member] = {}
    for name, member in members.items():
        parts = PurePosixPath(name).parts
        if parts[0] != top:
            problems.append(f"{name}: outside the bundle's folder {top}/")
        elif len(parts) > 1 and PurePosixPath(*parts[1:]).as_posix() != MANIFEST:
            inside[PurePosixPath(*parts[1:]).as_posix()] = member
    listed = manifest["files"]
    for name, entry in sorted(listed.items()):
        member = inside.get(name)
        if member is None:
            problems.append(f"{name}: listed in the manifest, missing from the archive")
        elif member.sha256 != entry.get("sha256") or member.size != entry.get("bytes"):
            problems.append(f"{name}: its SHA-256 or size differs from the manifest's")
    problems += [f"{name}: in the archive, not in the manifest"
                 for name in sorted(set(inside) - set(listed))]
    suite, runs = manifest["suite"], manifest["runs"]
    for run_id, entry in sorted(runs.items()):
        problems += _check_run(suite, run_id, entry, inside)
    owned = {e.get("record") for e in runs.values()} | {e.get("weights") for e in runs.values()}
    problems += [f"{name}: in the bundle's store but no run's record or weights"
                 for name in sorted(inside) if name.startswith("store/") and name not in owned]
    result = Verified(suite=suite, files=len(listed), records=len(runs),
                      weights=sum(1 for e in runs.values() if e.get("weights")),
                      problems=problems)
    result.notes += [note] if (note := _not_ok(runs)) else []
    _check_plan(manifest, inside, result)
    return result


def _check_run(suite: str, run_id: str, entry: dict[str, Any],
               inside: dict[str, Member]) -> list[str]:
    name = entry.get("record")
    member = inside.get(name) if isinstance(name, str) else None
    if member is None or member.data is None:
        return [f"run {run_id}: its record {name} is missing"]
    try:
        record = parse_record(member.data)
    except ValueError as e:
        return [f"{name}: {e}"]
    problems = []
    where = "/".join(("store", record["suite"], record["method"], record["dataset"],
                      f"{record['run_id']}.json"))
    if record["run_id"] != run_id or record["suite"] != suite or name != where or \
            not all(SAFE_NAME.match(str(record[k])) for k in ("method", "dataset", "run_id")):
        problems.append(f"{name}: holds run {record['run_id']} of suite {record['suite']}, "
                        f"{record['method']} on {record['dataset']}, which is not its place "
                        f"({where}) or not the manifest's run {run_id}")
    if record.get("status") != entry.get("status"):
        problems.append(f"{name}: status {record.get('status')}, the manifest says "
                        f"{entry.get('status')}")
    kept = entry.get("weights")
    if kept:
        expected = (record.get("weights") or {}).get("sha256")
        if kept not in inside:
            problems.append(f"run {run_id}: its weights {kept} are missing")
        elif inside[kept].sha256 != expected:
            problems.append(f"{kept}: not the weights its record {name} vouches for "
                            "(SHA-256 differs)")
    return problems


def _check_plan(manifest: dict[str, Any], inside: dict[str, Member], result: Verified) -> None:
    """The resolved suite names the manifest's suite and re-expands to its plan."""
    import yaml

    from crlbench.loader import load_suite

    plan, member = manifest["plan"], inside.get(SUITE_FILE)
    if member is None or member.data is None:
        result.problems.append(f"{SUITE_FILE}: missing (the suite the records were made by)")
        return
    try:
        name = (yaml.safe_load(member.data) or {}).get("name")
    except (yaml.YAMLError, AttributeError):
        name = None
    if name != result.suite:
        result.problems.append(f"{SUITE_FILE}: is suite {name!r}, the manifest's is "
                               f"{result.suite!r}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / SUITE_FILE
        suite.write_bytes(member.data)
        try:
            planned = _plan(load_suite(suite))
        except UserError as e:  # a plugin method that is not installed here
            result.notes.append(f"the suite's plan was not re-expanded: {e}")
            return
    recorded = set(manifest["runs"])
    if plan.get("missing") != [r for r in planned if r not in recorded] or \
            plan.get("extra") != sorted(recorded - set(planned)) or \
            plan.get("planned") != len(planned):
        result.problems.append(f"{SUITE_FILE}: expands to {len(planned)} runs, which is not "
                               "the manifest's plan")
    if plan.get("missing"):
        result.notes.append(f"{len(plan['missing'])} of the suite's {len(planned)} planned runs "
                            "have no record in the bundle")
