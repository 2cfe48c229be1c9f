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
and the resolved suite against the manifest's plan.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from crlbench.errors import UserError
from crlbench.store import parse_record, record_key, sha256_of

FORMAT = "crlbench-bundle"
VERSION = 1
MANIFEST = "manifest.json"
SUITE_FILE = "suite.yaml"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def write_bundle(cfg, records: list[dict[str, Any]], path_of: Callable[[dict], Path],
                 output: Path, *, weights: bool = True, figures: bool = True) -> Bundled:
    """Write the bundle of suite `cfg` (a resolved suite config) and its `records` (read from
    the store; `path_of(record)` is the file of each) to `output`, atomically."""
    from omegaconf import OmegaConf

    from crlbench import __version__
    from crlbench.report.page import suite_description
    from crlbench.site import build_site

    suite = str(cfg.name)
    top = PurePosixPath(f"{suite}-bundle")
    files: dict[str, bytes | Path] = {}  # archive path under top -> content or file to copy
    runs, notes = {}, []
    for record in sorted(records, key=record_key):
        source = path_of(record)
        name = f"store/{suite}/{record['method']}/{record['dataset']}/{source.name}"
        files[name] = source
        entry = {"record": name, "status": record.get("status"), "weights": None}
        kept = _weights_file(record, source)
        if kept is not None and weights:
            expected = record["weights"].get("sha256")
            if not kept.is_file():
                notes.append(f"run {record['run_id']}: its kept weights {kept.name} are not "
                             "in the store; left out")
            elif sha256_of(kept) != expected:
                notes.append(f"run {record['run_id']}: {kept} does not have the SHA-256 its "
                             "record gives; left out")
            else:
                entry["weights"] = f"{name.rsplit('/', 1)[0]}/{kept.name}"
                files[entry["weights"]] = kept
        runs[record["run_id"]] = entry
    planned = _plan(cfg)
    recorded = set(runs)
    files[SUITE_FILE] = OmegaConf.to_yaml(cfg, resolve=True).encode()

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        notes += build_site({suite: records}, path_of, site, {suite: suite_description(suite)},
                            figures=figures)
        for path in sorted(site.rglob("*")):
            if path.is_file():
                files[f"site/{path.relative_to(site).as_posix()}"] = path
        contents = {name: value if isinstance(value, bytes) else value.read_bytes()
                    for name, value in files.items()}
    manifest = {
        "format": FORMAT, "version": VERSION, "suite": suite, "crlbench": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)}
                  for name, data in sorted(contents.items())},
        "runs": runs,
        "plan": {"planned": len(planned), "recorded": len(recorded & set(planned)),
                 "missing": [r for r in planned if r not in recorded],
                 "extra": sorted(recorded - set(planned))},
    }
    contents[MANIFEST] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name in [MANIFEST, *sorted(set(contents) - {MANIFEST})]:
                _add(tar, f"{top}/{name}", contents[name])
        os.replace(tmp_name, output)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return Bundled(path=output, sha256=sha256_of(output), records=len(runs),
                   weights=sum(1 for r in runs.values() if r["weights"]),
                   files=len(manifest["files"]), notes=notes)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    info.mtime = 0  # the same contents give the same archive members
    tar.addfile(info, io.BytesIO(data))


@dataclass
class Verified:
    """What `verify_bundle` found: problems (each one line; none means the bundle is whole)
    and notes (checks it could not make)."""

    suite: str
    files: int
    records: int
    weights: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read_members(path: Path) -> tuple[dict[str, bytes], list[str]]:
    """The regular files of the archive by name, and a problem per member that is not a
    plain file inside one top folder."""
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
                    members[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path} is not a crlbench bundle (not a readable .tar.gz: "
                        f"{why})") from None
    return members, problems


