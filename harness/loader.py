"""Loading a suite: shipped suites and YAML files, `key=value` overrides, merged onto the schema.

A suite is a YAML file merged onto the `SuiteConfig` schema (crlbench.config) with OmegaConf,
then the command line's `key=value` overrides are merged on top. OmegaConf refuses unknown keys
and values of the wrong type; `load_suite` turns those refusals into one-line `UserError`s
naming the key and the valid choices. The rules beyond types are checked by crlbench.validate.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from crlbench.config import SuiteConfig, check_choices
from crlbench.errors import UserError


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


# A suite is a small file: more values than this once YAML's aliases are expanded (each alias
# is a reference that OmegaConf copies) is an alias bomb, refused before anything expands it
MAX_YAML_VALUES = 100_000


class YamlTooLarge(ValueError):
    """YAML text whose aliases expand to more than MAX_YAML_VALUES values."""


def _check_expanded_size(data: Any) -> None:
    """Count the values of `data` as OmegaConf would copy them (a shared list counts at each
    place it appears), stopping at the bound: time and memory stay O(MAX_YAML_VALUES)."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise YamlTooLarge(f"it expands to more than {MAX_YAML_VALUES:,} values (YAML "
                               "aliases referring to aliases?); a suite is a small file")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely with the plain-scalar rules of `_Loader`; YamlTooLarge for text
    whose aliases expand past MAX_YAML_VALUES values."""
    data = yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader
    _check_expanded_size(data)
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise UserError(f"suite {path}: YAML syntax error at {where}: {e.problem}") from None
    except OSError as e:
        raise UserError(f"suite {path}: cannot read: {e.strerror}") from None
    except YamlTooLarge as e:
        raise UserError(f"suite {path}: {e}") from None
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
        except YamlTooLarge as e:
            raise UserError(f"command line: the value of {key!r}: {e}") from None
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
