"""The phantom's voxel grid in patient millimetres (LPS), centred on the patient."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import Volume


@dataclass(frozen=True)
class Grid:
    """Axis-aligned LPS grid: array index ``[k, j, i]`` lies at ``(x[i], y[j], z[k])`` mm.

    Centred on the patient unless ``fixed_origin`` is given (the grid of an existing scan).
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    fixed_origin: tuple[float, float, float] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size[2], self.size[1], self.size[0])

    @property
    def origin(self) -> tuple[float, float, float]:
        if self.fixed_origin is not None:
            return self.fixed_origin
        return tuple(-(n - 1) / 2 * s for n, s in zip(self.size, self.spacing))

    def axis_mm(self, axis: int) -> np.ndarray:
        """Coordinates in mm along ITK axis 0 (x), 1 (y) or 2 (z)."""
        return self.origin[axis] + self.spacing[axis] * np.arange(self.size[axis])

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y, z shaped to broadcast over ``[k, j, i]`` arrays without building full grids."""
        x, y, z = (self.axis_mm(a).astype(np.float32) for a in range(3))
        return x[None, None, :], y[None, :, None], z[:, None, None]

    def box(
        self, low_mm: np.ndarray, high_mm: np.ndarray
    ) -> tuple[tuple[slice, slice, slice], tuple[np.ndarray, ...]] | None:
        """Index slices of the voxels within an mm box, with their broadcastable coordinates; None if outside."""
        slices, coords = [], []
        for axis in (2, 1, 0):
            first = int(np.ceil((low_mm[axis] - self.origin[axis]) / self.spacing[axis]))
            last = int(np.floor((high_mm[axis] - self.origin[axis]) / self.spacing[axis]))
            first, last = max(first, 0), min(last, self.size[axis] - 1)
            if first > last:
                return None
            slices.append(slice(first, last + 1))
            coords.append((self.origin[axis] + self.spacing[axis] * np.arange(first, last + 1)).astype(np.float32))
        z, y, x = coords
        return tuple(slices), (x[None, None, :], y[None, :, None], z[:, None, None])

    def index_of(self, point_mm: np.ndarray) -> tuple[int, int, int]:
        """Array index ``(k, j, i)`` of the voxel nearest to a point, clipped to the grid."""
        ijk = np.rint((np.asarray(point_mm) - self.origin) / self.spacing).astype(int)
        ijk = np.clip(ijk, 0, np.array(self.size) - 1)
        return int(ijk[2]), int(ijk[1]), int(ijk[0])

    def contains(self, mask: np.ndarray, point_mm: np.ndarray) -> bool:
        """Whether the voxel nearest to a mm point is set in ``mask``; false outside the grid."""
        ijk = np.rint((np.asarray(point_mm) - self.origin) / self.spacing).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= self.size):
            return False
        return bool(mask[ijk[2], ijk[1], ijk[0]])

    def volume(self, array: np.ndarray) -> Volume:
        return Volume(array, self.spacing, self.origin, np.eye(3))
