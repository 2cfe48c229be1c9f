"""A method's implementation version is part of its runs' identity: a new plugin release or a
changed built-in reruns instead of reusing old records, a table never averages two versions,
and every built-in's numbers are pinned to its version (change them, and the version must be
bumped: `PYTHONPATH=tests python tests/methods/test_versions.py` rewrites the pins).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_registry import GOOD

from crlbench import registry
from crlbench.backbones import TinyConvNet
from crlbench.cli import main
from crlbench.loader import load_suite
from crlbench.methods.c2bin import C2BIN
from crlbench.protocol import Batch, EpochLoader
from crlbench.report.summary import newest_method_versions
from crlbench.store import scan
from crlbench.suite import expand, method_config
from crlbench.testing import make_context

PINS = Path(__file__).with_name("method_fingerprints.json")


def test_a_new_plugin_release_reruns_and_the_table_shows_only_the_newest(plugin_dir, tiny,
                                                                         tmp_path, capsys):
    plugin_dir("fake-plain", {"plain": "fake_plain:Plain"}, {"fake_plain": GOOD},
               version="0.1.0")
    run = ["run", "suite=quickstart", *tiny, "method=plain", "seeds=[0]"]
    store = tmp_path / "results"
    assert main(run) == 0
    assert main(run) == 0  # the same release: skipped as done
    assert [r["method_version"] for r in scan(store).records] == ["0.1.0"]

    plugin_dir("fake-plain", {"plain": "fake_plain:Plain"}, {"fake_plain": GOOD},
               version="0.1.1")
    assert main(run) == 0  # the new release is not skipped
    records = scan(store).records
    assert sorted(r["method_version"] for r in records) == ["0.1.0", "0.1.1"]
    assert len({r["run_id"] for r in records}) == 2
    assert {r["method_package"]["version"] for r in records} == {"0.1.0", "0.1.1"}

    capsys.readouterr()
    assert main(["table", f"results.dir={store}", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert set(pd.read_csv(io.StringIO(out))["n"]) == {1}  # one record per cell, not two
    assert ("warning: plain on digits: shows method version 0.1.1 and leaves out 1 record of "
            "version 0.1.0; move the old records away to silence this") in err


def test_a_built_in_version_is_in_the_run_id(monkeypatch):
    before = {s.method: s for s in expand(load_suite("clustering_cpu"))}
    monkeypatch.setattr(C2BIN, "version", "3")
    after = {s.method: s for s in expand(load_suite("clustering_cpu"))}
    assert after["c2bin"].method_version == "3" and before["c2bin"].method_version == "2"
    assert after["c2bin"].run_id != before["c2bin"].run_id
    assert after["c2bin"].config_id != before["c2bin"].config_id
    assert after["cc"].run_id == before["cc"].run_id


def test_crlbench_methods_lists_each_methods_version(plugin_dir, capsys):
    plugin_dir("fake-plain", {"plain": "fake_plain:Plain"}, {"fake_plain": GOOD},
               version="0.3.1")
    assert main(["methods"]) == 0
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip()
            for line in capsys.readouterr().out.splitlines() if line.count("│") > 4}
    assert rows["c2bin"] == "2" and rows["simclr"] == "1" and rows["plain"] == "0.3.1"


def test_newest_method_versions_keeps_each_cells_highest_version():
    def rec(method, version, created, dataset="d", variant=None, suite="s", status="ok"):
        return {"method": method, "dataset": dataset, "method_version": version,
                "created": created, "variant": variant or {}, "suite": suite,
                "status": status}

    records = [rec("a", "1", "2026-03-01"), rec("a", "2", "2026-02-01"),
               rec("a", "2", "2026-01-15"), rec("a", "1", "2026-01-02", dataset="e"),
               rec("b", None, "2027-01-01"), rec("b", "0.10", "2026-03-01"),
               rec("b", "0.9", "2026-04-01"),
               rec("c", "1", "2026-01-01", variant={"k": 5}),
               rec("c", "2", "2026-01-02", variant={"k": 10}),
               rec("d", "x", "2026-01-01"), rec("d", "y", "2026-01-02"),
               # another suite's cell, and a newer version that only failed so far
               rec("a", "1", "2026-01-01", suite="t"),
               rec("e", "1", "2026-01-01"), rec("e", "2", "2026-01-02", status="failed")]
    kept, warnings = newest_method_versions(records)
    assert [(r["method"], r["method_version"], r["dataset"]) for r in kept] == [
        ("a", "2", "d"), ("a", "2", "d"), ("a", "1", "e"), ("b", "0.10", "d"),
        ("c", "1", "d"), ("c", "2", "d"), ("d", "y", "d"), ("a", "1", "d"), ("e", "1", "d")]
    assert warnings == [
        "a on d: shows method version 2 and leaves out 1 record of version 1; move the old "
        "records away to silence this",
        "b on d: shows method version 0.10 and leaves out 2 records of version 0.9, unknown "
        "(made before method versions); move the old records away to silence this",
        "d on d: shows method version y and leaves out 1 record of version x; move the old "
        "records away to silence this",
        "e on d: shows method version 1 and leaves out 1 record of version 2; move the old "
        "records away to silence this"]


# Every built-in's numbers, pinned to its version.

# Branches besides the defaults whose numbers are pinned too: each preset and loss option.
VARIANTS: dict[str, list[dict]] = {
    "c2bin": [{"preset": "representation"}, {"bca_similarity": "dot", "mlp_batchnorm": False}],
    "cmc": [{"loss": "nce"}, {"loss": "triplet"}, {"loss": "spring"},
            {"loss": "spring", "squared_distances": True},
            {"loss": "triplet", "squared_distances": True}],
    "cueco": [{"negatives": "batch", "symmetric": True, "normalize_centroids": True}],
    "moco_v2": [{"symmetric": True}],
    "npid": [{"normaliser": "batch"}],
    "rcc": [{"uniformity_on": "instance", "uniformity_reduce": "mean"}],
}


# Settings every fingerprint of a method uses: DeepCluster's default PCA-whitens the 32 points to
# 31 dimensions, whose smallest eigenvalues are rounding noise; whitened, that noise decides
# k-means and makes the numbers differ between CPUs (AVX2 or AVX-512 kernels). 8 dimensions
# keep the top of the spectrum only, which every CPU computes alike.
BASE: dict[str, dict] = {"deepcluster": {"pca_dim": 8}}


def _cases() -> list[tuple[str, dict]]:
    builtins = sorted(e.name for e in registry.methods.entries()
                      if e.package == registry.BUILTIN_PACKAGE)
    return [(name, overrides) for name in builtins
            for overrides in [{}, *VARIANTS.get(name, [])]]


def _key(name: str, overrides: dict) -> str:
    return name + ("[" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) + "]"
                   if overrides else "")


def fingerprint(name: str, overrides: dict) -> list[float]:
    """A built-in method's numbers on a fixed tiny problem: the mean of its features, its loss,
    and its loss after one SGD step and `after_step` (so EMA targets, queues and banks count)."""
    cls = registry.methods.get(name)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    ctx = make_context(dataset_size=32, image_size=16, channels=3, input_mean=(0.5,) * 3,
                       input_std=(0.25,) * 3)
    settings = {**BASE.get(name, {}), **overrides}
    method = cls(TinyConvNet(3, 8), ctx, cls.Config(**method_config(name, settings)))
    x = torch.randn(8, 3, 16, 16, generator=gen)
    out = [method.eval().features(x).mean().item()]
    if not cls.trainable:
        return out
    method.train()
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=gen)
    method.before_epoch(0, EpochLoader(images, lambda u: u.float() / 255, 8, ctx.device))
    views = [torch.randn(8, 3, 16, 16, generator=gen) for _ in range(cls.num_views)]
    batch = Batch(indices=torch.arange(8))
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.05)
    for step in range(2):
        torch.manual_seed(1 + step)  # the methods' own draws (noise samples, ...)
        loss = method.loss(views, batch)["loss"]
        out.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step(step)
    return out


@pytest.mark.parametrize(("name", "overrides"), _cases(), ids=[_key(*c) for c in _cases()])
def test_a_built_in_method_whose_numbers_change_has_a_new_version(name, overrides):
    pins = json.loads(PINS.read_text())
    key = _key(name, overrides)
    assert key in pins, f"{key} has no pinned numbers: run PYTHONPATH=tests python {__file__}"
    pin = pins[key]
    version = registry.method_version(registry.methods.entry(name))
    numbers = _measure_one(name, overrides)
    if version == pin["version"]:
        assert numbers == pytest.approx(pin["numbers"], rel=1e-4, abs=1e-6), (
            f"{key}'s numbers changed but its version is still {version}: bump its `version` "
            "(records of the old code must not be reused), then run "
            f"PYTHONPATH=tests python {__file__}")
    else:
        pytest.fail(f"{name} is at version {version}, its pinned numbers at {pin['version']}: "
                    f"run PYTHONPATH=tests python {__file__} to pin the new version's numbers")


def _measure_one(name: str, overrides: dict) -> list[float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fingerprint(name, overrides)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":  # pin the current numbers (after bumping a method's version)
    pins = {_key(name, overrides): {
                "version": registry.method_version(registry.methods.entry(name)),
                "numbers": _measure_one(name, overrides)}
            for name, overrides in _cases()}
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINS}")
