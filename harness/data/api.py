"""Dataset names, availability checks and loading (with resizing and a one-entry cache).

Names are looked up in the `crlbench.datasets` entry point group (the built-ins and plugins'),
then in `data.folders`. A plugin's dataset is checked as it loads: whatever its reader raises,
or an `ImageData` that does not match its `DatasetInfo`, becomes one UserError naming the
dataset and its package, so a broken plugin stops a suite before any run and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from crlbench import registry
from crlbench.data import folder
from crlbench.data.base import ImageData, MissingDataError
from crlbench.data.catalog import DatasetInfo
from crlbench.data.resize import resize_images
from crlbench.errors import UserError

# The last dataset loaded, keyed by every argument of `load_dataset`: the runs of a suite on
# one dataset then read and decode its files once.
_cache: tuple[tuple, ImageData] | None = None


def dataset_names(folders: Mapping[str, str] | None = None) -> list[str]:
    """Registered names (built-in and plugins', usable ones), then the ImageFolder names of
    `data.folders`, sorted."""
    folders = folders or {}
    clashes = sorted(name for name in folders if name in registry.datasets)
    if clashes:
        raise UserError(
            f"data.folders: {', '.join(clashes)} is the name of a registered dataset; "
            "give the folder dataset another name"
        )
    return [*registry.datasets.names(), *sorted(folders)]


def dataset_channels(name: str, folders: Mapping[str, str] | None = None) -> int:
    """Channels of a dataset's images without loading it (ImageFolder trees are read as RGB)."""
    info = resolve_dataset(name, folders)
    return 3 if info is None else info.channels


def resolve_dataset(name: str, folders: Mapping[str, str] | None) -> DatasetInfo | None:
    """The registered dataset of this name (None for a folder dataset); UserError if unknown,
    or if the plugin that registers it is unusable (the reason is in the message)."""
    valid = dataset_names(folders)
    if folders and name in folders:
        return None
    if name not in registry.datasets:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(valid)} "
                        "(add your own ImageFolder with data.folders.NAME=PATH)")
    return registry.datasets.get(name)


def _plugin(info: DatasetInfo) -> str | None:
    """"dataset 'x' from package p" for a plugin's dataset; None for a built-in."""
    package = registry.datasets.entry(info.name).package
    if package == registry.BUILTIN_PACKAGE:
        return None
    return f"dataset {info.name!r} from package {package}"


def _call(info: DatasetInfo, what: str, *args):
    """`info.<what>(*args)`; for a plugin, whatever it raises besides a UserError becomes one
    naming the dataset and its package (the cause stays chained)."""
    who = _plugin(info)
    if who is None:
        return getattr(info, what)(*args)
    try:
        return getattr(info, what)(*args)
    except UserError:
        raise
    except Exception as e:  # a plugin's reader may raise anything; name it, keep the cause
        raise UserError(f"{who}: {what}() raised {type(e).__name__}: {e}") from e


def _check_plugin_data(info: DatasetInfo, data: object) -> ImageData:
    """A plugin's loaded data, refused unless it is the ImageData its DatasetInfo describes."""
    who = _plugin(info)
    if who is None:
        return data
    if not isinstance(data, ImageData):
        raise UserError(f"{who}: load() must return crlbench.data.ImageData, "
                        f"got {type(data).__name__}")
    if (data.num_classes, data.channels) != (info.num_classes, info.channels):
        raise UserError(f"{who}: load() gave {data.num_classes} classes and {data.channels} "
                        f"channels, its DatasetInfo says {info.num_classes} and {info.channels}")
    for split, labels in (("train", data.train_labels), ("test", data.test_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= data.num_classes):
            raise UserError(f"{who}: {split} labels outside 0..{data.num_classes - 1}")
    return data


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
    info = resolve_dataset(name, folders)
    if info is None:
        folder.check(name, Path(folders[name]).expanduser())
        return
    try:
        _call(info, "check", Path(root).expanduser(), use_unlabeled)
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
    info = resolve_dataset(name, folders)
    if info is None:
        # Folder images can differ in size, so they are resized while decoded.
        return folder.load(name, Path(folders[name]).expanduser(), image_size)
    try:
        _call(info, "check", root, use_unlabeled)
    except MissingDataError:
        if not (download and info.fetch is not None):
            raise
        _call(info, "fetch", root, use_unlabeled)
    return _check_plugin_data(info, _call(info, "load", root, use_unlabeled))


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
    resolve_dataset(name, folders)  # before the cache: a name may have become unusable
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
