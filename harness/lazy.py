"""Names of a package loaded on first use (PEP 562 module `__getattr__`).

A package that re-exports names from its modules would import all of them, and their heavy
dependencies, at `import package`; with `lazy_exports` each module loads when one of its
names is first asked for, so a light command pays only for what it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that serves `exports` (name -> the module of
    the package defining it)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f".{module}", package), name)

    return __getattr__
