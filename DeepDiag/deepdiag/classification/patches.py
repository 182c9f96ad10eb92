"""Fixed-size, axis-aligned patches around a point, in LPS millimetres, and back.

A classifier sees every finding at the same physical scale whatever the scan's grid, so
patches are resampled (trilinear, air outside the scan) onto a cube of the card's spacing
centred on the finding; saliency computed on a patch is mapped back onto the scan's grid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..geometry import Volume

AIR_HU = -1024.0


def patch_points_lps(center_lps, size: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """LPS positions of the patch's voxels, shape ``(K, J, I, 3)``; the centre lies between the
    middle voxels for even sizes."""
    axes = [(np.arange(n) - (n - 1) / 2) * s + c for n, s, c in zip(size[::-1], spacing, center_lps)]
    x, y, z = np.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
    return np.stack([x, y, z], axis=-1).transpose(2, 1, 0, 3)


def extract_patch(
    volume: Volume, center_lps, size: tuple[int, int, int], spacing: tuple[float, float, float]
) -> np.ndarray:
    """The ``[k, j, i]`` patch of ``size`` (K, J, I) voxels of ``spacing`` mm centred on ``center_lps``."""
    ijk = volume.lps_to_ijk(patch_points_lps(center_lps, size, spacing).reshape(-1, 3))
    values = ndimage.map_coordinates(volume.array.astype(np.float32, copy=False), ijk[:, ::-1].T, order=1, cval=AIR_HU)
    return values.reshape(size).astype(np.float32)


def patch_onto_grid(
    patch: np.ndarray, center_lps, spacing: tuple[float, float, float], target: Volume
) -> tuple[tuple[slice, ...], np.ndarray]:
    """``patch`` resampled onto the voxels of ``target`` it covers: (their ``[k, j, i]`` box, values)."""
    half = np.array(patch.shape[::-1]) * np.array(spacing) / 2
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half + np.asarray(
        center_lps
    )
    ijk = target.lps_to_ijk(corners)
    low = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, np.array(target.size) - 1)
    high = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 1, np.array(target.size))
    box = tuple(slice(lo, hi) for lo, hi in zip(low[::-1], high[::-1]))
    k, j, i = np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")
    lps = target.ijk_to_lps(np.column_stack([i.ravel(), j.ravel(), k.ravel()]))
    patch_index = (lps - np.asarray(center_lps)) / np.asarray(spacing) + (np.array(patch.shape[::-1]) - 1) / 2
    values = ndimage.map_coordinates(patch, patch_index[:, ::-1].T, order=1, cval=0.0)
    return box, values.reshape(k.shape).astype(np.float32)
