"""Names to plugins, once: the methods, datasets and evaluators a suite names, looked up in the
registry and returned as the objects that runs receive (`PluginEntry`, `DatasetSource`).

Suite expansion calls these once per name; the runner, the data loading and the evaluation
never look a name up again. `load_dataset`, `check_available` and `evaluate_named` are the
by-name conveniences for scripts and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from crlbench import registry
from crlbench.data import DatasetSource, ImageData, check_source, load_source
from crlbench.errors import UserError
from crlbench.evaluate.evaluators import Embeddings, EvalResult, evaluate, evaluator_needs
from crlbench.plugin import PluginEntry


def resolve_method(name: str) -> PluginEntry:
    """The method registered as `name`; UserError if unknown, claimed twice or broken."""
    return registry.methods.entry(name)


def resolve_evaluators(names: Iterable[str]) -> tuple[PluginEntry, ...]:
    """The evaluators of `eval.metrics`, in order; UserError for an unknown or broken one, or
    for one that declares an input the runner does not provide."""
    entries = tuple(registry.evaluators.entry(str(name)) for name in names)
    for entry in entries:
        evaluator_needs(entry)  # its declared inputs, checked now
    return entries


def dataset_names(folders: Mapping[str, str] | None = None) -> list[str]:
    """Registered names (built-in and plugins', usable ones), then the ImageFolder names of
    `data.folders`, sorted."""
    folders = folders or {}
    clashes = sorted(name for name in folders if name in registry.datasets)
    if clashes:
        raise UserError(
            f"data.folders: {', '.join(clashes)} is the name of a registered dataset; "
            "give the folder dataset another name"
        )
    return [*registry.datasets.names(), *sorted(folders)]


def resolve_dataset(name: str, folders: Mapping[str, str] | None = None) -> DatasetSource:
    """The registered dataset of this name or the folder `data.folders` gives it; UserError if
    unknown, or if the plugin that registers it is unusable (the reason is in the message)."""
    valid = dataset_names(folders)
    if folders and name in folders:
        return DatasetSource(name, folder=Path(folders[name]))
    if name not in registry.datasets:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(valid)} "
                        "(add your own ImageFolder with data.folders.NAME=PATH)")
    return DatasetSource(name, entry=registry.datasets.entry(name))


def check_available(name: str, *, root: str | Path, download: bool = False,
                    folders: Mapping[str, str] | None = None, use_unlabeled: bool = True) -> None:
    """`check_source` of the dataset of this name."""
    check_source(resolve_dataset(name, folders), root=root, download=download,
                 use_unlabeled=use_unlabeled)


def load_dataset(name: str, *, root: str | Path, download: bool = False,
                 image_size: int | None = None, folders: Mapping[str, str] | None = None,
                 use_unlabeled: bool = True) -> ImageData:
    """`load_source` of the dataset of this name (not cached)."""
    return load_source(resolve_dataset(name, folders), root=root, download=download,
                       image_size=image_size, use_unlabeled=use_unlabeled)


def evaluate_named(emb: Embeddings, cfg: Any, *, seed: int) -> EvalResult:
    """`evaluate` with the evaluators of cfg.metrics resolved by name."""
    return evaluate(emb, cfg, seed=seed, evaluators=resolve_evaluators(cfg.metrics))
