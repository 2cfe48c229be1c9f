"""The guide's examples are real code: every ```python block of docs/plugins.md runs, in order,
in one namespace, and its assertions hold."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_the_guide_has_examples():
    assert len(BLOCK.findall(GUIDE.read_text())) >= 4


def test_the_guides_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread):
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("plugins_guide")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for i, code in enumerate(BLOCK.findall(GUIDE.read_text())):
        exec(compile(code, f"{GUIDE.name}[block {i}]", "exec"), module.__dict__)
