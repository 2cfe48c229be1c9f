"""The GPU paths: bf16 autocast, channels_last, torch.compile, uint8 data kept on the device, the
evaluators on CUDA against the CPU, and `crlbench bench` on a GPU. Every test here is marked
`gpu` and skips without CUDA (tests/conftest.py); `pytest -m gpu` runs them on a GPU machine,
as scripts/gpu_check.sh does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from sklearn.datasets import make_blobs

from crlbench.bench import load_bench_config
from crlbench.bench.model import synthetic_images, synthetic_stepper
from crlbench.cli import main
from crlbench.evaluate.clustering import hungarian_accuracy
from crlbench.evaluate.kmeans import kmeans
from crlbench.evaluate.knn import knn_accuracy
from crlbench.evaluate.linear import linear_probe
from crlbench.store import scan

pytestmark = pytest.mark.gpu

TINY_BENCH = ["backbone=convnet_tiny", "batch_size=64", "image_size=16", "steps=3", "warmup=2",
              "eval_sizes=[2000]", "workers=[0]", "profile_steps=2", "device=cuda"]


def _blobs(n: int = 3000, classes: int = 5, dim: int = 32, seed: int = 0):
    x, y = make_blobs(n_samples=n, centers=classes, n_features=dim, cluster_std=2.0,
                      random_state=seed)
    return torch.from_numpy(x).float(), torch.from_numpy(y).long()


def test_bf16_channels_last_compiled_steps_train_on_the_gpu():
    cfg = load_bench_config([*TINY_BENCH, "precision=bf16", "channels_last=true"])
    device = torch.device("cuda")
    images = synthetic_images(cfg, device)
    stepper = synthetic_stepper(cfg, device, images, compile=True)
    assert stepper.amp_dtype is torch.bfloat16 and stepper.channels_last
    conv = next(m for m in stepper.method.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in stepper.method.parameters()]
    gen = torch.Generator(device=device).manual_seed(0)
    for step in range(3):
        idx = torch.randint(len(images), (64,), generator=gen, device=device)
        views = stepper.views(images[idx], gen)
        assert views[0].is_contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert stepper.method.backbone(views[0]).dtype is torch.bfloat16
        terms = stepper.step(views, idx, step)
        assert math.isfinite(float(terms["loss"]))
    after = list(stepper.method.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_a_run_on_the_gpu_keeps_its_images_there_and_records_the_device(tiny):
    args = [a for a in tiny if a != "device=cpu"]
    assert main(["run", "suite=quickstart", *args, "device=cuda", "train.precision=bf16",
                 "train.compile=true", "method=simclr", "seeds=[0]"]) == 0
    store = next(a.split("=", 1)[1] for a in args if a.startswith("results.dir="))
    (record,) = scan(Path(store), ["quickstart"]).records
    assert record["status"] == "ok"
    assert record["environment"]["device"].startswith("cuda")
    assert record["data"]["on_device"] == "cuda"
    assert record["metrics"] and all(math.isfinite(v) for v in record["metrics"].values())


def test_knn_on_the_gpu_equals_the_cpu():
    x, y = _blobs()
    args = (x[:2500], y[:2500], x[2500:], y[2500:])
    cpu = knn_accuracy(*args, ks=(5, 50))
    gpu = knn_accuracy(*(a.cuda() for a in args), ks=(5, 50))
    assert gpu == pytest.approx(cpu, abs=2 / 500)  # a tie may fall the other way


def test_kmeans_on_the_gpu_finds_the_clusters_the_cpu_finds():
    x, y = _blobs()
    cpu_labels, _, cpu_inertia = kmeans(x, 5, restarts=3, seed=0)
    gpu_labels, _, gpu_inertia = kmeans(x.cuda(), 5, restarts=3, seed=0)
    assert hungarian_accuracy(gpu_labels.cpu(), y) == pytest.approx(
        hungarian_accuracy(cpu_labels, y), abs=0.01)
    assert gpu_inertia == pytest.approx(cpu_inertia, rel=1e-3)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_linear_probe_on_the_gpu_scores_as_the_cpu(optimizer):
    x, y = _blobs()
    kwargs = {"num_classes": 5, "lrs": [1e-2], "epochs": 20, "seed": 0, "optimizer": optimizer}
    cpu = linear_probe(x[:2500], y[:2500], x[2500:], y[2500:], **kwargs)
    gpu = linear_probe(*(a.cuda() for a in (x[:2500], y[:2500], x[2500:], y[2500:])), **kwargs)
    assert gpu["acc"] == pytest.approx(cpu["acc"], abs=0.02)


def test_bench_on_the_gpu_compiles_and_counts_host_syncs(tmp_path: Path):
    out = tmp_path / "b.json"
    assert main(["bench", *TINY_BENCH, "parts=[throughput,profile]", f"output={out}"]) == 0
    res = json.loads(out.read_text())
    assert res["environment"]["device"].startswith("cuda")
    compiled = res["throughput"]["compiled"]
    assert compiled["compile"] and compiled["precision"] == "bf16" and compiled["channels_last"]
    assert compiled["images_per_s"] > 0
    assert res["profile"]["compile"] and res["profile"]["host_syncs_per_step"] >= 0
