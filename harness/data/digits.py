"""scikit-learn's bundled digits (1797 8x8 grey images), with a fixed stratified 80/20 split.

The split's seed is a constant, independent of any run seed, so every run tests on the same
images. The 0..16 grey levels are scaled to 0..255.

`digits_rgb` is the same images painted in colour, for methods that need colour (CMC's L/ab
views) on a CPU: each image gets a dark background and a bright foreground colour, drawn per
image from a fixed generator, so the digit stays visible in the luminance and the colours carry
no label information.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from crlbench.data.base import ImageData, to_tensors

SPLIT_SEED = 0
TEST_FRACTION = 0.2
COLOUR_SEED = 1


def check(root: Path, use_unlabeled: bool) -> None:
    """Digits ship with scikit-learn: never missing."""


def _paint(images: Tensor, colours: np.ndarray) -> Tensor:
    """Grey [N, 1, H, W] uint8 -> RGB: colours [N, 2, 3] are (background, foreground) draws."""
    background = 0.4 * colours[:, 0, :, None, None]
    foreground = 0.6 + 0.4 * colours[:, 1, :, None, None]
    ink = images.numpy().astype(np.float64) / 255.0
    rgb = background + (foreground - background) * ink
    return torch.from_numpy(np.ascontiguousarray(np.rint(rgb * 255).astype(np.uint8)))


def load_rgb(root: Path, use_unlabeled: bool) -> ImageData:
    """The digits split, painted: background in [0, 0.4], foreground in [0.6, 1] per channel."""
    grey = load(root, use_unlabeled)
    n_train = len(grey.train_images)
    colours = np.random.default_rng(COLOUR_SEED).uniform(
        size=(n_train + len(grey.test_images), 2, 3))
    return ImageData(
        name="digits_rgb",
        train_images=_paint(grey.train_images, colours[:n_train]),
        train_labels=grey.train_labels,
        test_images=_paint(grey.test_images, colours[n_train:]),
        test_labels=grey.test_labels,
        num_classes=10,
        class_names=grey.class_names,
    )


def load(root: Path, use_unlabeled: bool) -> ImageData:
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N, 1, 8, 8]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=TEST_FRACTION,
        stratify=labels,
        random_state=SPLIT_SEED,
    )
    # Keep the source order within each split; the split itself is what the seed fixes.
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    train_images, train_labels = to_tensors(images[train_idx], labels[train_idx])
    test_images, test_labels = to_tensors(images[test_idx], labels[test_idx])
    return ImageData(
        name="digits",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=10,
        class_names=[str(d) for d in range(10)],
    )
