"""MNIST and Fashion-MNIST from their IDX files, searched for in several usual places.

The first directory holding all four files (each plain or .gz; plain preferred) is used:
torchvision's layout under the data root, a plain directory under it, and for Fashion-MNIST
Debian's package `dataset-fashion-mnist`.
"""

from __future__ import annotations

from pathlib import Path

from crlbench.data.base import ImageData, check_count, check_labels, missing_file, to_tensors
from crlbench.data.idx import read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def search_dirs(dataset: str, root: Path) -> list[Path]:
    """Where the dataset's files are looked for, in order."""
    if dataset == "mnist":
        return [root / "MNIST" / "raw", root / "mnist"]
    return [root / "FashionMNIST" / "raw", root / "fashion-mnist", DEBIAN_FASHION]


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_files(dataset: str, root: Path) -> dict[str, Path]:
    """The four files from the first directory that has them all; MissingDataError if none."""
    dirs = search_dirs(dataset, root)
    for directory in dirs:
        found = {key: _find(directory, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    names = ", ".join(f"{stem}[.gz]" for stem in FILES.values())
    searched = ", ".join(str(d) for d in dirs)
    title = "MNIST" if dataset == "mnist" else "Fashion-MNIST"
    raise missing_file(dataset, f"{names} not found together in any of {searched}",
                       f"the four {title} IDX files in one of those directories")


def check(dataset: str, root: Path) -> None:
    find_files(dataset, root)


def load(dataset: str, root: Path) -> ImageData:
    paths = find_files(dataset, root)
    arrays = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], 3, dataset)
        labels = read_idx(paths[f"{split}_labels"], 1, dataset)
        check_count(images, labels, paths[f"{split}_labels"], dataset)
        check_labels(labels, 10, paths[f"{split}_labels"], dataset)
        arrays[split] = to_tensors(images[:, None], labels)  # [N, 1, H, W]
    return ImageData(
        name=dataset,
        train_images=arrays["train"][0],
        train_labels=arrays["train"][1],
        test_images=arrays["test"][0],
        test_labels=arrays["test"][1],
        num_classes=10,
        class_names=MNIST_CLASSES if dataset == "mnist" else FASHION_CLASSES,
    )
