"""The Ray executor on a real local Ray (2 CPUs): records land, failures are isolated and
recorded, finished runs are skipped, and records equal the local executor's."""

from __future__ import annotations

import pytest
from test_cli import FAILING  # the same planted failure as the local executor's test

from crlbench.cli import main
from crlbench.errors import UserError
from crlbench.loader import load_suite
from crlbench.store import scan

pytest.importorskip("ray")  # where Ray is not installed (the GPU machine), these cannot run
from crlbench.executors import ray as ray_executor

DYING = """
import os
from dataclasses import dataclass
from crlbench import Method

class Dying(Method):
    '''Kills its own process on its first step (out-of-memory killers do the same).'''
    name = "dying"

    @dataclass
    class Config:
        pass

    def loss(self, views, batch):
        os._exit(3)
"""


@pytest.mark.slow
def test_ray_grid_isolates_failures_skips_finished_runs_and_matches_local(
        tiny, tmp_path, plugin_dir, monkeypatch, capsys):
    plugin_dir("fake-failing", {"failing": "fake_failing:Failing"}, {"fake_failing": FAILING})
    plugin_dir("fake-dying", {"dying": "fake_dying:Dying"}, {"fake_dying": DYING})
    # Ray's workers find the plugins on their path like the driver does
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    store = tmp_path / "results"
    args = ["run", "suite=quickstart", *tiny, "executor=ray", "ray.num_cpus=2", "seeds=[0]"]

    assert main([*args, "method=simclr,failing,dying"]) == 1
    out = capsys.readouterr().out
    assert "1 ok, 2 failed, 0 skipped" in out
    by_method = {r["method"]: r for r in scan(store).records}
    assert by_method["simclr"]["status"] == "ok"
    assert by_method["failing"]["error"]["message"] == "planted failure"
    died = by_method["dying"]
    assert died["status"] == "failed" and died["error"]["type"] == "TrialError"
    assert not (store / ray_executor.SCRATCH).exists()  # Ray's scratch folder is removed

    # a second run of what finished creates no trial (no Ray is even started)
    assert main([*args, "method=simclr"]) == 0
    assert "1 runs, 1 already done, 0 to run" in capsys.readouterr().out

    # the local executor gives the same record for the same spec
    local = tmp_path / "local"
    assert main([*args, "method=simclr", "executor=local", f"results.dir={local}"]) == 0
    (mine,) = [r for r in scan(local).records]
    assert mine["run_id"] == by_method["simclr"]["run_id"]
    assert mine["metrics"] == by_method["simclr"]["metrics"]
    losses = [[epoch["loss"] for epoch in r["history"]] for r in (mine, by_method["simclr"])]
    assert losses[0] == losses[1]  # per-epoch seconds differ; the numbers do not


@pytest.mark.parametrize(("gpus", "per_run", "expected"), [
    (0, 1.0, 0.0),  # no GPU anywhere: trials ask for none instead of waiting forever
    (2, 0.25, 0.25),  # four runs share one GPU
    (1, 2.0, 1.0),  # never more than the cluster has
])
def test_trial_resources_follow_the_gpus_ray_sees(monkeypatch, gpus, per_run, expected):
    monkeypatch.setattr(ray_executor.ray, "cluster_resources", lambda: {"CPU": 2, "GPU": gpus})
    monkeypatch.setattr(ray_executor.ray, "nodes",
                        lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    cfg = load_suite("quickstart", [f"resources.gpu_per_run={per_run}",
                                    "resources.cpu_per_run=2"])
    assert ray_executor._trial_resources(cfg) == {"cpu": 2.0, "gpu": expected}


def test_a_run_asking_for_more_cpus_than_any_node_has_is_refused(monkeypatch):
    """Ray would keep such a trial pending forever without a word."""
    monkeypatch.setattr(ray_executor.ray, "cluster_resources", lambda: {"CPU": 12, "GPU": 0})
    monkeypatch.setattr(ray_executor.ray, "nodes", lambda: [
        {"Alive": True, "Resources": {"CPU": 4.0}}, {"Alive": True, "Resources": {"CPU": 8.0}},
        {"Alive": False, "Resources": {"CPU": 64.0}}])  # a dead node counts for nothing
    fits = load_suite("quickstart", ["resources.cpu_per_run=8"])
    assert ray_executor._trial_resources(fits)["cpu"] == 8.0
    too_many = load_suite("quickstart", ["resources.cpu_per_run=10"])
    with pytest.raises(UserError, match=r"resources.cpu_per_run=10 asks for more CPUs than any "
                                        r"node of the Ray cluster has \(at most 8\)"):
        ray_executor._trial_resources(too_many)


def test_a_suite_asking_for_more_cpus_than_the_local_ray_has_exits_2(tiny, tmp_path, capsys):
    args = ["run", "suite=quickstart", *tiny, "executor=ray", "ray.num_cpus=2", "seeds=[0]",
            "method=simclr", "resources.cpu_per_run=3"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "resources.cpu_per_run=3 asks for more CPUs than any node" in err
    store = tmp_path / "results"
    assert not list(store.rglob("*.json")) and not list(store.rglob("*.claim"))


def test_a_ray_cluster_already_running_here_is_joined_with_a_note(monkeypatch, capsys,
                                                                   tmp_path):
    """`ray start` on the machine: ray.init then refuses to start a local Ray beside it (Ray's
    own message below); the suite joins that cluster instead of crashing with a traceback."""
    calls: list[dict] = []

    def init(**kwargs):
        calls.append(kwargs)
        if "num_cpus" in kwargs:
            raise ValueError("When connecting to an existing cluster, num_cpus and num_gpus "
                             "must not be provided.")

    monkeypatch.setattr(ray_executor.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_executor.ray, "init", init)
    monkeypatch.setattr(ray_executor.ray, "shutdown", lambda: calls.append({"shutdown": True}))
    cfg = load_suite("quickstart", ["ray.num_cpus=2"])
    with ray_executor._ray_session(cfg, tmp_path):
        pass
    assert [c.get("address") for c in calls[:2]] == [None, "auto"]
    assert calls[-1] == {"shutdown": True}  # the driver disconnects; the cluster stays
    assert "joining the Ray cluster already running on this machine" in capsys.readouterr().err

    def broken(**kwargs):
        raise ValueError("object_store_memory is too small")

    monkeypatch.setattr(ray_executor.ray, "init", broken)
    with pytest.raises(ValueError, match="too small"), ray_executor._ray_session(cfg, tmp_path):
        pass  # any other refusal is not hidden


def test_a_ray_address_nothing_answers_at_exits_2_at_once(tiny, tmp_path, capsys, monkeypatch):
    """Before, Ray retried `Failed to connect to GCS` for ever (still running at 200 s)."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    args = ["run", "suite=quickstart", *tiny, "method=raw", "seeds=[0]", "executor=ray"]
    start = time.monotonic()
    assert main([*args, f"ray.address=127.0.0.1:{port}"]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip()
    assert err == (f"crlbench: error: ray.address=127.0.0.1:{port}: nothing answers at "
                   f"127.0.0.1:{port} (Connection refused); start the cluster's head there "
                   "(ray start --head), or leave ray.address empty for a local Ray")
    assert not list((tmp_path / "results").rglob("*.claim"))
    assert not list((tmp_path / "results").rglob("*.json"))
    monkeypatch.setenv("RAY_ADDRESS", "no-port-here")
    assert main(args) == 2
    assert "RAY_ADDRESS=no-port-here is not host:port" in capsys.readouterr().err
