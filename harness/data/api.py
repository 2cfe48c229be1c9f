"""Dataset names, availability checks and loading (with resizing and a one-entry cache)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from crlbench.data import folder
from crlbench.data.base import ImageData, MissingDataError
from crlbench.data.catalog import DATASETS
from crlbench.data.resize import resize_images
from crlbench.errors import UserError

# The last dataset loaded, keyed by every argument of `load_dataset`: the runs of a suite on
# one dataset then read and decode its files once.
_cache: tuple[tuple, ImageData] | None = None


def dataset_names(folders: Mapping[str, str] | None = None) -> list[str]:
    """Built-in names, then the ImageFolder names of `data.folders`, sorted."""
    folders = folders or {}
    clashes = sorted(set(folders) & set(DATASETS))
    if clashes:
        raise UserError(
            f"data.folders: {', '.join(clashes)} is the name of a built-in dataset; "
            "give the folder dataset another name"
        )
    return [*DATASETS, *sorted(folders)]


def dataset_channels(name: str, folders: Mapping[str, str] | None = None) -> int:
    """Channels of a dataset's images without loading it (ImageFolder trees are read as RGB)."""
    _resolve(name, folders)
    return 3 if folders and name in folders else DATASETS[name].channels


def _resolve(name: str, folders: Mapping[str, str] | None) -> None:
    valid = dataset_names(folders)
    if name not in valid:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(valid)} "
                        "(add your own ImageFolder with data.folders.NAME=PATH)")


def check_available(
    name: str,
    *,
    root: str | Path,
    download: bool = False,
    folders: Mapping[str, str] | None = None,
    use_unlabeled: bool = True,
) -> None:
    """Raise UserError if `name` is unknown or its files are absent (unless it may download).

    Cheap: looks only at which files exist, decodes nothing.
    """
    _resolve(name, folders)
    if folders and name in folders:
        folder.check(name, Path(folders[name]).expanduser())
        return
    info = DATASETS[name]
    try:
        info.check(Path(root).expanduser(), use_unlabeled)
    except MissingDataError:
        if not (download and info.fetch is not None):
            raise


def _load_native(
    name: str,
    root: Path,
    download: bool,
    image_size: int | None,
    folders: Mapping[str, str] | None,
    use_unlabeled: bool,
) -> ImageData:
    if folders and name in folders:
        # Folder images can differ in size, so they are resized while decoded.
        return folder.load(name, Path(folders[name]).expanduser(), image_size)
    info = DATASETS[name]
    try:
        info.check(root, use_unlabeled)
    except MissingDataError:
        if not (download and info.fetch is not None):
            raise
        info.fetch(root, use_unlabeled)
    return info.load(root, use_unlabeled)


def resize_data(data: ImageData, image_size: int) -> ImageData:
    """Every split resized to image_size x image_size (the same object if already that size)."""
    if data.train_images.shape[-2:] == (image_size, image_size):
        return data
    unlabeled = data.unlabeled_images
    return replace(
        data,
        train_images=resize_images(data.train_images, image_size),
        test_images=resize_images(data.test_images, image_size),
        unlabeled_images=None if unlabeled is None else resize_images(unlabeled, image_size),
    )


def load_dataset(
    name: str,
    *,
    root: str | Path,
    download: bool = False,
    image_size: int | None = None,
    folders: Mapping[str, str] | None = None,
    use_unlabeled: bool = True,
) -> ImageData:
    """Load a dataset into CPU uint8 tensors, resized to image_size x image_size if given.

    `root` may start with ~. Missing files raise UserError, or are downloaded through
    torchvision when `download` is true. The last result is cached: treat it as read-only.
    """
    global _cache
    _resolve(name, folders)
    if image_size is not None and image_size <= 0:
        raise UserError(f"data.image_size must be a positive integer, got {image_size}")
    root_path = Path(root).expanduser()
    key = (name, str(root_path.resolve()), download, image_size,
           tuple(sorted((folders or {}).items())), use_unlabeled)
    if _cache is not None and _cache[0] == key:
        return _cache[1]
    _cache = None  # let the previous dataset be freed before the next one is read
    data = _load_native(name, root_path, download, image_size, folders, use_unlabeled)
    if image_size is not None:
        data = resize_data(data, image_size)
    _cache = (key, data)
    return data


def clear_cache() -> None:
    """Forget the cached dataset (frees its memory)."""
    global _cache
    _cache = None
