"""Data parallelism inside one run: the collectives a method and the trainer use, each of them the
identity in a single process.

A run on N workers splits every global batch of B samples into N slices of B/N, one per worker,
in order (worker r holds samples r*B/N .. (r+1)*B/N - 1 of the batch). What keeps such a run
equal to one process with batch B (see docs/design.md, "One run on several workers"):

- `gather(x)`: the global batch of a per-sample tensor, in batch order, on every worker, with
  its gradient. A method gathers what a batch-level term reads (the negatives of a contrastive
  loss, Sinkhorn's batch, VICReg's variance and covariance, a cluster's column) and computes the
  loss over the global batch exactly as one process would; a queue or memory bank then takes
  the same global keys on every worker.
- `average_gradients(params)`: after the backward, each gradient is the mean over workers. With
  the collectives' gradient rules below this is the gradient of the one-process loss.
- `convert_batch_norm(module)`: batch norm over the global batch (torch's SyncBatchNorm on
  GPUs; `GlobalBatchNorm`, the same statistics through the collectives here, on the CPU).
- `broadcast_state(module)`: worker 0's parameters and buffers to every worker (after an
  epoch hook such as DeepCluster's k-means, so that workers never drift apart).

Gradient rule. Every worker computes a loss L_r; the trainer minimises the mean of the L_r.
The backward of `gather` and of `all_reduce_sum` sums the incoming gradients over workers, which
is exact for the objective sum_r L_r, and `average_gradients` divides by N. A loss computed on
gathered tensors is the same on every worker (L_r = L), so the result is dL/dtheta; a per-sample
term averaged over the local slice gives the mean of the slice means, the global mean.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

# Set on worker 0 once training is over: it then evaluates alone, every collective the identity
_alone = False


def launched() -> bool:
    """Whether this process is one worker of a run on several (the process group is up)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Workers of this run taking part in collectives: 1 outside a distributed run, and on
    worker 0 after `end_training`."""
    return dist.get_world_size() if launched() and not _alone else 1


def rank() -> int:
    """This worker's index: 0 outside a distributed run."""
    return dist.get_rank() if launched() else 0


def start_run() -> None:
    """Called by worker 0 as a run starts: every worker takes part in collectives again."""
    global _alone
    _alone = False


def end_training(barrier: bool = True) -> None:
    """Called by every worker when the train stage is over (`barrier=False` on worker 0 when
    it told the others there is nothing to train): the others leave, worker 0 goes on alone.
    None then waits in a collective while worker 0 evaluates, however long that takes."""
    global _alone
    if world_size() == 1:
        return
    if barrier:
        dist.barrier()
    _alone = True


def is_main() -> bool:
    """Whether this process evaluates, writes records and checkpoints (worker 0)."""
    return rank() == 0


class _Gather(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradient over workers and returns this
    worker's rows (gloo has no reduce_scatter, so: all_reduce, then slice)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = len(x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather(x: Tensor) -> Tensor:
    """The rows of `x` from every worker, concatenated in worker order (the global batch, in
    batch order), with a gradient to this worker's rows; `x` itself in a single process. Every
    worker must pass a tensor of the same shape."""
    if world_size() == 1:
        return x
    if not x.requires_grad:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    return _Gather.apply(x)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: Tensor) -> Tensor:
    """The sum of `x` over workers, on every worker, with a gradient (see the module's rule);
    `x` in a single process."""
    if world_size() == 1:
        return x
    return _AllReduceSum.apply(x)


@torch.no_grad()
def mean_over_workers(x: Tensor) -> Tensor:
    """The mean of a tensor over workers, without gradient (logged loss terms)."""
    if world_size() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size()


@torch.no_grad()
def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Each gradient replaced by its mean over workers, in one flat all_reduce per dtype and
    device. A parameter without a gradient on this worker counts as a zero gradient there (every
    worker takes part in the same collective); one without a gradient on any worker keeps
    none, as in one process, so that the optimiser skips it (no weight decay, no momentum)."""
    n = world_size()
    if n == 1:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
    for p in params:
        if p.requires_grad:
            groups.setdefault((p.dtype, p.device), []).append(p)
    for (dtype, device), plist in groups.items():
        has = torch.tensor([p.grad is not None for p in plist], dtype=dtype, device=device)
        flat = torch.cat([*((p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                            for p in plist), has])
        dist.all_reduce(flat)  # the gradients' sums, then how many workers had each
        counts = flat[-len(plist):].tolist()
        flat = flat[:-len(plist)] / n
        offset = 0
        for p, count in zip(plist, counts, strict=True):
            size = p.numel()
            p.grad = flat[offset:offset + size].view_as(p).clone() if count else None
            offset += size


@torch.no_grad()
def broadcast_state(module: nn.Module) -> None:
    """Worker 0's parameters and buffers copied to every worker."""
    if world_size() == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def broadcast_object(value):
    """Worker 0's picklable `value` on every worker."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def distributed_section(config: dict, device: torch.device) -> dict:
    """The record's note of how a run on several workers trained (its config has the rest)."""
    workers = world_size()
    return {"workers": workers, "backend": dist.get_backend(),
            "batch_per_worker": config["train"]["batch_size"] // workers,
            "batch_norm": "global batch" if config["distributed"]["sync_bn"] else "per worker",
            "gradients": "mean over workers after the backward (one all_reduce)",
            "device_type": device.type}


class GlobalBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the global batch: per-channel sums
    and sums of squares added up over workers (`all_reduce_sum`, so the gradient flows through
    the statistics as in one process), the biased variance normalising and the unbiased one
    going into the running variance, as torch's BatchNorm does. For the CPU (gloo), where
    torch's SyncBatchNorm does not run; in eval mode it is plain batch norm."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not (self.training and world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        stats = all_reduce_sum(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count[None]]))
        c = x.shape[1]
        total = stats[-1]
        mean = stats[:c] / total
        var = stats[c:2 * c] / total - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                unbiased = var.detach() * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm of `module` turned into global-batch batch norm, its parameters and
    buffers kept (the same tensors): torch's SyncBatchNorm on a GPU, GlobalBatchNorm on the
    CPU. Returns the module (a new one only when `module` itself is a batch norm)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global(module)


def _to_global(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, _to_global(child))
    return module
