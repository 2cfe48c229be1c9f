"""CIFAR-10, CIFAR-100 and CIFAR-100's 20 superclasses from the "python version" pickles.

Each file is a pickled dict with bytes keys: b"data" is uint8 [N, 3072], one image per row as
three 32x32 planes (R, G, B) in row-major order; labels are lists of ints.

Security: unpickling can run arbitrary code, so only point `data.root` at files extracted from
the official tarballs (https://www.cs.toronto.edu/~kriz/cifar.html) or fetched by
`data.download=true`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from crlbench.data.base import ImageData, check_count, check_labels, missing_file, to_tensors
from crlbench.errors import UserError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = "test_batch"
CIFAR100_DIR = "cifar-100-python"

TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "cifar20": "CIFAR-100"}


def files(dataset: str, root: Path) -> list[Path]:
    """The files the dataset needs (meta files are optional and not listed)."""
    if dataset == "cifar10":
        base = root / CIFAR10_DIR
        return [base / name for name in [*CIFAR10_TRAIN, CIFAR10_TEST]]
    base = root / CIFAR100_DIR
    return [base / "train", base / "test"]


def check(dataset: str, root: Path) -> None:
    for path in files(dataset, root):
        if not path.is_file():
            raise missing_file(dataset, f"{path} not found",
                               f"the {TITLES[dataset]} python version there")


def read_pickle(path: Path, dataset: str) -> dict[bytes, Any]:
    try:
        with path.open("rb") as f:
            content = pickle.load(f, encoding="bytes")
    except OSError as e:
        raise UserError(f"dataset {dataset}: cannot read {path}: {e.strerror or e}") from e
    # A corrupt pickle can fail with almost any exception type; all of them mean a bad file.
    except Exception as e:
        raise UserError(
            f"dataset {dataset}: {path} is not a readable CIFAR pickle ({type(e).__name__}: {e}); "
            "replace it with the file from the official tarball"
        ) from e
    if not isinstance(content, dict):
        raise UserError(f"dataset {dataset}: {path} holds a {type(content).__name__}, not the "
                        "CIFAR dict; replace it with the file from the official tarball")
    return content


def _field(content: dict[bytes, Any], key: bytes, path: Path, dataset: str) -> Any:
    if key not in content:
        found = ", ".join(k.decode(errors="replace") if isinstance(k, bytes) else str(k)
                          for k in content)
        raise UserError(f"dataset {dataset}: {path} has no key {key.decode()!r} (keys: {found}); "
                        "replace it with the file from the official tarball")
    return content[key]


def read_split(
    paths: list[Path], label_key: bytes, num_classes: int, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 3, 32, 32] and labels [N] from one or more batch files, concatenated."""
    images, labels = [], []
    for path in paths:
        content = read_pickle(path, dataset)
        data = np.asarray(_field(content, b"data", path, dataset))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise UserError(f"dataset {dataset}: {path} holds data {data.dtype} "
                            f"{list(data.shape)}, expected uint8 [N, 3072]; replace it")
        batch_labels = np.asarray(_field(content, label_key, path, dataset), dtype=np.int64)
        check_count(data, batch_labels, path, dataset)
        check_labels(batch_labels, num_classes, path, dataset)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def _names(path: Path, key: bytes, num_classes: int, dataset: str) -> list[str] | None:
    """Class names from an optional meta file; None when the file is absent."""
    if not path.is_file():
        return None
    names = _field(read_pickle(path, dataset), key, path, dataset)
    if len(names) != num_classes:
        raise UserError(f"dataset {dataset}: {path} names {len(names)} classes, expected "
                        f"{num_classes}; replace it with the file from the official tarball")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load(dataset: str, root: Path) -> ImageData:
    check(dataset, root)
    if dataset == "cifar10":
        base = root / CIFAR10_DIR
        label_key, num_classes = b"labels", 10
        train_files, test_files = [base / n for n in CIFAR10_TRAIN], [base / CIFAR10_TEST]
        names = _names(base / "batches.meta", b"label_names", num_classes, dataset)
    else:
        base = root / CIFAR100_DIR
        fine = dataset == "cifar100"
        label_key = b"fine_labels" if fine else b"coarse_labels"
        num_classes = 100 if fine else 20
        train_files, test_files = [base / "train"], [base / "test"]
        names_key = b"fine_label_names" if fine else b"coarse_label_names"
        names = _names(base / "meta", names_key, num_classes, dataset)
    train_images, train_labels = to_tensors(*read_split(train_files, label_key, num_classes,
                                                        dataset))
    test_images, test_labels = to_tensors(*read_split(test_files, label_key, num_classes, dataset))
    return ImageData(
        name=dataset,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=num_classes,
        class_names=names,
    )
