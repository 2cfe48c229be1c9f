"""The data-parallel part of `check_method`: two workers compute what one process computes.

For a method that declares `data_parallel = True`, two gloo worker processes on the CPU each
take half of a batch for a few optimiser steps (batch norm over the global batch, gradients
averaged, as the trainer does it) and must end with the loss terms and the state of one
process that took the whole batch. A term that reads only a worker's slice where it should
read the global batch (a contrastive loss without `crlbench.distributed.gather`, a queue fed
with local keys) makes them differ, and the check says where.
"""

from __future__ import annotations

import pickle
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from crlbench import distributed
from crlbench.errors import MethodCheckError
from crlbench.protocol import Batch, EpochLoader, Method
from crlbench.testing import CheckInputs, build_for_check

WORKERS = 2
STEPS = 3
# Float32 sums in another order (batch statistics from sums, gradients averaged after the
# backward) differ by ~1e-6 relative at the first step, and a few large steps of a small
# network amplify that; a term that reads only a worker's slice changes the update itself.
# So: loss terms agree to RTOL, and each state entry's difference is at most UPDATE_RTOL of
# how far the steps moved it (plus ATOL).
RTOL, UPDATE_RTOL, ATOL = 1e-3, 1e-2, 1e-6


def _steps(inputs: CheckInputs) -> tuple[list[dict[str, float]], dict[str, Tensor],
                                         dict[str, Tensor]]:
    """STEPS optimiser steps of a freshly built method on this worker's rows of the batch:
    the loss terms of each step (means over workers), the state before and after."""
    workers, rank = distributed.world_size(), distributed.rank()
    method: Method = build_for_check(inputs.cls, inputs.cfg, inputs.ctx, inputs.width)
    if workers > 1:
        distributed.convert_batch_norm(method, torch.device("cpu"))
    n = len(inputs.indices)
    rows = slice(rank * n // workers, (rank + 1) * n // workers)
    loader = EpochLoader(inputs.loader_images, lambda u: u.float() / 255, 16,
                         torch.device("cpu"))
    groups = method.param_groups() or [{"params": [p for p in method.parameters()
                                                   if p.requires_grad]}]
    optimizer = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
    method.train()
    torch.manual_seed(7)
    method.before_epoch(0, loader)
    distributed.broadcast_state(method)
    before = {k: v.detach().clone() for k, v in method.state_dict().items()}
    logged = []
    for step in range(STEPS):
        torch.manual_seed(100 + step)  # the draws a method makes itself, alike everywhere
        out = method.loss([v[rows] for v in inputs.views], Batch(indices=inputs.indices[rows]))
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        distributed.average_gradients(method.parameters())
        optimizer.step()
        method.after_step(step)
        logged.append({k: float(distributed.mean_over_workers(
            torch.as_tensor(v).detach().float().reshape(()))) for k, v in out.items()})
    after = {k: v.detach().clone() for k, v in method.state_dict().items()}
    return logged, before, after


def _worker(rank: int, init: str, cases: list[CheckInputs], out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORKERS,
                            timeout=timedelta(seconds=300))
    try:
        torch.set_num_threads(1)
        results = [_steps(case) for case in cases]
        if rank == 0:
            torch.save(results, out)
        dist.barrier()  # no worker tears gloo down while another still uses it
    finally:
        dist.destroy_process_group()


def check_data_parallel(cases: list[CheckInputs]) -> None:
    """MethodCheckError unless, for each case, two workers on halves of the batch follow one
    process on all of it, step for step. All cases share one pair of worker processes."""
    for case in cases:
        if len(case.indices) % WORKERS:
            raise ValueError(f"the check's batch of {len(case.indices)} does not split over "
                             f"{WORKERS} workers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: the same float sums
    try:
        single = [_steps(case) for case in cases]
    finally:
        torch.set_num_threads(threads)
    names = ", ".join(sorted({c.cls.__name__ for c in cases}))
    with tempfile.TemporaryDirectory(prefix="crlbench-check-") as tmp:
        out = str(Path(tmp) / "result.pt")
        try:
            mp.start_processes(_worker, args=((Path(tmp) / "rendezvous").as_uri(), cases, out),
                               nprocs=WORKERS, start_method="spawn")
        except mp.ProcessRaisedException as e:
            raise MethodCheckError(f"{names}: two data-parallel workers failed: "
                                   f"{e.msg.strip().splitlines()[-1]}") from None
        except (AttributeError, TypeError, ImportError, pickle.PicklingError) as e:
            raise MethodCheckError(f"{names}: the data-parallel check starts worker processes, "
                                   f"which import the class by name ({e}); define it at the "
                                   "top level of an importable module") from None
        parallel = torch.load(out, weights_only=True)
    for case, one, two in zip(cases, single, parallel, strict=True):
        _compare(case.cls, one, two)


def _compare(cls: type, single: tuple, parallel: tuple) -> None:
    for step, (one, two) in enumerate(zip(single[0], parallel[0], strict=True)):
        for key, value in one.items():
            if abs(value - two[key]) > ATOL + RTOL * abs(value):
                raise _differ(cls, f"loss term {key!r} at step {step}: {value:.6g} in one "
                                   f"process, {two[key]:.6g} over {WORKERS} workers")
    for name, value in single[2].items():
        other = parallel[2][name]
        if value.is_floating_point():
            diff = float((value - other).abs().max())
            moved = float((value - single[1][name]).abs().max())
            if diff > ATOL + UPDATE_RTOL * moved:
                raise _differ(cls, f"state entry {name!r} after {STEPS} steps (largest "
                                   f"difference {diff:.3g}; the steps moved it by {moved:.3g})")
        elif not torch.equal(value, other):
            raise _differ(cls, f"state entry {name!r} after {STEPS} steps")


def _differ(cls: type, what: str) -> MethodCheckError:
    return MethodCheckError(
        f"{cls.__name__} declares data_parallel = True, but {WORKERS} workers on halves of a "
        f"batch differ from one process on the whole batch in {what}: a batch-level term "
        "(negatives, batch statistics, a queue or bank update) reads only the worker's slice; "
        "gather it with crlbench.distributed.gather, or leave data_parallel False")
