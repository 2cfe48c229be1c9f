"""The GPU check's CPU part: crlbench without Ray installed, and scripts/gpu_check.sh, its
`prepare` and every step of its `device` part, run here at tiny sizes on the CPU with Ray
hidden, as they will run on a GPU machine that has no Ray, no omegaconf and no network."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from crlbench import registry

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
HIDE_RAY = '''
import sys

class _HideRay:
    """Any import of ray or ray.* fails, as where Ray is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _HideRay())
'''
TINY_RUN = ["suite=quickstart", "method=simclr", "seeds=[0]", "train.epochs=1",
            "backbone.width=8", "eval.linear.epochs=2", "device=cpu"]


@pytest.fixture
def no_ray_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import Ray (a sitecustomize on PYTHONPATH)."""
    hide = tmp_path / "hide_ray"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_RAY)
    env = dict(os.environ, PYTHONPATH=str(hide), TMPDIR=str(tmp_path))
    env.pop("RAY_ADDRESS", None)
    return env


def _crlbench(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crlbench", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_ray_is_really_hidden(no_ray_env, tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=no_ray_env,
                           capture_output=True, text=True)
    assert probe.returncode == 1 and "No module named 'ray'" in probe.stderr


def test_crlbench_runs_and_tabulates_without_ray(no_ray_env, tmp_path):
    store = tmp_path / "results"
    run = _crlbench(["run", *TINY_RUN, "executor=local", f"results.dir={store}"], no_ray_env,
                    tmp_path)
    assert run.returncode == 0, run.stderr
    (record,) = store.glob("quickstart/simclr/digits/*.json")
    assert json.loads(record.read_text())["status"] == "ok"
    for args in (["table", f"results.dir={store}"], ["methods"], ["suites"], ["--help"]):
        out = _crlbench(args, no_ray_env, tmp_path)
        assert out.returncode == 0, (args, out.stderr)


def test_the_ray_executor_without_ray_is_one_line_and_exit_2(no_ray_env, tmp_path):
    store = tmp_path / "results"
    run = _crlbench(["run", *TINY_RUN, f"results.dir={store}"], no_ray_env, tmp_path)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "executor=ray needs Ray" in line and "executor=local" in line
    assert not store.exists()


def _fake_fashion(root: Path) -> Path:
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(root / f"{stem}.gz", "wb") as f:
            f.write(b"not read by prepare")
    return root


def test_prepare_puts_the_wheel_its_commit_and_the_data_in_the_carried_folder(tmp_path):
    carried = tmp_path / "carried"
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_DIR=str(carried),
               GPU_CHECK_OFFLINE="1", FASHION_DIR=str(_fake_fashion(tmp_path)))
    done = subprocess.run(["bash", str(SCRIPT), "prepare"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = carried.glob("wheels/crlbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "crlbench/suites/gpu_smoke.yaml" in names and "crlbench/__main__.py" in names
    assert "crlbench/methods/simclr.py" in names
    points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "crlbench.methods" in zipfile.ZipFile(wheel).read(points).decode()
    assert len((carried / "COMMIT").read_text().strip().split("+")[0]) == 40
    assert sorted(p.name for p in (carried / "data" / "fashion-mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


@pytest.mark.slow
def test_the_device_steps_run_on_the_cpu_without_ray(no_ray_env, tmp_path):
    out = tmp_path / "out"
    env = dict(no_ray_env, OUT=str(out), PYTHON=sys.executable, GPU_CHECK_DEVICE="cpu",
               GPU_CHECK_TINY="1", GPU_CHECK_INSTALL="0", GPU_CHECK_PROCS="2",
               GPU_CHECK_STEPS="env bench smoke")
    done = subprocess.run(["bash", str(SCRIPT), "device"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # at most 8 files come back from the device machine, none in a sub-folder
    assert sorted(p.name for p in out.iterdir()) == [
        "bench.json", "bench.log", "env.json", "smoke-records.tar.gz", "smoke.json",
        "smoke.log"]

    assert json.loads((out / "env.json").read_text())["ray_imported"] is False
    bench = json.loads((out / "bench.json").read_text())
    assert {"throughput", "baseline", "profile", "eval", "fixed_cost"} <= set(bench)

    smoke = json.loads((out / "smoke.json").read_text())
    builtin = {e.name for e in registry.methods.entries() if e.package == "crlbench"}
    assert smoke["ok"] and {r["method"] for r in smoke["runs"]} == builtin
    assert all(r["status"] == "ok" and r["metrics"] for r in smoke["runs"])
    with tarfile.open(out / "smoke-records.tar.gz") as tar:
        records = [n for n in tar.getnames() if n.endswith(".json")]
    assert len(records) == len(builtin) and not any(n.endswith(".pt") for n in records)


def _summary_module():
    spec = importlib.util.spec_from_file_location("gpu_smoke_summary",
                                                  REPO / "scripts" / "gpu_smoke_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(method: str, status: str = "ok", **metrics: float) -> dict:
    return {"method": method, "dataset": "fashion_mnist", "status": status,
            "metrics": metrics or {"linear_acc": 0.5},
            "error": None if status == "ok" else {"message": "CUDA error: boom"},
            "wall_seconds": {"train": 2.0, "evaluate": 1.0}, "train": {"samples_per_s": 9.0},
            "config": {"train": {"precision": "bf16", "compile": True}},
            "environment": {"device_name": "NVIDIA H200"}}


def test_the_smoke_verdict_fails_a_missing_failed_or_non_finite_method(tmp_path, monkeypatch):
    summary = _summary_module()
    builtin = sorted(e.name for e in registry.methods.entries() if e.package == "crlbench")
    records = [_record(m) for m in builtin]
    scans = {"all ok": records,
             "missing": records[1:],
             "failed": [_record(builtin[0], status="failed"), *records[1:]],
             "nan": [_record(builtin[0], linear_acc=float("nan")), *records[1:]]}
    verdicts = {}
    for name, recs in scans.items():
        monkeypatch.setattr(summary, "scan", lambda store, suites, recs=recs:
                            SimpleNamespace(records=recs))
        code = summary.main(tmp_path, tmp_path / f"{name}.json")
        verdicts[name] = (code, json.loads((tmp_path / f"{name}.json").read_text()))
    assert verdicts["all ok"][0] == 0 and verdicts["all ok"][1]["ok"]
    assert verdicts["all ok"][1]["runs"][0]["wall_s"] == 3.0
    assert verdicts["missing"][0] == 1 and verdicts["missing"][1]["missing"] == [builtin[0]]
    for name, problem in (("failed", "CUDA error: boom"), ("nan", "non-finite: linear_acc")):
        code, verdict = verdicts[name]
        assert code == 1 and verdict["failed"] == [builtin[0]]
        assert problem in verdict["runs"][0]["problems"][0]
