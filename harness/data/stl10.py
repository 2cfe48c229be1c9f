"""STL-10 from its binary release (`stl10_binary/`): 96x96 colour images, 10 classes.

`*_X.bin` hold uint8 images of 3x96x96 bytes each, every channel stored column-major (as
written by MATLAB); `*_y.bin` hold one byte per image, labels 1..10. The 100k unlabeled images
(2.7 GB) are read only when the unlabeled split is used for training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from crlbench.data.base import (
    ImageData,
    MissingDataError,
    check_labels,
    missing_file,
)
from crlbench.errors import UserError

DIR = "stl10_binary"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE  # 27648
CHUNK = 4096  # images transposed at a time, bounding the extra memory to ~110 MB
LABELED = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
UNLABELED = "unlabeled_X.bin"


def check(root: Path, use_unlabeled: bool) -> None:
    base = root / DIR
    for name in LABELED:
        if not (base / name).is_file():
            raise missing_file("stl10", f"{base / name} not found",
                               "the extracted STL-10 binary release (stl10_binary.tar.gz) there")
    if use_unlabeled and not (base / UNLABELED).is_file():
        raise MissingDataError(
            f"dataset stl10: {base / UNLABELED} not found, and data.use_unlabeled=true needs it; "
            "put it there, pass data.use_unlabeled=false to train on the labeled split only, "
            "or data.download=true to fetch it"
        )


def image_count(path: Path) -> int:
    """Number of images in an `*_X.bin` file; refuses sizes that are not whole images."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UserError(f"dataset stl10: cannot read {path}: {e.strerror or e}") from e
    if size == 0 or size % IMAGE_BYTES:
        raise UserError(
            f"dataset stl10: {path} is {size} bytes, not a positive multiple of {IMAGE_BYTES} "
            "(one 3x96x96 image); it is truncated or not STL-10, replace it"
        )
    return size // IMAGE_BYTES


def read_images(path: Path) -> Tensor:
    """uint8 [N, 3, 96, 96], rows and columns put back in row-major order."""
    count = image_count(path)
    stored = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, 3, SIDE, SIDE))
    out = torch.empty((count, 3, SIDE, SIDE), dtype=torch.uint8)
    for start in range(0, count, CHUNK):
        chunk = np.ascontiguousarray(stored[start:start + CHUNK].transpose(0, 1, 3, 2))
        out[start:start + CHUNK] = torch.from_numpy(chunk)
    del stored
    return out


def read_labels(path: Path, count: int, images_path: Path) -> np.ndarray:
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise UserError(f"dataset stl10: cannot read {path}: {e.strerror or e}") from e
    if len(raw) != count:
        raise UserError(f"dataset stl10: {path} has {len(raw)} labels for the {count} images of "
                        f"{images_path}; replace both with the files from the official release")
    labels = raw.astype(np.int64) - 1  # stored as 1..10
    check_labels(labels, 10, path, "stl10")
    return labels


def read_class_names(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != 10:
        raise UserError(f"dataset stl10: {path} lists {len(names)} class names, expected 10; "
                        "fix or delete it")
    return names


def load(root: Path, use_unlabeled: bool) -> ImageData:
    check(root, use_unlabeled)
    base = root / DIR
    splits = {}
    for split in ("train", "test"):
        images = read_images(base / f"{split}_X.bin")
        labels = read_labels(base / f"{split}_y.bin", len(images), base / f"{split}_X.bin")
        splits[split] = (images, torch.from_numpy(labels))
    return ImageData(
        name="stl10",
        train_images=splits["train"][0],
        train_labels=splits["train"][1],
        test_images=splits["test"][0],
        test_labels=splits["test"][1],
        num_classes=10,
        unlabeled_images=read_images(base / UNLABELED) if use_unlabeled else None,
        class_names=read_class_names(base / "class_names.txt"),
    )
