"""``deepdiag info``: what a volume is (geometry, intensities, likely modality)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .body_mask import inside_field
from .geometry import Volume

_PERCENTILES = (0.5, 5, 25, 50, 75, 95, 99.5)
_MAX_SAMPLES = 4_000_000


def describe_volume(volume: Volume) -> dict[str, Any]:
    """Geometry, voxel type, intensity percentiles and a modality guess for a volume; the
    percentiles and the guess leave out a CT's outside-field padding (its share is reported)."""
    samples = _subsample(volume.array)
    in_field = inside_field(samples)
    percentiles = np.percentile(samples[in_field] if in_field.any() else samples, _PERCENTILES)
    return {
        "size": list(volume.size),
        "spacing": list(volume.spacing),
        "origin": list(volume.origin),
        "direction": volume.direction.ravel().tolist(),
        "voxel_type": str(volume.array.dtype),
        "modality_guess": guess_modality(volume.array, percentiles),
        "intensity": {
            "min": float(volume.array.min()),
            "max": float(volume.array.max()),
            "percentiles": {str(p): float(v) for p, v in zip(_PERCENTILES, percentiles)},
            "outside_field_share": round(float(1.0 - in_field.mean()), 4),
        },
    }


def guess_modality(array: np.ndarray, percentiles: np.ndarray | None = None) -> str:
    """``"CT"`` when intensities look like Hounsfield units, ``"MR"`` when they stay near or above zero.

    CT in HU has air near -1000 and dense tissue above 0, so its low percentile sits far
    below zero; MR intensities are arbitrary but non-negative, apart from small negative
    values that resampling leaves behind. Values below -1024 are a CT scanner's padding outside
    its field of view (-2048, -3024...), not intensities: they are left out.
    """
    if percentiles is None:
        samples = _subsample(array)
        in_field = inside_field(samples)
        percentiles = np.percentile(samples[in_field] if in_field.any() else samples, _PERCENTILES)
    low, high = float(percentiles[0]), float(percentiles[-1])
    if -1100 <= low <= -700 and high >= 0:
        return "CT"
    if low >= -100:
        return "MR"
    return "unknown"


def _subsample(array: np.ndarray) -> np.ndarray:
    """A regular subset of voxels, so that percentiles of a large scan take well under a second."""
    step = max(1, int(np.ceil(array.size / _MAX_SAMPLES)))
    return array.reshape(-1)[::step]
