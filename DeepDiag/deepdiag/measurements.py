"""Nodule measurements as a radiologist reads them: long- and short-axis diameter on the axial
slice where the nodule is longest, mean diameter (Lung-RADS), volume, mean HU, and the same
diameters for the solid component.

Axes are measured edge to edge of the voxels (a one-voxel nodule is one voxel wide), and the
short axis is the widest extent perpendicular to the long axis on the same slice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

#: stored HU at or above which nodule tissue counts as solid (ground glass lies near -600 HU,
#: solid tissue near 0 HU; Lung-RADS' "solid component" is what soft-tissue windows show)
SOLID_COMPONENT_MIN_HU = -300.0
_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


@dataclass(frozen=True)
class NoduleMeasurements:
    long_axis_mm: float
    short_axis_mm: float
    mean_diameter_mm: float  # (long + short) / 2, rounded to 0.1 mm as Lung-RADS v2022 asks
    volume_mm3: float
    mean_hu: float
    solid_mean_diameter_mm: float  # of the largest solid component; 0 when there is none

    def as_dict(self) -> dict:
        return {k: round(v, 2) if np.isfinite(v) else None for k, v in asdict(self).items()}


def axial_axes_mm(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float]:
    """(long, short) axis in mm of a ``[k, j, i]`` mask, on the axial slice with the longest long axis."""
    best = (0.0, 0.0)
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        j, i = np.nonzero(mask[k])
        points = (np.column_stack([i, j]).astype(float)[:, None, :] + _CORNERS[None]).reshape(-1, 2) * [
            spacing[0],
            spacing[1],
        ]
        axes = _slice_axes(points)
        if axes[0] > best[0]:
            best = axes
    return best


def measure(mask: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float]) -> NoduleMeasurements:
    """Measurements of the nodule ``mask`` (``[k, j, i]``) in the CT ``hu`` on the same grid."""
    long_axis, short_axis = axial_axes_mm(mask, spacing)
    solid = mask & (hu >= SOLID_COMPONENT_MIN_HU)
    return NoduleMeasurements(
        long_axis,
        short_axis,
        mean_diameter(long_axis, short_axis),
        float(mask.sum() * np.prod(spacing)),
        float(hu[mask].mean()) if mask.any() else float("nan"),
        mean_diameter(*axial_axes_mm(largest_component(solid), spacing)),
    )


def mean_diameter(long_axis: float, short_axis: float) -> float:
    return round((long_axis + short_axis) / 2, 1)


def equivalent_diameter_mm(volume_mm3: float) -> float:
    """The diameter of the sphere with this volume."""
    return float((6 * volume_mm3 / np.pi) ** (1 / 3))


def largest_component(mask: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, components, np.arange(1, count + 1))
    return components == int(np.argmax(sizes)) + 1


def _slice_axes(points: np.ndarray) -> tuple[float, float]:
    try:
        hull = points[ConvexHull(points).vertices]
    except QhullError:  # collinear corners cannot happen for whole voxels, but stay safe
        hull = points
    distances = np.sqrt(((hull[:, None, :] - hull[None]) ** 2).sum(-1))
    a, b = np.unravel_index(int(np.argmax(distances)), distances.shape)
    direction = (hull[b] - hull[a]) / max(float(distances[a, b]), 1e-9)
    across = hull @ np.array([-direction[1], direction[0]])
    return float(distances[a, b]), float(across.max() - across.min())
