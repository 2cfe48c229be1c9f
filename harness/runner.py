"""One run, start to end, in stages: data -> build -> train -> embed -> evaluate.

Each stage fills its section of the record (`data`, `method_details`, `train`, the metrics);
the embed stage computes, beyond the features, the inputs that the run's evaluators declare
(`crlbench.evaluate.INPUTS`), so the runner names no particular evaluator. The spec arrives
resolved (its method class, dataset source and evaluators), and the dataset comes from the
executor's cache. `execute(spec, store)` never raises for a failed run (except
KeyboardInterrupt): it returns the record, with status "failed" and the error when something
broke, after writing it to the store. Executors call it; it knows nothing about how runs are
scheduled.

The train stage trains and keeps the weights, or, when the store has the kept weights of the
same training (crlbench.evaluations), loads them instead; with eval.every it also records
learning curves. The run's loggers (crlbench.tracking) see each epoch and the final record.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from crlbench import distributed
from crlbench.augment import Augmenter
from crlbench.backbones import build_backbone
from crlbench.data import DatasetCache, ImageData, long_tail_indices
from crlbench.data.stream import ImageFiles, ranges, read_batches, reader_of, select
from crlbench.distributed import convert_batch_norm, distributed_section
from crlbench.environment import environment
from crlbench.errors import NonFiniteLoss, StoreWriteError
from crlbench.evaluate import Embeddings, cluster_split, evaluate, evaluator_needs
from crlbench.evaluate.conventions import conventions, trained_on
from crlbench.evaluate.evaluators import sample_rows
from crlbench.evaluations import (
    KeptWeights,
    find_kept,
    remove_superseded,
    supersede,
    trained_in,
)
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.protocol import Method, RunContext
from crlbench.seeding import derive_seed, seed_everything
from crlbench.store import (
    SCHEMA_VERSION,
    checkpoint_dir,
    is_done,
    read_record,
    record_path,
    write_record,
)
from crlbench.suite import RunSpec
from crlbench.tracking import Trackers
from crlbench.train import TrainResult, TrainSetup, steps_per_epoch, train
from crlbench.validate import check_batch_fits, check_long_tail_source
from crlbench.weights import load_weights, save_weights, weights_path

# keep a dataset on the GPU when it takes at most this share of the free memory
GPU_DATA_FRACTION = 0.25

EpochCallback = Callable[[int, int, dict[str, float]], None]


def resolve_device(name: str) -> torch.device:
    """The device a run asks for; in a run on several workers "auto" and "cuda" mean the GPU
    the launcher gave this worker (torch.cuda.current_device())."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA device")
    if device.type == "cuda" and device.index is None and distributed.world_size() > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _place(images: Tensor | ImageFiles, device: torch.device,
           policy: str) -> Tensor | ImageFiles:
    """Move uint8 images to the GPU when they fit (or when told to); else keep them pinned.
    Streamed images stay files."""
    if isinstance(images, ImageFiles) or device.type != "cuda" or policy == "never":
        return images
    if policy == "always":
        return images.to(device)
    free, _ = torch.cuda.mem_get_info(device)
    if images.numel() <= GPU_DATA_FRACTION * free:
        return images.to(device)
    return images.pin_memory()


