"""Linear probe: a softmax-regression layer on frozen, standardised features.

Definition (the linear evaluation protocol of Zhang et al. 2016 / Kolesnikov et al. 2019 as
used by SimCLR, Chen et al. 2020; the README's "Evaluation" section): a linear layer trained
with cross-entropy, once per candidate on a held-out part of train; the candidate with the
best held-out accuracy is retrained on all of train and scored on test. Two ways to train it:

- `adam` / `sgd`: mini-batch epochs, one candidate per learning rate (below);
- `lbfgs`: the L2-regularised multinomial logistic regression solved on the full batch, one
  candidate per strength lambda of the penalty. The objective is the mean cross-entropy plus
  lambda / 2 * ||W||^2 (the bias is not penalised), which is scikit-learn's
  `LogisticRegression(C=1 / (lambda * n))` objective divided by C * n. It is minimised by
  L-BFGS (Liu & Nocedal 1989) with a strong-Wolfe line search, for at most `max_iter`
  iterations (scikit-learn's default is 100), on the device of the features. The candidates
  are solved from the strongest penalty to the weakest, each starting from the previous
  solution (a warm start along the regularisation path), and the retraining on all of train
  starts from the chosen candidate's solution.

Choices made here:
- Standardisation uses the mean and (population) standard deviation of the features the probe
  is fitted on; dimensions that are constant there are only centred.
- The held-out split is stratified: round(val_fraction * n_c) samples of each class c, at least
  one of each class staying in the fitting part.
- Weights and biases start at zero (the problem is convex, and this needs no random numbers);
  weight decay (L2 on the gradient) applies to the weights only; SGD uses momentum 0.9.
- The learning rate decays by a cosine from its value to zero over all the steps; mini-batches
  come from a seeded reshuffle each epoch, the last smaller batch included.
- The sweep trains one probe per learning rate at once, as one matmul over all their columns:
  the probes see the same batches but are otherwise independent.
- Ties in held-out accuracy go to the smaller learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from crlbench.config import PROBE_OPTIMIZERS

# lbfgs stops when no entry of the objective's gradient exceeds this (scikit-learn's default
# `tol` for LogisticRegression, on the same mean objective)
GRAD_TOL = 1e-4


def linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    epochs: int = 100,
    batch_size: int = 1024,
    val_fraction: float = 0.1,
    optimizer: str = "lbfgs",
    weight_decay: float = 0.0,
    l2: Sequence[float] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    max_iter: int = 100,
    seed: int,
) -> dict[str, Any]:
    """Sweep `lrs` (adam, sgd) or `l2` (lbfgs) on a held-out split of train, retrain the best
    on all train, score test.

    Returns {"acc": test accuracy in [0, 1], "lr" or "l2": the chosen candidate, "val_acc":
    {candidate: held-out accuracy}}. Runs on the device of `train_feats`.
    """
    if optimizer not in PROBE_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of "
                         f"{', '.join(PROBE_OPTIMIZERS)}")
    if optimizer == "lbfgs":
        return _lbfgs_probe(train_feats, train_labels, test_feats, test_labels,
                            num_classes=num_classes, l2=l2, max_iter=max_iter,
                            val_fraction=val_fraction, seed=seed)
    if not lrs:
        raise ValueError("linear probe needs at least one learning rate")
    device = train_feats.device
    x = train_feats.float()
    y = train_labels.to(device=device, dtype=torch.long)
    x_test = test_feats.to(device).float()
    y_test = test_labels.to(device=device, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    settings = _Settings(num_classes, epochs, batch_size, optimizer, weight_decay, gen)

    candidates = sorted({float(lr) for lr in lrs})
    fit, val = _held_out(y, val_fraction, gen, "lrs")
    val_acc = _fit_and_score(x[fit], y[fit], x[val], y[val], candidates, settings)
    best = max(range(len(candidates)), key=lambda i: (val_acc[i], -i))
    lr = candidates[best]
    (acc,) = _fit_and_score(x, y, x_test, y_test, [lr], settings)
    return {"acc": acc, "lr": lr, "val_acc": dict(zip(candidates, val_acc, strict=True))}


def stratified_split(
    labels: Tensor, val_fraction: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Indices (fit, held out) with round(val_fraction * n_c) of each class c held out."""
    fit, val = [], []
    for c in torch.unique(labels):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = min(math.floor(val_fraction * len(idx) + 0.5), len(idx) - 1)
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    return torch.cat(fit).sort().values, torch.cat(val).sort().values


