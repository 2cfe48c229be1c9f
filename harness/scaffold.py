"""`crlbench new-method NAME`: write a small installable plugin package for a new method.

The package (templates in crlbench/templates/method/) has a pyproject.toml that registers the
method in the `crlbench.methods` entry point group, the method with every hook of the protocol
and a Config dataclass, a test that runs `crlbench.testing.check_method`, and a README.
`pip install -e` it and `crlbench run suite=quickstart method=NAME,simclr` trains it next to
the built-ins. The package is written into a temporary folder beside the target and renamed
into place, so a refusal or a crash leaves nothing half-written.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path
from string import Template

from crlbench import __version__, registry
from crlbench.errors import UserError

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")  # no "__", no trailing "_" (PEP 508 names)
# names the method template imports: a class named like one of them would shadow it
TEMPLATE_NAMES = frozenset({"F", "Tensor", "Batch", "Method", "RunContext", "EpochLoader"})
# template file -> where it goes in the package ($package is the import name)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "src/$package/__init__.py",
    "method.py.tmpl": "src/$package/method.py",
    "test_method.py.tmpl": "tests/test_$name.py",
}


def names(name: str) -> dict[str, str]:
    """The template's placeholders for a method name: my_loss -> class MyLoss, import package
    crlbench_my_loss, distribution crlbench-my-loss."""
    if not NAME.match(name):
        raise UserError(f"method name {name!r} must be lower case letters, digits and single "
                        "'_' between them, starting with a letter (it is a registry name, a "
                        "folder of the results store and part of a Python package name)")
    class_name = "".join(part.capitalize() for part in name.split("_"))
    if class_name in TEMPLATE_NAMES:
        raise UserError(f"method name {name!r} would make a class {class_name} that shadows "
                        "the template's own import of that name; choose a longer name")
    if name in registry.methods:
        owners = {e.package for e in registry.methods.entries() if e.name == name}
        raise UserError(f"method {name!r} is already registered by {', '.join(sorted(owners))}; "
                        "choose another name")
    release = __version__.split("+")[0].split(".")
    floor = ".".join(release[:2]) if release[0].isdigit() else "0"
    return {
        "name": name,
        "class_name": class_name,
        "package": f"crlbench_{name}",
        "dist": f"crlbench-{name.replace('_', '-')}",
        "crlbench_version": floor,
    }


def render(values: dict[str, str]) -> dict[str, str]:
    """Relative path -> text of every file of the package."""
    templates = files("crlbench") / "templates" / "method"
    return {Template(dest).substitute(values):
            Template((templates / src).read_text(encoding="utf-8")).substitute(values)
            for src, dest in LAYOUT.items()}


def write_method_package(name: str, target: Path | None = None) -> Path:
    """Write the package for method `name` into `target` (default ./crlbench-NAME, which must
    not exist or be an empty folder); return its path."""
    values = names(name)
    target = Path(target if target is not None else values["dist"]).expanduser().absolute()
    if Path.cwd().resolve().is_relative_to(target.resolve()):
        raise UserError(f"{target} is the current folder (or holds it); give --dir a new "
                        "folder to write the package into")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} already exists and is not an empty folder; give another "
                        "--dir or remove it")
    if not target.parent.is_dir():
        raise UserError(f"cannot write {target}: the folder {target.parent} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the package is not
        for rel, text in render(values).items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty, checked above
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
