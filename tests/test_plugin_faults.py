"""A plugin that breaks the protocol is named by `crlbench methods --check`, with the fault."""

from __future__ import annotations

from crlbench.cli import main
from crlbench.store import scan

BREAKS_PROTOCOL = """
from dataclasses import dataclass
from crlbench import Method

class NoLoss(Method):
    '''Returns its loss under the wrong key.'''
    name = "noloss"

    @dataclass
    class Config:
        pass

    def loss(self, views, batch):
        return {"total": self.backbone(views[0]).mean()}
"""


def test_methods_check_names_the_plugin_that_breaks_the_protocol(plugin_dir, capsys, tiny,
                                                                 tmp_path):
    plugin_dir("fake-noloss", {"noloss": "fake_noloss:NoLoss"}, {"fake_noloss": BREAKS_PROTOCOL})
    assert main(["methods", "--check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    (row,) = [line for line in lines if "noloss" in line]
    assert "fake-noloss" in row and "broken" in row
    assert "dict without 'loss'" in "\n".join(lines)
    assert any("simclr" in line and " ok " in line for line in lines)
    # in a suite, the broken plugin fails its own runs only
    assert main(["run", "suite=quickstart", *tiny, "method=noloss,raw", "seeds=[0]"]) == 1
    by_method = {r["method"]: r for r in scan(tmp_path / "results").records}
    assert by_method["raw"]["status"] == "ok"
    assert "'loss' entry" in by_method["noloss"]["error"]["message"]