def _held_out(y: Tensor, val_fraction: float, gen: torch.Generator,
              swept: str) -> tuple[Tensor, Tensor]:
    """`stratified_split` of the labels `y`, as indices on their device; ValueError when it
    holds out nothing to pick the `swept` candidates on."""
    fit, val = stratified_split(y.cpu(), val_fraction, gen)
    if len(val) == 0:
        raise ValueError(
            f"val_fraction={val_fraction} holds out no sample of {len(y)}; raise it to sweep "
            f"{swept}"
        )
    return fit.to(y.device), val.to(y.device)


def _standardise(fit: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """Standardise both with the statistics of `fit`, and append a constant 1 for the bias."""
    mean = fit.mean(dim=0)
    std = fit.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (
        F.pad((fit - mean) / std, (0, 1), value=1.0),
        F.pad((other - mean) / std, (0, 1), value=1.0),
    )


@dataclass(frozen=True)
class _Settings:
    """How every probe of one linear_probe call is trained (the RNG advances across fits)."""

    num_classes: int
    epochs: int
    batch_size: int
    optimizer: str
    weight_decay: float
    gen: torch.Generator


def _fit_and_score(
    x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor, lrs: list[float], settings: _Settings
) -> list[float]:
    """Train one zero-initialised probe per lr on (x, y); their accuracies on (x_eval, y_eval)."""
    x, x_eval = _standardise(x, x_eval)
    return _accuracies(x_eval, y_eval, _train(x, y, lrs, settings))


def _accuracies(x: Tensor, y: Tensor, weights: Tensor, rows: int = 65536) -> list[float]:
    """The accuracy on (x, y) of each probe of `weights` [D + 1, probes, classes], the rows
    taken in blocks so that one block's logits for every probe fit in memory."""
    flat = weights.flatten(1)
    correct = torch.zeros(weights.shape[1], dtype=torch.long, device=x.device)
    for start in range(0, len(x), rows):
        logits = (x[start : start + rows] @ flat).unflatten(1, weights.shape[1:])
        correct += (logits.argmax(dim=2) == y[start : start + rows, None]).sum(dim=0)
    return [int(c) / len(x) for c in correct.cpu()]


def _train(x: Tensor, y: Tensor, lrs: list[float], settings: _Settings) -> Tensor:
    """Weights [D + 1, probes, classes] (last row: biases) of one probe per learning rate.

    The gradient of the mean cross-entropy and the Adam (Kingma & Ba 2015) / momentum-SGD
    updates are written out rather than left to autograd and torch.optim: all probes then
    update in a few kernels per step instead of a few per probe, which is what keeps small
    probes fast (on the GPU they are launch-bound). Weight decay is L2 added to the gradient,
    as torch.optim's `weight_decay`, and skips the bias row.
    """
    num_classes, epochs, batch_size = settings.num_classes, settings.epochs, settings.batch_size
    optimizer, weight_decay, gen = settings.optimizer, settings.weight_decay, settings.gen
    n, dim = x.shape
    num_probes = len(lrs)
    w = x.new_zeros(dim, num_probes, num_classes)
    lr = torch.tensor(lrs, dtype=x.dtype, device=x.device)[:, None]  # broadcasts over [D, P, C]
    decay = torch.full((dim, 1, 1), weight_decay, dtype=x.dtype, device=x.device)
    decay[-1] = 0.0
    momentum, beta1, beta2, eps = 0.9, 0.9, 0.999, 1e-8
    first = torch.zeros_like(w)  # Adam's first moment, or SGD's momentum buffer
    second = torch.zeros_like(w)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)

    t = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(x.device)
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            # d(mean CE)/d(logits) = (softmax - onehot) / batch, for every probe separately
            grad = (xb @ w.flatten(1)).unflatten(1, (num_probes, num_classes)).softmax(dim=2)
            grad[torch.arange(len(idx), device=x.device), :, yb] -= 1.0
            g = (xb.T @ grad.flatten(1)).view_as(w) / len(idx)
            if weight_decay:
                g += decay * w
            scale = 0.5 * (1.0 + math.cos(math.pi * t / total_steps))  # cosine decay
            t += 1
            if optimizer == "adam":
                first.lerp_(g, 1.0 - beta1)
                second.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                denom = (second / (1.0 - beta2**t)).sqrt_().add_(eps)
                w -= (lr * (scale / (1.0 - beta1**t))) * first / denom
            else:
                first.mul_(momentum).add_(g)
                w -= (lr * scale) * first
    return w


