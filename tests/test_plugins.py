"""Plugins beyond methods, and the method scaffold: `crlbench new-method` writes a package that
builds, installs, passes its own test and trains next to SimCLR; datasets and evaluators come
through their own entry point groups with the same listing and failure isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crlbench import registry
from crlbench.cli import main
from crlbench.errors import UserError
from crlbench.loader import load_suite
from crlbench.scaffold import write_method_package
from crlbench.store import scan
from crlbench.suite import expand

# ---------------------------------------------------------------- the scaffold


def test_new_method_writes_the_package(tmp_path: Path, capsys):
    target = tmp_path / "pkg"
    assert main(["new-method", "my_loss", "--dir", str(target)]) == 0
    assert f"pip install -e {target}" in capsys.readouterr().out
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/crlbench_my_loss/__init__.py",
                     "src/crlbench_my_loss/method.py", "tests/test_my_loss.py"]
    meta = (target / "pyproject.toml").read_text()
    assert 'name = "crlbench-my-loss"' in meta
    assert ('[project.entry-points."crlbench.methods"]\n'
            'my_loss = "crlbench_my_loss.method:MyLoss"') in meta
    method = (target / "src/crlbench_my_loss/method.py").read_text()
    assert 'name = "my_loss"' in method and "class MyLoss(Method)" in method
    assert "$" not in method  # every placeholder filled
    assert target.stat().st_mode & 0o055  # not mkdtemp's private mode


def test_the_generated_method_passes_check_method(tmp_path: Path, monkeypatch):
    import importlib

    from crlbench.testing import check_method

    target = write_method_package("gen_check", tmp_path / "pkg")
    monkeypatch.syspath_prepend(str(target / "src"))
    cls = importlib.import_module("crlbench_gen_check.method").GenCheck
    check_method(cls)
    check_method(cls, config={"uniformity_weight": 1.0})


@pytest.mark.parametrize(("name", "expected"), [
    ("simclr", "method 'simclr' is already registered by crlbench; choose another name"),
    ("My-Loss", "method name 'My-Loss' must be lower case letters, digits and single '_'"),
    ("1loss", "starting with a letter"),
    ("my_", "single '_' between them"),  # crlbench-my- is no valid package name
    ("f", "would make a class F that shadows the template's own import"),
])
def test_new_method_refuses_bad_names(name, expected, tmp_path: Path, capsys):
    assert main(["new-method", name, "--dir", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_new_method_refuses_the_current_folder(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["new-method", "my_loss", "--dir", "."]) == 2
    assert "is the current folder" in capsys.readouterr().err
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_new_method_never_overwrites(tmp_path: Path, capsys):
    target = tmp_path / "pkg"
    target.mkdir()
    (target / "mine.py").write_text("keep me")
    assert main(["new-method", "my_loss", "--dir", str(target)]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["mine.py"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no staging folder left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["new-method", "my_loss", "--dir", str(empty)]) == 0
    assert (empty / "pyproject.toml").exists()


def _python(code: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


CLI = "import sys; from crlbench.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
def test_scaffold_builds_installs_and_trains_next_to_simclr(tmp_path: Path, tiny):
    """The whole path of a researcher: new-method, a real pip build and install (into a
    target folder on PYTHONPATH, so this test environment stays as it was), the listing, the
    package's own tests, a suite with the new method beside SimCLR, and the table."""
    package = write_method_package("scaffolded", tmp_path / "crlbench-scaffolded")
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(package)],
        capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    assert list(site.glob("crlbench_scaffolded-0.1.0.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": str(site)}

    listing = _python(CLI, "methods", env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "scaffolded" in line)
    assert "crlbench-scaffolded" in row and "0.1.0" in row

    own_tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                str(package / "tests")], env=env, cwd=package,
                               capture_output=True, text=True, timeout=600)
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "2 passed" in own_tests.stdout

    run = _python(CLI, "run", "suite=quickstart", *tiny, "method=scaffolded,simclr",
                  "seeds=[0]", env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line for line in run.stdout.splitlines() if "│" in line]
    assert any("scaffolded" in r for r in rows) and any("simclr" in r for r in rows)
    (record,) = (tmp_path / "results/quickstart/scaffolded/digits").glob("*.json")
    data = json.loads(record.read_text())
    assert data["status"] == "ok"
    assert data["method_package"]["name"] == "crlbench-scaffolded"
    assert {"contrast", "uniformity"} <= set(data["history"][-1])  # extra terms are logged


