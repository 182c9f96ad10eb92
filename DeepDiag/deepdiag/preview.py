"""Three-plane PNG previews (axial, coronal, sagittal) of a CT with label outlines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .files import atomic_output
from .geometry import Volume

LUNG_WINDOW = (-1350.0, 150.0)
NODULE_OUTLINE = (255, 60, 40)
LUNG_OUTLINE = (70, 160, 255)


def write_preview(
    ct: Volume, labels: Volume, center_kji: tuple[int, int, int], path: str | Path, height: int = 384
) -> Path:
    """Planes through ``center_kji`` in a lung window; label 1 (lungs) outlined blue, 2 (nodules) red.

    The arrays must share a grid; planes are drawn in array order with the head up, which is
    the usual radiological view for axial LPS scans.
    """
    k, j, i = center_kji
    spacing = ct.spacing
    planes = [
        (lambda a: a[k], (spacing[1], spacing[0])),
        (lambda a: a[::-1, j, :], (spacing[2], spacing[0])),
        (lambda a: a[::-1, :, i], (spacing[2], spacing[1])),
    ]
    panels = [_panel(cut(ct.array), cut(labels.array), pixel, height) for cut, pixel in planes]
    sheet = Image.new("RGB", (sum(p.width for p in panels), height))
    left = 0
    for panel in panels:
        sheet.paste(panel, (left, 0))
        left += panel.width
    with atomic_output(path) as temporary:
        sheet.save(temporary, format="PNG")
    return Path(path)


def largest_component_center(mask: np.ndarray) -> tuple[int, int, int] | None:
    """A voxel of the largest connected component (its centre of mass, snapped inside), or None."""
    components, count = ndimage.label(mask)
    if count == 0:
        return None
    largest = int(np.argmax(ndimage.sum(mask, components, np.arange(1, count + 1)))) + 1
    voxels = np.argwhere(components == largest)
    centre = voxels.mean(axis=0)
    return tuple(int(v) for v in voxels[np.argmin(((voxels - centre) ** 2).sum(axis=1))])


def _panel(ct: np.ndarray, labels: np.ndarray, pixel_mm: tuple[float, float], height: int) -> Image.Image:
    low, high = LUNG_WINDOW
    grey = (np.clip((ct.astype(np.float32) - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for region, color in ((labels >= 1, LUNG_OUTLINE), (labels == 2, NODULE_OUTLINE)):
        rgb[region & ~ndimage.binary_erosion(region)] = color
    aspect = (ct.shape[1] * pixel_mm[1]) / (ct.shape[0] * pixel_mm[0])
    return Image.fromarray(rgb).resize((max(1, int(round(height * aspect))), height), Image.NEAREST)
