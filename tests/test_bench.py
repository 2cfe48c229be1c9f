"""`crlbench bench` on the CPU at tiny sizes: it measures every part and writes its JSON; bad
overrides are one-line errors; the targets are judged only on their own device and setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlbench.bench import load_bench_config
from crlbench.bench.targets import judge
from crlbench.cli import main

TINY = ["backbone=convnet_tiny", "batch_size=16", "image_size=16", "steps=2", "warmup=1",
        "eval_sizes=[300]", "compile=false", "device=cpu", "stream_images=24",
        "stream_batch=8", "stream_source_size=[64,48]", "stream_side=32"]


def test_bench_measures_everything_and_writes_json(tmp_path: Path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "workers=[0,1]", f"output={out}"]) == 0
    assert str(out) in capsys.readouterr().out
    res = json.loads(out.read_text())

    assert res["command"].startswith("crlbench bench backbone=convnet_tiny")
    assert f"output={out}" in res["command"]
    env = res["environment"]
    assert env["device"] == "cpu" and env["device_name"] and env["cpu_count"] >= 1
    assert env["torch"] and env["torchvision"] and env["python"] and env["crlbench"]
    assert res["config"]["batch_size"] == 16 and res["compile"] is False

    eager = res["throughput"]["eager"]
    assert eager["images_per_s"] > 0 and eager["noaug_images_per_s"] > 0
    assert eager["seconds"] > 0 and eager["precision"] == "fp32"
    assert res["throughput"]["compiled"] is None
    runs = res["baseline"]["runs"]
    assert [r["workers"] for r in runs] == [0, 1]
    assert all(r["images_per_s"] > 0 and r["ratio"] > 0 for r in runs)

    (size,) = res["eval"]["sizes"]
    assert size["features"] == 300 and size["train"] + size["test"] == 300
    assert set(size["seconds"]) == {"knn", "linear", "kmeans", "geometry", "retrieval"}
    assert all(s >= 0 for s in size["seconds"].values()) and size["total_s"] > 0
    assert "heads" in size["skipped"]
    # scikit-learn beside each evaluator that has a counterpart, on the same features
    assert res["eval"]["peer"] == "scikit-learn" and res["eval"]["threads"] >= 1
    peers = size["peers"]
    assert set(peers) == {"linear", "kmeans", "knn", "retrieval"}
    assert all(p["peer_seconds"] > 0 and p["ratio"] > 0 for p in peers.values())
    # kNN and retrieval: the same neighbours, the same vote, so the same numbers
    for name in ("knn", "retrieval"):
        for m, v in peers[name]["metrics"].items():
            assert v["ours"] == pytest.approx(v["peer"], abs=1 / size["test"]), m
    km = peers["kmeans"]["metrics"]["kmeans_inertia"]
    assert km["ours"] <= km["peer"] * 1.01

    prof = res["profile"]
    assert set(prof["phases_s"]) == {"data", "augment", "forward", "backward", "optimizer"}
    assert all(s > 0 for s in prof["phases_s"].values())
    assert sum(prof["shares"].values()) == pytest.approx(1.0)
    assert prof["cut_step_s"] == pytest.approx(sum(prof["phases_s"].values()))
    assert prof["step_s"] > 0 and prof["host_syncs_per_step"] is None  # counted on a GPU only

    fixed = res["fixed_cost"]
    assert fixed["dataset"] == "digits" and fixed["total_s"] > 0
    assert set(fixed["seconds"]) == {"device_init", "data", "build", "first_step"}

    stream = res["stream"]
    assert stream["generated"] and stream["images"] == 24 and stream["side"] == 32
    assert [r["workers"] for r in stream["runs"]] == [0, 1]
    assert all(r["harness_images_per_s"] > 0 and r["torchvision_images_per_s"] > 0
               for r in stream["runs"])
    assert stream["mean_abs_difference"] < 8  # the same images, resized by other code

    status = {t["name"]: t["status"] for t in res["targets"]}
    assert status["train_eager"].startswith("not applicable")
    assert status["cpu_fixed_cost_s"] in ("pass", "fail")
    assert status["cpu_stream_speedup"] in ("pass", "fail")


def test_the_stream_part_reads_a_given_folder(tmp_path: Path, capsys):
    from crlbench.bench.stream import write_jpegs

    write_jpegs(tmp_path / "folder", 12, (40, 30), classes=3, seed=0)
    out = tmp_path / "b.json"
    assert main(["bench", "parts=[stream]", "workers=[0]", "stream_batch=5", "stream_side=16",
                 f"stream_folder={tmp_path / 'folder'}", f"output={out}"]) == 0
    assert "streaming a folder, decoded images/s (12 images of" in capsys.readouterr().out
    stream = json.loads(out.read_text())["stream"]
    assert not stream["generated"] and stream["folder"] == str(tmp_path / "folder")
    assert stream["images"] == 12 and stream["runs"][0]["workers"] == 0


def test_the_evaluation_part_at_a_thread_count_with_growth_per_evaluator(tmp_path: Path):
    import torch

    out = tmp_path / "e.json"
    before = torch.get_num_threads()
    assert main(["bench", "parts=[eval]", "eval_sizes=[300,600]", "threads=1", "peers=false",
                 "device=cpu", f"output={out}"]) == 0
    assert torch.get_num_threads() == before  # restored after the benchmark
    ev = json.loads(out.read_text())["eval"]
    assert ev["threads"] == 1 and ev["peer"] is None and "peers" not in ev["sizes"][0]
    (step,) = ev["growth"]
    assert (step["from"], step["to"]) == (300, 600)
    assert set(step["evaluators"]) == {"knn", "linear", "kmeans", "geometry", "retrieval"}


def test_the_profile_alone_warms_up_its_own_stepper(tmp_path: Path):
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "parts=[profile]", "profile_steps=2", f"output={out}"]) == 0
    res = json.loads(out.read_text())
    assert "throughput" not in res and "baseline" not in res
    assert res["profile"]["steps"] == 2 and res["profile"]["compile"] is False


def test_the_thread_part_times_each_phase_at_each_count(tmp_path: Path, capsys):
    import torch

    out = tmp_path / "t.json"
    before = torch.get_num_threads()
    assert main(["bench", *TINY, "parts=[threads]", "profile_steps=2", "thread_counts=[1,2]",
                 f"output={out}"]) == 0
    assert torch.get_num_threads() == before
    res = json.loads(out.read_text())
    assert res["threads_used"] == 1  # a run's default resources.cpu_per_run
    th = res["threads"]
    assert [r["threads"] for r in th["rows"]] == [1, 2]
    for row in th["rows"]:
        assert row["augment_s"] > 0 and row["model_s"] > 0
        assert row["step_s"] == pytest.approx(row["augment_s"] + row["model_s"])
    by = {r["threads"]: r for r in th["rows"]}
    for key in ("augment", "model", "step"):
        assert by[th["fastest"][key]][f"{key}_s"] == min(r[f"{key}_s"] for r in th["rows"])
    best = min(r["step_s"] for r in th["rows"])
    split = min(r["augment_s"] for r in th["rows"]) + min(r["model_s"] for r in th["rows"])
    assert th["split_gain"] == pytest.approx(best / split) and th["split_gain"] >= 1.0
    shown = capsys.readouterr().out
    assert "torch threads: 1" in shown and "a split would gain" in shown


def test_default_thread_counts_double_up_to_the_cores():
    from crlbench.bench.threads import default_counts

    assert default_counts(1) == [1] and default_counts(2) == [1, 2]
    assert default_counts(6) == [1, 2, 4, 6] and default_counts(16) == [1, 2, 4, 8, 16]


def test_phases_of_a_step_are_the_step(tmp_path: Path):
    """forward + backward + update is exactly `step`: the same parameters after either."""
    import torch

    from crlbench.bench.model import synthetic_images, synthetic_stepper

    cfg = load_bench_config(TINY)
    device = torch.device("cpu")
    images = synthetic_images(cfg, device)
    params = []
    for phased in (False, True):
        torch.manual_seed(0)
        stepper = synthetic_stepper(cfg, device, images, compile=False)
        views = stepper.layout([stepper.setup.prepare(images[:16])] * 2)
        idx = torch.arange(16)
        if phased:
            out, terms = stepper.forward(views, idx, 0)
            stepper.backward(out)
            stepper.update(0)
        else:
            terms = stepper.step(views, idx, 0)
        params.append(torch.cat([p.detach().flatten() for p in stepper.method.parameters()]))
        assert torch.isfinite(terms["loss"])
    assert torch.equal(params[0], params[1])


@pytest.mark.parametrize(("arg", "expected"), [
    ("batchsize=3", "unknown config key 'batchsize'"),
    ("profile_steps=0", "'profile_steps' must be >= 1"),
    ("batch_size=many", "'batch_size' must be an integer"),
    ("workers=[a]", "workers"),
    ("steps=0", "'steps' must be >= 1"),
    ("parts=[speed]", "'parts' must be"),
    ("method=nosuch", "unknown method 'nosuch'"),
    ("threads=0", "'threads' must be at least 1"),
    ("thread_counts=[0]", "'thread_counts' must be counts >= 1"),
    ("stream_source_size=[64]", "'stream_source_size' must be [width, height]"),
    ("stream_folder=/nonexistent/folder", "'stream_folder' /nonexistent/folder is not a folder"),
])
def test_bad_overrides_exit_2_with_one_line(arg, expected, tmp_path, capsys):
    assert main(["bench", arg, f"output={tmp_path}/b.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "b.json").exists()


def test_targets_are_judged_only_on_their_device_and_setting():
    cfg = load_bench_config([])  # the H100 target setting
    results = {"throughput": {"eager": {"images_per_s": 25_000, "augment_share": 0.2},
                              "compiled": {"images_per_s": 29_000, "augment_share": 0.1}},
               "baseline": {"runs": [{"workers": 16, "ratio": 4.5}]},
               "eval": {"sizes": [{"features": 70_000, "total_s": 12.0}]},
               "fixed_cost": {"total_s": 3.0}}
    status = {t["name"]: t["status"] for t in judge(cfg, "cuda", results)}
    assert status["train_eager"] == "pass" and status["train_compiled"] == "fail"
    assert status["baseline_ratio_16"] == "pass" and status["eval_70k_s"] == "pass"
    assert status["augment_share_eager"] == "fail"
    assert status["augment_share_compiled"] == "pass"
    assert status["cpu_fixed_cost_s"].startswith("not applicable: stated for cpu")
    assert status["cpu_baseline_ratio"].startswith("not applicable: stated for cpu")

    tiny = load_bench_config(["backbone=convnet_tiny"])
    runs = {"baseline": {"runs": [{"workers": 0, "ratio": 1.6}, {"workers": 2, "ratio": 1.2}]}}
    (row,) = [t for t in judge(tiny, "cpu", runs) if t["name"] == "cpu_baseline_ratio"]
    assert row["measured"] == 1.2 and row["status"] == "fail"  # against the fastest DataLoader

    small = load_bench_config(["batch_size=256"])
    status = {t["name"]: t["status"] for t in judge(small, "cuda", results)}
    assert status["train_eager"] == "not applicable: setting differs (batch_size=256)"
    assert status["eval_70k_s"] == "pass"  # the evaluation's setting does not involve the batch


@pytest.mark.parametrize(("args", "expected"), [
    (["eval.knn_k=[0]"], "'eval.knn_k' must list values of at least 1"),
    (["eval.kmeans_restarts=0"], "'eval.kmeans_restarts' must be at least 1"),
    (["eval.metrics=[knn,nosuch]"], "unknown evaluator 'nosuch'"),
    (["method=cmc", "channels=1"], "method 'cmc' needs images with 3 channels; channels gives 1"),
    (["method=cmc"], "dataset digits gives 1 (set channels=3, dataset=digits_rgb)"),
])
def test_bench_refuses_what_a_suite_refuses_before_measuring(args, expected, tmp_path, capsys):
    assert main(["bench", *TINY, *args, f"output={tmp_path}/b.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "b.json").exists()


def test_bench_times_cmc_on_colour_data(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "method=cmc", "dataset=digits_rgb", "parts=[fixed,throughput]",
                 f"output={out}"]) == 0
    assert json.loads(out.read_text())["throughput"]["eager"]["images_per_s"] > 0