# ---------------------------------------------------------------- dataset plugins

BLOBS = """
import torch
from crlbench.data import DatasetInfo, ImageData

def _split(n, seed):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    base = (labels * 80 + 20).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8)
    noise = torch.randint(0, 20, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
    return (base + noise).contiguous(), labels

def check(root, use_unlabeled):
    pass

def load(root, use_unlabeled):
    (xtr, ytr), (xte, yte) = _split(150, 0), _split(60, 1)
    return ImageData("blobs", xtr, ytr, xte, yte, num_classes=3)

def load_wrong(root, use_unlabeled):
    raise OSError("blob store unreachable")

BLOBS = DatasetInfo(name="blobs", summary="three grey levels with noise", num_classes=3,
                    channels=1, image_size=8, check=check, load=load)
BROKEN = DatasetInfo(name="broken_blobs", summary="raises", num_classes=3, channels=1,
                     image_size=8, check=check, load=load_wrong)
MISNAMED = DatasetInfo(name="other", summary="", num_classes=3, channels=1, image_size=8,
                       check=check, load=load)
"""


def _blobs(plugin_dir) -> None:
    plugin_dir("fake-blobs", {"blobs": "fake_blobs:BLOBS", "broken_blobs": "fake_blobs:BROKEN",
                              "misnamed": "fake_blobs:MISNAMED",
                              "missing": "fake_blobs_nowhere:X"},
               {"fake_blobs": BLOBS}, group="crlbench.datasets")


def _listing(command: str, capsys) -> dict[str, str]:
    """`crlbench <command>`'s table rows by their first cell."""
    assert main([command]) == 0
    out = capsys.readouterr().out
    return {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}


def test_dataset_plugins_are_listed_with_their_faults(plugin_dir, capsys):
    _blobs(plugin_dir)
    rows = _listing("datasets", capsys)
    assert "fake-blobs" in rows["blobs"] and "3 classes, 1 channel" in rows["blobs"]
    assert "registered as 'misnamed'" in rows["misnamed"]
    assert "import failed: ModuleNotFoundError" in rows["missing"]
    assert "crlbench" in rows["cifar10"]  # built-ins list the same way


def test_a_dataset_plugin_runs_in_a_suite(plugin_dir, tiny, tmp_path: Path):
    _blobs(plugin_dir)
    assert main(["run", "suite=quickstart", *tiny, "dataset=blobs", "method=raw",
                 "seeds=[0]"]) == 0
    (record,) = (tmp_path / "results/quickstart/raw/blobs").glob("*.json")
    data = json.loads(record.read_text())
    assert data["status"] == "ok" and data["data"]["num_classes"] == 3
    assert data["metrics"]["knn5_acc"] > 0.9  # three separated grey levels


