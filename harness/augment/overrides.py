"""Suite-level overrides of a family's view parameters (the keys of `AugmentConfig`).

Probabilities replace the family's value in every view; `crop_min` sets the lower end of the
crop's area range (turning the crop on for a family without one); `jitter_strength` scales the
family's own brightness, contrast, saturation and hue, so for `simclr` it is SimCLR's colour
distortion strength s. A family without colour jitter (`crop`, `none`) stays without it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from crlbench.augment.families import ViewParams
from crlbench.errors import UserError

PROBABILITIES = ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p")
OVERRIDE_KEYS = ("crop_min", "jitter_strength", *PROBABILITIES)


def check_overrides(overrides: Mapping[str, float | None]) -> dict[str, float]:
    """The overrides that are set (not None), checked; UserError on a bad key or value."""
    checked: dict[str, float] = {}
    for key, value in overrides.items():
        if key not in OVERRIDE_KEYS:
            raise UserError(
                f"unknown augment override {key!r}; valid keys: {', '.join(sorted(OVERRIDE_KEYS))}"
            )
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise UserError(f"augment.{key} must be a number, got {value!r}")
        value = float(value)
        if key in PROBABILITIES and not 0.0 <= value <= 1.0:
            raise UserError(f"augment.{key} must be a probability in [0, 1], got {value}")
        if key == "crop_min" and not 0.0 < value <= 1.0:
            raise UserError(f"augment.crop_min must be in (0, 1], got {value}")
        if key == "jitter_strength" and not 0.0 <= value < math.inf:
            raise UserError(f"augment.jitter_strength must be >= 0 and finite, got {value}")
        checked[key] = value
    return checked


def apply_overrides(view: ViewParams, overrides: Mapping[str, float]) -> ViewParams:
    """`view` with checked overrides applied."""
    changes: dict[str, object] = {k: overrides[k] for k in PROBABILITIES if k in overrides}
    if "crop_min" in overrides:
        lo = overrides["crop_min"]
        hi = view.crop_scale[1] if view.crop_scale is not None else 1.0
        changes["crop_scale"] = (lo, max(lo, hi))
    if "jitter_strength" in overrides:
        s = overrides["jitter_strength"]
        changes["brightness"] = view.brightness * s
        changes["contrast"] = view.contrast * s
        changes["saturation"] = view.saturation * s
        # A hue shift of +-0.5 turns already covers the whole colour circle.
        changes["hue"] = min(view.hue * s, 0.5)
    return dataclasses.replace(view, **changes)
