"""Tests for crlbench.report: summarising run records and rendering the tables."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from rich.table import Table

from crlbench.errors import UserError
from crlbench.report import render, row_label, summarize, to_csv, to_latex, to_markdown, to_rich
from crlbench.report.grid import build_grid
from crlbench.report.latex import latex_escape
from crlbench.report.metrics import default_metric_order, format_mean_std, metric_style

METHODS = ("simclr", "cc", "raw")
DATASETS = ("mnist", "digits")
SEEDS = (0, 1, 2)
METRICS = ("uniform", "kmeans_nmi", "knn5_acc")


def record(method, dataset, seed, metrics, *, status="ok", variant=None, suite="quick", run_id=""):
    return {
        "run_id": run_id or f"{method}-{dataset}-{seed}-{sorted((variant or {}).items())}",
        "status": status,
        "suite": suite,
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "variant": variant or {},
        "metrics": metrics,
    }


def known_values() -> dict[tuple[str, str, str], list[float]]:
    """(method, dataset, metric) -> one value per seed, random but fixed."""
    rng = np.random.default_rng(1234)
    return {
        (m, d, k): list(rng.uniform(-1, 1, len(SEEDS)) if k == "uniform" else rng.random(3))
        for m in METHODS
        for d in DATASETS
        for k in METRICS
    }


@pytest.fixture
def values():
    return known_values()


@pytest.fixture
def records(values):
    return [
        record(m, d, s, {k: values[(m, d, k)][i] for k in METRICS})
        for m in METHODS
        for d in DATASETS
        for i, s in enumerate(SEEDS)
    ]


def as_plain(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.astype({"method": str, "dataset": str, "metric": str})


def cell(summary: pd.DataFrame, method: str, dataset: str, metric: str) -> pd.Series:
    rows = as_plain(summary)
    hit = rows[(rows.method == method) & (rows.dataset == dataset) & (rows.metric == metric)]
    assert len(hit) == 1, f"expected one row for {method}/{dataset}/{metric}, got {len(hit)}"
    return hit.iloc[0]


# ----------------------------------------------------------------------------- summarize


def test_summary_matches_numpy(records, values):
    summary = summarize(records)
    assert list(summary.columns) == ["method", "dataset", "metric", "mean", "std", "n"]
    assert len(summary) == len(METHODS) * len(DATASETS) * len(METRICS)
    for (m, d, k), xs in values.items():
        row = cell(summary, m, d, k)
        assert row["mean"] == pytest.approx(np.mean(xs), abs=1e-15)
        assert row["std"] == pytest.approx(np.std(xs, ddof=1), abs=1e-15)
        assert row["n"] == 3
    assert summary.attrs["failed"] == 0


def test_default_order_puts_raw_last_and_known_metrics_first(records):
    summary = as_plain(summarize(records))
    assert list(pd.unique(summary["method"])) == ["cc", "simclr", "raw"]
    assert list(pd.unique(summary["dataset"])) == ["digits", "mnist"]
    assert list(summary["metric"][:3]) == ["knn5_acc", "kmeans_nmi", "uniform"]


def test_filters_narrow_and_keep_their_order(records, values):
    summary = summarize(
        records, datasets="mnist", metrics=["uniform", "knn5_acc"], methods=["raw", "simclr"]
    )
    plain = as_plain(summary)
    assert list(plain["method"]) == ["raw", "raw", "simclr", "simclr"]
    assert set(plain["dataset"]) == {"mnist"}
    assert list(plain["metric"]) == ["uniform", "knn5_acc"] * 2
    assert cell(summary, "simclr", "mnist", "uniform")["mean"] == pytest.approx(
        np.mean(values[("simclr", "mnist", "uniform")])
    )
    grid = build_grid(summary)
    assert grid.methods == ["raw", "simclr"]
    assert grid.columns == [("mnist", "uniform"), ("mnist", "knn5_acc")]


@pytest.mark.parametrize(
    ("kwargs", "pieces"),
    [
        ({"datasets": ["mnist", "cifar10"]}, ["dataset 'cifar10'", "digits, mnist"]),
        ({"metrics": ["nope"]}, ["metric 'nope'", "kmeans_nmi, knn5_acc, uniform"]),
        ({"methods": "byol"}, ["method 'byol'", "cc, raw, simclr"]),
        ({"suite": "full"}, ["suite 'full'", "quick"]),
    ],
)
def test_filter_matching_nothing_names_the_valid_choices(records, kwargs, pieces):
    with pytest.raises(UserError) as err:
        summarize(records, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    for piece in pieces:
        assert piece in message


def test_records_from_several_suites_need_a_suite(records):
    other = [record("simclr", "mnist", 0, {"knn5_acc": 0.1}, suite="long")]
    with pytest.raises(UserError, match=r"several suites.*long, quick"):
        summarize(records + other)
    only = summarize(records + other, suite="long")
    assert list(as_plain(only)["method"]) == ["simclr"]
    assert only["mean"].tolist() == [0.1]


def test_failed_records_are_excluded_and_counted(records):
    failed = [
        record("simclr", "mnist", 3, {"knn5_acc": 0.0}, status="failed"),
        record("cc", "digits", 3, {}, status="failed"),
        record("cc", "mnist", 4, {}, status="failed"),
    ]
    summary = summarize(records + failed)
    pd.testing.assert_frame_equal(as_plain(summary), as_plain(summarize(records)))
    assert summary.attrs["failed"] == 3
    assert summarize(records + failed, datasets=["digits"]).attrs["failed"] == 1
    assert "3 failed runs not shown" in to_markdown(summary)
    with pytest.raises(UserError, match="no successful runs"):
        summarize(failed)
    with pytest.raises(UserError, match="no run records"):
        summarize([])


def test_variant_rows_are_labelled_and_filterable(records):
    assert row_label(record("cc", "mnist", 0, {}, variant={"k": 20, "head": 2})) == (
        "cc (head=2, k=20)"
    )
    variants = [
        record("cc", "mnist", s, {"knn5_acc": 0.5 + s / 10}, variant={"k": 20}) for s in SEEDS
    ]
    summary = summarize(records + variants, metrics=["knn5_acc"], datasets=["mnist"])
    assert list(as_plain(summary)["method"]) == ["cc", "cc (k=20)", "simclr", "raw"]
    assert cell(summary, "cc (k=20)", "mnist", "knn5_acc")["mean"] == pytest.approx(0.6)
    by_name = summarize(records + variants, methods="cc", metrics="knn5_acc", datasets="mnist")
    assert list(as_plain(by_name)["method"]) == ["cc", "cc (k=20)"]
    by_label = summarize(records + variants, methods=["cc (k=20)"])
    assert set(as_plain(by_label)["method"]) == {"cc (k=20)"}


def test_same_seed_different_configs_are_both_counted():
    twins = [
        record("cc", "mnist", 0, {"knn5_acc": 0.4}, run_id="aaa"),
        record("cc", "mnist", 0, {"knn5_acc": 0.6}, run_id="bbb"),
    ]
    row = cell(summarize(twins), "cc", "mnist", "knn5_acc")
    assert (row["mean"], row["n"]) == (pytest.approx(0.5), 2)


def test_single_run_has_nan_std_and_no_plus_minus():
    summary = summarize([record("cc", "mnist", 0, {"knn5_acc": 0.4, "broken": None})])
    assert list(as_plain(summary)["metric"]) == ["knn5_acc"]  # non-numbers are skipped
    assert math.isnan(summary["std"].iloc[0])
    assert "| cc | 40.0 |" in to_markdown(summary)
    assert "±" not in to_markdown(summary).splitlines()[2]


# ----------------------------------------------------------------------------- metric display


def test_metric_display_table():
    assert (metric_style("knn200_acc").label, metric_style("knn200_acc").percent) == (
        "kNN-200",
        True,
    )
    assert metric_style("kmeans_ari").label == "KM ARI"
    assert metric_style("head0_k10_acc").percent
    assert metric_style("retrieval_p10").label == "P@10"
    assert metric_style("retrieval_p10").percent
    assert metric_style("align").lower_is_better
    assert not metric_style("align").percent
    unknown = metric_style("silhouette")
    assert (unknown.label, unknown.percent, unknown.lower_is_better) == ("silhouette", False, False)
    assert format_mean_std("linear_acc", 0.71234, 0.00456) == "71.2 ± 0.5"
    assert format_mean_std("silhouette", 0.71234, 0.00456) == "0.712 ± 0.005"
    assert format_mean_std("silhouette", 0.71234, float("nan")) == "0.712"
    names = ["zeta", "retrieval_p10", "head_acc", "retrieval_p2", "knn5_acc", "align"]
    assert default_metric_order(names) == [
        "knn5_acc",
        "head_acc",
        "align",
        "retrieval_p2",
        "retrieval_p10",
        "zeta",
    ]


# ----------------------------------------------------------------------------- markdown and csv


def tiny_records() -> list[dict]:
    """Two methods, one dataset, two seeds; numbers chosen so the rounding is unambiguous."""
    return [
        record("a", "digits", 0, {"knn5_acc": 0.80, "uniform": -2.0}),
        record("a", "digits", 1, {"knn5_acc": 0.82, "uniform": -2.2}),
        record("raw", "digits", 0, {"knn5_acc": 0.50, "uniform": -1.0}),
        record("raw", "digits", 1, {"knn5_acc": 0.60, "uniform": -1.0}),
    ]


@pytest.fixture
def tiny():
    return summarize(tiny_records())


def test_markdown_exact(tiny):
    assert to_markdown(tiny) == (
        "| method | digits / kNN-5 | digits / Uniform ↓ |\n"
        "| :-- | --: | --: |\n"
        "| a | **81.0 ± 1.4** | **-2.100 ± 0.141** |\n"
        "| raw | 55.0 ± 7.1† | -1.000 ± 0.000† |\n"
        "\n"
        "Mean ± sample std over n = 2 runs per cell; accuracy, NMI, ARI and precision@k in %; "
        "↓ lower is better; † not significantly different from the best (paired t-test over "
        "seeds, two-sided, α = 0.05). Best per column in bold.\n"
    )  # two seeds cannot separate them: p = 0.10 for kNN-5
    assert render(tiny, "markdown") == to_markdown(tiny)


def test_markdown_shows_n_per_cell_when_it_differs():
    extra = [record("a", "digits", 9, {"knn5_acc": 0.81, "uniform": -2.1})]
    summary = summarize([*tiny_records(), *extra])
    line = to_markdown(summary).splitlines()[2]
    assert line == "| a | **81.0 ± 1.0 (3)** | **-2.100 ± 0.100 (3)** |"
    assert "over (n) runs" in to_markdown(summary)


def test_csv_is_tidy_raw_and_round_trips(tiny, records):
    text = to_csv(tiny)
    assert text.splitlines()[0] == "method,dataset,metric,mean,std,n"
    assert text.splitlines()[1].startswith("a,digits,knn5_acc,0.81")
    assert render(tiny, "csv") == text
    for summary in (tiny, summarize(records), summarize([record("cc", "x", 0, {"a_acc": 0.5})])):
        back = pd.read_csv(io.StringIO(to_csv(summary)))
        pd.testing.assert_frame_equal(back, as_plain(summary), check_exact=True)


# ----------------------------------------------------------------------------- latex


@pytest.fixture
def ranked():
    """Three methods with distinct ranks: kNN higher is better, uniform lower is better."""
    means = {
        "cc": {"knn5_acc": 0.90, "uniform": -2.0},
        "my_method": {"knn5_acc": 0.80, "uniform": -3.0},
        "raw": {"knn5_acc": 0.10, "uniform": -1.0},
    }
    return summarize(
        [
            record(m, dataset, s, {k: v + s / 1000 for k, v in ms.items()})
            for m, ms in means.items()
            for dataset in ("tiny_set", "digits")
            for s in SEEDS
        ]
    )


def latex_rows(tabular: str) -> dict[str, list[str]]:
    body = tabular.split("\\midrule\n")[1].split("\\bottomrule")[0]
    rows = {}
    for line in body.strip().splitlines():
        name, *cells = line.removesuffix("\\\\").strip().split(" & ")
        rows[name] = cells
    return rows


def test_latex_marks_best_and_second_per_column(ranked):
    tabular = to_latex(ranked)
    assert tabular.startswith("\\begin{tabular}{lcccc}\n\\toprule\n")
    assert tabular.rstrip().endswith("\\end{tabular}")
    assert "\\documentclass" not in tabular
    assert "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5}" in tabular
    assert "Uniform $\\downarrow$" in tabular
    rows = latex_rows(tabular)
    assert list(rows) == ["cc", "my\\_method", "raw"]
    # columns: digits/kNN-5, digits/Uniform, tiny_set/kNN-5, tiny_set/Uniform
    for knn, uniform in ((0, 1), (2, 3)):
        assert rows["cc"][knn] == "\\textbf{\\boldmath $90.1 \\pm 0.1$}"
        assert rows["my\\_method"][knn] == "\\underline{$80.1 \\pm 0.1$}"
        assert rows["raw"][knn] == "$10.1 \\pm 0.1$"
        assert rows["my\\_method"][uniform] == "\\textbf{\\boldmath $-2.999 \\pm 0.001$}"
        assert rows["cc"][uniform] == "\\underline{$-1.999 \\pm 0.001$}"
        assert rows["raw"][uniform] == "$-0.999 \\pm 0.001$"
    assert render(ranked, "latex") == tabular


def test_latex_escapes_names(ranked):
    tabular = to_latex(ranked)
    assert "tiny\\_set" in tabular
    assert "my\\_method" in tabular
    assert re.search(r"(?<!\\)_", tabular) is None
    assert latex_escape("a_b&c%d#e$f{g}h~i^j\\k") == (
        "a\\_b\\&c\\%d\\#e\\$f\\{g\\}h\\textasciitilde{}i\\textasciicircum{}j\\textbackslash{}k"
    )


def test_two_methods_mark_best_only_and_ties_share_best():
    runs = [
        record("a", "d", 0, {"knn5_acc": 0.5}),
        record("b", "d", 0, {"knn5_acc": 0.5}),
        record("c", "d", 0, {"knn5_acc": 0.4}),
    ]
    marks = {m: c.mark for (m, _), c in build_grid(summarize(runs)).cells.items()}
    assert marks == {"a": "best", "b": "best", "c": ""}
    marks = {m: c.mark for (m, _), c in build_grid(summarize(runs[1:])).cells.items()}
    assert marks == {"b": "best", "c": ""}


def test_latex_compiles(ranked, tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":  # .ci/run installs it; there, missing is a failure
            pytest.fail("pdflatex is not installed (apt-get install texlive-latex-recommended)")
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-recommended)")
    failed = [record("cc", "digits", 7, {}, status="failed")]
    summary = summarize([*tiny_records(), *failed])
    document = (
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        + to_latex(ranked)
        + "\n"
        + to_latex(summary)
        + "\\end{document}\n"
    )
    (tmp_path / "table.tex").write_text(document)
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0


# ----------------------------------------------------------------------------- terminal


def test_rich_table_renders_with_best_bold(ranked):
    assert isinstance(render(ranked, "terminal"), Table)
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(to_rich(ranked))
    text = console.export_text(clear=False)
    assert "my_method" in text
    assert "tiny_set" in text and "Uniform ↓" in text
    assert "90.1±0.1" in text  # compact cells in the terminal
    assert "over n = 3 runs per cell" in text
    styled = console.export_text(styles=True)
    assert re.search(r"\x1b\[1m\s*90\.1±0\.1\x1b\[0m", styled)
    assert re.search(r"\x1b\[4m\s*80\.1±0\.1\x1b\[0m", styled)
    assert re.search(r"\x1b\[1m\s*-2\.999±0\.001\x1b\[0m", styled)
    assert not re.search(r"\x1b\[\d+m\s*10\.1±0\.1", styled)


def test_rich_table_with_one_dataset_names_it_in_the_title(tiny):
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(to_rich(tiny))
    text = console.export_text()
    assert text.splitlines()[0].strip() == "digits"
    assert text.count("digits") == 1


def test_unknown_format_is_a_user_error(tiny):
    with pytest.raises(UserError, match=r"unknown table format 'html'.*terminal, markdown"):
        render(tiny, "html")


def test_per_head_metrics_are_shown_only_when_asked_for():
    runs = [record("c2bin", "digits", s, {"head_acc": 0.7, "head0_k10_acc": 0.7,
                                          "head1_k40_acc": 0.3, "kmeans_acc": 0.8})
            for s in SEEDS]
    assert set(summarize(runs)["metric"]) == {"head_acc", "kmeans_acc"}
    asked = summarize(runs, metrics=["head1_k40_acc"])
    assert list(asked["metric"]) == ["head1_k40_acc"]


def test_wide_terminal_tables_split_into_tables_that_fit():
    metrics = {f"m{i}_acc": 0.5 + i / 100 for i in range(12)}
    runs = [record(m, "digits", s, metrics) for m in ("a_long_method_name", "b") for s in SEEDS]
    summary = summarize(runs)
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render(summary, "terminal", width=70))
    lines = console.export_text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 70
    text = "\n".join(lines)
    assert all(f"m{i}_acc" in text for i in range(12))  # every column is somewhere
    assert text.count("a_long_method_name") >= 2  # each part repeats the method column
    # without a width (or wide enough), one table
    assert isinstance(render(summary, "terminal"), Table)
    assert isinstance(render(summary, "terminal", width=500), Table)


def test_k_estimates_are_not_ranked_but_their_errors_are():
    runs = [record(m, "digits", 0, {"kest_silhouette": k, "kest_silhouette_err": abs(k - 10)})
            for m, k in (("a", 13.0), ("b", 9.0), ("c", 4.0))]
    cells = build_grid(summarize(runs)).cells.items()
    marks = {(m, metric): c.mark for (m, (_, metric)), c in cells}
    assert {marks[(m, "kest_silhouette")] for m in "abc"} == {""}
    assert marks[("b", "kest_silhouette_err")] == "best"  # |9 - 10| = 1 is the smallest error
    assert to_markdown(summarize(runs)).count("13.0") == 1  # shown with one decimal


def test_provenance_names_records_devices_versions_and_dates():
    from crlbench.report.provenance import provenance

    def record(method, device, created, status="ok"):
        return {"status": status, "suite": "fashion", "method": method, "dataset": "fashion_mnist",
                "created": created, "environment": {
                    "device": device, "device_name": "NVIDIA H100" if device == "cuda:0" else
                    "AMD EPYC", "torch": "2.14.1", "crlbench": "0.1.0",
                    "git_commit": "916cb58aaaa"}}

    records = [record("simclr", "cuda:0", "2026-11-27T10:00:00+00:00"),
               record("simclr", "cuda:0", "2026-11-27T11:00:00+00:00"),
               record("cc", "cuda:0", "2026-11-28T01:00:00+00:00"),
               record("raw", "cpu", "2026-11-28T02:00:00+00:00"),
               record("byol", "cuda:0", "2026-11-29T00:00:00+00:00", status="failed")]
    records[1]["environment"]["git_commit"] = "916cb58aaaa+dirty"
    assert provenance(records) == (
        "From 4 records of suite fashion, made 2026-11-27 to 2026-11-28 on NVIDIA H100 (cuda:0), "
        "AMD EPYC (cpu); torch 2.14.1, crlbench 0.1.0, git 916cb58, 916cb58+dirty.")
    assert provenance(records, methods=["raw"]).startswith("From 1 records")
    assert provenance(records, methods=["byol"]) is None  # failed runs are not in the table



def five_seed_records() -> list[dict]:
    """best; close (within seed noise of best); worse (lower on every seed)."""
    values = {"best": [0.72, 0.71, 0.73, 0.725, 0.715],
              "close": [0.719, 0.713, 0.725, 0.726, 0.712],
              "worse": [0.70, 0.691, 0.71, 0.704, 0.696]}
    return [record(method, "digits", seed, {"knn5_acc": value})
            for method, by_seed in values.items() for seed, value in enumerate(by_seed)]


def test_cells_seed_noise_cannot_separate_from_the_best_are_marked_in_every_format():
    summary = summarize(five_seed_records())
    grid = build_grid(summary)
    column = ("digits", "knn5_acc")
    assert [grid.cell(m, column).tied for m in ("best", "close", "worse")] == [
        False, True, False]
    markdown = to_markdown(summary)
    assert "| close | 71.9 ± 0.7† |" in markdown and "| worse | 70.0 ± 0.7 |" in markdown
    assert "† not significantly different from the best (paired t-test over seeds" in markdown
    latex = to_latex(summary)
    assert r"$71.9 \pm 0.7^\dagger$" in latex and r"$^\dagger$ not significantly" in latex
    assert r"$\alpha$ = 0.05" in latex
    console = Console(width=200, record=True)
    console.print(to_rich(summary))
    assert "71.9±0.7†" in console.export_text()


def test_one_seed_per_cell_marks_nothing():
    summary = summarize([r for r in five_seed_records() if r["seed"] == 0])
    assert not build_grid(summary).has_tied
    assert "†" not in to_markdown(summary) and "significantly" not in to_markdown(summary)


@pytest.mark.parametrize("kind", ["t", "bootstrap"])
def test_cells_can_show_the_interval_of_the_mean_instead_of_the_std(kind):
    from crlbench.report.stats import bootstrap_interval, t_interval

    summary = summarize(five_seed_records())
    summary.attrs["interval"] = kind
    values = [0.719, 0.713, 0.725, 0.726, 0.712]
    low, high = (t_interval if kind == "t" else bootstrap_interval)(values)
    markdown = to_markdown(summary)
    assert f"| close | 71.9 [{low * 100:.1f}, {high * 100:.1f}]† |" in markdown
    assert ("[95% t interval of the mean]" if kind == "t"
            else "[95% percentile bootstrap interval") in markdown
    assert "± sample std" not in markdown
    latex = to_latex(summary)
    assert rf"71.9 [{low * 100:.1f}, {high * 100:.1f}]^\dagger$" in latex
    assert "[95\\% " in latex  # a LaTeX percent sign, not a comment
    frame = pd.read_csv(io.StringIO(to_csv(summary)))
    row = frame[frame["method"] == "close"].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


def test_the_table_command_takes_an_interval(tmp_path, capsys):
    from crlbench.cli import main
    from crlbench.store import record_path, write_record

    for rec in five_seed_records():
        rec.update(schema=1, run_id=rec["run_id"].replace("[]", "").strip("-"))
        write_record(record_path(tmp_path, "quick", rec["method"], rec["dataset"],
                                 rec["run_id"]), rec)
    assert main(["table", f"results.dir={tmp_path}", "--format", "markdown",
                 "--interval", "t"]) == 0
    assert "[95% t interval of the mean]" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["table", f"results.dir={tmp_path}", "--interval", "wide"])
    assert exit_.value.code == 2
    assert "invalid choice: 'wide'" in capsys.readouterr().err


def test_a_table_over_several_datasets_states_the_average_ranks(tmp_path, capsys):
    from boards import write_board

    from crlbench.cli import main

    store = tmp_path / "results"
    write_board(store)  # alpha ahead of beta ahead of gamma ahead of raw on both datasets
    assert main(["table", f"results.dir={store}", "--format", "markdown"]) == 0
    # Friedman: chi2 = 12 N / (k (k + 1)) sum R_j^2 - 3 N (k + 1) = 6 for k = 4, N = 2,
    # p = chi2.sf(6, 3) = 0.112; CD = q_0.05(4) sqrt(k (k + 1) / (6 N)) = 2.569 * 1.291
    assert ("Average rank on kNN-5 over 2 datasets (1 the best): alpha 1.00, beta 2.00, "
            "gamma 3.00, raw 4.00; Nemenyi CD = 3.32 at alpha = 0.05; Friedman p = 0.112."
            in capsys.readouterr().out)
    assert main(["table", f"results.dir={store}", "dataset=digits"]) == 0
    assert "Average rank" not in capsys.readouterr().out  # one dataset: nothing to rank over


def test_average_ranks_follow_the_metric_s_direction_and_name_who_is_left_out():
    from crlbench.report.cd import ranks_line

    runs = [{**record(m, d, 0, {"my_err": e, "kest_silhouette": 3.0, **extra}),
             "lower_is_better": ["my_err"]}
            for d in ("a", "b") for m, e, extra in
            (("x", 0.1, {}), ("y", 0.2, {}), ("z", 0.3, {}))]
    runs += [record("w", d, 0, {"other": 1.0}) for d in ("a", "b")]
    line = ranks_line(runs, "my_err")
    assert line.startswith("Average rank on my_err over 2 datasets (1 the best): x 1.00, "
                           "y 2.00, z 3.00;")
    assert line.endswith("; not ranked (no my_err): w.")
    assert ranks_line(runs, "kest_silhouette") is None  # an estimate, not a score
