"""Learning curves (eval.every): evaluations during training that leave the training as it
was, go into the record's history, and draw as `crlbench plot curves`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from crlbench.cli import main
from crlbench.loader import load_suite
from crlbench.report.plot import curves_figure
from crlbench.store import scan
from crlbench.suite import expand

ARGS = ["suite=quickstart", "method=simclr", "train.epochs=5"]


def _by_seed(store: Path) -> dict[int, dict]:
    return {r["seed"]: r for r in scan(store).records}


def test_curves_are_in_the_history_and_change_no_training(tiny, tmp_path):
    store = tmp_path / "results"
    assert main(["run", *tiny, *ARGS, "seeds=[0,1]", "eval.every=2"]) == 0
    curved = _by_seed(store)
    plain_store = tmp_path / "plain"
    assert main(["run", *tiny, *ARGS, "seeds=[0,1]", f"results.dir={plain_store}"]) == 0
    plain = _by_seed(plain_store)
    for seed in (0, 1):
        history = curved[seed]["history"]
        # every 2 epochs, and after the last
        assert [i + 1 for i, h in enumerate(history) if "eval" in h] == [2, 4, 5]
        assert set(history[1]["eval"]) == {"knn5_acc", "knn20_acc"}  # the suite's knn_k
        assert all(h["eval_seconds"] > 0 for h in history if "eval" in h)
        # the training is the one without curves: same losses, same final numbers
        strip = [{k: v for k, v in h.items() if k not in ("eval", "eval_seconds", "seconds")}
                 for h in history]
        assert strip == [{k: v for k, v in h.items() if k != "seconds"}
                         for h in plain[seed]["history"]]
        assert curved[seed]["metrics"] == plain[seed]["metrics"]
        # digits is smaller than eval.every_samples: the last point is the final kNN
        assert history[-1]["eval"]["knn5_acc"] == curved[seed]["metrics"]["knn5_acc"]


def test_curves_of_a_sample_and_of_other_evaluators(tiny, tmp_path):
    store = tmp_path / "results"
    assert main(["run", *tiny, *ARGS, "seeds=[0]", "eval.every=5",
                 "eval.every_samples=100", "eval.every_metrics=[knn,rankme,linear]"]) == 0
    (record,) = scan(store).records
    point = record["history"][-1]["eval"]
    assert set(point) == {"knn5_acc", "knn20_acc", "rankme", "linear_acc"}
    assert 1.0 <= point["rankme"] <= 32  # the features' width
    assert point["knn5_acc"] != record["metrics"]["knn5_acc"]  # 100 images, not all


def test_curve_settings_are_part_of_the_training_only_when_curves_are_on():
    base = expand(load_suite("quickstart", ["method=simclr", "seeds=[0]"]))[0]
    same = expand(load_suite("quickstart", ["method=simclr", "seeds=[0]",
                                            "eval.every_samples=7"]))[0]
    assert same.run_id == base.run_id and same.train_id == base.train_id  # no curves: unused
    curved = expand(load_suite("quickstart", ["method=simclr", "seeds=[0]", "eval.every=2"]))[0]
    assert curved.run_id != base.run_id and curved.train_id != base.train_id
    assert [e.name for e in curved.curve_evaluators] == ["knn"]
    raw = expand(load_suite("quickstart", ["method=raw", "seeds=[0]", "eval.every=2"]))[0]
    assert raw.curve_evaluators == ()  # nothing trains, nothing to follow
    plain_raw = expand(load_suite("quickstart", ["method=raw", "seeds=[0]"]))[0]
    assert raw.run_id == plain_raw.run_id  # so nothing of it is in raw's identity
    # the curves read the eval section: with curves, an evaluation change is a new training
    warmer = expand(load_suite("quickstart", ["method=simclr", "seeds=[0]", "eval.every=2",
                                              "eval.knn_temperature=0.5"]))[0]
    assert warmer.train_id != curved.train_id


@pytest.mark.parametrize(("arg", "expected"), [
    ("eval.every=-1", "'eval.every' must be >= 0"),
    ("eval.every_metrics=[geometry]", "eval.every_metrics: geometry needs view_pairs, which "
                                      "learning curves do not compute"),
    ("eval.every_metrics=[knn,knn]", "'eval.every_metrics' must name evaluators, each once"),
    ("eval.every_metrics=[nope]", "unknown evaluator 'nope'"),
    ("eval.every_samples=1", "'eval.every_samples' must be at least 2"),
])
def test_bad_curve_settings_stop_before_training(arg, expected, tiny, tmp_path, capsys):
    extra = [] if arg.startswith("eval.every=") else ["eval.every=2"]
    assert main(["run", *tiny, *ARGS, arg, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "results").exists()


def _record(seed: int, method: str, curve: list[float | None]) -> dict:
    history = [{"loss": 1.0} if v is None else {"loss": 1.0, "eval": {"knn200_acc": v}}
               for v in curve]
    return {"suite": "s", "method": method, "dataset": "digits", "seed": seed, "variant": {},
            "status": "ok", "metrics": {"knn200_acc": 0.5}, "history": history}


def test_the_curves_figure_draws_the_mean_over_seeds_with_a_band():
    records = [_record(0, "simclr", [None, 0.5, None, 0.7]),
               _record(1, "simclr", [None, 0.6, None, 0.9]),
               _record(0, "byol", [0.2, 0.3, 0.4, 0.5])]
    fig = curves_figure(records)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"byol", "simclr"}
    assert list(lines["simclr"].get_xdata()) == [2, 4]
    assert np.allclose(lines["simclr"].get_ydata(), [55.0, 80.0])
    assert np.allclose(lines["byol"].get_ydata(), [20, 30, 40, 50])
    assert len(ax.collections) == 1  # a band for simclr's two seeds; byol has one seed
    assert ax.get_ylabel() == "kNN-200 (%)" and ax.get_xlabel() == "epoch"
    assert not math.isnan(float(lines["simclr"].get_ydata()[0]))


def test_plot_curves_from_a_store_and_its_errors(tiny, tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", *tiny, *ARGS, "seeds=[0]"]) == 0
    capsys.readouterr()
    assert main(["plot", "curves", f"results.dir={store}"]) == 2
    assert "no record has learning curves; run the suite with eval.every=N" in \
        capsys.readouterr().err
    assert main(["run", *tiny, *ARGS, "seeds=[0]", "eval.every=1"]) == 0
    assert main(["plot", "curves", f"results.dir={store}", "metric=knn5_acc",
                 "--output", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "quickstart_curves.png").is_file()
    assert main(["plot", "curves", f"results.dir={store}", "metric=linear_acc"]) == 2
    assert "no learning curve has metric 'linear_acc'; valid: knn20_acc, knn5_acc" in \
        capsys.readouterr().err
