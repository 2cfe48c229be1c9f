"""Suite expansion: one RunSpec per method x dataset x seed, with content-hashed run ids."""

from __future__ import annotations

import re

import pytest

from crlbench.errors import UserError
from crlbench.loader import load_suite, shipped_suites
from crlbench.resolve import resolve_method
from crlbench.suite import _variants, expand


def specs_for(*overrides: str):
    return expand(load_suite(None, ["method=simclr,raw", "dataset=digits", *overrides]))


def test_grid_order_and_size():
    specs = specs_for("seeds=[0,1,2]")
    assert [(s.method, s.dataset, s.seed) for s in specs] == [
        ("simclr", "digits", 0), ("simclr", "digits", 1), ("simclr", "digits", 2),
        ("raw", "digits", 0), ("raw", "digits", 1), ("raw", "digits", 2)]
    assert len({s.run_id for s in specs}) == 6
    # seeds of one configuration share a config_id
    assert len({s.config_id for s in specs}) == 2


def test_method_config_is_resolved_with_defaults_and_overrides():
    spec = specs_for("method_cfg.simclr.temperature=0.2")[0]
    assert spec.config["method_cfg"] == {"temperature": 0.2, "proj_dim": 128,
                                         "proj_hidden_dim": None}


def _ids(*overrides: str) -> dict[str, str]:
    return {s.method: s.run_id for s in specs_for(*overrides)}


def test_run_id_is_stable_and_changes_only_with_what_changes_results():
    base = _ids()
    assert _ids() == base
    # where results go, where data lives, and which executor runs do not change a result
    assert _ids("results.dir=/elsewhere", "data.root=/data") == base
    # training settings change simclr but not raw, which trains nothing
    epochs = _ids("train.epochs=3")
    assert epochs["simclr"] != base["simclr"]
    assert epochs["raw"] == base["raw"]
    # evaluation settings change both
    knn = _ids("eval.knn_k=[10]")
    assert knn["simclr"] != base["simclr"] and knn["raw"] != base["raw"]
    assert _ids("method_cfg.simclr.temperature=0.1")["simclr"] != base["simclr"]
    assert _ids("data.image_size=16")["raw"] != base["raw"]


@pytest.mark.parametrize(("override", "expected"), [
    ("method=simclr,nosuch", "unknown method 'nosuch'; valid methods: .*raw.*simclr"),
    ("dataset=imagenet", "unknown dataset 'imagenet'; valid datasets: .*cifar10"),
    ("backbone.name=vgg", "unknown backbone 'vgg'; valid backbones: resnet18"),
    ("backbone.name=timm:resnett18", "unknown timm model 'resnett18'"),
    ("augment.family=fancy", "unknown augmentation family 'fancy'; valid families: .*simclr"),
    ("augment.flip_p=2", "augment.flip_p must be a probability in \\[0, 1\\], got 2.0"),
    ("eval.metrics=[knn,magic]", "unknown evaluator 'magic'"),
    ("method_cfg.simclr.temprature=0.1", "method_cfg.simclr: unknown key 'temprature'; "
                                         "simclr's keys: temperature"),
    ("method_cfg.simclr.temperature=hot", "method_cfg.simclr.temperature"),
    ("method_cfg.simclrr.temperature=0.1", "method_cfg names unknown method 'simclrr'"),
    ("train.epochs=0", "'train.epochs' must be at least 1, got 0"),
    ("train.batch_size=-4", "'train.batch_size' must be at least 1"),
    ("seeds=[]", "'seeds' is empty"),
    ("seeds=[1,1]", "'seeds' lists a value twice"),
    ("train.optimizer.lr=0", "'train.optimizer.lr' must be a finite number in \\(0, inf\\)"),
    ("name=../escape", "suite name '../escape' must be"),
    ("method=cmc", "method 'cmc' needs images with 3 channels; dataset 'digits' has 1"),
])
def test_bad_grids_are_refused_by_name(override, expected):
    with pytest.raises(UserError, match=expected):
        specs_for(override)


