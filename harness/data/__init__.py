"""Datasets as in-memory uint8 tensors: the built-in ones, ImageFolder trees, resizing.

    from crlbench.data import load_dataset
    data = load_dataset("cifar10", root="~/data", image_size=32)

Each built-in dataset is read from its official on-disk format by our own reader; torchvision
is used only to download, and only when the caller allows it. Missing or damaged files raise
`crlbench.errors.UserError` naming the file and how to get it.
"""

from __future__ import annotations

from crlbench.data.api import (
    check_available,
    clear_cache,
    dataset_channels,
    dataset_names,
    load_dataset,
    resize_data,
    resolve_dataset,
)
from crlbench.data.base import ImageData, MissingDataError
from crlbench.data.catalog import DATASETS, DatasetInfo
from crlbench.data.longtail import long_tail_counts, long_tail_indices
from crlbench.data.resize import resize_images

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageData",
    "MissingDataError",
    "check_available",
    "clear_cache",
    "dataset_channels",
    "dataset_names",
    "load_dataset",
    "long_tail_counts",
    "long_tail_indices",
    "resize_data",
    "resize_images",
    "resolve_dataset",
]
