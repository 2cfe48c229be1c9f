"""Published tables as data and `crlbench table --vs paper`.

The transcription checks hold the printed cells as independent strings (copied from the
papers' text, NMI / ACC / ARI or LP / kNN-5 / kNN-200 in printed order) and compare them with
what the shipped YAML gives in crlbench's names."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import pandas as pd
import pytest
from boards import write_board

from crlbench import registry
from crlbench.cli import main
from crlbench.loader import shipped_suites
from crlbench.report.metrics import DEFAULT_ORDER
from crlbench.report.papers import (
    PaperTable,
    compare,
    differences,
    load_tables,
    parse_table,
)
from crlbench.report.summary import summarize
from crlbench.store import record_path, write_record

TABLES = {t.id: t for t in load_tables()}


def value(table: str, row: str, dataset: str, metric: str) -> float:
    found = [n.value for n in TABLES[table].numbers
             if (n.row, n.dataset, n.metric) == (row, dataset, metric)]
    assert len(found) == 1, (table, row, dataset, metric)
    return found[0]


def printed(text: str) -> list[float]:
    return [float(v) for v in text.replace("<u>", "").replace("</u>", "").split(" / ")]


@pytest.mark.parametrize(("table", "row", "metrics", "cells"), [
    ("c2bin_table1", "SimCLR", ("linear_acc", "knn5_acc", "knn200_acc"),
     {"cifar10": "81.3 / <u>82.4</u> / 81.7", "cifar100": "59.8 / <u>63.9</u> / <u>66.8</u>",
      "stl10": "83.1 / <u>78.3</u> / <u>78.8</u>"}),
    ("c2bin_table1", "C2BIN [Mean]", ("linear_acc", "knn5_acc", "knn200_acc"),
     {"cifar10": "81.5 / 84.8 / 84.9", "cifar100": "61.5 / 72.2 / 72.6",
      "stl10": "83.6 / 79.1 / 80.1"}),
    ("c2bin_table11", "PICA [Avg]", ("head_nmi", "head_acc", "head_ari"),
     {"cifar10": "0.56 / 0.65 / 0.47", "cifar20": "0.30 / 0.32 / 0.16",
      "stl10": "0.59 / 0.69 / 0.50"}),
    ("c2bin_table11", "C2BIN [Avg]", ("head_nmi", "head_acc", "head_ari"),
     {"cifar10": "0.62 / 0.72 / 0.53", "cifar20": "0.36 / 0.35 / 0.20",
      "stl10": "0.62 / 0.73 / 0.55"}),
    ("c2bin_table3", "K-means", ("kmeans_nmi", "kmeans_acc", "kmeans_ari"),
     {"cifar10": "0.09 / 0.23 / 0.05", "cifar20": "0.08 / 0.13 / 0.03",
      "stl10": "0.13 / 0.19 / 0.06"}),
])
def test_transcribed_cells(table, row, metrics, cells):
    scale = 100 if all(m.endswith("_acc") for m in metrics) and table == "c2bin_table1" else 1
    for dataset, text in cells.items():
        for metric, number in zip(metrics, printed(text), strict=True):
            assert value(table, row, dataset, metric) == pytest.approx(number / scale)


def test_solo_learn_acc1_is_the_linear_number():
    assert value("sololearn_cifar", "SimCLR", "cifar10", "linear_acc") == pytest.approx(0.9074)
    assert TABLES["sololearn_cifar"].conventions["linear_probe"] == "online"


def test_every_mapped_name_is_crlbench_s():
    metrics = set(DEFAULT_ORDER)
    for table in TABLES.values():
        assert set(table.suites) <= set(shipped_suites()), table.id
        for number in table.numbers:
            assert number.method in registry.methods, (table.id, number)
            assert number.dataset in registry.datasets, (table.id, number)
            assert number.metric in metrics, (table.id, number)
            assert 0 <= number.value <= 1, (table.id, number)
    assert len(TABLES["c2bin_table11"].numbers) > len(TABLES["c2bin_table3"].numbers)


BASE = {"id": "t", "source": "s", "caption": "c", "suites": ["x"], "setting": {},
        "conventions": {"trained_on": "train"}, "scale": 100, "datasets": {"C10": "cifar10"},
        "metrics": {"LP": "linear_acc"}, "methods": {"A": "simclr"},
        "rows": {"A": {"C10": {"LP": 90.0}}}}


@pytest.mark.parametrize(("change", "message"), [
    ({"scale": 10}, "scale must be 1 or 100"),
    ({"rows": {"B": {"C10": {"LP": 1}}}}, "row 'B' is not in its methods map"),
    ({"rows": {"A": {"C100": {"LP": 1}}}}, "dataset 'C100'"),
    ({"rows": {"A": {"C10": {"kNN": 1}}}}, "metric 'kNN'"),
    ({"conventions": {"epochs": 5}}, "unknown conventions epochs"),
])
def test_a_malformed_table_names_its_problem(change, message):
    with pytest.raises(ValueError, match=message):
        parse_table({**BASE, **change}, "t.yaml")
    with pytest.raises(ValueError, match="missing rows"):
        parse_table({k: v for k, v in BASE.items() if k != "rows"}, "t.yaml")


def test_differences_by_metric():
    ours = [{"trained_on": "train+test", "scored_on": "train+test", "knn_temperature": 0.07,
             "linear_probe": "offline"}]
    paper = {"trained_on": "train", "scored_on": None, "knn_temperature": 0.07,
             "linear_probe": "online"}
    assert differences(ours, paper, "head_acc") == (
        ["trained on: ours train+test, paper train"],
        ["clustering scored on: not stated by the paper"])
    assert differences([{**ours[0], "knn_temperature": None}], paper, "knn5_acc")[1] == \
        ["kNN temperature: not in our records"]
    assert differences(ours, paper, "knn5_acc") == (
        ["trained on: ours train+test, paper train"], [])
    assert differences(ours, {**paper, "knn_temperature": 0.1}, "knn200_acc")[0][1] == \
        "kNN temperature: ours 0.07, paper 0.1"
    assert differences(ours, {**paper, "trained_on": "train+test"}, "linear_acc") == (
        ["linear probe: ours offline, paper online"], [])


def _record(method, dataset, seed, metrics, **extra):
    return {"schema": 1, "run_id": f"{method}{dataset}{seed}", "status": "ok", "suite": "s",
            "method": method, "dataset": dataset, "seed": seed, "variant": {},
            "metrics": metrics, "cluster_split": "all", "data": {"train_split": "train+test"},
            "config": {"eval": {"knn_temperature": 0.07}}, **extra}


def test_compare_pairs_cells_and_states_differences():
    records = [_record("pica", "cifar10", s, {"head_acc": 0.60 + 0.02 * s}) for s in range(3)]
    records.append(_record("pica", "cifar10", 0, {"head_acc": 0.1}, variant={"lr": 1},
                           run_id="variant"))
    paper = parse_table({**BASE, "conventions": {"trained_on": "train", "scored_on": "test"},
                         "scale": 1, "metrics": {"ACC": "head_acc"},
                         "methods": {"PICA": "pica", "PICA again": "pica"},
                         "rows": {"PICA": {"C10": {"ACC": 0.5}},
                                  "PICA again": {"C10": {"ACC": 0.7}}}}, "t.yaml")
    twin = PaperTable(id="t2", source="s2", suites=("x",), setting={},
                      conventions=paper.conventions, numbers=paper.numbers[:1])
    frame = compare(records, summarize(records), [paper, twin])
    assert list(frame["paper"]) == [0.5, 0.7]
    assert frame["mean"].tolist() == pytest.approx([0.62, 0.62])
    assert frame["delta"].tolist() == pytest.approx([0.12, -0.08])
    assert list(frame["table"]) == ["t, t2", "t"]  # the same number in two tables, once
    assert frame["differs"][0] == ("trained on: ours train+test, paper train; clustering "
                                   "scored on: ours train+test, paper test")
    assert set(frame["method"]) == {"pica"}  # the variant row has no published number


@pytest.fixture
def store(tmp_path):
    store = tmp_path / "results"
    for seed in range(2):
        for method, knn in (("simclr", 0.83), ("byol", 0.80)):
            record = _record(method, "cifar10", seed, {"knn5_acc": knn + 0.01 * seed,
                                                       "linear_acc": knn + 0.05})
            record.update(suite="representation", data={"train_split": "train"})
            write_record(record_path(store, "representation", method, "cifar10",
                                     record["run_id"]), record)
    return store


def test_cli_vs_paper(store, capsys):
    assert main(["table", f"results.dir={store}", "--vs", "paper", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| simclr | cifar10 | kNN-5"))
    # ours 83.5 ± 0.7 over 2 seeds, C2BIN's Table 1 prints 82.4 for SimCLR
    assert "| 83.5 ± 0.7 (n=2) | 82.4 | +1.1 | c2bin_table1: SimCLR |" in line
    assert "≠ linear probe: ours offline, paper online" in out  # solo-learn's online probe
    assert "c2bin_table1: Anonymous" in out and "Setting: backbone: ResNet-18" in out

    assert main(["table", f"results.dir={store}", "--vs", "paper", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    row = frame[(frame.method == "byol") & (frame.metric == "linear_acc")
                & (frame.table == "sololearn_cifar")].iloc[0]
    assert row.delta == pytest.approx(0.85 - 0.9258)  # solo-learn prints 92.58


def test_cli_vs_paper_without_a_match_is_exit_2(tmp_path, capsys):
    store = tmp_path / "results"
    write_board(store)  # digits and fashion_mnist: no published table has them
    assert main(["table", f"results.dir={store}", "--vs", "paper"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no published number matches" in err
    assert "simclr on cifar10" in err


def test_vs_paper_latex_compiles(store, tmp_path, capsys):
    assert main(["table", f"results.dir={store}", "--vs", "paper", "--format", "latex"]) == 0
    tabular = capsys.readouterr().out
    assert r"$\Delta$" in tabular and "\\toprule" in tabular
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is not installed (apt-get install texlive-latex-recommended)")
        pytest.skip("pdflatex is not installed")
    (tmp_path / "t.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n"
                                    "\\begin{document}\n" + tabular + "\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:]
