"""Per-sample augmentation of whole batches on the batch's device.

`Augmenter(family, out_size, overrides)(images, num_views, generator)` turns uint8 [N, C, H, W]
images into `num_views` float32 views in [0, 1], each image with its own crop, flip, jitter,
grayscale, blur and solarisation draws (torchvision's v2 transforms draw one set per call, so
they cannot do this on a batch). `FAMILIES` holds the published pipelines as `ViewParams`.

Modules: `params` draws per-sample parameters, `ops` applies them (pure batched functions),
`families` and `overrides` define what a view is, `augmenter` puts them together.
"""

from __future__ import annotations

from crlbench.augment.augmenter import Augmenter, check_augment
from crlbench.augment.families import FAMILIES, ViewParams

__all__ = ["FAMILIES", "Augmenter", "ViewParams", "check_augment"]
