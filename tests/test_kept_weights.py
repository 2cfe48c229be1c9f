"""Kept weights and re-evaluation without training: a finished run keeps what its evaluation
reads as safetensors; `crlbench evaluate` (and `crlbench run` after an eval change) scores it
again from them, superseding the earlier evaluation; nothing trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import crlbench.runner
from crlbench.backbones import build_backbone
from crlbench.cli import main
from crlbench.loader import load_suite
from crlbench.resolve import resolve_method
from crlbench.store import scan
from crlbench.suite import expand
from crlbench.testing import make_context
from crlbench.weights import WeightsError, load_weights, save_weights, sha256_of

SUITE = ["suite=quickstart", "method=cc,raw", "seeds=[0]"]  # cc: a head the weights must keep
MORE = "eval.metrics=[knn,linear,kmeans,heads,geometry,retrieval,rankme]"


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods `crlbench.runner.train` was called for."""
    calls: list[str] = []
    real = crlbench.runner.train

    def counted(method, setup):
        calls.append(method.name)
        return real(method, setup)

    monkeypatch.setattr(crlbench.runner, "train", counted)
    return calls


def _records(store: Path, method: str) -> list[dict]:
    return [r for r in scan(store).records if r["method"] == method]


def test_a_run_keeps_its_weights_and_evaluate_gives_its_metrics(tiny, trainings, capsys):
    store = Path(tiny[-1].split("=", 1)[1])
    assert main(["run", *SUITE, *tiny]) == 0
    assert trainings == ["cc"]
    (rec,) = _records(store, "cc")
    weights = rec["weights"]
    path = store / "quickstart" / "cc" / "digits" / weights["file"]
    assert weights["file"] == f"{rec['train_id']}.safetensors"
    assert weights["sha256"] == sha256_of(path) and weights["bytes"] == path.stat().st_size
    prefixes = {key.split(".", 1)[0] for key in load_file(path)}
    assert prefixes == {"backbone", "cluster_projector"}  # CC's kept_state, no projector
    (raw,) = _records(store, "raw")
    assert "weights" not in raw  # nothing trained, nothing kept

    capsys.readouterr()
    assert main(["evaluate", *SUITE, *tiny, "--force"]) == 0
    assert trainings == ["cc"]  # scored again without training
    (again,) = _records(store, "cc")
    assert again["metrics"] == rec["metrics"]  # the same weights score the same on the CPU
    assert again["weights_from"]["run_id"] == rec["run_id"]
    assert [e["metrics"] for e in again["previous_evaluations"]] == [rec["metrics"]]
    assert "load_weights" in again["wall_seconds"] and "train" not in again["wall_seconds"]
    assert again["train"] == rec["train"] and again["history"] == rec["history"]


def test_an_evaluator_added_to_a_finished_suite_scores_every_run_without_training(
        tiny, trainings):
    store = Path(tiny[-1].split("=", 1)[1])
    assert main(["run", *SUITE, *tiny]) == 0
    before = {r["method"]: r for r in scan(store).records}
    assert main(["run", *SUITE, *tiny, MORE]) == 0  # `run` reuses the kept weights too
    assert trainings == ["cc"]  # the first run only
    after = {r["method"]: r for r in scan(store).records}
    assert len(scan(store).records) == 2  # the earlier evaluations are folded, not kept beside
    for method in ("cc", "raw"):
        old, new = before[method], after[method]
        assert new["run_id"] != old["run_id"] and new["train_id"] == old["train_id"]
        assert "rankme" in new["metrics"] and new["metrics"]["rankme"] >= 1.0
        assert {k: new["metrics"][k] for k in old["metrics"]} == old["metrics"]
        (prev,) = new["previous_evaluations"]
        assert prev["run_id"] == old["run_id"] and prev["metrics"] == old["metrics"]
        assert prev["eval"]["metrics"] == old["config"]["eval"]["metrics"]
    folder = store / "quickstart" / "cc" / "digits"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{after['cc']['run_id']}.json", after["cc"]["weights"]["file"]])
    # nothing left to do: the evaluation is current
    assert main(["evaluate", *SUITE, *tiny, MORE]) == 0 and trainings == ["cc"]


def test_evaluate_never_trains_and_says_which_runs_have_no_weights(tiny, trainings, capsys):
    store = Path(tiny[-1].split("=", 1)[1])
    assert main(["run", "suite=quickstart", "method=cc", "seeds=[0]", *tiny,
                 "results.keep_weights=false"]) == 0
    (rec,) = _records(store, "cc")
    assert "weights" not in rec and not list(store.rglob("*.safetensors"))
    capsys.readouterr()
    assert main(["evaluate", "suite=quickstart", "method=cc", "seeds=[0]", *tiny, MORE]) == 2
    err = capsys.readouterr().err
    assert "not evaluated: cc/digits seed=0 has no kept weights" in err
    assert "none of the 1 runs to evaluate has kept weights; `crlbench run suite=quickstart` " \
           "trains them" in err
    assert trainings == ["cc"] and _records(store, "cc") == [rec]  # nothing written


