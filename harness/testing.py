"""`check_method`: the public conformance test every method plugin should pass.

    from crlbench.testing import check_method
    from my_plugin import MyMethod

    def test_protocol():
        check_method(MyMethod)

It builds the method on a tiny backbone and a random batch and checks the protocol of
docs/plugins.md. Each failure raises MethodCheckError with a message saying what is wrong and how to
fix it. `make_context(**fields)` builds the `RunContext` a method is constructed with, for tests
of a method outside a run.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor

from crlbench.backbones import TinyConvNet
from crlbench.errors import MethodCheckError
from crlbench.protocol import Batch, EpochLoader, Method, RunContext


def _fail(cls: type, message: str) -> MethodCheckError:
    return MethodCheckError(f"{cls.__name__}: {message}")


def _check_config(cls: type) -> Any:
    cfg_cls = getattr(cls, "Config", None)
    if cfg_cls is None or not dataclasses.is_dataclass(cfg_cls):
        raise _fail(cls, "Config must be a @dataclass nested in the method class "
                         "(holding the method's hyper-parameters)")
    missing = [f.name for f in dataclasses.fields(cfg_cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _fail(cls, f"Config fields without a default: {', '.join(missing)}; give each the "
                         "paper's value so the method runs without overrides")
    cfg = cfg_cls()
    if cls.presets:
        _check_presets(cls, cfg)
    return cfg


def _check_presets(cls: type, cfg: Any) -> None:
    fields = {f.name for f in dataclasses.fields(cfg)}
    if "preset" not in fields:
        raise _fail(cls, "a method with presets needs a Config field `preset` naming the "
                         "default one")
    for name, values in cls.presets.items():
        unknown = sorted(set(values) - fields)
        if unknown:
            raise _fail(cls, f"preset {name!r} sets {', '.join(unknown)}, which Config does "
                             "not have")
    if cfg.preset not in cls.presets:
        raise _fail(cls, f"Config's default preset {cfg.preset!r} is not one of "
                         f"{', '.join(cls.presets)}")
    differ = sorted(k for k, v in cls.presets[cfg.preset].items() if getattr(cfg, k) != v)
    if differ:
        raise _fail(cls, f"Config's defaults differ from its default preset {cfg.preset!r} in "
                         f"{', '.join(differ)}; make them equal")


def make_context(**fields: Any) -> RunContext:
    """A `RunContext` for building a method outside a run (tests, notebooks).

    Defaults: 32-d features, 4 classes, num_clusters = num_classes, 64 training images, the
    CPU, 2 epochs of 4 steps (total_steps = their product), seed 0, 8 x 8 grey images, no
    normalisation statistics. Any field can be given; num_clusters and total_steps follow the
    fields they derive from unless given too.
    """
    fields.setdefault("num_classes", 4)
    fields.setdefault("num_clusters", fields["num_classes"])
    fields.setdefault("steps_per_epoch", 4)
    fields.setdefault("epochs", 2)
    fields.setdefault("total_steps", fields["steps_per_epoch"] * fields["epochs"])
    defaults = {"feature_dim": 32, "dataset_size": 64, "device": torch.device("cpu"), "seed": 0,
                "image_size": 8, "channels": 1}
    return RunContext(**{**defaults, **fields})


def build_for_check(cls: type, cfg: Any, ctx: RunContext, width: int) -> Method:
    """`cls` built as the checks build it: on a seeded TinyConvNet of `width`."""
    torch.manual_seed(0)
    backbone = TinyConvNet(ctx.channels, width)
    try:
        method = cls(backbone, ctx, cfg)
    except Exception as e:
        raise _fail(cls, f"__init__(backbone, ctx, cfg) raised {type(e).__name__}: {e}") from e
    if not isinstance(method, Method):
        raise _fail(cls, "must subclass crlbench.Method")
    if method.backbone is not backbone:
        raise _fail(cls, "must keep the backbone it is given as self.backbone "
                         "(call super().__init__(backbone, ctx, cfg))")
    return method


def _check_features(cls: type, method: Method, x: Tensor) -> Tensor:
    method.eval()
    with torch.no_grad():
        feats = method.features(x)
    method.train()
    if not isinstance(feats, Tensor) or feats.ndim != 2 or feats.shape[0] != len(x):
        shape = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
        raise _fail(cls, f"features() must return [N, D] for N={len(x)} images, got {shape}")
    if not torch.isfinite(feats).all():
        raise _fail(cls, "features() returned non-finite values on a random batch")
    return feats


def _check_loss(cls: type, method: Method, views: list[Tensor], batch: Batch) -> None:
    out = method.loss(views, batch)
    if not isinstance(out, dict):
        raise _fail(cls, f"loss() must return a dict of tensors, got {type(out).__name__}")
    if "loss" not in out:
        raise _fail(cls, f"loss() returned a dict without 'loss' (keys: {sorted(out)}); put the "
                         "value to minimise under 'loss'")
    for key, value in out.items():
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise _fail(cls, f"loss() entry {key!r} must be a scalar tensor, got "
                             f"{getattr(value, 'shape', type(value).__name__)}")
    loss = out["loss"]
    if not torch.isfinite(loss.detach()):
        raise _fail(cls, f"loss is not finite on a random batch ({loss.detach().item()})")
    if not loss.requires_grad:
        raise _fail(cls, "loss has no gradient: it must be computed from the method's "
                         "parameters (did you detach it or use torch.no_grad?)")


def _check_step(cls: type, method: Method, views: list[Tensor], batch: Batch) -> None:
    groups = method.param_groups() or [{"params": [p for p in method.parameters()
                                                   if p.requires_grad]}]
    before = [p.detach().clone() for p in method.parameters()]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    optimizer.zero_grad()
    method.loss(views, batch)["loss"].backward()
    optimizer.step()
    method.after_step(0)
    if all(torch.equal(b, p) for b, p in zip(before, method.parameters(), strict=True)):
        raise _fail(cls, "one optimiser step changed no parameter: the loss does not depend on "
                         "trainable parameters, or param_groups() leaves them out")


def _check_heads(cls: type, method: Method, feats: Tensor, k: int) -> None:
    if not hasattr(method, "cluster_logits"):
        return
    with torch.no_grad():
        out = method.cluster_logits(feats)
    heads = list(out) if isinstance(out, list | tuple) else [out]
    if not heads:
        raise _fail(cls, "cluster_logits returned no head")
    for i, logits in enumerate(heads):
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != len(feats):
            raise _fail(cls, f"cluster_logits head {i} must be [N, K] for N={len(feats)}")
    # A list of heads may have sizes of its own (e.g. C2BIN's absolute {32, 64, 128}); the
    # `heads` evaluator scores each, and head_* when one has ctx.num_clusters columns.
    if not isinstance(out, list | tuple) and heads[0].shape[1] != k:
        raise _fail(cls, f"cluster_logits returns {heads[0].shape[1]} columns but "
                         f"ctx.num_clusters is {k}; build the head with ctx.num_clusters outputs")


def _check_state_roundtrip(cls: type, method: Method, cfg: Any, ctx: RunContext, width: int,
                           x: Tensor) -> None:
    state = copy.deepcopy(method.state_dict())
    fresh = build_for_check(cls, cfg, ctx, width)
    try:
        fresh.load_state_dict(state)
    except RuntimeError as e:
        raise _fail(cls, f"state_dict() does not load into a fresh instance: {e}") from e
    loaded = fresh.state_dict()
    for name, value in state.items():
        if not torch.equal(value, loaded[name]):
            raise _fail(cls, f"state entry {name!r} differs after load_state_dict")
    method.eval()
    fresh.eval()
    with torch.no_grad():
        if not torch.allclose(method.features(x), fresh.features(x)):
            raise _fail(cls, "features differ after a state_dict round trip: keep all state in "
                             "parameters or registered buffers")


def _perturbed(method: Method) -> Method:
    """A copy of `method` whose every floating-point parameter and buffer is moved away from
    its value (variances only scaled), as a training that touched all of them would."""
    out = copy.deepcopy(method)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, value in out.state_dict().items():
            if value.is_floating_point():
                value.mul_(torch.empty(value.shape).uniform_(0.5, 1.5, generator=gen))
                if not name.endswith("running_var"):
                    value.add_(0.05 * torch.randn(value.shape, generator=gen))
    return out


def _eval_outputs(method: Method, x: Tensor) -> list[Tensor]:
    """Everything evaluation reads from a method: features, heads, its own positive pairs."""
    method.eval()
    with torch.no_grad():
        feats = method.features(x)
        out = [feats]
        if hasattr(method, "cluster_logits"):
            heads = method.cluster_logits(feats)
            out += list(heads) if isinstance(heads, list | tuple) else [heads]
        if hasattr(method, "positive_pairs"):
            out += list(method.positive_pairs(x))
    return out


def _check_kept_state(cls: type, method: Method, cfg: Any, ctx: RunContext, width: int,
                      x: Tensor) -> None:
    """The entries of `kept_state`, loaded into a fresh instance, give the same features,
    heads and positive pairs: a run re-evaluated from its kept weights scores the same."""
    from crlbench.weights import kept_tensors

    trained = _perturbed(method)
    try:
        kept = kept_tensors(trained)
    except ValueError as e:
        raise _fail(cls, f"{e}; kept_state names the state-dict entries evaluation reads") from e
    fresh = build_for_check(cls, cfg, ctx, width)
    fresh.load_state_dict(kept, strict=False)
    for a, b in zip(_eval_outputs(trained, x), _eval_outputs(fresh, x), strict=True):
        if not torch.allclose(a, b):
            raise _fail(cls, f"features, cluster_logits or positive_pairs read state that "
                             f"kept_state {cls.kept_state} leaves out: add its name, or a "
                             f"re-evaluation from kept weights would score another model")


@dataclasses.dataclass
class CheckInputs:
    """What the checks build a method from and feed it: its resolved Config, the context, a
    random batch (images `x`, augmented `views`, sample `indices`) and a training set for
    `before_epoch` (`loader_images`, uint8)."""

    cls: type
    cfg: Any
    ctx: RunContext
    width: int
    x: Tensor
    views: list[Tensor]
    indices: Tensor
    loader_images: Tensor


def check_inputs(cls: type, *, config: dict[str, Any] | None = None, num_clusters: int = 4,
                 batch_size: int = 8, image_size: int = 16, channels: int = 3,
                 width: int = 8) -> CheckInputs:
    """The inputs `check_method` uses for `cls` with these arguments (see there); a method
    whose Config or presets are malformed raises MethodCheckError."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise MethodCheckError(f"{cls!r} must be a class that subclasses crlbench.Method")
    if not isinstance(cls.name, str) or not cls.name:
        raise _fail(cls, "set the class attribute `name` to the method's registry name")
    if cls.input_channels is not None and channels not in cls.input_channels:
        raise ValueError(f"{cls.__name__} accepts {cls.input_channels} input channels; "
                         f"call check_method with one of them, not channels={channels}")
    cfg = _check_config(cls)
    config = dict(config or {})
    if cls.presets and "preset" in config:
        try:
            config = {**cls.preset_values(config["preset"]), **config}
        except ValueError as e:
            raise _fail(cls, str(e)) from None
    if config:
        cfg = dataclasses.replace(cfg, **config)
    ctx = make_context(feature_dim=4 * width, num_classes=num_clusters,
                       dataset_size=4 * batch_size, image_size=image_size, channels=channels,
                       input_mean=(0.5,) * channels, input_std=(0.25,) * channels)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, channels, image_size, image_size, generator=gen)
    indices = torch.randperm(ctx.dataset_size, generator=gen)[:batch_size]
    loader_images = torch.randint(0, 256, (ctx.dataset_size, channels, image_size, image_size),
                                  dtype=torch.uint8, generator=gen)
    views = [torch.randn(batch_size, channels, image_size, image_size, generator=gen)
             for _ in range(cls.num_views if isinstance(cls.num_views, int) else 0)]
    return CheckInputs(cls, cfg, ctx, width, x, views, indices, loader_images)


