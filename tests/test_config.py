"""Loading suites and applying key=value overrides: values land exactly, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crlbench.errors import UserError
from crlbench.loader import load_suite, shipped_suites


def test_overrides_apply_dotted_keys_lists_and_comma_lists():
    cfg = load_suite(None, ["train.epochs=7", "seeds=[0,1,2]", "method=simclr,raw",
                            "dataset=digits", "train.optimizer.lr=0.05", "data.image_size=16",
                            "method_cfg.simclr.temperature=0.2"])
    assert cfg.train.epochs == 7
    assert list(cfg.seeds) == [0, 1, 2]
    assert list(cfg.method) == ["simclr", "raw"]
    assert list(cfg.dataset) == ["digits"]
    assert cfg.train.optimizer.lr == 0.05
    assert cfg.data.image_size == 16
    assert cfg.method_cfg.simclr.temperature == 0.2


def test_shipped_suite_loads_and_command_line_wins():
    assert "quickstart" in shipped_suites()
    cfg = load_suite("quickstart", ["train.epochs=1"])
    assert cfg.name == "quickstart"
    assert cfg.train.epochs == 1
    assert set(cfg.method) == {"raw", "simclr"}


@pytest.mark.parametrize(("override", "expected"), [
    ("train.epochz=3", "unknown config key 'train.epochz'; valid keys under 'train': batch_size"),
    ("foo=1", "unknown config key 'foo'; valid keys: augment, backbone"),
    ("train.optimizer.nam=x", "valid keys under 'train.optimizer': betas"),
    ("train.foo.bar=1", "unknown config key 'train.foo'"),
    ("train.epochs=abc", "'train.epochs' must be an integer, got 'abc'"),
    ("train.compile=maybe", "'train.compile' must be true or false, got 'maybe'"),
    ("train.warmup_epochs=x", "'train.warmup_epochs' must be a number, got 'x'"),
    ("seeds=[a]", "'seeds' must be a list of integers, got 'a'"),
    ("train.optimizer.name=rmsprop", "'train.optimizer.name' is 'rmsprop'; valid choices: sgd, "
                                     "lars, adam, adamw"),
    ("eval.cluster_split=val", "valid choices: all, test"),
    ("train=3", "'train' is a group of keys"),
    ("noequals", "is not of the form key=value"),
    ("method=[simclr", "cannot parse the value of 'method=[simclr'"),
])
def test_bad_overrides_are_named_in_one_line(override, expected):
    with pytest.raises(UserError) as info:
        load_suite(None, [override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_suite_lists_the_shipped_ones():
    with pytest.raises(UserError, match="unknown suite 'nope'; shipped suites: .*quickstart"):
        load_suite("nope")


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntrain:\n  epochs: [1, 2\n")
    with pytest.raises(UserError, match=r"YAML syntax error at line \d+, column \d+"):
        load_suite(str(path))


def test_yaml_is_loaded_safely(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError, match="YAML"):
        load_suite(str(path))


def test_suite_file_errors_name_the_file_and_key(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(UserError, match="suite mine.yaml: unknown config key 'train.epochz'"):
        load_suite(str(path))


def test_scalar_method_in_yaml_means_a_list_of_one(tmp_path: Path):
    path = tmp_path / "one.yaml"
    path.write_text("method: simclr\nseeds: 3\n")
    cfg = load_suite(str(path))
    assert list(cfg.method) == ["simclr"]
    assert list(cfg.seeds) == [3]
    assert cfg.name == "one"


def test_loaded_config_is_read_only():
    cfg = load_suite(None, [])
    with pytest.raises(Exception, match="read-only"):
        cfg.train.epochs = 3


_INT_KEYS = ["train.epochs", "train.batch_size", "eval.batch_size", "eval.kmeans_restarts"]


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(_INT_KEYS),
       value=st.one_of(st.integers(-10**6, 10**6).map(str),
                       st.text(alphabet="abc.-_01", min_size=1, max_size=6)))
def test_an_integer_override_applies_exactly_or_is_refused(key, value):
    try:
        cfg = load_suite(None, [f"{key}={value}"])
    except UserError as e:
        assert key in str(e)
        return
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert node == int(value)


@settings(max_examples=40, deadline=None)
@given(seeds=st.lists(st.integers(0, 10**6), min_size=1, max_size=6))
def test_seed_lists_apply_exactly_in_both_spellings(seeds):
    bracketed = load_suite(None, [f"seeds=[{','.join(map(str, seeds))}]"])
    bare = load_suite(None, [f"seeds={','.join(map(str, seeds))}"])
    assert list(bracketed.seeds) == seeds == list(bare.seeds)


@pytest.mark.parametrize(("value", "expected"), [
    ("010", 10), ("1_000", 1000), ("+5", 5)])
def test_integers_are_decimal_as_in_yaml_1_2(value, expected):
    assert load_suite(None, [f"train.epochs={value}"]).train.epochs == expected


@pytest.mark.parametrize("value", ["0x10", "0o10", "1:30", "yes", "0_", "."])
def test_yaml_1_1_surprises_are_refused_not_reinterpreted(value):
    with pytest.raises(UserError, match="'train.epochs' must be an integer"):
        load_suite(None, [f"train.epochs={value}"])


def test_suite_files_follow_the_same_scalar_rules(tmp_path: Path):
    path = tmp_path / "octal.yaml"
    path.write_text("train:\n  epochs: 010\n  batch_size: 1:30\n")
    with pytest.raises(UserError, match="'train.batch_size' must be an integer, got '1:30'"):
        load_suite(str(path))
    path.write_text("train:\n  epochs: 010\n")
    assert load_suite(str(path)).train.epochs == 10