def test_weights_that_changed_on_disk_are_not_used(tiny, trainings, capsys):
    store = Path(tiny[-1].split("=", 1)[1])
    assert main(["run", *SUITE, *tiny]) == 0
    (path,) = store.rglob("*.safetensors")
    tensors = load_file(path)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, path)
    assert main(["evaluate", "suite=quickstart", "method=cc", "seeds=[0]", *tiny, MORE]) == 2
    assert main(["run", *SUITE, *tiny, MORE]) == 0
    assert trainings == ["cc", "cc"]  # trained again rather than scoring another model


def test_run_force_trains_again_and_keeps_the_earlier_evaluation(tiny, trainings):
    store = Path(tiny[-1].split("=", 1)[1])
    assert main(["run", *SUITE, *tiny]) == 0
    (first,) = _records(store, "cc")
    assert main(["run", *SUITE, *tiny, "--force"]) == 0
    assert trainings == ["cc", "cc"]
    (second,) = _records(store, "cc")
    assert "weights_from" not in second and second["metrics"] == first["metrics"]
    assert [e["run_id"] for e in second["previous_evaluations"]] == [first["run_id"]]


def test_an_eval_sweep_trains_once_and_keeps_each_evaluation(tiny, trainings):
    store = Path(tiny[-1].split("=", 1)[1])
    assert main(["run", "suite=quickstart", "method=cc", "seeds=[0]", *tiny,
                 "sweep={eval.knn_temperature: [0.07, 0.5]}"]) == 0
    assert trainings == ["cc"]  # the second variant scores the first's weights
    found = _records(store, "cc")
    assert sorted(r["variant"]["eval.knn_temperature"] for r in found) == [0.07, 0.5]
    assert len({r["train_id"] for r in found}) == 1
    assert all("previous_evaluations" not in r for r in found)  # siblings, not superseded


def test_weights_load_only_with_their_hash_and_their_keys(tmp_path):
    def built(seed):
        torch.manual_seed(seed)
        backbone, dim = build_backbone("convnet_tiny", channels=1, image_size=8,
                                       small_stem=None, width=8)
        cls = resolve_method("cc").obj
        return cls(backbone, make_context(feature_dim=dim), cls.Config())

    path = tmp_path / "w.safetensors"
    info = save_weights(built(0), path, {"method": "cc"})
    assert info["kept_state"] == ["backbone", "cluster_projector"] and info["tensors"] > 0
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file
    fresh = built(1)
    load_weights(fresh, path, info["sha256"])
    kept = load_file(path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in kept.items())
    with pytest.raises(WeightsError, match="does not have the SHA-256 its record gives"):
        load_weights(fresh, path, "0" * 64)
    save_file({k: v for k, v in kept.items() if k.startswith("backbone.")}, path)
    with pytest.raises(WeightsError, match="does not fit CC: missing"):
        load_weights(fresh, path, sha256_of(path))
    assert json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])


def test_a_required_evaluation_whose_weights_vanished_fails_instead_of_training(tiny, trainings):
    from crlbench.runner import execute

    store = Path(tiny[-1].split("=", 1)[1])
    assert main(["run", *SUITE, *tiny]) == 0
    (path,) = store.rglob("*.safetensors")
    path.unlink()  # as if removed after `crlbench evaluate` picked the run
    spec = next(s for s in expand(load_suite("quickstart", [*SUITE[1:], *tiny, MORE]))
                if s.method == "cc")
    record = execute(spec, store, weights="require")
    assert record["status"] == "failed" and record["error"]["type"] == "NoKeptWeights"
    assert trainings == ["cc"]


def test_a_superseded_record_rewritten_meanwhile_stays(tmp_path):
    from crlbench.evaluations import remove_superseded
    from crlbench.store import write_record

    old = {"schema": 1, "run_id": "a", "status": "ok", "suite": "s", "method": "m",
           "dataset": "d", "seed": 0, "metrics": {}, "created": "2026-01-01T00:00:00+00:00"}
    path = tmp_path / "a.json"
    write_record(path, {**old, "created": "2026-01-01T00:00:09+00:00"})  # rewritten since
    remove_superseded([(path, old)])
    assert path.exists()
    write_record(path, old)
    remove_superseded([(path, old)])
    assert not path.exists()
