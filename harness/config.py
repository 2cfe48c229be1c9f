"""Suite configuration: the structured schema, loading a suite, applying `key=value` overrides.

A suite is a YAML file merged onto the `SuiteConfig` schema with OmegaConf, then the command
line's `key=value` overrides are merged on top. OmegaConf refuses unknown keys and values of the
wrong type; `load_suite` turns those refusals into one-line `UserError`s naming the key and the
valid choices. Choices that depend on plugins (methods, datasets) are checked in `validate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

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
    optimizer: str = "adam"  # adam | sgd
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


@dataclass
class ResultsConfig:
    dir: str = "results"


@dataclass
class ResourcesConfig:
    cpu_per_run: float = 1.0  # CPU cores a run reserves (and its torch threads) under Ray
    gpu_per_run: float = 1.0  # may be fractional (0.25: four runs share a GPU); 0 without GPUs


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
    ray: RayConfig = field(default_factory=RayConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


# Closed sets of string values, checked after merging. Plugin-backed choices (method, dataset,
# backbone, augmentation family, metrics) are checked by `crlbench.suite` against registries.
CHOICES: dict[str, tuple[str, ...]] = {
    "train.optimizer.name": ("sgd", "lars", "adam", "adamw"),
    "train.optimizer.lr_scaling": ("linear", "sqrt", "none"),
    "train.precision": ("auto", "bf16", "fp32"),
    "eval.linear.optimizer": ("adam", "sgd"),
    "eval.cluster_split": ("all", "test"),
    "data.on_device": ("auto", "always", "never"),
    "data.train_split": ("train", "train+test"),
    "executor": ("ray", "local"),
}


def shipped_suites() -> dict[str, Path]:
    """Suites shipped with the package: name -> path of its YAML."""
    root = resources.files("crlbench.suites")
    return {
        Path(p.name).stem: Path(str(p))
        for p in root.iterdir()
        if p.name.endswith(".yaml")
    }


def find_suite(name_or_path: str) -> Path:
    """A suite by shipped name (`quickstart`) or by path to a YAML file."""
    suites = shipped_suites()
    if name_or_path in suites:
        return suites[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise UserError(
        f"unknown suite {name_or_path!r}; shipped suites: {', '.join(sorted(suites))} "
        "(or give a path to a .yaml file)"
    )


class _Loader(yaml.SafeLoader):
    """YAML's safe loader with YAML 1.2's plain scalars: `010` is ten (not octal eight),
    `1:30` is a string (not ninety), and only true/false are booleans (not yes/no/on/off)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                           "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|"
                              r"False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+(?:_[0-9]+)*$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _construct_decimal_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    return int(loader.construct_scalar(node).replace("_", ""))  # base 10, always


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_decimal_int)


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely with the plain-scalar rules of `_Loader`."""
    return yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise UserError(f"suite {path}: YAML syntax error at {where}: {e.problem}") from None
    except OSError as e:
        raise UserError(f"suite {path}: cannot read: {e.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"suite {path}: expected a mapping of keys at the top, got {type(data).__name__}")
    return data


def _valid_keys(schema: DictConfig, parent: str) -> list[str]:
    node = OmegaConf.select(schema, parent) if parent else schema
    if isinstance(node, DictConfig):
        return sorted(str(k) for k in node)
    return []


def _explain(e: OmegaConfBaseException, schema: DictConfig, source: str) -> UserError:
    """Turn an OmegaConf refusal into one line naming the key and what is valid there."""
    key = re.sub(r"\[\d+\]", "", str(getattr(e, "full_key", "") or ""))
    if not key:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return UserError(f"{source}: {first}")
    if isinstance(e, ConfigKeyError) or "not in" in str(e) or "Key '" in str(e):
        parent = key.rpartition(".")[0]
        if parent and OmegaConf.select(schema, parent) is None and parent != "method_cfg":
            return _explain_missing_parent(key, schema, source)
        valid = _valid_keys(schema, parent)
        where = f" under '{parent}'" if parent else ""
        return UserError(
            f"{source}: unknown config key '{key}'; valid keys{where}: {', '.join(valid)}"
        )
    if isinstance(e, ValidationError):
        expected = _expected_type(schema, key)
        value = getattr(e, "value", None)
        shown = f"{value!r}" if value is not None else "the given value"
        return UserError(f"{source}: '{key}' must be {expected}, got {shown}")
    return UserError(f"{source}: {key}: {str(e).strip().splitlines()[0]}")


def _explain_missing_parent(key: str, schema: DictConfig, source: str) -> UserError:
    parts = key.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        if OmegaConf.select(schema, prefix) is None:
            parent = ".".join(parts[: i - 1])
            valid = _valid_keys(schema, parent)
            where = f" under '{parent}'" if parent else ""
            return UserError(
                f"{source}: unknown config key '{prefix}'; valid keys{where}: {', '.join(valid)}"
            )
    return UserError(f"{source}: unknown config key '{key}'")


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected_type(schema: DictConfig, key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(schema, parent) if parent else schema
    leaf = leaf.split("[")[0]
    if isinstance(node, DictConfig) and leaf in node:
        child = node._get_node(leaf)
        if isinstance(child, DictConfig):
            return f"a mapping (set its keys as {key}.<name>=value)"
        ref = getattr(child, "_metadata", None)
        ref_type = getattr(ref, "ref_type", None) if ref else None
        if isinstance(child, ListConfig):
            elem = getattr(child._metadata, "element_type", None)
            noun = _TYPE_NAMES.get(elem, "values").removeprefix("an ").removeprefix("a ")
            return f"a list of {noun}s"
        args = getattr(ref_type, "__args__", None)
        if args:  # Optional[X]
            inner = [a for a in args if a is not type(None)]
            if inner:
                return _TYPE_NAMES.get(inner[0], str(inner[0])) + " or null"
        return _TYPE_NAMES.get(ref_type, str(ref_type))
    return "a valid value"


_LIST_KEYS = ("method", "dataset", "seeds")


def _schema() -> DictConfig:
    return OmegaConf.structured(SuiteConfig)


def _normalise_override(schema: DictConfig, item: str) -> str:
    """Allow `method=simclr,raw` and `seeds=0,1` for list keys: wrap them in brackets."""
    if "=" not in item:
        raise UserError(f"override {item!r} is not of the form key=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"override {item!r} has an empty key")
    node = OmegaConf.select(schema, key, default=None, throw_on_missing=False)
    stripped = value.strip()
    if isinstance(node, DictConfig) and not stripped.startswith("{"):
        raise UserError(
            f"'{key}' is a group of keys, not a value; set one of them as {key}.KEY=value "
            f"(keys: {', '.join(_valid_keys(schema, key)) or 'any'})"
        )
    if isinstance(node, ListConfig) and not stripped.startswith("["):
        value = "[" + stripped + "]" if stripped else "[]"
    return f"{key}={value}"


def parse_overrides(overrides: list[str], schema: DictConfig | None = None) -> DictConfig:
    """Parse `key=value` strings into a config (values typed by the YAML rules of _Loader);
    `schema` (default: the suite's) tells list keys and groups of keys apart."""
    schema = _schema() if schema is None else schema
    out = OmegaConf.create()
    for item in overrides:
        key, _, value = _normalise_override(schema, item).partition("=")
        try:
            parsed = parse_yaml(value) if value.strip() else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise UserError(
                f"command line: cannot parse the value of {item!r}: {problem}") from None
        try:
            OmegaConf.update(out, key, parsed, merge=True)
        except OmegaConfBaseException as e:
            raise UserError(f"command line: cannot set {key!r}: {e.msg}") from None
    return out


def apply_overrides(schema: DictConfig, overrides: list[str]) -> DictConfig:
    """`key=value` overrides merged onto another structured schema (any dataclass config, such
    as the speed benchmark's), refusals turned into one-line UserErrors as in `load_suite`."""
    layer = parse_overrides(list(overrides), schema)
    _check_bools(schema, layer, "command line")
    try:
        return OmegaConf.merge(schema, layer)
    except OmegaConfBaseException as e:
        raise _explain(e, schema, "command line") from None


def resolve_config(cfg: DictConfig) -> None:
    """Resolve ${...} interpolations in place; one that cannot be resolved is a UserError."""
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise UserError(f"config: cannot resolve '{getattr(e, 'full_key', '')}': {e.msg}") from None


def load_suite(suite: str | Path | None, overrides: list[str] = ()) -> DictConfig:
    """Load a suite (shipped name or path) and apply overrides; return a validated config.

    Raises UserError for an unknown suite, a YAML syntax error, an unknown key, a wrong type
    or a value outside its closed set of choices.
    """
    schema = _schema()
    layers: list[tuple[str, Any]] = []
    if suite is not None:
        path = find_suite(str(suite))
        data = _read_yaml(path)
        data.setdefault("name", path.stem)
        for key in _LIST_KEYS:  # a single method/dataset/seed may be written without a list
            if key in data and not isinstance(data[key], list | dict):
                data[key] = [data[key]]
        layers.append((f"suite {path.name}", data))
    layers.append(("command line", parse_overrides(list(overrides))))
    cfg = schema
    for source, layer in layers:
        _check_bools(schema, layer, source)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            raise _explain(e, schema, source) from None
    resolve_config(cfg)
    check_choices(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _is_bool_field(node: Any) -> bool:
    ref = getattr(getattr(node, "_metadata", None), "ref_type", None)
    return ref is bool or (getattr(ref, "__args__", None) or ()) == (bool, type(None))


def _check_bools(schema: DictConfig, layer: Any, source: str, prefix: str = "") -> None:
    """Booleans are true or false only: OmegaConf alone would turn 2, "yes" or "on" into True,
    which is not what was written."""
    if isinstance(layer, DictConfig):  # as written: ${...} is checked once resolved, later
        layer = OmegaConf.to_container(layer, resolve=False)
    if not isinstance(layer, dict) or not isinstance(schema, DictConfig):
        return
    for key, value in layer.items():
        if key not in schema:
            continue  # unknown keys are reported by the merge
        node = schema._get_node(key)
        if isinstance(node, DictConfig):
            _check_bools(node, value, source, f"{prefix}{key}.")
        elif (_is_bool_field(node) and not (value is None or isinstance(value, bool))
              and not (isinstance(value, str) and value.startswith("${"))):
            raise UserError(f"{source}: '{prefix}{key}' must be true or false, got {value!r}")


def check_choices(cfg: DictConfig) -> None:
    for key, valid in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in valid:
            raise UserError(f"'{key}' is {value!r}; valid choices: {', '.join(valid)}")


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """A plain, JSON-ready dict of a config."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
