"""A threshold estimate of the lungs in a CT: for cropping, sanity checks, nodule insertion and
the places where a finding can be.

Air-like components (< -400 HU) inside the body (so never the air around the patient or the
scanner's padding) of at least 100 mL whose median lies between -950 and
-500 HU are lung parenchyma (outside air and the trachea sit near -1000); holes are filled
slice by slice so that vessels belong to them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .body_mask import find_body
from .geometry import Volume

MIN_LUNG_ML = 100.0
#: the 2D cross that fills holes on one axial slice, as a 3D structure with no neighbours across slices
_IN_PLANE = np.stack([np.zeros((3, 3), bool), ndimage.generate_binary_structure(2, 1), np.zeros((3, 3), bool)])


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
    sizes_ml = np.bincount(components.ravel(), minlength=count + 1)[1:] * ct.voxel_volume_mm3() / 1000
    candidates = np.flatnonzero(sizes_ml >= MIN_LUNG_ML) + 1
    # each median within the component's own box: ndimage.median over the whole label image sorts
    # every voxel (8 s on a default case)
    boxes = ndimage.find_objects(components)
    keep = [c for c in candidates if -950 < np.median(ct.array[boxes[c - 1]][components[boxes[c - 1]] == c]) < -500]
    is_lung = np.zeros(count + 1, bool)
    is_lung[keep] = True
    # holes filled slice by slice, in one call: a structure without neighbours across slices
    return ndimage.binary_fill_holes(is_lung[components], structure=_IN_PLANE)