@torch.no_grad()
def embed(method: Method, images: Tensor | ImageFiles, prepare, batch_size: int,
          device: torch.device, amp: bool) -> Tensor:
    """Features of un-augmented images, in eval mode, as float32 on the device."""
    method.eval()
    out = []
    for batch in read_batches(images, ranges(len(images), batch_size)):
        x = prepare(batch.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(method.features(x).float())
    return torch.cat(out)


@torch.no_grad()
def embed_views(method: Method, images: Tensor | ImageFiles, augmenter: Augmenter, prepare,
                batch_size: int, device: torch.device, amp: bool,
                seed: int) -> tuple[Tensor, Tensor]:
    """Features of two augmented views of every image (for alignment), seeded."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    first, second = [], []
    for batch in read_batches(images, ranges(len(images), batch_size)):
        views = augmenter(batch.to(device), 2, gen)
        a, b = (embed(method, v, prepare, len(v), device, amp) for v in views)
        first.append(a)
        second.append(b)
    return torch.cat(first), torch.cat(second)


@torch.no_grad()
def embed_pairs(method: Method, images: Tensor | ImageFiles, prepare, batch_size: int,
                device: torch.device, amp: bool) -> tuple[Tensor, Tensor]:
    """A method's own positive pairs (`method.positive_pairs`) of un-augmented images, in eval
    mode, as float32 on the device."""
    method.eval()
    first, second = [], []
    for batch in read_batches(images, ranges(len(images), batch_size)):
        x = prepare(batch.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            a, b = method.positive_pairs(x)
        first.append(a.float())
        second.append(b.float())
    return torch.cat(first), torch.cat(second)


def _pair_inputs(emb: Embeddings, method: Method, images: Tensor | ImageFiles,
                 augmenter: Augmenter,
                 prepare, batch_size: int, device: torch.device, amp: bool,
                 samples: int | None, seed: int, needs: frozenset[str]) -> None:
    """The "view_pairs" and "augmented_views" inputs (see crlbench.evaluate.INPUTS), on all
    test images or a seeded sample of `samples`: view_pairs are a method's own positive pairs
    when it defines `positive_pairs` (with the uniformity of each side), else two augmented
    views of the backbone features (with the uniformity of the test features)."""
    rows = sample_rows(len(images), samples or len(images), seed)
    if rows is not None:
        images = select(images, rows)
    own = hasattr(method, "positive_pairs")
    if "augmented_views" in needs or ("view_pairs" in needs and not own):
        emb.augmented_views = embed_views(method, images, augmenter, prepare, batch_size,
                                          device, amp, seed)
    if "view_pairs" not in needs:
        return
    if own:
        emb.view_pairs = embed_pairs(method, images, prepare, batch_size, device, amp)
        emb.uniformity_sets = list(emb.view_pairs)
        emb.pair_source = "method"
        return
    emb.view_pairs = emb.augmented_views
    if rows is not None:
        emb.uniformity_sets = [emb.test[rows.to(emb.test.device)]]


@torch.no_grad()
def head_logits(method: Method, feats: Tensor, batch_size: int) -> list[Tensor]:
    """Cluster-head logits of a method that has heads, as a list (one entry per head)."""
    if not hasattr(method, "cluster_logits"):
        return []
    chunks: list[list[Tensor]] = []
    for start in range(0, len(feats), batch_size):
        out = method.cluster_logits(feats[start:start + batch_size])
        chunks.append([o.float() for o in (out if isinstance(out, list | tuple) else [out])])
    return [torch.cat(parts) for parts in zip(*chunks, strict=True)]


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _error(e: BaseException) -> dict[str, Any]:
    info: dict[str, Any] = {"type": type(e).__name__, "message": str(e),
                            "traceback": traceback.format_exc(limit=20)}
    if isinstance(e, NonFiniteLoss):
        info.update(step=e.step, loss_terms=e.terms)
    return info


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(spec: RunSpec) -> dict[str, Any]:
    """The fields of a record that the spec alone determines."""
    return {
        "schema": SCHEMA_VERSION, "run_id": spec.run_id, "config_id": spec.config_id,
        "train_id": spec.train_id,
        "suite": spec.suite, "method": spec.method, "dataset": spec.dataset, "seed": spec.seed,
        "variant": spec.variant, "config": spec.config, "metrics": {}, "history": [],
        "method_version": spec.method_version,
        "method_package": spec.plugin.provenance(),
        "dataset_package": spec.source.provenance(),
        "evaluator_packages": {e.name: e.provenance() for e in spec.evaluators},
        "started": _now(),
    }


def record_failure(spec: RunSpec, store: Path, error: dict[str, Any]) -> dict[str, Any]:
    """Write a failed record for a run that died before it could write its own (the process was
    killed, ran out of memory, ...); `error` has at least "type" and "message". Where the run
    wrote its ok record before it died (a Ray worker lost after the write), that record stays
    and is returned."""
    path = record_path(store, spec.suite, spec.method, spec.dataset, spec.run_id)
    if is_done(path):
        return read_record(path)
    record = new_record(spec)
    record.update(status="failed", error=error, created=_now())
    _write(path, record)
    return record


def _write(path: Path, record: dict[str, Any]) -> None:
    """Write the record, except a failure over an ok record: a finished result is never
    replaced by a failure (a later `--force` rerun that fails, a worker lost after writing)."""
    if record["status"] != "ok" and is_done(path):
        return
    write_record(path, record)


class NoKeptWeights(RuntimeError):
    """`crlbench evaluate` found the run's kept weights at its start, and they are gone now."""


# What a run does with the kept weights of its training (same train_id) in the store:
# "reuse" them instead of training when there are any (crlbench run), "retrain" whatever the
# store has (crlbench run --force), or "require" them and never train (crlbench evaluate).
WEIGHT_MODES = ("reuse", "retrain", "require")


def execute(spec: RunSpec, store: Path, on_epoch: EpochCallback | None = None,
            cache: DatasetCache | None = None, weights: str = "reuse") -> dict[str, Any]:
    """Run one spec and write its record; return the record. `cache`: the executor's dataset
    cache (None: the dataset is read for this run alone). `weights`: one of WEIGHT_MODES.

    In a run on several workers (crlbench.distributed) every worker calls it: worker 0 does
    what one process does and returns the record; the others train beside it and return
    None. A failed run raises RunFailed on worker 0 once its record is written, so that the
    launcher stops the other workers (which would otherwise wait in a collective)."""
    if not distributed.is_main():
        _follow(spec, store, on_epoch)
        return None
    distributed.start_run()
    path = record_path(store, spec.suite, spec.method, spec.dataset, spec.run_id)
    timer = PhaseTimer()
    record = new_record(spec)
    threads = torch.get_num_threads()
    trackers: Trackers | None = None
    try:
        torch.set_num_threads(spec.config.get("threads", threads))
        device = resolve_device(spec.config["device"])
        record["environment"] = environment(device)
        record["deterministic"] = device.type == "cpu"
        kept = find_kept(spec, store) if weights != "retrain" else None
        if kept is None and weights == "require" and spec.plugin.obj.trainable:
            raise NoKeptWeights(f"{spec.label} has no kept weights any more (changed or removed "
                                "since the command started); `crlbench run` trains it")
        # the other workers train only when worker 0 does
        trains = distributed.broadcast_object(kept is None and spec.plugin.obj.trainable)
        if not trains:
            distributed.end_training(barrier=False)
        trackers = Trackers(spec.config.get("loggers", ()), spec, path)
        _run(spec, path, device, timer, record, trackers.on_epoch(on_epoch),
             cache or DatasetCache(), kept)
        record["status"] = "ok"
        record["error"] = None
    except (KeyboardInterrupt, StoreWriteError):
        raise  # the suite stops: a store that cannot be written cannot take the others either
    except Exception as e:  # any failure of one run is recorded; the suite goes on
        record["status"] = "failed"
        record["error"] = _error(e)
    finally:
        torch.set_num_threads(threads)
    record["wall_seconds"] = timer.seconds
    record["created"] = _now()
    errors = trackers.finish(record) if trackers else []
    if errors:
        record["tracking_errors"] = errors
    superseded = supersede(spec, path, record) if record["status"] == "ok" else []
    try:
        _write(path, record)
    except (TypeError, ValueError) as e:  # a value a plugin put in the record is not JSON data
        return record_failure(spec, store, _error(e))
    remove_superseded(superseded)
    if record["status"] != "ok" and distributed.launched():
        raise RunFailed(record["error"]["message"])
    return record


class RunFailed(RuntimeError):
    """Worker 0 of a run on several workers recorded a failure (the record says why)."""


def _follow(spec: RunSpec, store: Path, on_epoch: EpochCallback | None) -> None:
    """A worker other than 0: the data, build and train stages beside worker 0 (each step
    is a collective of every worker), when worker 0 trains; worker 0 evaluates and writes."""
    if not distributed.broadcast_object(None):
        return
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(spec.config.get("threads", threads))
        device = resolve_device(spec.config["device"])
        cfg = OmegaConf.create(spec.config)
        seed_everything(spec.seed)
        d, _ = _data_stage(spec, cfg, device, DatasetCache())
        method, ctx, _ = _build_stage(spec, cfg, device, d, trains=True)
        augmenter = Augmenter.from_config(cfg.augment, d.data.image_size)
        amp = device.type == "cuda" and cfg.train.precision != "fp32"
        path = record_path(store, spec.suite, spec.method, spec.dataset, spec.run_id)
        _train_stage(spec, cfg, device, d, method, ctx, augmenter, path, on_epoch, amp)
        distributed.end_training()  # worker 0 evaluates alone; this worker is done
    finally:
        torch.set_num_threads(threads)


class NonFiniteFeatures(ValueError):
    """The trained model's features hold NaN or inf: scoring them would give chance level."""


def check_finite_features(split: str, features: Tensor) -> None:
    bad = int((~torch.isfinite(features)).any(dim=1).sum())
    if bad:
        raise NonFiniteFeatures(
            f"{bad} of {len(features)} {split} feature rows are not finite (NaN or inf): the "
            "trained model is broken (a diverged training or an overflow), and evaluating its "
            "features would score chance level")


def _imbalanced(data: ImageData, spec: RunSpec) -> ImageData:
    """The dataset with a long-tailed training split when the run's variant asks for one."""
    rho = float(spec.variant.get("imbalance", 1.0))
    if rho == 1.0:
        return data
    check_long_tail_source(spec.dataset, data.unlabeled_images is not None,
                           spec.config["data"]["use_unlabeled"])
    keep = long_tail_indices(data.train_labels, data.num_classes, rho,
                             derive_seed(spec.seed, 3, 1))
    return dataclasses.replace(data, train_images=select(data.train_images, keep),
                               train_labels=data.train_labels[keep])


@dataclass
class _Data:
    """What the data stage hands to the later ones."""

    data: ImageData
    pretrain: Tensor | ImageFiles  # the images training sees, on the CPU (or files)
    train_images: Tensor | ImageFiles  # the same, where training reads them (the GPU when
    # they fit)
    prepare: Normalizer
    mean: list[float]
    std: list[float]


def _data_stage(spec: RunSpec, cfg: DictConfig, device: torch.device,
                cache: DatasetCache) -> tuple[_Data, dict[str, Any]]:
    data = cache.load(spec.source, root=cfg.data.root, download=cfg.data.download,
                      image_size=cfg.data.image_size, use_unlabeled=cfg.data.use_unlabeled,
                      stream=cfg.data.stream)
    if data.streamed:
        data = data.with_stream_workers(int(cfg.data.stream_workers))
    data = _imbalanced(data, spec)
    pretrain = data.pretrain_images(cfg.data.use_unlabeled, cfg.data.train_split)
    # worker 0's, on every worker: a streamed set's statistics cost a decoding pass
    mean, std = distributed.broadcast_object(
        channel_stats(data.train_images) if distributed.is_main() else None)
    train_images = _place(pretrain, device, cfg.data.on_device)
    unlabeled = data.unlabeled_images is not None and cfg.data.use_unlabeled
    section = {"train_size": len(data.train_images), "test_size": len(data.test_images),
               "pretrain_size": len(pretrain), "num_classes": data.num_classes,
               "train_split": trained_on(cfg.data.train_split, unlabeled),
               "image_size": data.image_size, "channels": data.channels,
               "mean": mean, "std": std, "on_device": train_images.device.type,
               "reader": reader_of(data.train_images),
               "train_class_counts": torch.bincount(
                   data.train_labels, minlength=data.num_classes).tolist()}
    return _Data(data, pretrain, train_images, Normalizer(mean, std, device), mean,
                 std), section


def _build_stage(spec: RunSpec, cfg: DictConfig, device: torch.device, d: _Data,
                 trains: bool) -> tuple[Method, RunContext, dict[str, Any]]:
    """The method, built; for training on several workers with batch norm over the global
    batch (`distributed.sync_bn`), and worker 0's initial state on every worker."""
    cls = spec.plugin.obj
    backbone, dim = build_backbone(cfg.backbone.name, channels=d.data.channels,
                                   image_size=d.data.image_size,
                                   small_stem=cfg.backbone.small_stem,
                                   width=cfg.backbone.width)
    if cls.trainable:
        check_batch_fits(cfg.train.batch_size, len(d.pretrain), spec.dataset,
                         float(spec.variant.get("imbalance", 1.0)))
    per_epoch = steps_per_epoch(len(d.pretrain), cfg.train.batch_size)
    ctx = RunContext(
        feature_dim=dim, num_classes=d.data.num_classes,
        num_clusters=int(spec.variant.get("k", d.data.num_classes)),
        dataset_size=len(d.pretrain), device=device, total_steps=per_epoch * cfg.train.epochs,
        steps_per_epoch=per_epoch, epochs=cfg.train.epochs, seed=spec.seed,
        image_size=d.data.image_size, channels=d.data.channels,
        input_mean=tuple(d.mean), input_std=tuple(d.std))
    method = cls(backbone, ctx, cls.Config(**spec.config["method_cfg"])).to(device)
    if trains and distributed.world_size() > 1:
        if spec.config["distributed"]["sync_bn"]:
            convert_batch_norm(method, device)
        distributed.broadcast_state(method)
    return method, ctx, method.describe()


def _curve_monitor(spec: RunSpec, cfg: DictConfig, device: torch.device, d: _Data,
                   method: Method, ctx: RunContext,
                   amp: bool) -> Callable[[int], dict[str, float]] | None:
    """The learning-curve evaluation (eval.every): the curve evaluators on the features of a
    fixed seeded sample of at most eval.every_samples train images (the bank) and as many test
    images, the same sample at every epoch. None without curves."""
    if not spec.curve_evaluators:
        return None
    data, n = d.data, int(cfg.eval.every_samples)
    samples = []
    for i, (images, labels) in enumerate(((data.train_images, data.train_labels),
                                          (data.test_images, data.test_labels))):
        rows = sample_rows(len(images), n, derive_seed(spec.seed, 5, i))
        samples.append((images, labels) if rows is None
                       else (select(images, rows), labels[rows]))
    (bank, bank_labels), (queries, query_labels) = samples
    eb = cfg.eval.batch_size

    def monitor(epoch: int) -> dict[str, float]:
        emb = Embeddings(train=embed(method, bank, d.prepare, eb, device, amp),
                         train_labels=bank_labels.to(device),
                         test=embed(method, queries, d.prepare, eb, device, amp),
                         test_labels=query_labels.to(device), num_classes=data.num_classes,
                         num_clusters=ctx.num_clusters)
        if not (torch.isfinite(emb.train).all() and torch.isfinite(emb.test).all()):
            return {}  # a diverging run: the final check names it
        return evaluate(emb, cfg.eval, seed=spec.seed, evaluators=spec.curve_evaluators).metrics

    return monitor


def _train_stage(spec: RunSpec, cfg: DictConfig, device: torch.device, d: _Data,
                 method: Method, ctx: RunContext, augmenter: Augmenter, path: Path,
                 on_epoch: EpochCallback | None,
                 amp: bool) -> tuple[TrainResult, dict[str, Any]]:
    cls = spec.plugin.obj
    if cls.trainable:
        setup = TrainSetup(images=d.train_images, augment=augmenter, prepare=d.prepare,
                           cfg=cfg.train, seed=spec.seed, device=device,
                           checkpoint_dir=checkpoint_dir(path),
                           eval_batch_size=cfg.eval.batch_size, on_epoch=on_epoch,
                           monitor=_curve_monitor(spec, cfg, device, d, method, ctx, amp),
                           monitor_every=int(cfg.eval.every))
        result = train(method, setup)
    else:
        result = TrainResult()
    return result, {"steps": result.steps, "seconds": result.seconds,
                    "samples_per_s": result.samples_per_s, "views": cls.num_views,
                    "resumed_from_epoch": result.resumed_from_epoch}


def _embed_stage(spec: RunSpec, cfg: DictConfig, device: torch.device, d: _Data,
                 method: Method, ctx: RunContext, augmenter: Augmenter,
                 amp: bool) -> Embeddings:
    """The features, and the further inputs that the run's evaluators declare they need."""
    eb = cfg.eval.batch_size
    emb = Embeddings(
        train=embed(method, d.data.train_images, d.prepare, eb, device, amp),
        train_labels=d.data.train_labels.to(device),
        test=embed(method, d.data.test_images, d.prepare, eb, device, amp),
        test_labels=d.data.test_labels.to(device), num_classes=d.data.num_classes,
        num_clusters=ctx.num_clusters)
    for split, features in (("train", emb.train), ("test", emb.test)):
        check_finite_features(split, features)
    feats, labels = cluster_split(emb, cfg.eval.cluster_split)
    emb.cluster_labels = labels
    needs = frozenset().union(*(evaluator_needs(e) for e in spec.evaluators))
    if "head_logits" in needs:
        emb.head_logits = head_logits(method, feats, eb)
    if needs & {"view_pairs", "augmented_views"}:
        _pair_inputs(emb, method, d.data.test_images, augmenter, d.prepare, eb, device, amp,
                     cfg.eval.geometry_samples, derive_seed(spec.seed, 1, 7), needs)
    return emb


def _evaluate_stage(spec: RunSpec, cfg: DictConfig, emb: Embeddings,
                    train_split: str) -> dict[str, Any]:
    result = evaluate(emb, cfg.eval, seed=spec.seed, evaluators=spec.evaluators)
    lower = {"lower_is_better": sorted(result.lower_is_better)} if result.lower_is_better else {}
    return {"metrics": result.metrics, "eval_details": result.details, **lower,
            "feature_dim": int(emb.train.shape[1]), "cluster_split": cfg.eval.cluster_split,
            "conventions": conventions(spec.config, train_split, emb.pair_source)}


def _run(spec: RunSpec, path: Path, device: torch.device, timer: PhaseTimer,
         record: dict[str, Any], on_epoch: EpochCallback | None, cache: DatasetCache,
         kept: KeptWeights | None) -> None:
    """The run's stages in order, each timed, each filling its section of the record. With
    `kept` weights the train stage loads them instead of training."""
    cfg = OmegaConf.create(spec.config)
    seed_everything(spec.seed)
    with timer.phase("data"):
        d, record["data"] = _data_stage(spec, cfg, device, cache)
    with timer.phase("build"):
        method, ctx, record["method_details"] = _build_stage(
            spec, cfg, device, d, trains=kept is None and spec.plugin.obj.trainable)
    if distributed.world_size() > 1:  # training on several workers
        record["distributed"] = distributed_section(spec.config, device)
    amp = device.type == "cuda" and cfg.train.precision != "fp32"
    augmenter = Augmenter.from_config(cfg.augment, d.data.image_size)
    record["augment"] = augmenter.describe()
    if kept is not None:
        with timer.phase("load_weights"):
            load_weights(method, kept.path, kept.record["weights"]["sha256"])
        for key in ("train", "history", "weights", "distributed"):
            if key in kept.record:
                record[key] = kept.record[key]
        record["weights_from"] = trained_in(kept.record)
    else:
        with timer.phase("train"):
            result, record["train"] = _train_stage(spec, cfg, device, d, method, ctx,
                                                   augmenter, path, on_epoch, amp)
        distributed.end_training()  # the other workers leave; this one evaluates alone
        record["history"] = result.history
        if spec.plugin.obj.trainable and spec.config.get("keep_weights", True):
            record["weights"] = save_weights(
                method, weights_path(path, spec.train_id),
                {"method": spec.method, "dataset": spec.dataset, "train_id": spec.train_id})
    with timer.phase("embed"):
        emb = _embed_stage(spec, cfg, device, d, method, ctx, augmenter, amp)
    with timer.phase("evaluate"):
        record.update(_evaluate_stage(spec, cfg, emb, record["data"]["train_split"]))
