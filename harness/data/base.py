"""The in-memory form of every dataset (`ImageData`) and the checks shared by the readers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from crlbench.data.stream import ImageFiles, concat
from crlbench.errors import UserError


class MissingDataError(UserError):
    """A dataset's files are not on disk; `data.download=true` may fetch them."""


@dataclass
class ImageData:
    """A dataset held in memory as uint8 NCHW tensors (CPU), or streamed: its images then are
    `ImageFiles` (crlbench.data.stream), which decode as they are read.

    The tensors may be shared with the loader's cache: treat them as read-only.
    """

    name: str
    train_images: Tensor | ImageFiles  # uint8 [N, C, H, W]
    train_labels: Tensor  # int64 [N]
    test_images: Tensor | ImageFiles
    test_labels: Tensor
    num_classes: int
    # Extra images for self-supervised training only (STL-10's unlabeled split).
    unlabeled_images: Tensor | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        splits = [("train", self.train_images, self.train_labels),
                  ("test", self.test_images, self.test_labels)]
        for split, images, labels in splits:
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(f"{self.name}: {split} images must be uint8 [N, C, H, W], "
                                 f"got {images.dtype} {tuple(images.shape)}")
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise ValueError(f"{self.name}: {split} labels must be int64 [{images.shape[0]}], "
                                 f"got {labels.dtype} {tuple(labels.shape)}")
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(f"{self.name}: test images {tuple(self.test_images.shape[1:])} differ "
                             f"from train images {tuple(self.train_images.shape[1:])}")
        if (self.unlabeled_images is not None
                and self.unlabeled_images.shape[1:] != self.train_images.shape[1:]):
            raise ValueError(f"{self.name}: unlabeled images differ in shape from train images")

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """The side of the (square) images."""
        height, width = self.train_images.shape[-2:]
        if height != width:
            raise ValueError(f"{self.name}: images are {height}x{width}, not square")
        return int(height)

    @property
    def streamed(self) -> bool:
        """Whether the images stay files, decoded as a run reads them."""
        return isinstance(self.train_images, ImageFiles)

    def with_stream_workers(self, workers: int) -> ImageData:
        """The same streamed dataset, read by `workers` decoding processes."""
        return replace(self, train_images=self.train_images.with_workers(workers),
                       test_images=self.test_images.with_workers(workers))

    def pretrain_images(self, use_unlabeled: bool,
                        train_split: str = "train") -> Tensor | ImageFiles:
        """Images for self-supervised training: train, plus the unlabeled ones if asked for,
        plus the test images for `train_split="train+test"` (CC, PICA and C2BIN train on
        train + test)."""
        parts = [self.train_images]
        if use_unlabeled and self.unlabeled_images is not None:
            parts.append(self.unlabeled_images)
        if train_split == "train+test":
            parts.append(self.test_images)
        return concat(parts) if len(parts) > 1 else self.train_images


def check_labels(labels: np.ndarray, num_classes: int, path: Path, dataset: str) -> None:
    """Refuse labels outside 0..num_classes-1 (a sign of a wrong or corrupt file)."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"dataset {dataset}: {path} has labels in {labels.min()}..{labels.max()}, expected "
            f"0..{num_classes - 1}; replace it with the file from the official release"
        )


def check_count(images: np.ndarray, labels: np.ndarray, path: Path, dataset: str) -> None:
    """Refuse a split whose number of labels differs from its number of images."""
    if len(images) != len(labels):
        raise UserError(
            f"dataset {dataset}: {path} has {len(labels)} labels for {len(images)} images; "
            "replace the split's files with matching ones from the official release"
        )


def missing_file(dataset: str, problem: str, put: str) -> MissingDataError:
    """The error for absent files: what is missing, then the three ways to fix it."""
    return MissingDataError(
        f"dataset {dataset}: {problem}; put {put}, pass data.root=PATH where it is, "
        "or data.download=true to fetch it"
    )


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
    """Contiguous, writable CPU tensors: uint8 images and int64 labels."""
    images = np.asarray(images, dtype=np.uint8)
    if not (images.flags.c_contiguous and images.flags.writeable):
        images = np.array(images, order="C")  # arrays read from bytes are read-only views
    labels = np.array(labels, dtype=np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)
