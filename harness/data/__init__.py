"""Datasets as in-memory uint8 tensors: the built-in ones, ImageFolder trees, resizing.

    from crlbench.resolve import load_dataset
    data = load_dataset("cifar10", root="~/data", image_size=32)

Each built-in dataset is read from its official on-disk format by our own reader; torchvision
is used only to download, and only when the caller allows it. Missing or damaged files raise
`crlbench.errors.UserError` naming the file and how to get it. This package loads datasets that
are already resolved (`DatasetSource`); `crlbench.resolve` turns names into them.
"""

from __future__ import annotations

from crlbench.data.api import (
    DatasetCache,
    DatasetSource,
    check_source,
    load_source,
    resize_data,
)
from crlbench.data.base import ImageData, MissingDataError
from crlbench.data.catalog import DatasetInfo
from crlbench.data.longtail import long_tail_counts, long_tail_indices
from crlbench.data.resize import resize_images

__all__ = [
    "DatasetCache",
    "DatasetInfo",
    "DatasetSource",
    "ImageData",
    "MissingDataError",
    "check_source",
    "load_source",
    "long_tail_counts",
    "long_tail_indices",
    "resize_data",
    "resize_images",
]
