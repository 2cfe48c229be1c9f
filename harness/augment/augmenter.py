"""`Augmenter`: turns a uint8 batch into augmented float views, each image its own parameters.

All work stays on the batch's device in a few batched kernels per op (no loop over samples),
and every random draw comes from the caller's `torch.Generator`, so a seed fixes the views.
Per view the order is that of SimCLR and BYOL: random resized crop and flip, colour jitter,
grayscale, Gaussian blur, solarisation. An op whose probability is 0 is skipped altogether.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from crlbench.augment import ops, params
from crlbench.augment.families import FAMILIES, ViewParams
from crlbench.augment.overrides import OVERRIDE_KEYS, apply_overrides, check_overrides
from crlbench.errors import UserError


class Augmenter:
    """Per-sample augmentation of whole batches by a named family, with suite overrides."""

    def __init__(
        self,
        family: str,
        out_size: int,
        overrides: Mapping[str, float | None] | None = None,
    ):
        _check_family(family)
        if isinstance(out_size, bool) or not isinstance(out_size, int) or out_size < 2:
            raise UserError(f"augment output size must be an integer >= 2, got {out_size!r}")
        checked = check_overrides(overrides or {})
        self.family = family
        self.out_size = out_size
        self.views: tuple[ViewParams, ...] = tuple(
            apply_overrides(v, checked) for v in FAMILIES[family]
        )
        self.blur_kernel_size = ops.blur_kernel_size(out_size)

    @classmethod
    def from_config(cls, cfg: Any, out_size: int) -> Augmenter:
        """From an `AugmentConfig`-like object (dataclass or OmegaConf node)."""
        overrides = {key: getattr(cfg, key, None) for key in OVERRIDE_KEYS}
        return cls(str(cfg.family), out_size, overrides)

    def describe(self) -> dict[str, Any]:
        """The effective parameters, JSON-ready, for run records."""
        views = [
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()}
            for p in self.views
        ]
        return {
            "family": self.family,
            "out_size": self.out_size,
            "blur_kernel_size": self.blur_kernel_size,
            "views": views,
        }

    def __call__(self, images: Tensor, num_views: int, generator: torch.Generator,
                 rows: tuple[int, int] | None = None) -> list[Tensor]:
        """`num_views` float32 views [N, C, out_size, out_size] in [0, 1] of uint8 `images`.

        View i follows the family's view i modulo its length. `generator` must live on the
        images' device. `rows=(start, total)` says that the images are rows start..start+N-1 of
        a batch of `total` (one worker's slice of a global batch): every parameter is drawn
        for all `total` rows and these rows keep theirs, so that the slices of all workers
        get the views one process would give the whole batch.
        """
        _check_inputs(images, num_views, generator)
        draw = _Draw(generator, len(images), rows)
        # Augmentation runs in float32 even inside the training step's autocast region.
        with torch.autocast(images.device.type, enabled=False):
            x = ops.to_float(images)
            return [self._view(x, self.views[i % len(self.views)], draw)
                    for i in range(num_views)]

    def _view(self, x: Tensor, p: ViewParams, draw: _Draw) -> Tensor:
        c = x.shape[1]
        x = self._geometry(x, p, draw)
        if p.jitter_p > 0 and (p.brightness > 0 or p.contrast > 0 or p.saturation > 0 or p.hue > 0):
            apply = draw(params.bernoulli, p.jitter_p)
            jittered = ops.color_jitter(
                x,
                _factors(draw, p.brightness),
                _factors(draw, p.contrast),
                _factors(draw, p.saturation) if c == 3 else None,
                draw(params.uniform, -p.hue, p.hue) if p.hue > 0 and c == 3 else None,
            )
            x = ops.per_sample(apply, jittered, x)
        if p.gray_p > 0 and c == 3:
            x = ops.per_sample(draw(params.bernoulli, p.gray_p), ops.grayscale(x), x)
        if p.blur_p > 0:
            apply = draw(params.bernoulli, p.blur_p)
            sigma = draw(params.uniform, p.blur_sigma[0], p.blur_sigma[1])
            x = ops.per_sample(apply, ops.gaussian_blur(x, sigma, self.blur_kernel_size), x)
        if p.solarize_p > 0:
            x = ops.per_sample(draw(params.bernoulli, p.solarize_p), ops.solarize(x), x)
        return x

    def _geometry(self, x: Tensor, p: ViewParams, draw: _Draw) -> Tensor:
        n, _, height, width = x.shape
        out = self.out_size
        if p.crop_scale is None and p.flip_p == 0 and height == width == out:
            return x
        if p.crop_scale is None:
            boxes = params.full_boxes(n, height, width, x.device)
        else:
            boxes = draw(params.crop_boxes, height, width, p.crop_scale, p.crop_ratio)
        flip = draw(params.bernoulli, p.flip_p) if p.flip_p > 0 else None
        return ops.resized_crop(x, boxes, flip, out)


class _Draw:
    """Per-sample parameters for a batch's rows: `draw(fn, *args)` calls
    `fn(total, *args, generator)` and keeps the batch's rows (all of them in one process)."""

    def __init__(self, generator: torch.Generator, n: int, rows: tuple[int, int] | None):
        start, total = rows if rows is not None else (0, n)
        if not 0 <= start <= total - n:
            raise ValueError(f"rows {start}..{start + n - 1} are not inside a batch of {total}")
        self.generator, self.total, self.rows = generator, total, slice(start, start + n)

    def __call__(self, fn, *args) -> Tensor:
        drawn = fn(self.total, *args, self.generator)
        return drawn if self.total == self.rows.stop - self.rows.start else drawn[self.rows]


def _factors(draw: _Draw, strength: float) -> Tensor | None:
    """Jitter factors uniform in [max(0, 1 - strength), 1 + strength]; None when strength is 0."""
    if strength <= 0:
        return None
    return draw(params.uniform, max(0.0, 1.0 - strength), 1.0 + strength)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise UserError(f"unknown augmentation family {family!r}; valid families: "
                        f"{', '.join(sorted(FAMILIES))}")


def check_augment(cfg: Any) -> None:
    """An `AugmentConfig`'s family and overrides, checked without building any views."""
    _check_family(str(cfg.family))
    check_overrides({key: getattr(cfg, key, None) for key in OVERRIDE_KEYS})


def _check_inputs(images: Tensor, num_views: int, generator: torch.Generator) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(
            f"augment expects uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[1] not in (1, 3):
        raise UserError(f"augment: images must have 1 or 3 channels, got {images.shape[1]}")
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if generator.device.type != images.device.type:
        raise ValueError(
            f"the generator is on {generator.device}, the images on {images.device}; "
            "they must share a device"
        )
