"""Writers of the datasets' real on-disk formats (IDX, CIFAR pickles, STL-10 binaries, PNG
trees), for tests of the readers and of suites on tiny files."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

BUILTINS = ["digits", "digits_rgb", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifar20",
            "stl10"]



def pattern(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Images whose pixels differ along every axis, so a transpose or a shift shows."""
    i, ch, y, x = np.meshgrid(*(np.arange(s) for s in (n, c, h, w)), indexing="ij")
    return ((i * 31 + ch * 67 + y * 3 + x * 11 + seed) % 256).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def write_mnist(directory: Path, gz: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    arrays = {
        "train-images-idx3-ubyte": pattern(5, 1, 28, 28, seed)[:, 0],
        "train-labels-idx1-ubyte": np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        "t10k-images-idx3-ubyte": pattern(3, 1, 28, 28, seed + 100)[:, 0],
        "t10k-labels-idx1-ubyte": np.array([9, 2, 6], dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(directory / name, array, gz)
    return arrays


def write_pickle(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(content, f, protocol=2)  # the official files are protocol 2 (Python 2)


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """[N, 3, 32, 32] -> the file's [N, 3072] rows: R plane, G plane, B plane, row-major."""
    return images.reshape(len(images), 3072)


def write_cifar10(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    base = root / "cifar-10-batches-py"
    train = pattern(10, 3, 32, 32)
    train_labels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    for b in range(5):
        write_pickle(base / f"data_batch_{b + 1}", {
            b"batch_label": f"training batch {b + 1} of 5".encode(),
            b"labels": train_labels[2 * b:2 * b + 2],
            b"data": cifar_rows(train[2 * b:2 * b + 2]),
            b"filenames": [b"a.png", b"b.png"],
        })
    test = pattern(3, 3, 32, 32, seed=5)
    test_labels = [7, 0, 3]
    write_pickle(base / "test_batch", {b"labels": test_labels, b"data": cifar_rows(test)})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(base / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return train, train_labels, test, test_labels


def write_cifar100(root: Path) -> dict[str, dict[bytes, object]]:
    base = root / "cifar-100-python"
    splits = {
        "train": {b"data": cifar_rows(pattern(4, 3, 32, 32)), b"fine_labels": [99, 0, 42, 7],
                  b"coarse_labels": [19, 4, 0, 13], b"filenames": [b"x"] * 4},
        "test": {b"data": cifar_rows(pattern(2, 3, 32, 32, seed=9)), b"fine_labels": [5, 64],
                 b"coarse_labels": [17, 2]},
    }
    for name, content in splits.items():
        write_pickle(base / name, content)
    write_pickle(base / "meta", {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    })
    return splits


def write_stl10(root: Path, unlabeled: bool = True) -> dict[str, np.ndarray]:
    """Images in logical [N, 3, 96, 96] order, written column-major as STL-10 stores them."""
    base = root / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    images = {"train": pattern(3, 3, 96, 96), "test": pattern(2, 3, 96, 96, seed=1)}
    if unlabeled:
        images["unlabeled"] = pattern(4, 3, 96, 96, seed=2)
    for split, array in images.items():
        np.ascontiguousarray(array.transpose(0, 1, 3, 2)).tofile(base / f"{split}_X.bin")
    np.array([1, 10, 5], dtype=np.uint8).tofile(base / "train_y.bin")
    np.array([2, 3], dtype=np.uint8).tofile(base / "test_y.bin")
    return images


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (6, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