@pytest.mark.parametrize(("dataset", "expected"), [
    ("broken_blobs", "dataset 'broken_blobs' from package fake-blobs: load() raised OSError: "
                     "blob store unreachable"),
    ("missing", "dataset 'missing' from package fake-blobs is unusable: import failed"),
    ("nosuch", "unknown dataset 'nosuch'; valid datasets: blobs, broken_blobs, cifar10"),
])
def test_a_broken_dataset_plugin_stops_the_suite_before_any_run(
        dataset, expected, plugin_dir, tiny, tmp_path: Path, capsys):
    _blobs(plugin_dir)
    assert main(["run", "suite=quickstart", *tiny, f"dataset=digits,{dataset}", "method=raw",
                 "seeds=[0]"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "results").exists()
    # ... and breaks nothing else
    assert main(["run", "suite=quickstart", *tiny, "dataset=digits", "method=raw",
                 "seeds=[0]"]) == 0


def test_a_plugin_dataset_may_not_take_a_builtin_name(plugin_dir):
    plugin_dir("fake-cifar", {"cifar10": "fake_blobs:BLOBS"}, {"fake_blobs": BLOBS},
               group="crlbench.datasets")
    with pytest.raises(UserError, match="'cifar10' is registered twice, by .*crlbench "
                                        r"\(crlbench.data.catalog:CIFAR10\)"):
        registry.datasets.get("cifar10")
    assert registry.datasets.get("digits").name == "digits"


# ---------------------------------------------------------------- evaluator plugins

EVALS = """
def mean_norm(emb, cfg, seed):
    '''Mean L2 norm of the test features.'''
    return {"mean_norm": float(emb.test.norm(dim=1).mean())}, {"rows": len(emb.test)}

def failing(emb, cfg, seed):
    '''Raises until it is fixed.'''
    raise ValueError("boom")

def wrong_shape(emb, cfg, seed):
    return {"x": "high"}, {}

def not_json(emb, cfg, seed):
    import numpy
    return {"y": 1.0}, {"per_class": numpy.zeros(3)}

not_callable = 3
"""


def _evals(plugin_dir) -> None:
    plugin_dir("fake-evals", {"mean_norm": "fake_evals:mean_norm", "failing": "fake_evals:failing",
                              "wrong_shape": "fake_evals:wrong_shape",
                              "not_json": "fake_evals:not_json",
                              "not_callable": "fake_evals:not_callable"},
               {"fake_evals": EVALS}, group="crlbench.evaluators")


def test_evaluator_plugins_are_listed_with_their_faults(plugin_dir, capsys):
    _evals(plugin_dir)
    rows = _listing("evaluators", capsys)
    assert "fake-evals" in rows["mean_norm"] and "Mean L2 norm" in rows["mean_norm"]
    assert "unusable" in rows["not_callable"] and "not callable" in rows["not_callable"]
    assert "crlbench" in rows["knn"] and "kNN accuracy" in rows["knn"]


def test_an_evaluator_plugin_adds_its_metric_to_the_record_and_table(
        plugin_dir, tiny, tmp_path: Path, capsys):
    _evals(plugin_dir)
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]",
                 "eval.metrics=[knn,mean_norm]"]) == 0
    (record,) = (tmp_path / "results/quickstart/raw/digits").glob("*.json")
    data = json.loads(record.read_text())
    assert data["metrics"]["mean_norm"] > 0 and data["eval_details"]["mean_norm"]["rows"] > 0
    capsys.readouterr()
    assert main(["table", "suite=quickstart", f"results.dir={tmp_path / 'results'}",
                 "metric=mean_norm", "--format", "csv"]) == 0
    assert "mean_norm" in capsys.readouterr().out


def test_unusable_evaluator_is_refused_before_any_run(plugin_dir, tiny, tmp_path: Path, capsys):
    _evals(plugin_dir)
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]",
                 "eval.metrics=[knn,not_callable]"]) == 2
    err = capsys.readouterr().err
    assert "evaluator 'not_callable' from package fake-evals is unusable" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("name", "expected"), [
    ("failing", "evaluator 'failing' from package fake-evals raised ValueError: boom"),
    ("wrong_shape", "evaluator 'wrong_shape' from package fake-evals: metric 'x' must be"),
    ("not_json", "evaluator 'not_json' from package fake-evals: details must be JSON data"),
])
@pytest.mark.parametrize("keep_weights", [True, False])
def test_a_failing_evaluator_fails_its_run_which_resumes_once_fixed(
        name, expected, keep_weights, plugin_dir, tiny, tmp_path: Path, capsys):
    """The run is recorded as failed with the evaluator and package named; training is not
    lost: after the plugin is fixed, the rerun scores the weights the failed run kept, or
    without kept weights resumes from the final epoch's checkpoint."""
    _evals(plugin_dir)
    args = ["run", "suite=quickstart", *tiny, "method=simclr", "seeds=[0]",
            f"eval.metrics=[knn,{name}]", f"results.keep_weights={keep_weights}"]
    assert main(args) == 1
    (record,) = (tmp_path / "results/quickstart/simclr/digits").glob("*.json")
    failed = json.loads(record.read_text())
    assert failed["status"] == "failed" and expected in failed["error"]["message"]
    assert expected.split(":")[0] in capsys.readouterr().out  # the summary lists it

    fixed = EVALS.replace('raise ValueError("boom")', 'return {"' + name + '": 1.0}, {}')
    fixed = fixed.replace('return {"x": "high"}, {}', 'return {"x": 0.5}, {}')
    fixed = fixed.replace('{"per_class": numpy.zeros(3)}', '{"per_class": [0.0, 0.0, 0.0]}')
    (tmp_path / "site" / "fake_evals.py").write_text(fixed)
    sys.modules.pop("fake_evals", None)
    registry.evaluators.refresh()
    assert main(args) == 0
    done = json.loads(record.read_text())
    assert done["status"] == "ok" and done["history"] == failed["history"]
    if keep_weights:
        assert done["weights_from"]["run_id"] == failed["run_id"]
        assert "train" not in done["wall_seconds"]  # nothing trained again
    else:
        assert done["train"]["resumed_from_epoch"] == 2


