"""ImageFolder datasets named in `data.folders`: `<root>/train/<class>/...` and `test/` or `val/`.

Class indices follow the sorted class directory names of train; test must use only those.
Images of the common formats (found recursively, as torchvision's ImageFolder does) are decoded
with PIL as RGB and resized to `image_size` when one is given; otherwise they must all have one
size. With `data.stream=true` they stay files, decoded the same way as a run reads them
(crlbench.data.stream).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from crlbench.data.base import ImageData
from crlbench.data.resize import resize_images
from crlbench.data.stream import ImageFiles
from crlbench.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def _layout_hint(name: str, root: Path) -> str:
    return (f"an ImageFolder dataset needs {root}/train/<class>/<image> and "
            f"{root}/test/<class>/<image> (or val/); fix data.folders.{name}")


def split_dirs(name: str, root: Path) -> tuple[Path, Path]:
    """The train directory and the test (or else val) directory; UserError if absent."""
    train = root / "train"
    if not train.is_dir():
        raise UserError(f"dataset {name}: {train} not found; {_layout_hint(name, root)}")
    for test_name in ("test", "val"):
        if (root / test_name).is_dir():
            return train, root / test_name
    raise UserError(f"dataset {name}: neither {root / 'test'} nor {root / 'val'} found; "
                    f"{_layout_hint(name, root)}")


def check(name: str, root: Path) -> None:
    split_dirs(name, root)


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*")
                  if p.suffix.lower() in EXTENSIONS and p.is_file()
                  and not p.name.startswith("."))


def decode(path: Path, name: str, image_size: int | None) -> Tensor:
    """uint8 [3, H, W], resized to image_size x image_size when given."""
    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"dataset {name}: cannot decode image {path}: {e}; "
                        "delete or replace the file") from e
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    if image_size is not None:
        tensor = resize_images(tensor[None], image_size)[0]
    return tensor


def _list_split(name: str, directory: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for class_dir in _class_dirs(directory):
        if class_dir.name not in index:
            raise UserError(
                f"dataset {name}: class {class_dir.name!r} in {directory} is not among the train "
                f"classes ({', '.join(classes)}); rename or remove {class_dir}"
            )
        files = _image_files(class_dir)
        paths += files
        labels += [index[class_dir.name]] * len(files)
    if not paths:
        extensions = ", ".join(sorted(EXTENSIONS))
        raise UserError(f"dataset {name}: no images under {directory}; expected "
                        f"{directory}/<class>/<image> with one of the extensions {extensions}")
    return paths, labels


def _stack(name: str, images: list[Tensor], paths: list[Path]) -> Tensor:
    first = images[0].shape
    for image, path in zip(images, paths, strict=True):
        if image.shape != first:
            raise UserError(
                f"dataset {name}: images differ in size ({paths[0]} is {first[1]}x{first[2]}, "
                f"{path} is {image.shape[1]}x{image.shape[2]}); pass data.image_size=N to resize "
                "them all to N x N"
            )
    return torch.stack(images)


def load(name: str, root: Path, image_size: int | None, stream: bool = False) -> ImageData:
    """Both splits, decoded into memory, or as ImageFiles read while the run trains when
    `stream` (which needs image_size: streamed images are decoded to one side)."""
    if stream and image_size is None:
        raise UserError(f"dataset {name}: data.stream=true reads images as the run goes, so they "
                        "must be decoded to one side: pass data.image_size=N")
    train_dir, test_dir = split_dirs(name, root)
    classes = [d.name for d in _class_dirs(train_dir)]
    if not classes:
        raise UserError(f"dataset {name}: no class directories in {train_dir}; "
                        f"{_layout_hint(name, root)}")
    for class_name in classes:
        if not _image_files(train_dir / class_name):
            raise UserError(f"dataset {name}: class directory {train_dir / class_name} holds no "
                            "images; add images or remove it")
    workers = min(8, os.cpu_count() or 1)
    tensors = {}
    for split, directory in (("train", train_dir), ("test", test_dir)):
        paths, labels = _list_split(name, directory, classes)
        if stream:
            tensors[split] = (ImageFiles(paths, name, image_size, decode),
                              torch.tensor(labels, dtype=torch.int64))
            continue
        with ThreadPoolExecutor(workers) as pool:
            images = list(pool.map(lambda p: decode(p, name, image_size), paths))
        tensors[split] = (_stack(name, images, paths), torch.tensor(labels, dtype=torch.int64))
    if tensors["train"][0].shape[1:] != tensors["test"][0].shape[1:]:
        raise UserError(f"dataset {name}: train and test images differ in size; pass "
                        "data.image_size=N to resize them all to N x N")
    return ImageData(
        name=name,
        train_images=tensors["train"][0],
        train_labels=tensors["train"][1],
        test_images=tensors["test"][0],
        test_labels=tensors["test"][1],
        num_classes=len(classes),
        class_names=classes,
    )
