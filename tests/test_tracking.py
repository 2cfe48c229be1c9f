"""Experiment tracking: TensorBoard event files that TensorBoard's own reader reads back as
the record says, the W&B and MLflow adapters (on stand-in modules: neither is installed here),
a failing tracker that does not fail the run, and bad logger settings refused up front."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from crlbench.cli import main
from crlbench.store import scan

ARGS = ["suite=quickstart", "method=simclr", "seeds=[0]", "train.epochs=3", "eval.every=1"]


def test_tensorboard_event_files_hold_what_the_record_holds(tiny, tmp_path):
    store = tmp_path / "results"
    assert main(["run", *tiny, *ARGS, "results.loggers=[tensorboard]"]) == 0
    (record,) = scan(store).records
    (folder,) = store.rglob("*.tb")
    assert folder.name == f"{record['run_id']}.tb"  # one TensorBoard run per crlbench run
    events = EventAccumulator(str(folder))
    events.Reload()

    def series(tag):  # steps, values (float32 in the event files)
        scalars = events.Scalars(tag)
        return [e.step for e in scalars], pytest.approx([e.value for e in scalars], rel=1e-6)

    history = record["history"]
    assert series("train/loss") == ([1, 2, 3], [h["loss"] for h in history])
    assert series("eval/knn5_acc") == ([1, 2, 3], [h["eval"]["knn5_acc"] for h in history])
    for name, value in record["metrics"].items():
        assert series(f"metrics/{name}") == ([3], [value])
    (text,) = events.Tensors("run/text_summary")
    summary = json.loads(text.tensor_proto.string_val[0].decode())
    assert summary["run_id"] == record["run_id"] and summary["status"] == "ok"


class _FakeRun:
    def __init__(self, **kwargs):
        self.init, self.logged, self.summary, self.exit_code = kwargs, [], {}, None

    def log(self, values):
        self.logged.append(values)

    def finish(self, exit_code):
        self.exit_code = exit_code


def _module(monkeypatch, name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_the_wandb_adapter_sends_epochs_config_and_summary(tiny, tmp_path, monkeypatch):
    runs: list[_FakeRun] = []
    _module(monkeypatch, "wandb", init=lambda **kw: runs.append(_FakeRun(**kw)) or runs[-1])
    assert main(["run", *tiny, *ARGS, "results.loggers=[wandb]"]) == 0
    (record,) = scan(tmp_path / "results").records
    (run,) = runs
    assert run.init["name"] == "simclr/digits seed=0" and run.init["id"] == record["run_id"]
    assert run.init["config"]["train.epochs"] == 3  # the resolved config, flat
    assert [v["epoch"] for v in run.logged] == [1, 2, 3]
    assert run.logged[-1]["eval/knn5_acc"] == record["history"][-1]["eval"]["knn5_acc"]
    assert run.summary == record["metrics"] and run.exit_code == 0


def test_the_mlflow_adapter_sends_params_steps_and_final_metrics(tiny, tmp_path, monkeypatch):
    calls: list[tuple] = []
    _module(monkeypatch, "mlflow", set_experiment=lambda name: calls.append(("exp", name)),
            start_run=lambda run_name: calls.append(("start", run_name)),
            log_params=lambda p: calls.append(("params", p)),
            set_tags=lambda t: calls.append(("tags", t)),
            log_metrics=lambda m, step=None: calls.append(("metrics", step, m)),
            end_run=lambda status: calls.append(("end", status)))
    assert main(["run", *tiny, *ARGS, "results.loggers=[mlflow]"]) == 0
    (record,) = scan(tmp_path / "results").records
    assert calls[0] == ("exp", "crlbench-quickstart") and calls[1] == ("start", "simclr/digits "
                                                                                "seed=0")
    steps = [c[1] for c in calls if c[0] == "metrics"]
    assert steps == [1, 2, 3, None]
    assert calls[-2] == ("metrics", None, record["metrics"]) and calls[-1] == ("end", "FINISHED")
    assert calls[-3][2]["eval.knn5_acc"] == record["history"][-1]["eval"]["knn5_acc"]


def test_a_tracker_that_fails_at_the_end_does_not_fail_the_run(tiny, tmp_path, monkeypatch,
                                                               capsys):
    class Broken(_FakeRun):
        def finish(self, exit_code):
            raise ConnectionError("tracker unreachable")

    _module(monkeypatch, "wandb", init=lambda **kw: Broken(**kw))
    assert main(["run", *tiny, *ARGS, "results.loggers=[wandb]"]) == 0
    (record,) = scan(tmp_path / "results").records
    assert record["status"] == "ok"
    assert record["tracking_errors"] == ["WandbLogger: ConnectionError: tracker unreachable"]
    assert "warning: " in capsys.readouterr().err


def test_a_tracker_that_fails_to_start_or_to_log_is_dropped_and_the_run_goes_on(
        tiny, tmp_path, monkeypatch, capsys):
    def refuse(**kwargs):
        raise PermissionError("not logged in")

    _module(monkeypatch, "wandb", init=refuse)
    assert main(["run", *tiny, *ARGS, "results.loggers=[wandb,tensorboard]"]) == 0
    (record,) = scan(tmp_path / "results").records
    assert record["status"] == "ok"
    assert record["tracking_errors"] == ["wandb: PermissionError: not logged in"]
    assert list((tmp_path / "results").rglob("*.tfevents.*"))  # the other one still wrote

    class Flaky(_FakeRun):
        def log(self, values):
            raise TimeoutError("slow network")

    runs: list[Flaky] = []
    _module(monkeypatch, "wandb", init=lambda **kw: runs.append(Flaky(**kw)) or runs[-1])
    assert main(["run", *tiny, *ARGS, "seeds=[1]", "results.loggers=[wandb]"]) == 0
    second = next(r for r in scan(tmp_path / "results").records if r["seed"] == 1)
    assert second["status"] == "ok"
    # said once, then the logger is dropped: no finish() on a logger that failed
    assert second["tracking_errors"] == ["WandbLogger: TimeoutError: slow network"]
    assert runs[0].exit_code is None
    assert capsys.readouterr().err.count("slow network") == 1


def test_a_reevaluation_has_its_own_tensorboard_run_with_its_final_metrics(tiny, tmp_path):
    store = tmp_path / "results"
    args = ["suite=quickstart", "method=simclr", "seeds=[0]", "train.epochs=3",
            "results.loggers=[tensorboard]"]
    assert main(["run", *tiny, *args]) == 0
    assert main(["evaluate", *tiny, *args, "eval.knn_temperature=0.5"]) == 0
    (record,) = scan(store).records
    events = EventAccumulator(str(next(store.rglob(f"{record['run_id']}.tb"))))
    events.Reload()
    assert "train/loss" not in events.Tags()["scalars"]  # nothing trained in this run
    (point,) = events.Scalars("metrics/knn5_acc")
    assert point.step == 3 and point.value == pytest.approx(record["metrics"]["knn5_acc"])


@pytest.mark.parametrize(("arg", "expected"), [
    ("results.loggers=[tensorbord]", "'results.loggers' must list each of tensorboard, wandb, "
                                     "mlflow at most once"),
    ("results.loggers=[mlflow]", "'results.loggers' needs mlflow, which is not installed "
                                 "(pip install mlflow)"),
])
def test_bad_loggers_stop_before_training(arg, expected, tiny, tmp_path, capsys):
    assert main(["run", *tiny, *ARGS, arg]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "results").exists()


def test_no_logger_writes_nothing_beside_the_record(tiny, tmp_path):
    assert main(["run", *tiny, *ARGS]) == 0
    store = tmp_path / "results"
    assert not list(store.rglob("*.tb")) and "tracking_errors" not in scan(store).records[0]
    assert Path(store).is_dir()


def test_an_mlflow_run_that_fails_to_start_is_ended(tiny, tmp_path, monkeypatch):
    calls: list[tuple] = []

    def refuse(params):
        raise OSError("tracking server refused the params")

    _module(monkeypatch, "mlflow", set_experiment=lambda name: None,
            start_run=lambda run_name: calls.append(("start", run_name)),
            log_params=refuse, set_tags=lambda t: None,
            log_metrics=lambda m, step=None: calls.append(("metrics", step)),
            end_run=lambda status: calls.append(("end", status)))
    assert main(["run", *tiny, *ARGS, "results.loggers=[mlflow]"]) == 0
    assert calls == [("start", "simclr/digits seed=0"), ("end", "FAILED")]
    (record,) = scan(tmp_path / "results").records
    assert record["tracking_errors"] == ["mlflow: OSError: tracking server refused the params"]
