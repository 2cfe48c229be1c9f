"""`crlbench site` without a browser: what the pages hold, that they stand alone, and that a
failed build leaves the old site whole. tests/web/test_browser.py renders them in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from boards import DATASETS, SUITE, cell_values, write_board

from crlbench.cli import main
from crlbench.report.metrics import format_mean_std
from crlbench.site.context import dataset_table, flatten, shared_protocol, suite_page


@pytest.fixture
def board(tmp_path: Path) -> tuple[Path, list[dict]]:
    store = tmp_path / "results"
    return store, write_board(store)


def test_dataset_table_cells_are_the_records_mean_std_and_n(board):
    _, records = board
    table = dataset_table(records, "digits")
    metrics = [c["metric"] for c in table["columns"]]
    assert metrics[:2] == ["knn5_acc", "linear_acc"] and "align" in metrics
    for row in table["rows"]:
        for metric, cell in zip(metrics, row["cells"], strict=True):
            values = cell_values(records, row["method"], "digits", metric)
            if not values:
                assert cell is None
                continue
            assert cell["mean"] == pytest.approx(sum(values) / len(values), abs=1e-12)
            assert cell["n"] == len(values)
            assert cell["text"] == format_mean_std(metric, cell["mean"], cell["std"] or
                                                   float("nan"))
    rows = {row["method"]: row for row in table["rows"]}
    knn = {m: rows[m]["cells"][0] for m in rows}
    assert knn["alpha"]["mark"] == "best"
    assert knn["beta"]["tied"] == "†"  # within the seeds' noise of alpha
    assert not knn["gamma"]["tied"] and not knn["raw"]["tied"]
    assert [run["seed"] for run in rows["gamma"]["runs"]] == [0, 1, 2, 3]
    assert rows["gamma"]["runs"][-1]["status"] == "failed"
    assert "†" in table["footnote"] and "paired t-test" in table["footnote"]


def test_shared_protocol_keeps_only_what_every_run_agrees_on(board):
    _, records = board
    protocol = dict(shared_protocol(records))
    assert protocol["backbone.name"] == "convnet_tiny"
    assert protocol["train.batch_size"] == "256"
    assert "train.epochs" in protocol  # raw's config states 4 epochs too
    assert not any(key.split(".")[0] in ("method", "seed", "dataset", "method_cfg")
                   for key in protocol)
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}


def test_suite_page_ranks_and_failures(board):
    _, records = board
    page = suite_page(records, SUITE, "two datasets")
    assert page["counts"] == {"runs": 25, "ok": 24, "failed": 1}
    assert [t["dataset"] for t in page["tables"]] == list(DATASETS)
    ranks = {row["method"]: float(row["rank"]) for row in page["ranks"]["rows"]}
    assert ranks == {"alpha": 1.0, "beta": 2.0, "gamma": 3.0, "raw": 4.0}
    assert page["ranks"]["metric"] == "kNN-5" and page["ranks"]["datasets"] == 2
    assert page["failed"][0]["error"] == "CUDA out of memory"


def _site(store: Path, *extra: str) -> Path:
    assert main(["site", f"results.dir={store}", *extra]) == 0
    return store / "site"


def test_site_writes_every_page_and_copies_each_record_byte_for_byte(board, capsys):
    store, records = board
    site = _site(store)
    assert capsys.readouterr().out.strip() == str(site / "index.html")
    assert (site / "index.html").is_file() and (site / SUITE / "index.html").is_file()
    for record in records:
        page = site / SUITE / "runs" / f"{record['run_id']}.html"
        assert page.is_file()
        original = store / SUITE / record["method"] / record["dataset"] / f"{record['run_id']}.json"
        assert page.with_suffix(".json").read_bytes() == original.read_bytes()
    alpha = next(r for r in records if r["method"] == "alpha")
    assert (site / SUITE / "runs" / f"{alpha['run_id']}_training.svg").is_file()
    # the site's copies are not records of the store: the table still counts 25 runs
    assert main(["table", f"results.dir={store}", "--format", "csv"]) == 0
    assert "gamma,digits,kmeans_nmi" in capsys.readouterr().out


def test_pages_reach_nothing_outside_the_site_folder(board):
    site = _site(board[0])
    links = re.compile(r"""(?:href|src)="([^"]+)"|url\(([^)]+)\)""")
    for path in site.rglob("*"):
        if path.suffix not in (".html", ".css", ".js"):
            continue
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path
        for match in links.finditer(text):
            target = match[1] or match[2]
            resolved = (path.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(site.resolve()) and resolved.exists(), (path, target)


def test_names_from_records_are_escaped(tmp_path):
    store = tmp_path / "results"
    records = write_board(store)
    first = records[0]
    path = store / SUITE / first["method"] / first["dataset"] / f"{first['run_id']}.json"
    data = json.loads(path.read_text())
    data["variant"] = {"note": "<script>alert(1)</script>"}
    path.write_text(json.dumps(data))
    text = (_site(store, "--no-figures") / SUITE / "index.html").read_text()
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_failed_build_leaves_the_old_site(board, monkeypatch):
    store, _ = board
    site = _site(store, "--no-figures")
    before = (site / SUITE / "index.html").read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("crlbench.site.run_page_context", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["site", f"results.dir={store}", "--no-figures"])
    assert (site / SUITE / "index.html").read_text() == before
    assert not (store / ".site.partial").exists()


def test_unknown_suite_is_one_line_and_exit_2(board, capsys):
    assert main(["site", f"results.dir={board[0]}", "suite=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err
