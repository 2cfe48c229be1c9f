"""Shared fixtures: a temporary results store, tiny suite overrides, fake plugin packages."""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from crlbench import registry

# A run small enough for a test: digits at 8x8, a 4-layer ConvNet of width 8, 2 epochs.
TINY = [
    "dataset=digits",
    "backbone.name=convnet_tiny",
    "backbone.width=8",
    "train.epochs=2",
    "train.batch_size=128",
    "train.optimizer.name=adam",
    "train.optimizer.lr=0.001",
    "train.warmup_epochs=0",
    "eval.kmeans_restarts=2",
    "eval.knn_k=[5,20]",
    "device=cpu",
    "executor=local",  # tests/test_ray.py runs the Ray executor
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip where torch sees no CUDA device (`pytest -m gpu` runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run them there with: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny(tmp_path: Path) -> list[str]:
    """Overrides for a tiny CPU run writing into a temporary store."""
    return [*TINY, f"results.dir={tmp_path / 'results'}"]


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make fake installed distributions: `make(dist, {ep_name: "module:attr"}, {module: src})`.

    Each gets a real `.dist-info` folder with METADATA and entry_points.txt on sys.path, so
    discovery goes through importlib.metadata exactly as for a pip-installed plugin.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def make(dist: str, entries: dict[str, str], modules: dict[str, str],
             group: str = "crlbench.methods", version: str = "1.0") -> None:
        """Calling it again with the same `dist` replaces that distribution (a new release)."""
        for old in root.glob(f"{dist}-*.dist-info"):
            shutil.rmtree(old)
        info = root / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
        (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")
        for module, src in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(src))
        importlib.invalidate_caches()
        _refresh_registries()

    yield make
    for name in list(sys.modules):
        if name.startswith("fake_"):
            del sys.modules[name]
    _refresh_registries()


def _refresh_registries() -> None:
    for reg in (registry.methods, registry.datasets, registry.evaluators):
        reg.refresh()


@pytest.fixture
def one_thread():
    """For tests of tiny tensors: extra intra-op threads only add synchronisation, which costs
    up to 100x when the two cores are shared with other processes. Whole runs keep theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps table cells at the terminal width; tests read whole lines."""
    monkeypatch.setenv("COLUMNS", "200")
