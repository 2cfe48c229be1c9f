"""One run on several workers: the collectives against one process, every built-in method's
loss under two gloo workers, whole runs under both launchers (local processes, Ray Train)
against one process, resume, and the settings a user can get wrong."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from crlbench import distributed
from crlbench.augment import Augmenter
from crlbench.cli import main
from crlbench.errors import MethodCheckError
from crlbench.loader import load_suite
from crlbench.methods.simclr import SimCLR
from crlbench.parallel_check import check_data_parallel
from crlbench.protocol import Method
from crlbench.registry import methods
from crlbench.store import scan
from crlbench.suite import expand
from crlbench.testing import check_inputs, check_method

WORKERS = 2


def _rank_main(rank: int, init: str, fn, args: tuple, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORKERS,
                            timeout=timedelta(seconds=120))
    try:
        torch.set_num_threads(1)
        result = fn(*args)
        if rank == 0:
            torch.save(result, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def on_two_workers(fn, *args):
    """fn(*args) on two gloo worker processes; what worker 0 returned."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.pt")
        mp.start_processes(_rank_main, args=((Path(tmp) / "rdzv").as_uri(), fn, args, out),
                           nprocs=WORKERS, start_method="spawn")
        return torch.load(out, weights_only=True)


def _batch_norm_step(x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """A batch norm forward and backward of this worker's half of x (all of it in one
    process), the loss over the gathered output."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    bn = distributed.convert_batch_norm(bn, torch.device("cpu"))
    half = len(x) // distributed.world_size()
    mine = x[distributed.rank() * half:(distributed.rank() + 1) * half].clone().requires_grad_()
    y = distributed.gather(bn(mine))
    (y * w).sum().backward()
    distributed.average_gradients(bn.parameters())
    return {"y": y.detach(), "x_grad": distributed.gather(mine.grad) / distributed.world_size(),
            "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
            "running_mean": bn.running_mean, "running_var": bn.running_var}


def test_global_batch_norm_and_gather_give_one_process_values_and_gradients():
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(8, 3, 4, 4, generator=gen) * 3 + 1, torch.randn(8, 3, 4, 4, generator=gen)
    one = _batch_norm_step(x, w)
    two = on_two_workers(_batch_norm_step, x, w)
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-5, atol=1e-6, msg=key)


def _grads_after_averaging() -> dict[str, torch.Tensor]:
    """a: a gradient on both workers; b: on none; c: on worker 0 only."""
    a, b, c = (nn.Parameter(torch.ones(3)) for _ in range(3))
    loss = (2 * a).sum() + ((4 * c).sum() if distributed.rank() == 0 else 0)
    loss.backward()
    distributed.average_gradients([a, b, c])
    return {"a": a.grad, "b_has_grad": torch.tensor(b.grad is not None), "c": c.grad}


def test_averaged_gradients_are_means_and_none_stays_none_as_in_one_process():
    out = on_two_workers(_grads_after_averaging)
    assert torch.equal(out["a"], torch.full((3,), 2.0))
    assert not out["b_has_grad"]  # the optimiser skips it: no weight decay, no momentum
    assert torch.equal(out["c"], torch.full((3,), 2.0))  # worker 1 counts as a zero


def test_an_augmented_slice_gets_the_rows_of_the_whole_batch():
    images = torch.randint(0, 256, (10, 3, 12, 12), dtype=torch.uint8)
    aug = Augmenter("simclr", 8)
    whole = aug(images, 2, torch.Generator().manual_seed(3))
    part = aug(images[4:7], 2, torch.Generator().manual_seed(3), rows=(4, 10))
    for a, b in zip(whole, part, strict=True):
        torch.testing.assert_close(a[4:7], b)
    with pytest.raises(ValueError, match="not inside a batch of 10"):
        aug(images[4:7], 2, torch.Generator(), rows=(8, 10))


# Variants whose batch-level code differs from the defaults'
VARIANTS = [("cmc", {"loss": "nce"}), ("cmc", {"loss": "triplet"}), ("cmc", {"loss": "spring"}),
            ("cueco", {"negatives": "batch", "symmetric": True}), ("moco_v2", {"symmetric": True}),
            ("cc", {"batchnorm": True}), ("rcc", {"uniformity_on": "instance"}),
            ("npid", {"normaliser": "batch"}), ("c2bin", {"preset": "representation"})]


def test_every_builtin_method_and_variant_computes_on_two_workers_what_one_process_does():
    trainable = [e for e in methods.entries() if e.package == "crlbench" and e.obj.trainable]
    assert all(e.obj.data_parallel for e in trainable)
    cases = [check_inputs(e.obj) for e in trainable]
    cases += [check_inputs(methods.get(name), config=config) for name, config in VARIANTS]
    check_data_parallel(cases)  # one pair of worker processes for all of them


class SliceSimCLR(SimCLR):
    """SimCLR whose negatives are this worker's slice only (the mistake the check is for)."""

    name = "slice_simclr"

    def loss(self, views, batch):
        from crlbench.methods.losses import nt_xent

        z1, z2 = (self.projector(self.backbone(v)) for v in views)
        return {"loss": nt_xent(z1, z2, self.cfg.temperature)}


class LocalMean(Method):
    """A per-sample loss (right under data parallelism) and a buffer that follows the mean of
    the worker's own slice (wrong: workers drift apart)."""

    name = "local_mean"
    num_views = 1
    data_parallel = True

    @dataclass
    class Config:
        pass

    def __init__(self, backbone, ctx, cfg):
        super().__init__(backbone, ctx, cfg)
        self.register_buffer("seen", torch.zeros(ctx.feature_dim))

    def loss(self, views, batch):
        h = self.backbone(views[0])
        self.seen.copy_(h.detach().mean(dim=0))
        return {"loss": h.pow(2).mean()}


@pytest.mark.parametrize(("cls", "where"), [(SliceSimCLR, "loss term 'loss' at step 0"),
                                            (LocalMean, "state entry 'seen'")])
def test_check_method_refuses_a_data_parallel_method_that_reads_only_its_slice(cls, where):
    with pytest.raises(MethodCheckError, match=f"declares data_parallel = True.*{where}"):
        check_method(cls)


TWO = ["distributed.workers=2", "dataset=digits_rgb", "eval.metrics=[knn,kmeans]",
       "train.epochs=1"]


def _by_method(store: Path) -> dict[str, dict]:
    return {r["method"]: r for r in scan(store).records}


@pytest.mark.slow
def test_every_builtin_method_trains_and_evaluates_on_two_workers_as_in_one_process(
        tiny, tmp_path):
    names = [e.name for e in methods.entries() if e.package == "crlbench" and e.obj.trainable]
    args = ["run", "suite=quickstart", *tiny, *TWO, "seeds=[0]", f"method={','.join(names)}"]
    assert main(args) == 0
    assert main([*args, "distributed.workers=1", f"results.dir={tmp_path / 'one'}"]) == 0
    two, one = _by_method(tmp_path / "results"), _by_method(tmp_path / "one")
    assert sorted(two) == sorted(one) == sorted(names)
    for name in names:
        a, b = one[name], two[name]
        assert b["status"] == "ok" and b["distributed"]["workers"] == 2, name
        assert b["distributed"]["batch_per_worker"] == 64 and "distributed" not in a
        assert b["run_id"] != a["run_id"]  # the worker count is part of the identity
        torch.testing.assert_close(b["history"][0]["loss"], a["history"][0]["loss"],
                                   rtol=1e-3, atol=1e-5, msg=name)
        assert abs(b["metrics"]["knn5_acc"] - a["metrics"]["knn5_acc"]) <= 0.02, name


FAIL_ONCE = """
import os
from pathlib import Path
from crlbench.methods.simclr import SimCLR

class FailOnce(SimCLR):
    name = "fail_once"

    def before_epoch(self, epoch, loader):
        if epoch == 1 and Path(os.environ["CRLBENCH_TEST_MARKER"]).exists():
            raise RuntimeError("planted failure in epoch 2")
"""


@pytest.mark.slow
def test_a_two_worker_run_that_failed_resumes_from_worker_0s_checkpoint(
        tiny, tmp_path, plugin_dir, monkeypatch):
    plugin_dir("fake-fail-once", {"fail_once": "fake_fail_once:FailOnce"},
               {"fake_fail_once": FAIL_ONCE})
    marker = tmp_path / "marker"
    marker.touch()
    monkeypatch.setenv("CRLBENCH_TEST_MARKER", str(marker))
    args = ["run", "suite=quickstart", *tiny, *TWO, "train.epochs=2", "seeds=[0]",
            "method=fail_once"]
    assert main(args) == 1
    (failed,) = scan(tmp_path / "results").records
    assert failed["status"] == "failed"
    assert "planted failure in epoch 2" in failed["error"]["message"]
    marker.unlink()
    assert main(args) == 0
    (resumed,) = scan(tmp_path / "results").records
    assert resumed["train"]["resumed_from_epoch"] == 1
    assert main([*args, f"results.dir={tmp_path / 'straight'}"]) == 0
    (straight,) = scan(tmp_path / "straight").records
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert resumed["metrics"] == straight["metrics"]


SLOW_EVALUATOR = '''
import time

def slow(emb, cfg, seed):
    """Takes longer than the collectives' timeout."""
    time.sleep(10)
    return {"slow_score": 1.0}, {}
'''


@pytest.mark.slow
def test_worker_0_evaluates_alone_however_long_it_takes(tiny, tmp_path, plugin_dir):
    plugin_dir("fake-slow-eval", {"slow": "fake_slow_eval:slow"},
               {"fake_slow_eval": SLOW_EVALUATOR}, group="crlbench.evaluators")
    assert main(["run", "suite=quickstart", *tiny, *TWO, "seeds=[0]", "method=simclr",
                 "eval.metrics=[knn,slow]", "distributed.timeout_s=5"]) == 0
    (record,) = scan(tmp_path / "results").records
    assert record["metrics"]["slow_score"] == 1.0 and record["distributed"]["workers"] == 2


@pytest.mark.slow
def test_ray_train_runs_a_two_worker_run_as_the_local_processes_do(tiny, tmp_path):
    args = ["run", "suite=quickstart", *tiny, *TWO, "seeds=[0]", "method=simclr"]
    assert main([*args, "executor=ray", "ray.num_cpus=2", "resources.cpu_per_run=0.5"]) == 0
    assert main([*args, f"results.dir={tmp_path / 'local'}"]) == 0
    (ray_record,) = scan(tmp_path / "results").records
    (local,) = scan(tmp_path / "local").records
    assert ray_record["run_id"] == local["run_id"]
    assert ray_record["distributed"] == local["distributed"]
    assert [h["loss"] for h in ray_record["history"]] == [h["loss"] for h in local["history"]]
    assert ray_record["metrics"] == local["metrics"]


def test_a_ray_cluster_without_room_for_the_workers_exits_2(tiny, capsys):
    args = ["run", "suite=quickstart", *tiny, *TWO, "seeds=[0]", "method=simclr",
            "executor=ray", "ray.num_cpus=1"]
    assert main(args) == 2
    assert "needs 2.01 CPUs, and the Ray cluster has 1" in capsys.readouterr().err


NO_DP = """
from crlbench.methods.simclr import SimCLR

class Plain(SimCLR):
    name = "plain"
    data_parallel = False
"""


@pytest.mark.parametrize(("overrides", "message"), [
    (["distributed.workers=2", "train.batch_size=127"],
     "train.batch_size=127 does not split over 2 workers"),
    (["resources.gpu_per_run=1.5"], "must be a whole number of GPUs"),
    (["resources.gpu_per_run=2", "distributed.workers=3"], "disagree"),
    (["distributed.workers=2", "resources.gpu_per_run=0.5"], "needs a GPU of its own"),
    (["distributed.workers=2", "distributed.backend=nccl"], "nccl needs GPUs"),
    (["distributed.workers=0"], "'distributed.workers' must be at least 1"),
    (["distributed.backend=mpi"], "valid choices: auto, nccl, gloo"),
    (["distributed.workers=2", "method=plain"], "does not support data parallelism"),
])
def test_distributed_settings_a_user_can_get_wrong_exit_2(tiny, plugin_dir, capsys, overrides,
                                                          message):
    plugin_dir("fake-plain", {"plain": "fake_plain:Plain"}, {"fake_plain": NO_DP})
    assert main(["run", "suite=quickstart", *tiny, *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_workers_on_more_gpus_than_this_machine_has_exit_2(tiny, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    tiny = [o for o in tiny if o != "device=cpu"]
    assert main(["run", "suite=quickstart", *tiny, "distributed.workers=2", "seeds=[0]",
                 "method=simclr"]) == 2
    assert "distributed.workers=2 GPUs, and this machine has 1" in capsys.readouterr().err


def test_workers_pinned_to_one_gpu_exit_2(tiny, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    tiny = [o for o in tiny if o != "device=cpu"]
    assert main(["run", "suite=quickstart", *tiny, "distributed.workers=2", "device=cuda:1",
                 "seeds=[0]", "method=simclr"]) == 2
    err = capsys.readouterr().err.strip()
    assert "device=cuda:1 names one GPU" in err and "\n" not in err


def test_one_worker_runs_keep_their_ids_and_gpu_per_run_asks_for_workers():
    one = {s.run_id for s in expand(load_suite("quickstart"))}
    also_one = {s.run_id for s in expand(load_suite("quickstart", ["distributed.sync_bn=false"]))}
    assert one == also_one  # batch norm per worker means nothing to one worker
    specs = expand(load_suite("quickstart", ["resources.gpu_per_run=2"]))
    trained = [s for s in specs if s.plugin.obj.trainable]
    assert {s.config["distributed"]["workers"] for s in trained} == {2}
    assert not {s.run_id for s in trained} & one
    untrained = [s for s in specs if not s.plugin.obj.trainable]
    assert untrained and {s.config["distributed"]["workers"] for s in untrained} == {1}
