"""RankMe and the collapse indicator: against plain numpy transcriptions of their definitions,
closed forms, invariances, and as evaluators of a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from crlbench.config import EvalConfig
from crlbench.evaluate import Embeddings
from crlbench.evaluate.labelfree import collapse_std, rankme
from crlbench.resolve import evaluate_named


def rankme_numpy(z: np.ndarray, eps: float = 1e-7) -> float:
    # Garrido et al. 2023, eq. 1: p_k = sigma_k / ||sigma||_1 + eps, exp of the entropy of p
    sigma = np.linalg.svd(z.astype(np.float64), compute_uv=False)
    p = sigma / np.abs(sigma).sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def collapse_numpy(z: np.ndarray) -> float:
    # Chen & He 2021, sec. 4.1: std over samples of each channel of z / ||z||, mean over channels
    normed = z / np.linalg.norm(z, axis=1, keepdims=True)
    return float(normed.std(axis=0).mean() * np.sqrt(z.shape[1]))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 40), d=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_rankme_is_the_papers_formula(n, d, seed):
    z = np.random.default_rng(seed).normal(size=(n, d)) * np.linspace(0.1, 3, d)
    ours = rankme(torch.from_numpy(z).float())
    assert ours == pytest.approx(rankme_numpy(z.astype(np.float32)), rel=1e-6)
    assert 1.0 - 1e-4 <= ours <= min(n, d) + 1e-4


def test_rankme_closed_forms():
    # equal singular values: the full rank min(N, D), up to eps
    q, _ = torch.linalg.qr(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)))
    assert rankme(q) == pytest.approx(8.0, rel=1e-5)
    assert rankme(q.T) == pytest.approx(8.0, rel=1e-5)  # 8 rows of 50 dimensions
    # rank one: every embedding on one line
    line = torch.randn(100, 1) * torch.randn(1, 16)
    assert rankme(line) == pytest.approx(1.0, abs=1e-4)
    # two equal directions among 16
    two = torch.zeros(100, 16)
    two[:50, 3], two[50:, 9] = 2.0, 2.0
    assert rankme(two) == pytest.approx(2.0, abs=1e-4)
    assert math.isnan(rankme(torch.zeros(5, 4)))


def test_rankme_is_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(200, 10, generator=g) * torch.linspace(0.2, 2.0, 10)
    rotation, _ = torch.linalg.qr(torch.randn(10, 10, generator=g))
    assert rankme(z @ rotation) == pytest.approx(rankme(z), rel=1e-5)
    assert rankme(37.0 * z) == pytest.approx(rankme(z), rel=1e-5)


def test_collapse_std_is_its_definition_and_reads_one_and_zero():
    z = np.random.default_rng(2).normal(size=(300, 12)) + 0.5
    assert collapse_std(torch.from_numpy(z)) == pytest.approx(collapse_numpy(z), rel=1e-9)
    # spread over the sphere: about 1 whatever the width; one point: 0
    for d in (16, 256):
        spread = torch.randn(20_000, d, generator=torch.Generator().manual_seed(d))
        assert collapse_std(spread) == pytest.approx(1.0, abs=0.02)
    collapsed = torch.ones(100, 32) * torch.randn(1, 32) * torch.rand(100, 1)
    assert collapse_std(collapsed) == pytest.approx(0.0, abs=1e-6)


def test_both_are_evaluators_that_read_no_labels():
    g = torch.Generator().manual_seed(3)
    train, test = torch.randn(120, 6, generator=g), torch.randn(40, 6, generator=g)
    cfg = OmegaConf.structured(EvalConfig)
    cfg.metrics = ["rankme", "collapse"]
    results = [evaluate_named(Embeddings(train, labels, test, labels[:40], 4), cfg, seed=0)
               for labels in (torch.arange(120) % 4, torch.zeros(120, dtype=torch.long))]
    assert results[0].metrics == results[1].metrics  # labels changed, nothing else
    metrics = results[0].metrics
    assert set(metrics) == {"rankme", "collapse_std"}
    assert metrics["rankme"] == pytest.approx(rankme_numpy(train.numpy()), rel=1e-6)
    assert metrics["collapse_std"] == pytest.approx(collapse_numpy(train.double().numpy()))
    assert results[0].details["rankme"] == {"points": 120, "max": 6}


def test_a_run_names_their_conventions():
    from crlbench.evaluate.conventions import conventions

    ev = OmegaConf.to_container(OmegaConf.structured(EvalConfig))
    ev["metrics"] = ["rankme", "collapse"]
    out = conventions({"eval": ev}, "train", "views")
    assert out["RankMe"].endswith("singular values (+1e-7) of the raw train features")
    assert out["collapse"].startswith("per-dimension std of the L2-normalised train features")
