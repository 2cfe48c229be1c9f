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


def test_std_and_n_are_the_records(board):
    import numpy as np

    _, records = board
    table = dataset_table(records, "fashion_mnist")
    for row in table["rows"]:
        for column, cell in zip(table["columns"], row["cells"], strict=True):
            values = cell_values(records, row["method"], "fashion_mnist", column["metric"])
            if values:
                assert cell["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
                assert cell["n"] == len(values) == 3


@pytest.mark.parametrize("where", ["store", "parent", "inside", "foreign"])
def test_output_that_is_not_a_site_is_refused_and_kept(board, capsys, where):
    store, _ = board
    output = {"store": store, "parent": store.parent, "inside": store / "board",
              "foreign": store.parent / "mine"}[where]
    if where == "foreign":
        output.mkdir()
        (output / "notes.txt").write_text("mine")
    before = sorted(p for p in store.parent.rglob("*"))
    assert main(["site", f"results.dir={store}", "--output", str(output)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert sorted(p for p in store.parent.rglob("*")) == before


def test_a_site_replaces_its_own_folder(board, tmp_path):
    store, _ = board
    output = tmp_path / "public"
    for _ in range(2):
        assert main(["site", f"results.dir={store}", "--output", str(output),
                     "--no-figures"]) == 0
    assert (output / ".crlbench-site").is_file() and (output / SUITE / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["public", "results"]


def test_records_with_names_that_would_leave_the_site_are_left_out(board, capsys):
    store, records = board
    path = store / SUITE / "alpha" / "digits" / f"{records[0]['run_id']}.json"
    data = json.loads(path.read_text())
    data.update(suite="../../escaped", run_id="../x")
    path.write_text(json.dumps(data))
    site = _site(store, "suite=demo", "--no-figures")
    assert "is not a plain name" in capsys.readouterr().err
    assert not (store.parent / "escaped").exists() and not (site.parent / "x.html").exists()
    assert (site / SUITE / "index.html").is_file()


def test_a_dataset_whose_runs_have_no_finite_metric_does_not_stop_the_site(board):
    store, records = board
    nan = {**records[0], "dataset": "cifar10", "run_id": "nan0", "metrics": {"knn5_acc": None}}
    from crlbench.store import record_path, write_record

    write_record(record_path(store, SUITE, nan["method"], "cifar10", "nan0"), nan)
    page = (_site(store, "--no-figures") / SUITE / "index.html").read_text()
    assert 'data-dataset="digits"' in page and 'data-dataset="cifar10"' not in page
