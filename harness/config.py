"""The suite configuration's schema: the structured dataclasses every suite is merged onto,
their defaults, and the closed sets of string values.

Loading a suite (YAML files, `key=value` overrides) is `crlbench.loader`'s job; the rules a
user can break beyond the schema's types and closed sets are `crlbench.validate`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from crlbench.errors import UserError


@dataclass
class DataConfig:
    root: str = "${oc.env:CRLBENCH_DATA,'~/.cache/crlbench/data'}"
    download: bool = False  # fetch missing datasets through torchvision (needs network)
    image_size: int | None = None  # resize every image to this side; None keeps the native size
    use_unlabeled: bool = True  # train on the unlabeled split where there is one (STL-10)
    # what self-supervised training sees: train | train+test (CC's, PICA's and C2BIN's
    # clustering protocol); labels are never used, evaluation splits stay as they are
    train_split: str = "train"
    folders: dict[str, str] = field(default_factory=dict)  # ImageFolder datasets: name -> root
    on_device: str = "auto"  # keep uint8 images on the GPU: auto (if they fit) | always | never
    # decode images from their files as the run reads them instead of holding them in memory
    # (ImageFolder trees and the pinned ImageNet subsets; crlbench.data.stream): the same pixels,
    # so not part of the run id
    stream: bool = False
    stream_workers: int = 4  # DataLoader processes decoding ahead (0: in the run's process)


@dataclass
class BackboneConfig:
    name: str = "resnet18"  # resnet18|resnet34|resnet50|convnet_tiny|timm:<model name>
    small_stem: bool | None = None  # 3x3 stride-1 stem, no max-pool; None: images <= 64 px
    width: int = 32  # channels of convnet_tiny's first layer


@dataclass
class AugmentConfig:
    family: str = "simclr"  # see crlbench.augment.FAMILIES
    # Overrides of the family's values for every view; None keeps the family's own.
    crop_min: float | None = None  # smallest area fraction of random resized crop
    flip_p: float | None = None
    jitter_strength: float | None = None  # SimCLR's colour distortion strength s
    jitter_p: float | None = None
    gray_p: float | None = None
    blur_p: float | None = None
    solarize_p: float | None = None


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | lars | adam | adamw
    lr: float = 0.3  # base learning rate, scaled by lr_scaling with the batch size
    lr_scaling: str = "linear"  # linear: lr * batch/256 | sqrt: lr * sqrt(batch/256) | none
    weight_decay: float = 1e-6
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lars_eta: float = 1e-3  # LARS trust coefficient (SimCLR's and BYOL's)
    exclude_bias_and_norm: bool = True  # no weight decay / LARS adaptation on biases and norms


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    warmup_epochs: float = 10.0
    min_lr_ratio: float = 0.0  # the cosine schedule ends at lr * min_lr_ratio
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    channels_last: bool | None = None  # None: on GPU
    compile: bool = False  # torch.compile the backbone
    grad_clip: float | None = None
    checkpoint_every: int = 1  # epochs between checkpoints (resume points)


@dataclass
class LinearProbeConfig:
    epochs: int = 100
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    # lbfgs: a full-batch solve of the L2-regularised problem for each strength of l2, at most
    # max_iter L-BFGS iterations | adam | sgd: mini-batch epochs over each of lrs
    optimizer: str = "lbfgs"
    l2: list[float] = field(default_factory=lambda: [1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    max_iter: int = 100
    weight_decay: float = 0.0
    batch_size: int = 1024
    val_fraction: float = 0.1


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=lambda: ["knn", "linear", "kmeans", "heads",
                                                        "geometry", "retrieval"])
    knn_k: list[int] = field(default_factory=lambda: [5, 200])
    knn_temperature: float = 0.07
    linear: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    kmeans_restarts: int = 10
    kmeans_iters: int = 300
    cluster_split: str = "all"  # all (train+test, as CC/PICA/C2BIN) | test (as SCAN)
    # test images that alignment and uniformity use: a seeded sample of this many (the CMC
    # loss study uses 1000); None: all of them (uniformity on at most 10,000)
    geometry_samples: int | None = None
    batch_size: int = 1024  # batch size for embedding images
    retrieval_k: list[int] = field(default_factory=lambda: [1, 2, 10, 50, 100])
    # K estimation ("kest"): k-means over k = kest_min_k..kest_max_k on a seeded sample
    kest_min_k: int = 2
    kest_max_k: int = 30
    kest_sample: int = 10000
    kest_restarts: int = 3
    # 2-D t-SNE of a seeded sample of test features ("tsne"), kept in the record for plots
    tsne_points: int = 2000
    tsne_perplexity: float = 30.0
    # learning curves: every `every` epochs of training (0: none) and after the last, the
    # evaluators of every_metrics (ones that read the features only) score a fixed seeded
    # sample of at most every_samples train images (the bank) and as many test images; the
    # values go into the record's history. Training is not changed by it.
    every: int = 0
    every_metrics: list[str] = field(default_factory=lambda: ["knn"])
    every_samples: int = 10_000
    # the settings evaluator plugins declare (crlbench.evaluate.declares), per evaluator:
    # eval.options.<evaluator>.<key>=value; resolved with their defaults at expansion
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResultsConfig:
    dir: str = "results"
    # keep each trained run's weights (backbone and what its evaluators read) beside its
    # record, so that a changed evaluation re-scores it without training again
    keep_weights: bool = True
    # experiment trackers a run also reports to (the record stays the source of truth):
    # tensorboard (event files beside the record), wandb, mlflow
    loggers: list[str] = field(default_factory=list)


@dataclass
class ResourcesConfig:
    cpu_per_run: float = 1.0  # CPU cores a run reserves (and its torch threads) under Ray
    gpu_per_run: float = 1.0  # may be fractional (0.25: four runs share a GPU); 0 without GPUs


@dataclass
class DistributedConfig:
    # processes that train one run together, data-parallel, each on its slice of every batch
    # (train.batch_size is the global batch); 1: one process. With GPUs each worker has one,
    # so resources.gpu_per_run=N (N > 1) asks for N workers too
    workers: int = 1
    backend: str = "auto"  # auto (nccl on GPUs, gloo on the CPU) | nccl | gloo
    sync_bn: bool | None = None  # batch norm over the global batch; None: the method's choice
    timeout_s: int = 1800  # a worker that waits longer than this in a collective fails the run


@dataclass
class RayConfig:
    # None: join RAY_ADDRESS if set, else start a local Ray for the suite; "auto" or
    # "ray://host:port": join that cluster (the results store must be reachable from every node)
    address: str | None = None
    num_cpus: int | None = None  # local Ray only; None: every core of this machine
    object_store_mb: int = 512  # local Ray only
    max_failures: int = 0  # Ray's retries of a trial whose process died


@dataclass
class VariantConfig:
    """Harness-level variants, swept like seeds; an empty list leaves the dimension out."""

    imbalance: list[float] = field(default_factory=list)  # rho: long-tailed training split
    k: list[int] = field(default_factory=list)  # K a method is trained with (wrong-K studies)


@dataclass
class SuiteConfig:
    name: str = "unnamed"
    description: str = ""
    method: list[str] = field(default_factory=lambda: ["simclr"])
    dataset: list[str] = field(default_factory=lambda: ["digits"])
    seeds: list[int] = field(default_factory=lambda: [0])
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method_cfg: dict[str, Any] = field(default_factory=dict)  # per method: name -> overrides
    # Variants: dotted config key -> values; every combination is a run (like seeds), e.g.
    # {"method_cfg.cmc.loss": [softmax, nce]}. A method_cfg.<m> key varies only method m.
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    variant: VariantConfig = field(default_factory=VariantConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    executor: str = "ray"  # ray | local (sequential, in this process, for debugging)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


# Closed sets of string values: each defined here once, and used by the suite's checks, the
# benchmark's, the CLI and the code that acts on the value. Plugin-backed choices (method,
# dataset, backbone, augmentation family, metrics) are checked against their registries.
OPTIMIZERS = ("sgd", "lars", "adam", "adamw")
LR_SCALINGS = ("linear", "sqrt", "none")
PRECISIONS = ("auto", "bf16", "fp32")
PROBE_OPTIMIZERS = ("adam", "sgd", "lbfgs")
CLUSTER_SPLITS = ("all", "test")
ON_DEVICE = ("auto", "always", "never")
TRAIN_SPLITS = ("train", "train+test")
EXECUTORS = ("ray", "local")
BACKENDS = ("auto", "nccl", "gloo")

CHOICES: dict[str, tuple[str, ...]] = {
    "train.optimizer.name": OPTIMIZERS,
    "train.optimizer.lr_scaling": LR_SCALINGS,
    "train.precision": PRECISIONS,
    "eval.linear.optimizer": PROBE_OPTIMIZERS,
    "eval.cluster_split": CLUSTER_SPLITS,
    "data.on_device": ON_DEVICE,
    "data.train_split": TRAIN_SPLITS,
    "executor": EXECUTORS,
    "distributed.backend": BACKENDS,
}


def check_choices(cfg: DictConfig) -> None:
    for key, valid in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in valid:
            raise UserError(f"'{key}' is {value!r}; valid choices: {', '.join(valid)}")


def run_workers(cfg: Any) -> int:
    """Workers one run trains on: distributed.workers, or resources.gpu_per_run when that asks
    for more than one GPU (crlbench.validate.check_distributed refuses the two disagreeing)."""
    gpus = float(cfg.resources.gpu_per_run)
    return int(gpus) if gpus > 1 and int(cfg.distributed.workers) == 1 else int(
        cfg.distributed.workers)


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """A plain, JSON-ready dict of a config."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
