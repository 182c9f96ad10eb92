"""From tissue map to CT image: Hounsfield values, texture, scanner blur, correlated noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import Grid
from .tissues import appearance_tables

_TEXTURE_CELL_MM = 6.0  # size of the smooth parenchymal texture blobs
_NOISE_CORRELATION_VOXELS = 0.7  # in-plane correlation of noise after reconstruction filtering


def render_ct(
    grid: Grid,
    tissue: np.ndarray,
    noise_hu: float,
    blur_mm: float,
    rng: np.random.Generator,
    calibration: tuple[float, float] = (1.0, 0.0),
) -> np.ndarray:
    """An int16 image of the tissue map: HU, or ``scale × HU + offset`` for a miscalibrated scanner."""
    means, texture_amplitude = appearance_tables(rng)
    image = means[tissue]
    image += texture_amplitude[tissue] * smooth_field(grid, rng)
    if blur_mm > 0:
        image = ndimage.gaussian_filter(image, sigma=[blur_mm / s for s in grid.spacing[::-1]], output=np.float32)
    if noise_hu > 0:
        image += correlated_noise(grid.shape, rng) * (noise_hu * rng.uniform(0.8, 1.2))
    if calibration != (1.0, 0.0):
        image = image * calibration[0] + calibration[1]
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16)


def smooth_field(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance smooth random field: white noise on a coarse grid, interpolated up."""
    coarse_shape = [max(2, int(np.ceil(n * s / _TEXTURE_CELL_MM)) + 1) for n, s in zip(grid.shape, grid.spacing[::-1])]
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    zoom = [n / c for n, c in zip(grid.shape, coarse_shape)]
    field = ndimage.zoom(coarse, zoom, order=1, output=np.float32, grid_mode=True, mode="nearest")
    field = field[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
    return field / max(float(field.std()), 1e-6)


def correlated_noise(
    shape: tuple[int, int, int], rng: np.random.Generator, correlation_voxels: float = _NOISE_CORRELATION_VOXELS
) -> np.ndarray:
    """Unit-variance noise, correlated in-plane over ``correlation_voxels`` as a kernel leaves it."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma = (0.0, correlation_voxels, correlation_voxels)
    ndimage.gaussian_filter(noise, sigma=sigma, output=noise)
    noise /= max(float(noise.std()), 1e-6)
    return noise


def sharper_kernel(
    image: np.ndarray, spacing_ijk, amount: float, noise_hu: float, rng: np.random.Generator
) -> np.ndarray:
    """``image`` (int16 HU, ``[k, j, i]``) as a sharper reconstruction kernel would show it: each
    slice's detail above 0.8 mm boosted by ``amount`` (edges ring, the scan's own noise grows) and
    ``noise_hu`` of fine-grained noise added, as a lung or bone kernel gives beside a soft one.
    Outside-field padding (below -1024 HU) stays as it is. A real scan's own kernel cannot be
    undone, so this makes sharp-kernel versions of the soft-kernel real CTs in shared data."""
    values = image.astype(np.float32)
    in_plane = (0.0, 0.8 / spacing_ijk[1], 0.8 / spacing_ijk[0])
    sharpened = values + amount * (values - ndimage.gaussian_filter(values, in_plane))
    sharpened += correlated_noise(image.shape, rng, correlation_voxels=0.5) * noise_hu  # finer than a soft kernel's
    result = np.clip(np.rint(sharpened), -1024, 3071).astype(np.int16)
    padding = image < -1024
    result[padding] = image[padding]
    return result
