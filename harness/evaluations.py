"""The trainings of a store and their evaluations: kept weights to reuse, earlier
evaluations to supersede.

Runs that differ only in their evaluation share a training identity (`train_id`): the first
keeps its weights (crlbench.weights), and a later evaluation of the same training loads them
instead of training (`find_kept`) when a record of that training vouches for the file's
SHA-256. The store holds one current evaluation per training and variant: a finished run
folds the earlier ones into its record's `previous_evaluations`, and their files are removed
once its record is written (`supersede`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlbench.store import read_record, record_path
from crlbench.suite import RunSpec
from crlbench.weights import sha256_of, weights_path


@dataclass
class KeptWeights:
    """A training's kept weights in the store, and the record that vouches for them."""

    path: Path
    record: dict[str, Any]


def folder_records(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The readable records of one method/dataset folder of the store."""
    out = []
    for path in sorted(folder.glob("[!.]*.json")):
        try:
            out.append((path, read_record(path)))
        except ValueError:
            continue  # not a record: `crlbench table` names it; it vouches for nothing here
    return out


def find_kept(spec: RunSpec, store: Path) -> KeptWeights | None:
    """The kept weights of `spec`'s training (same train_id) in the store, if a record of that
    training gives the file's SHA-256: None for a method that does not train."""
    if not spec.plugin.obj.trainable or not spec.train_id:
        return None
    path = record_path(store, spec.suite, spec.method, spec.dataset, spec.run_id)
    weights = weights_path(path, spec.train_id)
    if not weights.is_file():
        return None
    digest = sha256_of(weights)
    for _, rec in folder_records(path.parent):
        if (rec.get("train_id") == spec.train_id
                and (rec.get("weights") or {}).get("sha256") == digest):
            return KeptWeights(weights, rec)
    return None


def trained_in(source: dict[str, Any]) -> dict[str, Any]:
    """Which run trained the weights a re-evaluation loads (through earlier re-evaluations)."""
    return source.get("weights_from") or {
        "run_id": source["run_id"], "created": source.get("created"),
        "environment": source.get("environment")}


def _earlier_evaluations(spec: RunSpec, path: Path,
                         record: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """The finished records of the same training and variant made before this run started:
    evaluations this one supersedes (the suite's eval section changed since, or a --force
    rerun replaces one). Records another process wrote after this run started are left."""
    return [(p, rec) for p, rec in folder_records(path.parent)
            if rec.get("train_id") == spec.train_id and rec.get("variant") == spec.variant
            and rec["status"] == "ok" and str(rec.get("created", "")) <= record["started"]]


def _evaluation_summary(rec: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": rec["run_id"], "created": rec.get("created"),
            "eval": (rec.get("config") or {}).get("eval"), "metrics": rec["metrics"],
            "evaluator_packages": rec.get("evaluator_packages"),
            "conventions": rec.get("conventions")}


def supersede(spec: RunSpec, path: Path,
              record: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """Fold the earlier evaluations of this training into the record's
    `previous_evaluations` (oldest first); their records, to remove with `remove_superseded`
    once this one is written (the store keeps one current evaluation per training and
    variant)."""
    earlier = _earlier_evaluations(spec, path, record)
    history: list[dict[str, Any]] = []
    for _, rec in sorted(earlier, key=lambda item: str(item[1].get("created", ""))):
        history += [*rec.get("previous_evaluations", []), _evaluation_summary(rec)]
    if history:
        record["previous_evaluations"] = history
    return [(p, rec) for p, rec in earlier if p != path]


def remove_superseded(superseded: list[tuple[Path, dict[str, Any]]]) -> None:
    """Remove the superseded records, each only if it is still the record that was folded
    (another process may have rewritten that run since: its new record stays)."""
    for path, folded in superseded:
        try:
            current = read_record(path)
        except ValueError:
            continue  # gone or replaced by something else: nothing of ours to remove
        if current.get("created") == folded.get("created"):
            path.unlink(missing_ok=True)