DECLARING_EVALS = """
from crlbench.evaluate import declares

@declares(options={"scale": 1.0, "rows": 5}, lower_is_better=["scaled_error"])
def scaled_error(emb, cfg, seed):
    '''The scaled mean norm of the first rows of the test features: lower is better.'''
    own = cfg.options.scaled_error
    value = float(emb.test[:own.rows].norm(dim=1).mean()) * own.scale
    return {"scaled_error": value, "scaled_size": float(own.rows)}, {}
"""


def _declaring(plugin_dir) -> None:
    plugin_dir("fake-declaring", {"scaled_error": "fake_declaring:scaled_error"},
               {"fake_declaring": DECLARING_EVALS}, group="crlbench.evaluators")


def test_an_evaluator_declares_its_settings_and_its_lower_is_better_metric(
        plugin_dir, tiny, tmp_path: Path, capsys):
    _declaring(plugin_dir)
    args = ["suite=quickstart", *tiny, "seeds=[0]", "eval.metrics=[knn,scaled_error]"]
    assert main(["run", *args, "eval.options.scaled_error.scale=2.0"]) == 0
    store = tmp_path / "results"
    found = {r["method"]: r for r in scan(store).records}
    for record in found.values():
        assert record["config"]["eval"]["options"] == {"scaled_error": {"scale": 2.0, "rows": 5}}
        assert record["lower_is_better"] == ["scaled_error"]  # scaled_size is not declared
    # the setting is part of the run's identity, its default resolved into it
    changed = {s.run_id for s in expand(load_suite(
        "quickstart", [*args[1:], "eval.options.scaled_error.scale=2.0"]))}
    assert {r["run_id"] for r in found.values()} == changed
    assert not changed & {s.run_id for s in expand(load_suite("quickstart", args[1:]))}
    # tables mark the smallest as the best, with the arrow
    capsys.readouterr()
    assert main(["table", f"results.dir={store}", "metric=scaled_error", "--format",
                 "markdown"]) == 0
    out = capsys.readouterr().out
    best = min(found, key=lambda m: found[m]["metrics"]["scaled_error"])
    assert "scaled_error ↓" in out and "lower is better" in out
    (row,) = [line for line in out.splitlines() if line.startswith(f"| {best} ")]
    assert "**" in row


def test_evaluator_settings_resolve_the_same_for_every_method_and_value(plugin_dir):
    _declaring(plugin_dir)
    base = ["method=raw,simclr", "seeds=[0]"]
    # a curve-only evaluator's settings, in a suite with a method that makes no curves
    specs = expand(load_suite("quickstart", [*base, "eval.every=5",
                                             "eval.every_metrics=[knn,scaled_error]",
                                             "eval.options.scaled_error.scale=2.0"]))
    assert {s.method: [e.name for e in s.curve_evaluators] for s in specs} == {
        "raw": [], "simclr": ["knn", "scaled_error"]}
    # an int for a float default is that float: the same setting, the same run
    metrics = "eval.metrics=[knn,scaled_error]"
    one = expand(load_suite("quickstart", [*base, metrics, "eval.options.scaled_error.scale=1"]))
    default = expand(load_suite("quickstart", [*base, metrics]))
    assert [s.run_id for s in one] == [s.run_id for s in default]
    assert one[0].config["eval"]["options"]["scaled_error"]["scale"] == 1.0


@pytest.mark.parametrize(("arg", "expected"), [
    ("eval.options.scaled_error.scal=2.0", "eval.options.scaled_error.scal: unknown setting; "
                                           "scaled_error's settings: scale, rows"),
    ("eval.options.scaled_error.rows=two", "eval.options.scaled_error.rows must be int like "
                                           "its default 5, got 'two'"),
    ("eval.options.knn.k=3", "eval.options.knn: evaluator knn declares no settings of its own"),
    ("eval.options.kmeans.k=3", "eval.options.kmeans: kmeans is not an evaluator of this run"),
])
def test_bad_evaluator_settings_stop_before_any_run(arg, expected, plugin_dir, tiny, tmp_path,
                                                    capsys):
    _declaring(plugin_dir)
    assert main(["run", "suite=quickstart", *tiny, "eval.metrics=[knn,scaled_error]", arg]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "results").exists()


