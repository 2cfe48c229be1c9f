"""Overrides apply exactly: a set of `key=value` overrides is applied whole or refused whole,
expansion is a product with unique ids whatever their order, and interpolations resolve."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from crlbench.errors import UserError
from crlbench.loader import load_suite
from crlbench.suite import expand

OVERRIDES = {
    "train.epochs": (st.integers(1, 500).map(str), st.sampled_from(["x", "1.5", "-"])),
    "train.optimizer.lr": (st.floats(1e-5, 10).map(lambda v: f"{v:.6g}"),
                           st.sampled_from(["fast", "[1]"])),
    "train.compile": (st.sampled_from(["true", "false"]), st.sampled_from(["maybe", "2"])),
    "augment.family": (st.sampled_from(["simclr", "byol", "crop", "none"]),
                       st.sampled_from(["[a]"])),
    "eval.knn_k": (st.lists(st.integers(1, 300), min_size=1, max_size=3).map(
        lambda ks: "[" + ",".join(map(str, ks)) + "]"), st.sampled_from(["[a]", "[1,b]"])),
}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_set_of_overrides_applies_exactly_or_is_refused_whole(data):
    chosen = data.draw(st.lists(st.sampled_from(sorted(OVERRIDES)), min_size=1, max_size=4,
                                unique=True))
    items, bad = [], []
    for key in chosen:
        good_values, bad_values = OVERRIDES[key]
        if data.draw(st.booleans()):
            items.append((key, data.draw(bad_values)))
            bad.append(key)
        else:
            items.append((key, data.draw(good_values)))
    try:
        cfg = load_suite("quickstart", [f"{k}={v}" for k, v in items])
    except UserError as e:
        assert bad and any(key in str(e) for key in bad)
        return
    assert not bad
    for key, value in items:
        node = cfg
        for part in key.split("."):
            node = node[part]
        got = list(node) if key == "eval.knn_k" else node
        expected = {"true": True, "false": False}.get(value, value)
        if key == "eval.knn_k":
            expected = json.loads(value)
        elif key == "train.epochs":
            expected = int(value)
        elif key == "train.optimizer.lr":
            expected = float(value)
        assert got == expected, key


@settings(max_examples=25, deadline=None)
@given(seeds=st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True),
       methods=st.lists(st.sampled_from(["raw", "simclr", "cc"]), min_size=1, max_size=3,
                        unique=True),
       rhos=st.lists(st.sampled_from([1, 10, 100]), max_size=2, unique=True))
def test_suite_expansion_is_a_product_with_unique_ids_whatever_the_override_order(
        seeds, methods, rhos):
    overrides = [f"seeds=[{','.join(map(str, seeds))}]", f"method=[{','.join(methods)}]",
                 f"variant.imbalance=[{','.join(map(str, rhos))}]"]
    specs = expand(load_suite("quickstart", overrides))
    assert len(specs) == len(seeds) * len(methods) * max(1, len(rhos))
    assert len({s.run_id for s in specs}) == len(specs)
    again = expand(load_suite("quickstart", overrides[::-1]))
    assert [s.run_id for s in again] == [s.run_id for s in specs]


def test_interpolations_pass_the_boolean_check_and_resolve(tmp_path):
    cfg = load_suite("quickstart", ["data.download=${data.use_unlabeled}",
                                    "train.epochs=${train.batch_size}"])
    assert cfg.data.download is True and cfg.train.epochs == cfg.train.batch_size
    from crlbench.bench import load_bench_config

    assert load_bench_config(["warmup=${steps}", "steps=7"]).warmup == 7
