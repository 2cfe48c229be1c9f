"""Loading a resolved dataset: availability checks, a plugin's reader fenced, resizing, and
the one-entry cache an executor owns.

A dataset arrives here resolved (`DatasetSource`: a registered `DatasetInfo` with the package
that registers it, or an ImageFolder tree of `data.folders`); names are looked up once, by
suite expansion (crlbench.resolve). A plugin's dataset is checked as it loads: whatever its
reader raises, or an `ImageData` that does not match its `DatasetInfo`, becomes one UserError
naming the dataset and its package, so a broken plugin stops a suite before any run and
nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from crlbench.data import folder
from crlbench.data.base import ImageData, MissingDataError
from crlbench.data.catalog import DatasetInfo
from crlbench.data.resize import resize_images
from crlbench.errors import UserError
from crlbench.plugin import PluginEntry


@dataclass(frozen=True)
class DatasetSource:
    """A dataset a run uses, resolved: a registered one (`entry`, whose `obj` is its
    DatasetInfo) or an ImageFolder tree (`folder`)."""

    name: str
    entry: PluginEntry | None = None
    folder: Path | None = None

    def __post_init__(self) -> None:
        if (self.entry is None) == (self.folder is None):
            raise ValueError("a DatasetSource is a registered dataset or a folder, not both")

    @property
    def info(self) -> DatasetInfo | None:
        return None if self.entry is None else self.entry.obj

    @property
    def channels(self) -> int:
        """Channels of the images, known without loading (ImageFolder trees are read as RGB)."""
        return 3 if self.info is None else self.info.channels

    def provenance(self) -> dict[str, object]:
        """The record's note of where the dataset came from."""
        if self.entry is None:
            return {"folder": str(self.folder)}
        if self.info.definition is not None:  # a pinned definition: which list and counts
            return {**self.entry.provenance(), "definition": self.info.definition}
        return self.entry.provenance()

    @property
    def _plugin(self) -> str | None:
        """"dataset 'x' from package p" for a plugin's dataset; None otherwise."""
        if self.entry is None or self.entry.builtin:
            return None
        return self.entry.describe("dataset")

    def _call(self, what: str, *args):
        """`info.<what>(*args)`; for a plugin, whatever it raises besides a UserError becomes
        one naming the dataset and its package (the cause stays chained)."""
        fn = getattr(self.info, what)
        if self._plugin is None:
            return fn(*args)
        try:
            return fn(*args)
        except UserError:
            raise
        except Exception as e:  # a plugin's reader may raise anything; name it, keep the cause
            raise UserError(f"{self._plugin}: {what}() raised {type(e).__name__}: {e}") from e

    def _checked(self, data: object) -> ImageData:
        """A plugin's loaded data, refused unless it is the ImageData its DatasetInfo
        describes."""
        who = self._plugin
        if who is None:
            return data  # type: ignore[return-value]
        info = self.info
        if not isinstance(data, ImageData):
            raise UserError(f"{who}: load() must return crlbench.data.ImageData, "
                            f"got {type(data).__name__}")
        if (data.num_classes, data.channels) != (info.num_classes, info.channels):
            raise UserError(f"{who}: load() gave {data.num_classes} classes and "
                            f"{data.channels} channels, its DatasetInfo says {info.num_classes} "
                            f"and {info.channels}")
        for split, labels in (("train", data.train_labels), ("test", data.test_labels)):
            if len(labels) and (labels.min() < 0 or labels.max() >= data.num_classes):
                raise UserError(f"{who}: {split} labels outside 0..{data.num_classes - 1}")
        return data


def _present(source: DatasetSource, root: Path, download: bool, use_unlabeled: bool) -> bool:
    """Whether a registered dataset's files are on disk: False when they are missing but may
    be fetched, MissingDataError (a UserError) when they are missing and may not."""
    try:
        source._call("check", root, use_unlabeled)
    except MissingDataError:
        if not (download and source.info.fetch is not None):
            raise
        return False
    return True


def check_source(source: DatasetSource, *, root: str | Path, download: bool = False,
                 use_unlabeled: bool = True) -> None:
    """Raise UserError if the dataset's files are absent (unless it may download).

    Cheap: looks only at which files exist, decodes nothing.
    """
    if source.folder is not None:
        folder.check(source.name, source.folder.expanduser())
        return
    _present(source, Path(root).expanduser(), download, use_unlabeled)


def can_stream(source: DatasetSource) -> bool:
    """Whether the dataset can be read as ImageFiles (data.stream=true)."""
    return source.folder is not None or (source.info is not None
                                         and source.info.load_sized is not None)


def _load_native(source: DatasetSource, root: Path, download: bool, image_size: int | None,
                 use_unlabeled: bool, stream: bool) -> ImageData:
    if source.folder is not None:
        # Folder images can differ in size, so they are resized while decoded.
        return folder.load(source.name, source.folder.expanduser(), image_size, stream)
    if not _present(source, root, download, use_unlabeled):
        source._call("fetch", root, use_unlabeled)
    if source.info.load_sized is not None:
        side = image_size or source.info.image_size
        return source._checked(source._call("load_sized", root, use_unlabeled, side, stream))
    return source._checked(source._call("load", root, use_unlabeled))


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


def load_source(source: DatasetSource, *, root: str | Path, download: bool = False,
                image_size: int | None = None, use_unlabeled: bool = True,
                stream: bool = False) -> ImageData:
    """Load a dataset into CPU uint8 tensors, resized to image_size x image_size if given;
    with `stream`, a dataset that can stream (`can_stream`) comes as ImageFiles instead.

    `root` may start with ~. Missing files raise UserError, or are downloaded through
    torchvision when `download` is true.
    """
    if image_size is not None and image_size <= 0:
        raise UserError(f"data.image_size must be a positive integer, got {image_size}")
    if stream and not can_stream(source):
        raise UserError(f"dataset {source.name} cannot stream (data.stream=true): only "
                        "ImageFolder trees of data.folders and the pinned ImageNet subsets "
                        "do; it fits in memory, so drop data.stream")
    data = _load_native(source, Path(root).expanduser(), download, image_size, use_unlabeled,
                        stream)
    return data if image_size is None else resize_data(data, image_size)


class DatasetCache:
    """The last dataset loaded, keyed by every argument of `load_source`: the runs of a suite
    on one dataset read and decode its files once. One per executor (or per Ray worker);
    treat what it returns as read-only."""

    def __init__(self) -> None:
        self._entry: tuple[tuple, ImageData] | None = None
        self.loads = 0  # how many times a dataset was read from disk

    def load(self, source: DatasetSource, *, root: str | Path, download: bool = False,
             image_size: int | None = None, use_unlabeled: bool = True,
             stream: bool = False) -> ImageData:
        key = (source, str(Path(root).expanduser().resolve()), download, image_size,
               use_unlabeled, stream)
        if self._entry is not None and self._entry[0] == key:
            return self._entry[1]
        self._entry = None  # let the previous dataset be freed before the next one is read
        data = load_source(source, root=root, download=download, image_size=image_size,
                           use_unlabeled=use_unlabeled, stream=stream)
        self.loads += 1
        self._entry = (key, data)
        return data

    def clear(self) -> None:
        """Forget the cached dataset (frees its memory)."""
        self._entry = None
