"""Plugin discovery through entry point groups: `crlbench.methods`, `crlbench.datasets` and
`crlbench.evaluators`.

Built-in methods, datasets and evaluators register through these groups exactly as a
third-party package does (see pyproject.toml). Every entry is loaded in isolation: a plugin
that fails to import, is not what its group expects, or claims a name another package claims
too is reported by name with the reason, and never breaks the other plugins.
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from collections.abc import Callable
from importlib.metadata import EntryPoint, distributions
from typing import Any

from crlbench.errors import UserError
from crlbench.plugin import BUILTIN_PACKAGE, PluginEntry


def _group_entry_points(group: str) -> list[EntryPoint]:
    """Every entry point of the group from every distribution on the path.

    `importlib.metadata.entry_points(group=...)` keeps only the first entry point of each name,
    which would hide a second package claiming the same name; we read distributions directly.
    """
    return [ep for dist in distributions() for ep in dist.entry_points if ep.group == group]


def _distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "unknown"
    return dist.metadata["Name"] or dist.name, dist.version


Check = Callable[[str, Any], str | None]  # (registered name, loaded object) -> why unusable


def _load(ep: EntryPoint, check: Check | None) -> tuple[Any, str | None]:
    try:
        obj = ep.load()
    except Exception as e:  # a plugin's import may raise anything; report it, don't crash
        where = traceback.extract_tb(e.__traceback__)[-1]
        return None, f"import failed: {type(e).__name__}: {e} ({where.filename}:{where.lineno})"
    return obj, (check(ep.name, obj) if check else None)


class Registry:
    """The plugins of one entry point group, discovered once and cached."""

    def __init__(self, group: str, kind: str, check: Check | None = None):
        self.group = group
        self.kind = kind  # "method", "dataset", ... used in messages
        self._check = check
        self._entries: dict[str, list[PluginEntry]] | None = None

    def refresh(self) -> None:
        """Forget what was discovered (after installing a plugin in the same process)."""
        self._entries = None

    def _discover(self) -> dict[str, list[PluginEntry]]:
        if self._entries is None:
            found: dict[str, list[PluginEntry]] = defaultdict(list)
            seen: set[tuple[str, str, str]] = set()
            for ep in _group_entry_points(self.group):
                package, version = _distribution(ep)
                # One distribution can be visible twice (e.g. editable + site-packages copy).
                if (ep.name, ep.value, package) in seen:
                    continue
                seen.add((ep.name, ep.value, package))
                obj, error = _load(ep, self._check)
                found[ep.name].append(PluginEntry(ep.name, ep.value, package, version, obj, error))
            self._entries = dict(found)
        return self._entries

    def entries(self) -> list[PluginEntry]:
        """Every entry, duplicates and broken ones included, with duplicates marked as errors."""
        rows = []
        for name in sorted(self._discover()):
            claims = self._discover()[name]
            if len(claims) > 1:
                msg = self._duplicate_message(name, claims)
                rows.extend(PluginEntry(c.name, c.target, c.package, c.version, None, msg)
                            for c in claims)
            else:
                rows.extend(claims)
        return rows

    def __contains__(self, name: str) -> bool:
        """Whether any package claims `name` (usable or not)."""
        return name in self._discover()

    def names(self) -> list[str]:
        """Names that can be used (loaded fine, claimed once)."""
        return sorted(e.name for e in self.entries() if e.ok)

    def get(self, name: str) -> Any:
        """The object registered as `name`; UserError if unknown, claimed twice or broken."""
        return self.entry(name).obj

    def entry(self, name: str) -> PluginEntry:
        """The entry registered as `name`; UserError if unknown, claimed twice or broken."""
        claims = self._discover().get(name)
        if not claims:
            raise UserError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())} "
                f"(a plugin's {self.kind} is found through the entry point group "
                f"{self.group} of its package: declare it in pyproject.toml, then reinstall "
                "the package, also an editable one)"
            )
        if len(claims) > 1:
            raise UserError(self._duplicate_message(name, claims))
        entry = claims[0]
        if entry.error:
            raise UserError(f"{entry.describe(self.kind)} is unusable: {entry.error}")
        return entry

    def _duplicate_message(self, name: str, claims: list[PluginEntry]) -> str:
        who = " and ".join(f"{c.package} ({c.target})" for c in claims)
        return f"{self.kind} name {name!r} is registered twice, by {who}; uninstall one of them"


def _check_method(name: str, obj: Any) -> str | None:
    from crlbench.protocol import Method

    if not (isinstance(obj, type) and issubclass(obj, Method)):
        return f"{obj!r} is not a subclass of crlbench.Method"
    return None


def _check_dataset(name: str, obj: Any) -> str | None:
    from crlbench.data.catalog import DatasetInfo

    if not isinstance(obj, DatasetInfo):
        return f"{obj!r} is not a crlbench.data.DatasetInfo"
    if obj.name != name:
        return f"its DatasetInfo is named {obj.name!r} but registered as {name!r}; make them equal"
    return None


def _check_evaluator(name: str, obj: Any) -> str | None:
    if not callable(obj):
        return f"{obj!r} is not callable as evaluator(embeddings, eval_cfg, seed)"
    return None


methods = Registry("crlbench.methods", "method", _check_method)
datasets = Registry("crlbench.datasets", "dataset", _check_dataset)
evaluators = Registry("crlbench.evaluators", "evaluator", _check_evaluator)


def method_version(entry: PluginEntry) -> str:
    """The implementation version of a resolved method, part of its runs' identity: a
    built-in's `version` attribute (bumped when its numbers can change), a plugin's package
    version (bump it when the method changes)."""
    return str(entry.obj.version) if entry.builtin else entry.version


__all__ = ["BUILTIN_PACKAGE", "PluginEntry", "Registry", "datasets", "evaluators",
           "method_version", "methods"]
