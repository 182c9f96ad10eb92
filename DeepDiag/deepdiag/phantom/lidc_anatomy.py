"""Phantom anatomy from real lung label maps (e.g. the LIDC-IDRI cases in shared/data).

A folder holds ``lungs.nii.gz`` and optionally ``vessels``, ``airways``, ``fissures`` and
``nodule`` masks of one scan. They are resampled onto the phantom grid with the lungs
centred, a chest wall is built around them, and the real nodule becomes nodule 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import DeepDiagError
from ..image_io import image_from_volume, read_volume
from .anatomy import Anatomy, chest_wall, sample_vessel_points
from .grid import Grid
from .tissues import Tissue

REQUIRED_MASK = "lungs.nii.gz"
OPTIONAL_MASKS = ("vessels", "airways", "fissures", "nodule")


def anatomy_folders(path: str | Path) -> list[Path]:
    """The anatomy folders at ``path``: itself if it holds the lung mask, else its subfolders that do."""
    path = Path(path)
    if not path.is_dir():
        raise DeepDiagError("--anatomy needs a folder", path)
    if (path / REQUIRED_MASK).is_file():
        return [path]
    folders = sorted(p for p in path.iterdir() if (p / REQUIRED_MASK).is_file())
    if not folders:
        raise DeepDiagError(f"holds no {REQUIRED_MASK} (nor subfolders that do)", path)
    return folders


def anatomy_from_masks(grid: Grid, folder: Path, rng: np.random.Generator) -> tuple[Anatomy, np.ndarray | None]:
    """The anatomy, and the real nodule's mask on the grid (None if the folder has none)."""
    masks = _resampled_masks(grid, folder)
    lungs = masks["lungs"]
    if not lungs.any():
        raise DeepDiagError(
            "the lung mask is empty or lies outside the phantom's field of view", folder / REQUIRED_MASK
        )
    x, y, _ = grid.coordinates()
    cavity_a = float(np.abs(np.broadcast_to(x, grid.shape)[lungs]).max()) + 3.0
    cavity_b = float(np.abs(np.broadcast_to(y, grid.shape)[lungs]).max()) + 3.0
    tissue, cavity, _ = chest_wall(grid, cavity_a, cavity_b, rng)
    nodule = masks.get("nodule")
    if nodule is not None:
        lungs |= nodule  # a juxtapleural nodule may lie just outside the drawn lung boundary
    tissue[lungs] = Tissue.LUNG
    vessels = _draw_real_structures(tissue, lungs, np.asarray(cavity), masks)
    points, radii = sample_vessel_points(grid, vessels, rng)
    anatomy = Anatomy(tissue, lungs, vessels, points, radii, source=f"masks:{folder.name}")
    return anatomy, (nodule if nodule is not None and nodule.any() else None)


def _draw_real_structures(tissue, lungs, cavity, masks) -> np.ndarray:
    if "fissures" in masks:
        tissue[masks["fissures"] & lungs] = Tissue.FISSURE
    vessels = masks.get("vessels", np.zeros_like(lungs)) & lungs
    if "vessels" in masks:
        tissue[masks["vessels"] & cavity & ~lungs] = Tissue.BLOOD
        tissue[vessels] = Tissue.VESSEL
    if "airways" in masks:
        lumen = masks["airways"]
        wall = ndimage.binary_dilation(lumen, iterations=1) & ~lumen & (lungs | cavity)
        tissue[wall] = Tissue.AIRWAY_WALL
        tissue[lumen & (lungs | cavity)] = Tissue.AIR
    return vessels


def _resampled_masks(grid: Grid, folder: Path) -> dict[str, np.ndarray]:
    lungs_image = image_from_volume(read_volume(folder / REQUIRED_MASK))
    offset = _lung_center(lungs_image)  # phantom (0, 0, 0) ↔ the real lungs' centre
    reference = image_from_volume(grid.volume(np.zeros(grid.shape, dtype=np.uint8)))
    transform = sitk.TranslationTransform(3, offset)
    masks = {"lungs": _resample(lungs_image, reference, transform)}
    for name in OPTIONAL_MASKS:
        path = folder / f"{name}.nii.gz"
        if path.is_file():
            masks[name] = _resample(image_from_volume(read_volume(path)), reference, transform)
    return masks


def _lung_center(image: sitk.Image) -> tuple[float, float, float]:
    array = sitk.GetArrayViewFromImage(image)
    present = [np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != axis))) for axis in (2, 1, 0)]
    if any(p.size == 0 for p in present):
        return image.TransformContinuousIndexToPhysicalPoint([s / 2 for s in image.GetSize()])
    middle = [(p[0] + p[-1]) / 2 for p in present]
    return image.TransformContinuousIndexToPhysicalPoint(middle)


def _resample(image: sitk.Image, reference: sitk.Image, transform) -> np.ndarray:
    resampled = sitk.Resample(image > 0, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled).astype(bool)
