"""Method discovery through entry points: built-ins, third-party, broken and duplicate plugins."""

from __future__ import annotations

import pytest

from crlbench import registry
from crlbench.cli import main
from crlbench.errors import UserError

GOOD = """
from dataclasses import dataclass
import torch
from crlbench import Method

class Plain(Method):
    '''A plugin method for the tests: pulls two views together.'''
    name = "plain"

    @dataclass
    class Config:
        scale: float = 1.0

    def loss(self, views, batch):
        a, b = (self.backbone(v) for v in views)
        return {"loss": self.cfg.scale * (a - b).pow(2).mean()}
"""


def test_builtins_come_through_the_entry_point_group():
    entries = {e.name: e for e in registry.methods.entries()}
    assert {"raw", "simclr"} <= set(entries)
    assert entries["simclr"].package == "crlbench"
    assert entries["simclr"].target == "crlbench.methods.simclr:SimCLR"
    assert entries["simclr"].ok


def test_third_party_plugin_is_found_and_listed(plugin_dir, capsys):
    plugin_dir("fake-plain", {"plain": "fake_plain:Plain"}, {"fake_plain": GOOD})
    cls = registry.methods.get("plain")
    assert cls.__name__ == "Plain"
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "plain" in out and "fake-plain" in out and "1.0" in out
    assert "pulls two views together" in out


def test_broken_plugin_is_reported_and_does_not_break_others(plugin_dir, capsys):
    plugin_dir("fake-broken", {"broken": "fake_broken:Nope"},
               {"fake_broken": "import not_a_module_anywhere\n"})
    assert registry.methods.get("simclr").name == "simclr"
    assert "broken" not in registry.methods.names()
    with pytest.raises(UserError, match="method 'broken' from package fake-broken is unusable: "
                                        "import failed: ModuleNotFoundError"):
        registry.methods.get("broken")
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "unusable" in out and "simclr" in out


def test_plugin_that_is_not_a_method_is_refused(plugin_dir):
    plugin_dir("fake-thing", {"thing": "fake_thing:thing"}, {"fake_thing": "thing = 42\n"})
    with pytest.raises(UserError, match="42 is not a subclass of crlbench.Method"):
        registry.methods.get("thing")


def test_two_packages_with_one_name_is_an_error_naming_both(plugin_dir):
    plugin_dir("fake-one", {"twin": "fake_one:Plain"}, {"fake_one": GOOD})
    plugin_dir("fake-two", {"twin": "fake_two:Plain"}, {"fake_two": GOOD})
    with pytest.raises(UserError, match="'twin' is registered twice, by fake-one .* and fake-two"):
        registry.methods.get("twin")
    assert "twin" not in registry.methods.names()
    assert registry.methods.get("simclr").name == "simclr"


def test_unknown_method_lists_valid_ones():
    with pytest.raises(UserError, match="unknown method 'nope'; valid methods: .*simclr"):
        registry.methods.get("nope")
