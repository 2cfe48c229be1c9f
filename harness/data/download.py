"""Fetching datasets through torchvision, only when the user allows it (`data.download=true`).

torchvision's dataset classes download, verify checksums and extract into the same layout our
readers expect; we then read the files with our own readers.
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

from crlbench.errors import UserError


def _fetch(dataset: str, root: Path, make: str, **kwargs: object) -> None:
    import torchvision.datasets as tvd  # imported lazily: only downloading needs it

    root.mkdir(parents=True, exist_ok=True)
    try:
        getattr(tvd, make)(str(root), download=True, **kwargs)
    except (URLError, OSError, RuntimeError) as e:
        # torchvision reports failed downloads and checksum mismatches as RuntimeError.
        reason = " ".join(str(e).split())  # the message must stay on one line
        raise UserError(
            f"dataset {dataset}: download into {root} failed ({type(e).__name__}: {reason}); check "
            "the network connection, or fetch the files by hand and pass data.root=PATH"
        ) from e


def fetch(dataset: str, root: Path, use_unlabeled: bool) -> None:
    """Download the files `dataset` needs into `root`."""
    # Each class downloads every split of its dataset, whichever split it is built for.
    if dataset == "mnist":
        _fetch(dataset, root, "MNIST", train=True)
    elif dataset == "fashion_mnist":
        _fetch(dataset, root, "FashionMNIST", train=True)
    elif dataset == "cifar10":
        _fetch(dataset, root, "CIFAR10", train=True)
    elif dataset in ("cifar100", "cifar20"):
        _fetch(dataset, root, "CIFAR100", train=True)
    elif dataset == "stl10":
        _fetch(dataset, root, "STL10", split="train+unlabeled" if use_unlabeled else "train")
    else:
        raise UserError(f"dataset {dataset} cannot be downloaded; put its files in place by hand")