def check_method(cls: type, *, config: dict[str, Any] | None = None, num_clusters: int = 4,
                 batch_size: int = 8, image_size: int = 16, channels: int = 3,
                 width: int = 8, data_parallel: bool = True) -> None:
    """Check that `cls` follows the method protocol; raise MethodCheckError if not.

    `config` overrides fields of the method's Config (defaults are used otherwise); for a
    method with presets, `config={"preset": name}` checks that preset's values. The presets
    themselves are checked too: they set Config fields only, and the default one equals
    Config's defaults.

    A method that declares `data_parallel = True` is also trained on two worker processes
    (gloo, a few seconds; crlbench.parallel_check), which must compute what one process
    computes; `data_parallel=False` leaves that part out.
    """
    inputs = check_inputs(cls, config=config, num_clusters=num_clusters,
                          batch_size=batch_size, image_size=image_size, channels=channels,
                          width=width)
    cfg, ctx, x = inputs.cfg, inputs.ctx, inputs.x
    method = build_for_check(cls, cfg, ctx, width)
    batch = Batch(indices=inputs.indices)
    loader = EpochLoader(inputs.loader_images, lambda u: u.float() / 255, batch_size,
                         ctx.device)
    feats = _check_features(cls, method, x)
    if cls.trainable:
        if not isinstance(cls.num_views, int) or cls.num_views < 1:
            raise _fail(cls, f"num_views must be a positive int, got {cls.num_views!r}")
        method.train()
        method.before_epoch(0, loader)
        _check_loss(cls, method, inputs.views, batch)
        _check_step(cls, method, inputs.views, batch)
        if cls.data_parallel and data_parallel:
            from crlbench.parallel_check import check_data_parallel  # it builds through here

            check_data_parallel([inputs])
    _check_heads(cls, method, feats, num_clusters)
    _check_state_roundtrip(cls, method, cfg, ctx, width, x)
    _check_kept_state(cls, method, cfg, ctx, width, x)
