"""A PNG of a case: axial, coronal and sagittal planes through its largest nodule, truth outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..files import atomic_output
from .case import PhantomCase

_LUNG_WINDOW = (-1350.0, 150.0)
_NODULE_OUTLINE = (255, 60, 40)
_LUNG_OUTLINE = (70, 160, 255)


def write_preview(case: PhantomCase, path: str | Path, height: int = 384) -> Path:
    center = _largest_nodule_voxel(case)
    spacing = case.ct.spacing
    planes = [
        (lambda a: a[center[0]], (spacing[1], spacing[0])),  # axial: rows j, columns i
        (lambda a: a[::-1, center[1], :], (spacing[2], spacing[0])),  # coronal: head up
        (lambda a: a[::-1, :, center[2]], (spacing[2], spacing[1])),  # sagittal: head up
    ]
    panels = [_panel(cut(case.ct.array), cut(case.labels.array), pixel, height) for cut, pixel in planes]
    sheet = Image.new("RGB", (sum(p.width for p in panels), height))
    left = 0
    for panel in panels:
        sheet.paste(panel, (left, 0))
        left += panel.width
    with atomic_output(path) as temporary:
        sheet.save(temporary, format="PNG")
    return Path(path)


def _largest_nodule_voxel(case: PhantomCase) -> tuple[int, int, int]:
    nodules = case.truth["nodules"]
    if not nodules:
        return tuple(n // 2 for n in case.ct.array.shape)
    largest = max(nodules, key=lambda n: n["volume_mm3"])
    ijk = np.rint(case.ct.lps_to_ijk(np.array(largest["center_lps"]))).astype(int)
    return int(ijk[2]), int(ijk[1]), int(ijk[0])


def _panel(ct: np.ndarray, labels: np.ndarray, pixel_mm: tuple[float, float], height: int) -> Image.Image:
    low, high = _LUNG_WINDOW
    grey = (np.clip((ct.astype(np.float32) - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for label, color in ((1, _LUNG_OUTLINE), (2, _NODULE_OUTLINE)):
        region = labels == label if label == 2 else labels >= 1
        rgb[region & ~ndimage.binary_erosion(region)] = color
    aspect = (ct.shape[1] * pixel_mm[1]) / (ct.shape[0] * pixel_mm[0])
    return Image.fromarray(rgb).resize((max(1, int(round(height * aspect))), height), Image.NEAREST)
