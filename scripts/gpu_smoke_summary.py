"""The GPU smoke test's verdict: every built-in method has an ok record of suite gpu_smoke in the
store, and every metric of it is finite.

    python scripts/gpu_smoke_summary.py STORE OUT.json

Writes one row per method (status, dataset, device, precision, compile, seconds in all and
per phase, training samples/s, the headline metrics, what is wrong) and exits 1 when a method is
missing, failed or has a non-finite metric.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from crlbench import registry
from crlbench.store import scan

SUITE = "gpu_smoke"
HEADLINE = ("knn200_acc", "linear_acc", "kmeans_acc", "head_acc")


def row(record: dict) -> dict:
    metrics = record.get("metrics") or {}
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    problems = []
    if record["status"] != "ok":
        problems.append(f"status {record['status']}: {(record.get('error') or {}).get('message')}")
    if record["status"] == "ok" and not metrics:
        problems.append("no metrics")
    if bad:
        problems.append(f"non-finite: {', '.join(bad)}")
    train = record.get("train") or {}
    cfg = (record.get("config") or {}).get("train") or {}
    phases = record.get("wall_seconds") or {}  # data, build, train, embed, evaluate
    return {
        "method": record["method"], "dataset": record["dataset"], "status": record["status"],
        "device": (record.get("environment") or {}).get("device_name"),
        "precision": cfg.get("precision"), "compile": cfg.get("compile"),
        "wall_s": sum(phases.values()), "phases_s": phases,
        "samples_per_s": train.get("samples_per_s"),
        "metrics": {k: metrics[k] for k in HEADLINE if k in metrics},
        "problems": problems,
    }


def main(store: Path, out: Path) -> int:
    records = scan(store, [SUITE]).records
    rows = sorted((row(r) for r in records), key=lambda r: r["method"])
    builtin = {e.name for e in registry.methods.entries() if e.package == "crlbench"}
    missing = sorted(builtin - {r["method"] for r in rows})
    failed = [r["method"] for r in rows if r["problems"]]
    verdict = {"ok": not missing and not failed, "missing": missing, "failed": failed,
               "runs": rows}
    out.write_text(json.dumps(verdict, indent=2) + "\n")
    for r in rows:
        shown = " ".join(f"{k}={v:.3f}" for k, v in r["metrics"].items())
        print(f"{r['method']:12s} {r['dataset']:14s} {r['status']:7s} wall {r['wall_s']:6.1f}s"
              f" {shown} {'; '.join(r['problems'])}")
    print(f"smoke: {len(rows) - len(failed)} of {len(builtin)} built-in methods ok"
          + (f"; missing {', '.join(missing)}" if missing else "")
          + (f"; failed {', '.join(failed)}" if failed else ""))
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
