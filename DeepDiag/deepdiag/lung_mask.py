"""A threshold estimate of the lungs in a CT: for cropping, sanity checks, nodule insertion and
the places where a finding can be.

Air-like components (< -400 HU) inside the body (so never the air around the patient or the
scanner's padding) of at least 100 mL whose median lies between -950 and
-500 HU are lung parenchyma (outside air and the trachea sit near -1000); holes are filled
slice by slice so that vessels belong to them. The trachea and main bronchi join the lungs through
the bronchial tree, so they are part of that mask; :func:`find_central_airways` finds their lumen.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .body_mask import find_body
from .geometry import Volume
from .slabs import per_slice

MIN_LUNG_ML = 100.0
#: airway lumen is air (-1000 HU) with noise; smoothed over 3 voxels it stays under this, while
#: inflated parenchyma (-800 to -900 HU on both real chest CTs of shared data) stays above
AIRWAY_LUMEN_HU = -930.0
#: a lumen grown further than this has leaked into emphysematous lung: a stricter threshold is tried
MAX_AIRWAY_ML = 150.0


def find_lungs(ct: Volume, body: np.ndarray | None = None) -> np.ndarray:
    """Boolean lung mask of a CT in HU (vessels included); empty if there are no lungs.

    Args:
        ct: the CT, outside-field padding included.
        body: its body mask (``find_body``) where the caller has it already.
    """
    air = (ct.array < -400) & (find_body(ct) if body is None else body)
    components, count = ndimage.label(air)
    if count == 0:
        return np.zeros_like(air)
    # counted over the air voxels only: np.bincount over a whole int32 label grid takes 1.4 s on a
    # chest CT's model grid, over its air voxels 0.04 s
    sizes_ml = np.bincount(components[air], minlength=count + 1)[1:] * ct.voxel_volume_mm3() / 1000
    candidates = np.flatnonzero(sizes_ml >= MIN_LUNG_ML) + 1
    # each median within the component's own box: ndimage.median over the whole label image sorts
    # every voxel (8 s on a default case)
    boxes = ndimage.find_objects(components)
    keep = [c for c in candidates if -950 < np.median(ct.array[boxes[c - 1]][components[boxes[c - 1]] == c]) < -500]
    lungs = np.zeros(air.shape, bool)
    if not keep:
        return lungs
    for c in keep:
        lungs[boxes[c - 1]] |= components[boxes[c - 1]] == c
    # a hole lies inside the lungs' box, and what touches the box's faces is open to the outside:
    # filling within the box is exact, and a third of the work on a full chest CT
    box = tuple(
        slice(min(boxes[c - 1][a].start for c in keep), max(boxes[c - 1][a].stop for c in keep)) for a in range(3)
    )
    lungs[box] = per_slice(ndimage.binary_fill_holes, lungs[box])
    return lungs


def find_central_airways(ct: Volume, lungs: np.ndarray) -> np.ndarray:
    """The lumen of the trachea and the bronchi joined to it within ``lungs`` (:func:`find_lungs`):
    the air of ``lungs`` (smoothed under :data:`AIRWAY_LUMEN_HU`) connected to its most superior
    slice, where the trachea enters. Empty when the lungs hold no such air (a scan below the carina).

    On ``thorax_4dct_phase00`` it holds the trachea and main bronchi (26 mL, 180 mm down from the
    top slice); a synthetic nodule placed by :func:`find_lungs` alone sat inside the trachea there.
    """
    slices = np.flatnonzero(lungs.any(axis=(1, 2)))
    if not len(slices):
        return np.zeros_like(lungs)
    heights = [ct.ijk_to_lps(np.array([0.0, 0.0, k]))[2] for k in (slices[0], slices[-1])]  # LPS: +z is superior
    top = slices[-1] if heights[1] > heights[0] else slices[0]
    smoothed = ndimage.uniform_filter(ct.array.astype(np.float32), 3)
    for threshold in (AIRWAY_LUMEN_HU, AIRWAY_LUMEN_HU - 20, AIRWAY_LUMEN_HU - 40):
        components, _ = ndimage.label(lungs & (smoothed < threshold))
        airways = np.isin(components, np.unique(components[top][components[top] > 0]))
        if airways.sum() * ct.voxel_volume_mm3() / 1000 <= MAX_AIRWAY_ML:
            return airways
    return np.zeros_like(lungs)