@pytest.mark.parametrize("name", sorted(shipped_suites()))
def test_every_shipped_suite_loads_and_expands(name):
    cfg = load_suite(name)
    specs = expand(cfg)
    variants = sum(len(_variants(cfg, resolve_method(m))) for m in cfg.method)
    assert len(specs) == variants * len(cfg.dataset) * len(cfg.seeds)
    assert cfg.description


def test_sweep_varies_any_key_and_method_keys_only_their_method():
    specs = specs_for("seeds=[0,1]", "sweep={method_cfg.simclr.temperature: [0.1, 0.5], "
                                     "train.epochs: [1, 2]}")
    simclr = [s for s in specs if s.method == "simclr"]
    raw = [s for s in specs if s.method == "raw"]
    assert len(simclr) == 2 * 2 * 2  # temperature x epochs x seeds
    assert len(raw) == 2 * 2  # epochs x seeds: raw has no temperature to vary
    assert {(s.variant["method_cfg.simclr.temperature"], s.variant["train.epochs"])
            for s in simclr} == {(0.1, 1), (0.1, 2), (0.5, 1), (0.5, 2)}
    for s in simclr:
        assert s.config["method_cfg"]["temperature"] == s.variant["method_cfg.simclr.temperature"]
        assert s.config["train"]["epochs"] == s.variant["train.epochs"]
        assert s.config["variant"] == s.variant
    assert len({s.run_id for s in specs}) == len(specs)
    # seeds of one variant share a config_id; variants do not
    assert len({s.config_id for s in simclr}) == 4
    # the variant is hashed even where it changes nothing (raw ignores epochs), so each run
    # stays what the sweep asked for
    assert len({s.run_id for s in raw}) == 4


@pytest.mark.parametrize(("sweep", "expected"), [
    ("{train.epochz: [1]}", "sweep.train.epochz: cannot set 1"),
    ("{train.epochs: [1, abc]}", "sweep.train.epochs: cannot set 'abc'"),
    ("{train.epochs: [0]}", "'train.epochs' must be at least 1"),
    ("{train.optimizer.name: [sgd, rmsprop]}", "'train.optimizer.name' is 'rmsprop'"),
    ("{method_cfg.simclr.temp: [1]}", "method_cfg.simclr: unknown key 'temp'"),
    ("{seeds: [[1]]}", "sweep cannot vary 'seeds'"),
    ("{train.epochs: []}", "sweep.train.epochs lists no values"),
])
def test_bad_sweeps_are_refused(sweep, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        specs_for(f"sweep={sweep}")


def test_the_probe_settings_its_optimizer_ignores_are_not_in_the_run_id():
    (lbfgs,) = specs_for("method=simclr", "seeds=[0]")  # the default probe
    (other,) = specs_for("method=simclr", "seeds=[0]", "eval.linear.lrs=[0.5]",
                         "eval.linear.epochs=3")
    assert other.run_id == lbfgs.run_id  # lbfgs reads neither lrs nor epochs
    (stronger,) = specs_for("method=simclr", "seeds=[0]", "eval.linear.l2=[1.0]")
    assert stronger.run_id != lbfgs.run_id
    (adam,) = specs_for("method=simclr", "seeds=[0]", "eval.linear.optimizer=adam")
    assert adam.run_id != lbfgs.run_id  # another probe is another evaluation
    (same,) = specs_for("method=simclr", "seeds=[0]", "eval.linear.optimizer=adam",
                        "eval.linear.l2=[1.0]", "eval.linear.max_iter=7")
    assert same.run_id == adam.run_id  # adam reads neither l2 nor max_iter


def test_the_thread_count_is_part_of_a_runs_identity():
    """Float sums on the CPU depend on torch's threads: cpu_per_run=2 is another run."""
    (one,) = specs_for("method=simclr", "seeds=[0]")
    (also_one,) = specs_for("method=simclr", "seeds=[0]", "resources.cpu_per_run=1")
    (two,) = specs_for("method=simclr", "seeds=[0]", "resources.cpu_per_run=2")
    assert one.run_id == also_one.run_id  # the default: ids made before it was hashed stay
    assert two.run_id != one.run_id and two.config["threads"] == 2