def _lbfgs_probe(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor,
                 test_labels: Tensor, *, num_classes: int, l2: Sequence[float], max_iter: int,
                 val_fraction: float, seed: int) -> dict[str, Any]:
    """The `lbfgs` probe (see the module's docstring)."""
    if not l2 or min(l2) < 0:
        raise ValueError(f"the lbfgs probe needs penalties lambda >= 0, got {list(l2)}")
    device = train_feats.device
    x = train_feats.float()
    y = train_labels.to(device=device, dtype=torch.long)
    fit, val = _held_out(y, val_fraction, torch.Generator().manual_seed(seed), "l2")
    x_fit, x_val = _standardise(x[fit], x[val])
    # strongest penalty first: each solution starts the next, weaker one
    candidates = sorted({float(v) for v in l2}, reverse=True)
    w = x.new_zeros(x_fit.shape[1], num_classes)
    solutions, val_acc = {}, {}
    for lam in candidates:
        w = _solve(x_fit, y[fit], lam, w, max_iter)
        solutions[lam] = w
        (val_acc[lam],) = _accuracies(x_val, y[val], w[:, None])
    best = max(candidates, key=lambda lam: (val_acc[lam], lam))  # ties: the stronger penalty
    x_all, x_test = _standardise(x, test_feats.to(device).float())
    w = _solve(x_all, y, best, solutions[best], max_iter)
    (acc,) = _accuracies(x_test, test_labels.to(device=device, dtype=torch.long), w[:, None])
    return {"acc": acc, "l2": best, "val_acc": {lam: val_acc[lam] for lam in sorted(val_acc)}}


def lbfgs_objective(x: Tensor, y: Tensor, w: Tensor, lam: float) -> Tensor:
    """Mean cross-entropy of the logits x @ w plus lam / 2 * ||w||^2 over all rows of w but
    the last (the bias; x's last column is the constant 1)."""
    return _penalised(x @ w, y, w, lam)


def _penalised(logits: Tensor, y: Tensor, w: Tensor, lam: float) -> Tensor:
    return F.cross_entropy(logits, y) + 0.5 * lam * w[:-1].pow(2).sum()


def _solve(x: Tensor, y: Tensor, lam: float, start: Tensor, max_iter: int,
           tol: float = GRAD_TOL) -> Tensor:
    """Minimise `lbfgs_objective` from `start` with L-BFGS until the largest gradient entry is
    below `tol` or `max_iter` iterations are done; the weights [D + 1, C]."""
    w = start.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, history_size=10,
                            tolerance_grad=tol, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")
    # `lbfgs_objective`, with the logits as (w^T x^T)^T: the narrow matrix on the left, in
    # the forward product and in the backward one (grad^T x), is 2-6x faster on the CPU with
    # MKL for these shapes (N x D times D x C, C small) than x @ w and x^T grad
    xt = x.T.contiguous()

    def closure() -> Tensor:
        opt.zero_grad()
        loss = _penalised((w.T @ xt).T, y, w, lam)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach()

