"""`crlbench bundle` and `crlbench verify`: a bundle of a real (tiny) suite verifies, extracts
to a store that tabulates as the original, and every kind of tampering is caught."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import TINY

import crlbench.bundle
from crlbench.cli import main
from crlbench.store import _umask

SUITE = ["suite=quickstart", "method=simclr,raw", "seeds=[0]", *TINY]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("bundle") / "results"
    assert main(["run", *SUITE, f"results.dir={store}"]) == 0
    return store


@pytest.fixture(scope="module")
def bundle(store, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("out") / "quickstart.bundle.tar.gz"
    assert main(["bundle", *SUITE, f"results.dir={store}", "--output", str(path),
                 "--no-figures"]) == 0
    return path


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def rewrite(target: Path, files: dict[str, bytes],
            extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return target


def verify(path: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_bundle_holds_records_weights_suite_site_and_verifies(bundle, store, capsys):
    files = members(bundle)
    top = "quickstart-bundle"
    manifest = json.loads(files[f"{top}/manifest.json"])
    assert manifest["plan"] == {"planned": 2, "recorded": 2, "missing": [], "extra": []}
    runs = manifest["runs"]
    assert {r["status"] for r in runs.values()} == {"ok"}
    kept = [r["weights"] for r in runs.values() if r["weights"]]
    assert len(kept) == 1 and kept[0].endswith(".safetensors")  # simclr's; raw trains nothing
    for entry in runs.values():
        original = store / entry["record"].removeprefix("store/")
        assert files[f"{top}/{entry['record']}"] == original.read_bytes()
    assert f"{top}/suite.yaml" in files and f"{top}/site/quickstart/index.html" in files
    assert set(manifest["files"]) == {name.removeprefix(f"{top}/") for name in files} - \
        {"manifest.json"}
    code, out = verify(bundle, capsys)
    assert code == 0 and out.strip().endswith("ok"), out


def test_the_extracted_store_tabulates_as_the_original(bundle, store, tmp_path, capsys):
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    capsys.readouterr()
    tables = []
    for where in (store, tmp_path / "quickstart-bundle" / "store"):
        assert main(["table", f"results.dir={where}", "--format", "csv"]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1]


def _tampered(bundle: Path, tmp_path: Path, change) -> Path:
    files = members(bundle)
    change(files)
    return rewrite(tmp_path / "tampered.tar.gz", files)


def _first(files: dict[str, bytes], suffix: str) -> str:
    return next(name for name in sorted(files) if name.endswith(suffix) and "/store/" in name)


def _swap_weights(files: dict[str, bytes]) -> None:
    """New weight bytes, with the manifest's hash updated to match: only the record's own
    hash can tell."""
    import hashlib

    name = _first(files, ".safetensors")
    files[name] = files[name][:-4] + b"\0\0\0\0"
    key = "quickstart-bundle/manifest.json"
    manifest = json.loads(files[key])
    manifest["files"][name.split("/", 1)[1]] = {
        "sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
    files[key] = json.dumps(manifest).encode()


@pytest.mark.parametrize(("change", "expected"), [
    (lambda f: f.update({(n := _first(f, ".json")): f[n].replace(b'"ok"', b'"ok" ', 1)}),
     "its SHA-256 or size differs from the manifest's"),
    (lambda f: f.pop(_first(f, ".json")), "missing from the archive"),
    (lambda f: f.update({"quickstart-bundle/store/x.json": b"{}"}),
     "in the archive, not in the manifest"),
    (_swap_weights, "not the weights its record"),
    (lambda f: f.update({"elsewhere/x": b""}), "outside the bundle's folder"),
])
def test_tampering_is_caught(bundle, tmp_path, capsys, change, expected):
    code, out = verify(_tampered(bundle, tmp_path, change), capsys)
    assert code == 1 and expected in out, out
    assert "problem" in out.splitlines()[-1]


def test_links_and_escaping_paths_are_problems(bundle, tmp_path, capsys):
    link = tarfile.TarInfo("quickstart-bundle/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    escape = tarfile.TarInfo("quickstart-bundle/../../evil")
    target = rewrite(tmp_path / "links.tar.gz", members(bundle), [link, escape])
    code, out = verify(target, capsys)
    assert code == 1
    assert "link: not a regular file" in out and "a path that leaves the bundle" in out


@pytest.mark.parametrize("content", [None, b"not a tar", b""])
def test_not_a_bundle_is_one_line_and_exit_2(tmp_path, capsys, content):
    path = tmp_path / "x.tar.gz"
    if content is not None:
        path.write_bytes(content)
    code, out = verify(path, capsys)
    assert code == 2 and len(out.strip().splitlines()) == 1, out


def test_without_weights_and_with_missing_runs(store, tmp_path, capsys):
    path = tmp_path / "b.tar.gz"
    # seeds=[0,1]: the suite plans four runs, the store has two
    more = [*SUITE[:2], "seeds=[0,1]", *TINY]
    assert main(["bundle", *more, f"results.dir={store}", "--output", str(path),
                 "--no-weights", "--no-figures"]) == 0
    assert "2 records, 0 kept weights" in capsys.readouterr().out
    code, out = verify(path, capsys)
    assert code == 0 and "2 of the suite's 4 planned runs have no record" in out


def test_bundle_needs_a_suite_and_writes_nothing_on_failure(store, tmp_path, capsys,
                                                            monkeypatch):
    assert main(["bundle", f"results.dir={store}"]) == 2
    assert "needs suite=" in capsys.readouterr().err

    def full_disk(raw, top, files):
        raw.write(b"part of an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crlbench.bundle, "_write_tar", full_disk)
    assert main(["bundle", *SUITE, f"results.dir={store}", "--output", str(tmp_path / "b.tgz"),
                 "--no-figures"]) == 1
    assert "No space left" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no archive, no temporary file


def test_the_archive_is_readable_by_others(bundle):
    assert bundle.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _manifest_edit(bundle: Path, tmp_path: Path, edit) -> Path:
    """A copy of the bundle whose files `edit` changes, with the manifest's hashes of every
    file made to match again (as a careful forger would)."""
    import hashlib

    files = members(bundle)
    key = "quickstart-bundle/manifest.json"
    manifest = json.loads(files[key])
    edit(files, manifest)
    for name, data in files.items():
        short = name.split("/", 1)[1]
        if short in manifest["files"]:
            manifest["files"][short] = {"sha256": hashlib.sha256(data).hexdigest(),
                                        "bytes": len(data)}
    files[key] = json.dumps(manifest).encode()
    return rewrite(tmp_path / "edited.tar.gz", files)


def test_a_record_moved_to_another_suite_or_a_changed_plan_is_caught(bundle, tmp_path, capsys):
    def move(files, manifest):
        name = _first(files, ".json")
        files[name] = files[name].replace(b'"suite": "quickstart"', b'"suite": "../../x"')

    code, out = verify(_manifest_edit(bundle, tmp_path, move), capsys)
    assert code == 1 and "which is not its place" in out, out

    def replan(files, manifest):
        name = "quickstart-bundle/suite.yaml"
        files[name] = files[name].replace(b"- 0\n", b"- 0\n- 1\n", 1)

    code, out = verify(_manifest_edit(bundle, tmp_path, replan), capsys)
    assert code == 1 and "which is not the manifest's plan" in out, out


def test_an_unsafe_manifest_suite_writes_nothing_and_exits_2(bundle, tmp_path, capsys):
    def rename(files, manifest):
        manifest["suite"] = "../PWNED"

    code, out = verify(_manifest_edit(bundle, tmp_path, rename), capsys)
    assert code == 2 and "not a plain name" in out
    assert not list(tmp_path.parent.glob("PWNED*"))


@pytest.mark.parametrize("manifest", [
    {"format": "crlbench-bundle", "version": 1},
    {"format": "crlbench-bundle", "version": 1, "suite": "quickstart", "files": [],
     "runs": {}, "plan": {}},
    {"format": "crlbench-bundle", "version": 1, "suite": "quickstart", "files": {},
     "runs": {"a": "b"}, "plan": {}},
    [1, 2],
])
def test_a_malformed_manifest_is_one_line_and_exit_2(tmp_path, capsys, manifest):
    path = rewrite(tmp_path / "m.tar.gz",
                   {"quickstart-bundle/manifest.json": json.dumps(manifest).encode()})
    code, out = verify(path, capsys)
    assert code == 2 and len(out.strip().splitlines()) == 1, out


def test_stray_store_files_and_failed_runs(bundle, tmp_path, capsys):
    def stray(files, manifest):
        files["quickstart-bundle/store/quickstart/raw/digits/extra.safetensors"] = b"x"
        manifest["files"]["store/quickstart/raw/digits/extra.safetensors"] = {}

    code, out = verify(_manifest_edit(bundle, tmp_path, stray), capsys)
    assert code == 1 and "no run's record or weights" in out

    def failed(files, manifest):
        name = _first(files, ".json")
        files[name] = files[name].replace(b'"status": "ok"', b'"status": "failed"')
        run = next(r for r in manifest["runs"].values() if r["record"] in name)
        run["status"] = "failed"

    code, out = verify(_manifest_edit(bundle, tmp_path, failed), capsys)
    assert code == 0 and "1 of the 2 runs did not finish ok" in out, out
