"""What a resolved plugin is: the object a name stands for, and the package it comes from.

The registry (registry.py) discovers plugins by name; suite expansion resolves each name a
suite uses once into a `PluginEntry`, and everything downstream (the runner, the evaluation,
the data loading) receives these entries instead of looking names up again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BUILTIN_PACKAGE = "crlbench"  # the distribution whose entries are the built-ins


@dataclass(frozen=True)
class PluginEntry:
    """One registered name: where it comes from, and what loading it gave."""

    name: str
    target: str  # "module:attribute"
    package: str  # the distribution that declares the entry point
    version: str
    obj: Any = None  # the loaded object, when loading worked
    error: str | None = None  # why it is unusable, one line

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def builtin(self) -> bool:
        return self.package == BUILTIN_PACKAGE

    def describe(self, kind: str) -> str:
        """"method 'x' from package p", for messages that name a plugin."""
        return f"{kind} {self.name!r} from package {self.package}"

    def provenance(self) -> dict[str, str]:
        """The record's note of where this plugin came from."""
        return {"name": self.package, "version": self.version, "target": self.target}
