"""Kept weights: what a finished run's evaluation reads, saved beside its record.

After training, the state-dict entries the method names in `Method.kept_state` (the backbone
by default; a method whose features or cluster heads read more names those too) are written
as one safetensors file, `<train_id>.safetensors`, in the run's record folder. The file is
named by the run's training identity, not its run_id: every evaluation of one training (the
suite's eval section changed, an evaluator added) reads the same file. safetensors holds raw
tensors only, so loading runs no code (no pickle). The record keeps the file's name, size and
SHA-256, and a file is used only when its hash equals the one a record of that training gives
(an ok record, or a failed one whose failure came after training, e.g. a plugin evaluator's).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from safetensors.torch import load, save
from torch import Tensor, nn

from crlbench.store import sha256_of, write_atomic  # noqa: F401  (sha256_of: re-exported)

SUFFIX = ".safetensors"


def weights_path(record: Path, train_id: str) -> Path:
    """Where the kept weights of a training live: beside its record, named by `train_id`."""
    return record.parent / f"{train_id}{SUFFIX}"


def _is_kept(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _kept_keys(method: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """The keys of `state` (the method's state dict) that its `kept_state` names; ValueError
    for a name that matches no entry."""
    prefixes = tuple(method.kept_state)  # type: ignore[attr-defined]
    unmatched = [p for p in prefixes if not any(_is_kept(k, (p,)) for k in state)]
    if unmatched:
        raise ValueError(f"kept_state names {', '.join(unmatched)}, which the method's state "
                         f"dict does not hold")
    return [k for k in state if _is_kept(k, prefixes)]


def kept_tensors(method: nn.Module) -> dict[str, Tensor]:
    """The state-dict entries of `method` that its `kept_state` names, as contiguous CPU
    copies; ValueError for a name that matches no entry."""
    state = method.state_dict()
    return {k: state[k].detach().cpu().contiguous().clone() for k in _kept_keys(method, state)}



def save_weights(method: nn.Module, path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """Write the kept tensors of `method` to `path` atomically (a temporary file in the same
    folder, then a rename); what the record says of them. The hash is of the bytes this call
    wrote: another process that writes the same training's file later (an eval sweep's
    variants under Ray) cannot make this record vouch for its bytes. A full disk raises
    StoreWriteError and leaves no file."""
    tensors = kept_tensors(method)
    data = save(tensors, metadata=metadata)  # serialised here, written by Python's I/O
    write_atomic(path, lambda f: f.write(data))
    return {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "tensors": len(tensors),
            "kept_state": list(method.kept_state)}  # type: ignore[attr-defined]


class WeightsError(ValueError):
    """Kept weights that cannot be used: a changed file, or tensors that do not fit."""


def load_weights(method: nn.Module, path: Path, sha256: str) -> None:
    """Load kept weights into a freshly built `method`: the file must have the hash its record
    gives, and hold every entry of the method's `kept_state` and nothing else. The file is read
    once: the bytes hashed are the bytes loaded."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise WeightsError(f"{path} does not have the SHA-256 its record gives; it changed "
                           "after the run wrote it")
    tensors = load(data)
    expected = set(_kept_keys(method, method.state_dict()))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise WeightsError(f"{path} does not fit {type(method).__name__}: missing "
                           f"{missing[:5]}, unexpected {extra[:5]}")
    method.load_state_dict(tensors, strict=False)