def verify_bundle(path: Path) -> Verified:
    """Check a bundle against its manifest; UserError when it is not a bundle at all."""
    members, problems = _read_members(Path(path))
    manifests = [name for name in members if PurePosixPath(name).name == MANIFEST
                 and len(PurePosixPath(name).parts) == 2]
    if len(manifests) != 1:
        raise UserError(f"{path} is not a crlbench bundle (no {MANIFEST} in one top folder)")
    top = PurePosixPath(manifests[0]).parts[0]
    try:
        manifest = json.loads(members[manifests[0]])
    except ValueError as e:
        raise UserError(f"{path}: its {MANIFEST} is not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UserError(f"{path} is not a crlbench bundle of version {VERSION} (format "
                        f"{manifest.get('format')!r}, version {manifest.get('version')!r})")
    inside = {}
    for name, data in members.items():
        parts = PurePosixPath(name).parts
        if parts[0] != top:
            problems.append(f"{name}: outside the bundle's folder {top}/")
        elif name != manifests[0]:
            inside[PurePosixPath(*parts[1:]).as_posix()] = data
    listed = manifest.get("files") or {}
    for name, entry in sorted(listed.items()):
        data = inside.get(name)
        if data is None:
            problems.append(f"{name}: listed in the manifest, missing from the archive")
        elif _sha256(data) != entry.get("sha256") or len(data) != entry.get("bytes"):
            problems.append(f"{name}: its SHA-256 or size differs from the manifest's")
    problems += [f"{name}: in the archive, not in the manifest"
                 for name in sorted(set(inside) - set(listed))]
    runs = manifest.get("runs") or {}
    weights = 0
    for run_id, entry in sorted(runs.items()):
        problems += _check_run(run_id, entry, inside)
        weights += bool(entry.get("weights"))
    result = Verified(suite=str(manifest.get("suite")), files=len(listed), records=len(runs),
                      weights=weights, problems=problems)
    _check_plan(manifest, inside, result)
    return result


def _check_run(run_id: str, entry: dict[str, Any], inside: dict[str, bytes]) -> list[str]:
    name = entry.get("record")
    if name not in inside:
        return [f"run {run_id}: its record {name} is missing"]
    try:
        record = parse_record(inside[name])
    except ValueError as e:
        return [f"{name}: {e}"]
    problems = []
    if record["run_id"] != run_id or PurePosixPath(name).stem != run_id:
        problems.append(f"{name}: holds run {record['run_id']}, the manifest says {run_id}")
    kept = entry.get("weights")
    if kept:
        expected = (record.get("weights") or {}).get("sha256")
        if kept not in inside:
            problems.append(f"run {run_id}: its weights {kept} are missing")
        elif _sha256(inside[kept]) != expected:
            problems.append(f"{kept}: not the weights its record {name} vouches for "
                            "(SHA-256 differs)")
    return problems


def _check_plan(manifest: dict[str, Any], inside: dict[str, bytes], result: Verified) -> None:
    """The resolved suite re-expands to the run ids the manifest says were planned."""
    from crlbench.loader import load_suite

    plan = manifest.get("plan") or {}
    if SUITE_FILE not in inside:
        return  # already a problem: the manifest lists it
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / f"{result.suite}.yaml"
        suite.write_bytes(inside[SUITE_FILE])
        try:
            planned = _plan(load_suite(suite))
        except UserError as e:  # a plugin method that is not installed here
            result.notes.append(f"the suite's plan was not re-expanded: {e}")
            return
    recorded = set(manifest.get("runs") or {})
    if plan.get("missing") != [r for r in planned if r not in recorded] or \
            plan.get("extra") != sorted(recorded - set(planned)) or \
            plan.get("planned") != len(planned):
        result.problems.append(f"{SUITE_FILE}: expands to {len(planned)} runs, which is not "
                               "the manifest's plan")
    if plan.get("missing"):
        result.notes.append(f"{len(plan['missing'])} of the suite's {len(planned)} planned runs "
                            "have no record in the bundle")
