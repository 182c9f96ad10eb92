"""Volumes and their geometry: the only place that converts between IJK, LPS and RAS.

Conventions (the same as ITK and Slicer):
- ``Volume.array`` is indexed ``[k, j, i]`` (slice, row, column), like
  ``SimpleITK.GetArrayFromImage`` and ``slicer.util.arrayFromVolume``.
- Index ``(i, j, k)`` maps to physical LPS millimetres by
  ``origin + direction @ diag(spacing) @ (i, j, k)``.
- RAS differs from LPS by the sign of the first two axes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: Flips L→R and P→A; its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """A 3D image on a physical grid.

    Attributes:
        array: voxel values, shape ``(K, J, I)``.
        spacing: voxel size in mm along i, j, k.
        origin: LPS position in mm of voxel (0, 0, 0).
        direction: 3×3 matrix whose columns are the i, j, k axes in LPS.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume is 3D, got an array of shape {self.array.shape}.")
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))

    @property
    def size(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k (ITK order)."""
        k, j, i = self.array.shape
        return (i, j, k)

    def with_array(self, array: np.ndarray) -> Volume:
        """The same grid holding other voxel values (e.g. a label map)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.array.shape}.")
        return replace(self, array=array)

    def same_grid(self, other: Volume) -> bool:
        """Whether both volumes lie on the same voxel grid, to the precision files store it.

        NRRD keeps spacing × direction as one matrix with 17 significant digits; splitting it
        back into spacing and direction can differ in the last bit (1e-16 relative), so the
        comparison allows 1e-12 relative, far below any meaning for a voxel.
        """
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, rtol=1e-12, atol=0)
            and np.allclose(self.origin, other.origin, rtol=0, atol=1e-9)
            and np.allclose(self.direction, other.direction, rtol=0, atol=1e-12)
        )

    def ijk_to_lps_matrix(self) -> np.ndarray:
        """4×4 homogeneous matrix from voxel index (i, j, k) to LPS mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """4×4 homogeneous matrix from voxel index (i, j, k) to RAS mm (Slicer's IJKToRAS)."""
        return LPS_TO_RAS @ self.ijk_to_lps_matrix()

    def ijk_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Map index points of shape ``(N, 3)`` or ``(3,)`` to LPS mm."""
        return _apply(self.ijk_to_lps_matrix(), ijk)

    def lps_to_ijk(self, lps: np.ndarray) -> np.ndarray:
        """Map LPS points to continuous voxel indices (round them to pick a voxel)."""
        return _apply(np.linalg.inv(self.ijk_to_lps_matrix()), lps)

    def ijk_to_ras(self, ijk: np.ndarray) -> np.ndarray:
        """Map index points to RAS mm."""
        return lps_to_ras(self.ijk_to_lps(ijk))

    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        return float(np.prod(self.spacing))


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Convert points of shape ``(N, 3)`` or ``(3,)`` between LPS and RAS (the map is its own inverse)."""
    return _apply(LPS_TO_RAS, points)


ras_to_lps = lps_to_ras


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    flat = points.reshape(-1, 3)
    mapped = flat @ matrix[:3, :3].T + matrix[:3, 3]
    return mapped.reshape(points.shape)


def nonzero_box(array: np.ndarray, margin) -> tuple[np.ndarray, np.ndarray] | None:
    """``[start, stop)`` (k, j, i) of the nonzero voxels plus ``margin`` voxels (one for all axes
    or one per axis) within the array; None if all are zero. :func:`box_slices` makes it an index."""
    margin = np.broadcast_to(margin, (3,))
    present = [np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if not len(present[0]):
        return None
    start = np.array([max(int(p[0]) - m, 0) for p, m in zip(present, margin)])
    stop = np.array([min(int(p[-1]) + 1 + m, n) for p, m, n in zip(present, margin, array.shape)])
    return start, stop


def box_slices(box: tuple[np.ndarray, np.ndarray]) -> tuple[slice, slice, slice]:
    """A ``(start, stop)`` box (:func:`nonzero_box`) as an index of the array."""
    return tuple(slice(int(a), int(b)) for a, b in zip(*box))


def box_corners(first_ijk: np.ndarray, last_ijk: np.ndarray) -> np.ndarray:
    """The 8 corner indices (i, j, k) of the index box from ``first_ijk`` to ``last_ijk``."""
    return first_ijk + np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (last_ijk - first_ijk)