INPUT_EVALS = """
from crlbench.evaluate import needs

@needs("view_pairs", "augmented_views", "head_logits")
def pairs_seen(emb, cfg, seed):
    '''What the runner gave an evaluator that declares inputs.'''
    a, b = emb.view_pairs
    va, vb = emb.augmented_views
    return {"pair_rows": float(len(a)), "view_rows": float(len(va)),
            "views_differ": float((va != vb).any()), "heads": float(len(emb.head_logits))}, {}

def plain(emb, cfg, seed):
    '''Declares nothing, so gets nothing beyond the features.'''
    got = [emb.view_pairs is not None, emb.augmented_views is not None, bool(emb.head_logits)]
    return {"extras": float(sum(got))}, {}

def wants_gradients(emb, cfg, seed):
    return {}, {}
wants_gradients.needs = {"gradients"}
"""


def test_evaluators_get_the_inputs_they_declare_and_none_is_computed_undeclared(
        plugin_dir, tiny, tmp_path: Path):
    plugin_dir("fake-input-evals", {"pairs_seen": "fake_input_evals:pairs_seen",
                                    "plain": "fake_input_evals:plain"},
               {"fake_input_evals": INPUT_EVALS}, group="crlbench.evaluators", version="0.3")
    assert main(["run", "suite=quickstart", *tiny, "method=cc", "seeds=[0]",
                 "eval.metrics=[pairs_seen,plain]", "eval.geometry_samples=50"]) == 0
    (record,) = (tmp_path / "results/quickstart/cc/digits").glob("*.json")
    data = json.loads(record.read_text())
    m = data["metrics"]
    assert (m["pair_rows"], m["view_rows"], m["views_differ"]) == (50.0, 50.0, 1.0)
    assert m["heads"] >= 1
    assert m["extras"] == 3.0  # the evaluators of a run share one Embeddings
    # the record names every plugin that made its numbers
    assert data["evaluator_packages"]["pairs_seen"] == {
        "name": "fake-input-evals", "version": "0.3", "target": "fake_input_evals:pairs_seen"}
    assert data["dataset_package"]["target"] == "crlbench.data.catalog:DIGITS"
    # where no evaluator declares them, the pairs, views and head logits are not computed
    assert main(["run", "suite=quickstart", *tiny, "method=cc", "seeds=[0]",
                 "eval.metrics=[plain]"]) == 0
    (plain,) = [json.loads(p.read_text()) for p in record.parent.glob("*.json") if p != record]
    assert plain["metrics"]["extras"] == 0.0


def test_an_evaluator_asking_for_an_unknown_input_is_refused_before_any_run(
        plugin_dir, tiny, tmp_path: Path, capsys):
    plugin_dir("fake-input-evals", {"wants_gradients": "fake_input_evals:wants_gradients"},
               {"fake_input_evals": INPUT_EVALS}, group="crlbench.evaluators")
    assert main(["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]",
                 "eval.metrics=[knn,wants_gradients]"]) == 2
    err = capsys.readouterr().err.strip()
    assert ("evaluator 'wants_gradients' from package fake-input-evals needs gradients, which "
            "the runner does not provide; valid inputs: head_logits, view_pairs, "
            "augmented_views") in err and "\n" not in err
    assert not (tmp_path / "results").exists()


def test_a_suite_resolves_each_plugin_once_and_reads_its_dataset_once(
        tiny, tmp_path: Path, monkeypatch):
    from collections import Counter

    from crlbench.data import DatasetCache

    lookups: Counter = Counter()
    entry = registry.Registry.entry

    def counted(self, name):
        lookups[(self.kind, name)] += 1
        return entry(self, name)

    loads = []
    load = DatasetCache.load

    def counted_load(self, source, **kwargs):
        before = self.loads
        out = load(self, source, **kwargs)
        loads.append(self.loads - before)
        return out

    monkeypatch.setattr(registry.Registry, "entry", counted)
    monkeypatch.setattr(DatasetCache, "load", counted_load)
    assert main(["run", "suite=quickstart", *tiny, "method=raw,simclr", "seeds=[0,1]",
                 "eval.metrics=[knn,kmeans]"]) == 0
    assert lookups == Counter({("method", "raw"): 1, ("method", "simclr"): 1,
                               ("dataset", "digits"): 1, ("evaluator", "knn"): 1,
                               ("evaluator", "kmeans"): 1})
    # the preflight reads digits, then four runs take it from the executor's cache
    assert loads == [1, 0, 0, 0, 0]
