"""The committed leaderboard records: they are the runs the shipped suite describes, all ok, and
the README's board is exactly what `crlbench table` makes of them (never numbers typed in)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from crlbench.cli import main
from crlbench.loader import load_suite
from crlbench.store import RESERVED, scan
from crlbench.suite import expand

ROOT = Path(__file__).resolve().parent.parent
BOARD = re.compile(r"<!-- board: crlbench table (.*?) -->\n(.*?)<!-- /board -->", re.S)
BOARDS = BOARD.findall((ROOT / "README.md").read_text())


def test_the_readme_has_a_board():
    assert BOARDS


@pytest.mark.parametrize(("command", "shown"), BOARDS)
def test_readme_board_is_the_table_of_the_committed_records(command, shown, capsys):
    capsys.readouterr()
    assert main(["table", *shlex.split(command), f"results.dir={ROOT / 'results'}"]) == 0
    assert shown.strip() == capsys.readouterr().out.strip()


@pytest.mark.parametrize("suite", sorted(p.name for p in (ROOT / "results").iterdir()
                                         if p.is_dir() and p.name not in RESERVED))
def test_committed_records_are_the_shipped_suites_runs(suite):
    found = scan(ROOT / "results", [suite])
    assert not found.problems
    assert {r["status"] for r in found.records} == {"ok"}
    assert {r["run_id"] for r in found.records} == {s.run_id for s in expand(load_suite(suite))}
