"""scikit-learn's bundled digits (1797 8x8 grey images), with a fixed stratified 80/20 split.

The split's seed is a constant, independent of any run seed, so every run tests on the same
images. The 0..16 grey levels are scaled to 0..255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from crlbench.data.base import ImageData, to_tensors

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def check(root: Path, use_unlabeled: bool) -> None:
    """Digits ship with scikit-learn: never missing."""


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
