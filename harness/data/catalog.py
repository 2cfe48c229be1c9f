"""What a dataset is to crlbench (`DatasetInfo`: how to check, load and fetch it) and the
built-in ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from crlbench.data import cifar, digits, imagenet, mnist, stl10
from crlbench.data.base import ImageData
from crlbench.data.download import fetch


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset, built in or from a plugin's `crlbench.datasets` entry point. The functions
    take (root: Path, use_unlabeled: bool); `load` returns an `ImageData` with `num_classes`
    classes and `channels` channels."""

    name: str
    summary: str  # one line
    num_classes: int
    channels: int
    image_size: int  # native side in pixels
    check: Callable[[Path, bool], None]  # cheap: MissingDataError when files are absent
    load: Callable[[Path, bool], ImageData]  # CPU uint8 tensors at the native size
    fetch: Callable[[Path, bool], None] | None = None  # download; None: nothing to download
    # For datasets whose images differ in size (ImageNet): load(root, use_unlabeled, side,
    # stream) decoding straight to side x side (the native image_size when data.image_size is
    # not set), as ImageFiles that stream from disk when `stream`; None: only `load`
    load_sized: Callable[[Path, bool, int, bool], ImageData] | None = None
    # what a pinned definition's record keeps of it (class list, its hash and source, counts)
    definition: dict[str, object] | None = None


def _info(name: str, summary: str, num_classes: int, channels: int, image_size: int,
          module: ModuleType) -> DatasetInfo:
    """An entry for the readers that serve several datasets and take the name first."""
    return DatasetInfo(
        name=name,
        summary=summary,
        num_classes=num_classes,
        channels=channels,
        image_size=image_size,
        check=lambda root, use_unlabeled: module.check(name, root),
        load=lambda root, use_unlabeled: module.load(name, root),
        fetch=lambda root, use_unlabeled: fetch(name, root, use_unlabeled),
    )


DIGITS = DatasetInfo(
    name="digits",
    summary="scikit-learn's 1797 handwritten digits, 8x8 grey, fixed 80/20 split",
    num_classes=10,
    channels=1,
    image_size=8,
    check=digits.check,
    load=digits.load,
)
DIGITS_RGB = DatasetInfo(
    name="digits_rgb",
    summary="digits painted with random dark/bright colours per image (CPU colour tests)",
    num_classes=10,
    channels=3,
    image_size=8,
    check=digits.check,
    load=digits.load_rgb,
)
MNIST = _info("mnist", "MNIST handwritten digits, 60k/10k, 28x28 grey", 10, 1, 28, mnist)
FASHION_MNIST = _info("fashion_mnist", "Fashion-MNIST clothing, 60k/10k, 28x28 grey", 10, 1, 28,
                      mnist)
CIFAR10 = _info("cifar10", "CIFAR-10, 50k/10k, 32x32 colour, 10 classes", 10, 3, 32, cifar)
CIFAR100 = _info("cifar100", "CIFAR-100, 50k/10k, 32x32 colour, 100 fine classes", 100, 3, 32,
                 cifar)
CIFAR20 = _info("cifar20", "CIFAR-100 labelled with its 20 superclasses", 20, 3, 32, cifar)
STL10 = DatasetInfo(
    name="stl10",
    summary="STL-10, 5k/8k labelled + 100k unlabeled, 96x96 colour, 10 classes",
    num_classes=10,
    channels=3,
    image_size=96,
    check=stl10.check,
    load=stl10.load,
    fetch=lambda root, use_unlabeled: fetch("stl10", root, use_unlabeled),
)


def _pinned(subset: imagenet.PinnedSubset) -> DatasetInfo:
    return DatasetInfo(
        name=subset.name,
        summary=subset.summary,
        num_classes=len(subset.wnids()),
        channels=3,
        image_size=subset.image_size,
        check=lambda root, use_unlabeled: imagenet.check(subset, root),
        load=lambda root, use_unlabeled: imagenet.load(subset, root),
        load_sized=lambda root, use_unlabeled, side, stream: imagenet.load(subset, root, side,
                                                                           stream),
        definition=subset.definition(),
    )


IMAGENET10 = _pinned(imagenet.BY_NAME["imagenet10"])
IMAGENET_DOGS = _pinned(imagenet.BY_NAME["imagenet_dogs"])
IMAGENET100_CMC = _pinned(imagenet.BY_NAME["imagenet100_cmc"])
IMAGENET50_SCAN = _pinned(imagenet.BY_NAME["imagenet50_scan"])
IMAGENET100_SCAN = _pinned(imagenet.BY_NAME["imagenet100_scan"])
IMAGENET200_SCAN = _pinned(imagenet.BY_NAME["imagenet200_scan"])
TINY_IMAGENET = _pinned(imagenet.BY_NAME["tiny_imagenet"])
