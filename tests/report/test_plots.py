"""Figures, study tables and report pages from run records: a real tiny run, plus hand-made
records of the variant studies (imbalance, wrong K, K estimation, t-SNE, retrieval)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from crlbench.cli import main
from crlbench.errors import UserError
from crlbench.report.figures import make_figures
from crlbench.report.page import render_page, suite_description
from crlbench.report.plot import (
    imbalance_figure,
    kest_figure,
    precision_figure,
    save,
    tsne_figure,
)
from crlbench.report.studies import imbalance_markdown, imbalance_table, wrong_k_table
from crlbench.store import record_path, scan, write_record

# The fields of a record written by `crlbench run` that reports read (a tiny quickstart run's
# record, trimmed); tests add variant, metrics and eval_details as the studies would.
SHAPE = {
    "schema": 1, "status": "ok", "suite": "study", "method": "simclr", "dataset": "digits",
    "seed": 0, "config_id": "e284b2b8f04f", "variant": {}, "metrics": {}, "eval_details": {},
    "data": {"channels": 1, "image_size": 12, "num_classes": 10, "test_size": 360},
    "error": None,
}


def record(method, seed, *, template=SHAPE, dataset="digits", variant=None, metrics=None,
           details=None, status="ok", **fields):
    rec = copy.deepcopy(dict(template))
    variant = variant or {}
    tag = "-".join(f"{k}{v}" for k, v in sorted(variant.items()))
    rec.update(run_id=f"{method}-{dataset}-{seed}-{tag}", suite="study", method=method,
               dataset=dataset, seed=seed, variant=variant, metrics=metrics or {},
               eval_details=details or {}, status=status, **fields)
    if status != "ok":
        rec["error"] = {"type": "RuntimeError", "message": "planted failure\ntraceback line"}
    return rec


# kmeans_acc of (method, dataset, rho, seed): the drops from rho = 1 are worked out by hand below
KM = {
    ("cc", "digits", 1, 0): 0.80, ("cc", "digits", 1, 1): 0.78,
    ("cc", "digits", 10, 0): 0.70, ("cc", "digits", 10, 1): 0.74,
    ("cc", "digits", 100, 0): 0.50, ("cc", "digits", 100, 1): 0.60,
    ("simclr", "digits", 1, 0): 0.60, ("simclr", "digits", 1, 1): 0.62,
    ("simclr", "digits", 10, 0): 0.58, ("simclr", "digits", 10, 1): 0.57,
    ("simclr", "digits", 100, 0): 0.40, ("simclr", "digits", 100, 1): 0.45,
    ("cc", "mnist", 1, 0): 0.90, ("cc", "mnist", 10, 0): 0.85,
}


def imbalance_records(template=SHAPE):
    return [record(m, s, template=template, dataset=d, variant={"imbalance": float(rho)},
                   metrics={"kmeans_acc": v, "kmeans_nmi": v / 2})
            for (m, d, rho, s), v in KM.items()]


KS = list(range(2, 13))


def kest_records(template=SHAPE):
    def details(shift):
        return {"kest": {"ks": KS, "inertia": [1000.0 / k + shift for k in KS],
                         "silhouette": [0.5 - abs(k - 10) / 40 + shift / 100 for k in KS]}}

    runs = [record("cc", s, template=template, variant={"k": k}, details=details(s + k),
                   metrics={"kmeans_acc": 0.7, "kest_silhouette": 10 + s - (k == 5),
                            "kest_elbow": 8 + 2 * s, "kest_elbow_err": abs(8 + 2 * s - 10)})
            for k in (5, 20) for s in (0, 1)]
    return [*runs, *(record("simclr", s, template=template, details=details(s),
                            metrics={"kmeans_acc": 0.6}) for s in (0, 1))]


def tsne_records(template=SHAPE):
    rng = np.random.default_rng(0)
    return [record(m, s, template=template, metrics={"kmeans_acc": 0.5},
                   details={"tsne": {"points": rng.normal(size=(30, 2)).tolist(),
                                     "labels": [i % 10 for i in range(30)]}})
            for m in ("raw", "simclr", "cc") for s in (1, 0)]


def precision_records(template=SHAPE):
    return [record(m, s, template=template,
                   metrics={"retrieval_p1": 0.9 - s / 10, "retrieval_p10": 0.8,
                            "retrieval_p100": 0.5 + (m == "raw") / 10})
            for m in ("simclr", "raw") for s in (0, 1)]


def lines(ax):
    """The data lines of a panel, without the dashed reference lines."""
    return [line for line in ax.get_lines() if line.get_linestyle() != "--"]


# -- figures ------------------------------------------------------------------------------------


def test_imbalance_figure_lines_per_method_panels_per_dataset():
    fig = imbalance_figure(imbalance_records())
    assert isinstance(fig, Figure)
    digits, mnist = fig.axes
    assert digits.get_title() == "digits" and "study" in fig.get_suptitle()
    assert digits.get_xlabel() == "imbalance ratio ρ" and digits.get_xscale() == "log"
    assert digits.get_ylabel() == "KM ACC (%)"  # no record has heads: kmeans_acc
    assert [line.get_label() for line in digits.get_lines()] == ["cc", "simclr"]
    assert len(mnist.get_lines()) == 1
    cc = digits.get_lines()[0]
    assert list(cc.get_xdata()) == [1, 10, 100]
    assert np.allclose(cc.get_ydata(), [79, 72, 55])  # mean over the two seeds, x100

    # head_acc when every method has heads; else kmeans_acc, so that no method is left out
    heads = [{**r, "metrics": {**r["metrics"], "head_acc": 0.5}} for r in imbalance_records()]
    assert imbalance_figure(heads).axes[0].get_ylabel() == "Head ACC (%)"
    some = [r for r in heads if r["method"] == "cc"] + imbalance_records()[6:12]
    assert imbalance_figure(some).axes[0].get_ylabel() == "KM ACC (%)"
    assert imbalance_figure(heads, "kmeans_nmi").axes[0].get_ylabel() == "KM NMI (%)"


def test_kest_figure_inertia_and_silhouette_with_the_true_classes():
    fig = kest_figure(kest_records())
    inertia, silhouette = fig.axes
    assert inertia.get_ylabel() == "inertia" and silhouette.get_ylabel() == "silhouette"
    assert inertia.get_xlabel() == silhouette.get_xlabel() == "k (clusters)"
    for ax in (inertia, silhouette):
        assert [line.get_label() for line in lines(ax)] == ["cc (k=5)", "cc (k=20)", "simclr"]
        (reference,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert list(reference.get_xdata()) == [10, 10]
    simclr = lines(inertia)[2]
    assert list(simclr.get_xdata()) == KS
    assert np.allclose(simclr.get_ydata(), [1000 / k + 0.5 for k in KS])  # seeds' shifts 0, 1


def test_tsne_figure_one_panel_per_method_from_the_first_seed():
    records = tsne_records()
    fig = tsne_figure(records)
    assert [ax.get_title() for ax in fig.axes] == ["digits: cc", "digits: simclr", "digits: raw"]
    first = next(r for r in records if r["method"] == "cc" and r["seed"] == 0)
    (scatter,) = fig.axes[0].collections
    assert np.allclose(scatter.get_offsets(), first["eval_details"]["tsne"]["points"])
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 10

    six = [*records, *(record("cc", 0, variant={"k": k}, details=records[0]["eval_details"])
                       for k in (5, 10, 20))]
    fig = tsne_figure(six)
    assert [ax.get_title().split(": ")[1] for ax in fig.axes] == [
        "cc", "cc (k=5)", "cc (k=10)", "cc (k=20)", "simclr", "raw"]
    assert fig.axes[0].get_subplotspec().get_geometry()[:2] == (2, 4)  # rows of at most 4


def test_precision_figure_percent_on_a_log_k_axis():
    fig = precision_figure(precision_records())
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "precision@k (%)"
    assert ax.get_xlabel().startswith("k")
    simclr, raw = ax.get_lines()
    assert simclr.get_label() == "simclr" and raw.get_label() == "raw"
    assert list(simclr.get_xdata()) == [1, 10, 100]
    assert np.allclose(simclr.get_ydata(), [85, 80, 50])


@pytest.mark.parametrize(("draw", "message"), [
    (imbalance_figure, "no record has variant.imbalance; run the suite with variant.imbalance"),
    (kest_figure, "no record has eval_details.kest; run the suite with eval.metrics including "
                  "kest"),
    (tsne_figure, "no record has eval_details.tsne; run the suite with eval.metrics including "
                  "tsne"),
    (precision_figure, "no record has retrieval_p<k> metrics; run the suite with eval.metrics "
                       "including retrieval"),
])
def test_figures_say_what_the_records_lack(draw, message):
    with pytest.raises(UserError, match="^" + message) as info:
        draw([record("simclr", 0, metrics={"kmeans_acc": 0.5})])
    assert "\n" not in str(info.value)


def test_figure_errors_for_no_successful_runs_and_unknown_metric():
    with pytest.raises(UserError, match=r"no successful runs to plot \(1 failed\)"):
        precision_figure([record("simclr", 0, status="failed")])
    with pytest.raises(UserError, match="no imbalance record has metric 'head_nmi'; valid: "
                                        "kmeans_acc, kmeans_nmi"):
        imbalance_figure(imbalance_records(), "head_nmi")


def test_save_writes_png_and_pdf(tmp_path):
    made = make_figures(precision_records(), "all", tmp_path / "figs", "study")
    assert set(made.written) == {"precision"}
    assert set(made.skipped) == {"imbalance", "kest", "tsne", "curves", "cd"}
    png, pdf = made.written["precision"]
    assert png == tmp_path / "figs" / "study_precision.png" and pdf.suffix == ".pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    again = save(precision_figure(precision_records()), tmp_path / "again")
    assert again[1].read_bytes() == pdf.read_bytes()  # no creation date: same bytes
    with pytest.raises(UserError, match="eval_details.kest"):
        make_figures(precision_records(), "kest", tmp_path, "study")


# -- study tables -------------------------------------------------------------------------------


def test_imbalance_table_pairs_drops_per_seed():
    table = imbalance_table(imbalance_records(), ["kmeans_acc"])
    assert list(table[["method", "dataset", "rho"]].itertuples(index=False, name=None)) == [
        ("cc", "digits", 1.0), ("cc", "digits", 10.0), ("cc", "digits", 100.0),
        ("cc", "mnist", 1.0), ("cc", "mnist", 10.0),
        ("simclr", "digits", 1.0), ("simclr", "digits", 10.0), ("simclr", "digits", 100.0),
    ]
    row = table.set_index(["method", "dataset", "rho"])
    # value(rho) - value(rho=1), same method, dataset and seed
    drops = {
        ("cc", "digits", 10.0): [0.70 - 0.80, 0.74 - 0.78],
        ("cc", "digits", 100.0): [0.50 - 0.80, 0.60 - 0.78],
        ("simclr", "digits", 10.0): [0.58 - 0.60, 0.57 - 0.62],
        ("simclr", "digits", 100.0): [0.40 - 0.60, 0.45 - 0.62],
    }
    for key, pair in drops.items():
        assert row.loc[key, "drop_mean"] == pytest.approx(np.mean(pair))
        assert row.loc[key, "drop_std"] == pytest.approx(np.std(pair, ddof=1))
        assert row.loc[key, "drop_n"] == 2
    assert row.loc[("cc", "digits", 1.0), "drop_mean"] == 0
    assert row.loc[("cc", "digits", 10.0), "mean"] == pytest.approx(0.72)
    assert row.loc[("cc", "mnist", 10.0), "drop_mean"] == pytest.approx(-0.05)
    assert math.isnan(row.loc[("cc", "mnist", 10.0), "drop_std"])

    text = imbalance_markdown(imbalance_table(imbalance_records(), ["kmeans_acc", "kmeans_nmi"]))
    assert "| method | dataset | ρ | seeds | KM ACC | KM NMI |" in text
    assert ("| cc | digits | 10 | 2 | 72.0 ± 2.8 (Δ -7.0 ± 4.2) | 36.0 ± 1.4 (Δ -3.5 ± 2.1) |"
            in text)
    with pytest.raises(UserError, match="no imbalance record has metric 'head_acc'"):
        imbalance_table(imbalance_records(), ["head_acc"])


def test_wrong_k_table_estimates_and_errors():
    table = wrong_k_table(kest_records()).set_index(["method", "k", "estimator"])
    assert list(table.index.unique("method")) == ["cc"]  # simclr has no variant.k
    assert list(table.index.unique("estimator")) == ["kest_silhouette", "kest_elbow"]
    silhouette = table.loc[("cc", 5, "kest_silhouette")]  # estimates 9 and 10 of 10 classes
    assert silhouette["mean"] == 9.5 and silhouette["error_mean"] == 0.5
    assert silhouette["std"] == pytest.approx(math.sqrt(0.5)) and silhouette["n"] == 2
    assert table.loc[("cc", 20, "kest_elbow"), "error_mean"] == 1.0  # estimates 8 and 10


# -- report page and the command line -----------------------------------------------------------


def test_page_has_runs_tables_and_figure_links():
    records = [*imbalance_records(), record("cc", 2, status="failed")]
    page = render_page(records, "study", "a description", {"imbalance": "figures/x.png"})
    assert page.startswith("# Suite `study`\n\na description\n")
    assert "15 runs: 14 ok, 1 failed." in page
    assert "- cc on digits, seed 2: planted failure\n" in page
    assert "## Results" in page and "| cc (imbalance=10.0) |" in page
    assert "## Class imbalance" in page and "(Δ -7.0 ± 4.2)" in page
    assert "## K estimation" not in page
    assert "![imbalance](figures/x.png)" in page
    assert suite_description("quickstart").startswith("digits, tiny ConvNet")
    assert suite_description("study") is None


def test_cli_plot_and_report_on_a_real_run(tiny, tmp_path, capsys):
    store = tmp_path / "results"
    # knn and kmeans only: the run must not depend on evaluators being added elsewhere
    assert main(["run", "suite=quickstart", *tiny, "seeds=[0,1]", "eval.metrics=[knn,kmeans]"]) == 0
    capsys.readouterr()
    where = f"results.dir={store}"

    assert main(["plot", "kest", "suite=quickstart", where]) == 2
    assert capsys.readouterr().err == ("crlbench: error: no record has eval_details.kest; run "
                                       "the suite with eval.metrics including kest\n")
    assert main(["plot", "all", "suite=quickstart", where]) == 2
    err = capsys.readouterr().err
    assert err.count("note: no ") == 6 and "no figure can be drawn" in err
    assert main(["report", "suite=quickstart", where]) == 0
    page = (store / "quickstart" / "report.md").read_text()
    assert capsys.readouterr().out.strip() == str(store / "quickstart" / "report.md")
    assert "digits, tiny ConvNet" in page and "4 runs: 4 ok, 0 failed." in page
    assert "| simclr |" in page and "| raw |" in page and "## Figures" not in page
    # the table carries its provenance and its conventions, as crlbench table's does
    assert "\nFrom 4 records of suite quickstart, made " in page
    assert "\nConventions: " in page and "kNN: k = 5, 20, cosine similarity" in page

    # a study suite in the same store, its records made from the real ones
    real = next(r for r in scan(store).records if r["method"] == "simclr")
    study = [*imbalance_records(real), *kest_records(real), *tsne_records(real),
             *precision_records(real), record("cc", 9, template=real, status="failed")]
    for rec in study:
        write_record(record_path(store, "study", rec["method"], rec["dataset"], rec["run_id"]),
                     rec)
    out = tmp_path / "figs"
    assert main(["plot", "all", "suite=study", where, "--output", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"study_{kind}.{ext}")
                       for kind in ("imbalance", "kest", "tsne", "precision")
                       for ext in ("png", "pdf")]
    assert all(Path(name).stat().st_size > 1000 for name in printed)
    assert main(["plot", "imbalance", "suite=study", where, "dataset=mnist",
                 "metric=kmeans_nmi"]) == 0
    assert (store / "study" / "figures" / "study_imbalance.png").is_file()
    assert main(["plot", "imbalance", "suite=study", where, "metric=nope"]) == 2
    assert main(["plot", "tsne", "suite=study", where, "dataset=cifar10"]) == 2
    assert main(["plot", "tsne", where]) == 2  # two suites in the store: which?
    assert main(["report", "suite=study", where, "colour=red"]) == 2

    page_path = tmp_path / "pages" / "study.md"
    assert main(["report", "suite=study", where, "--output", str(page_path)]) == 0
    page = page_path.read_text()
    assert "runs:" in page and "1 failed" in page
    assert "## Class imbalance" in page and "## K estimation under a wrong K" in page
    assert "| cc | digits | 5 | 10 | 2 | 9.5 ± 0.7 | 0.5 ± 0.7 | 9.0 ± 1.4 | 1.0 ± 1.4 |" in page
    links = [line[line.index("(") + 1:-1] for line in page.splitlines() if line.startswith("![")]
    assert len(links) == 4
    assert all((page_path.parent / link).is_file() for link in links)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["plot", "histogram", where])
    assert info.value.code == 2
