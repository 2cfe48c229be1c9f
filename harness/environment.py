"""The environment a number was measured in, for run records and benchmark reports.

Device and its name, thread count, library versions, host and the crlbench source commit:
what a reader needs to tell two records' conditions apart.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import crlbench


def _git_commit() -> str | None:
    """The commit of the crlbench source tree, when it is a git checkout ("+dirty" if edited).

    An install that is not a checkout (a wheel) has none, unless whoever built the wheel from a
    checkout says which in CRLBENCH_GIT_COMMIT (scripts/gpu_check.sh does); else null."""
    src = Path(crlbench.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("CRLBENCH_GIT_COMMIT") or None
    return commit + ("+dirty" if dirty.strip() else "")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    import torchvision

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "crlbench": crlbench.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "git_commit": _git_commit(),
    }
