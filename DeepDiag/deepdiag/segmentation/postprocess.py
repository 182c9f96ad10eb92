"""Clean the nodule prediction: nodules lie in the lungs and are not specks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_MIN_LUNG_SHARE_OF_BORDER = 0.3  # juxtapleural nodules border the lung on about half their surface
_RING_VOXELS = 2


def keep_plausible_nodules(
    probabilities: np.ndarray, spacing_kji: tuple[float, ...], min_volume_mm3: float, min_peak_probability: float = 0.0
) -> np.ndarray:
    """Move the probability of implausible nodule components to background; returns a cleaned copy.

    ``probabilities`` is ``(3, k, j, i)``: background, lungs, nodules. A component is dropped
    when it is smaller than ``min_volume_mm3``, when the model is nowhere in it more sure than
    ``min_peak_probability`` (hesitant blobs on vessel crossings are the typical false positive),
    or when less than 30 % of the ring around it is lung (a nodule sits in the lung; a false
    positive in the mediastinum or wall does not).
    """
    cleaned = probabilities.copy()
    labels = np.argmax(probabilities, axis=0)
    components, count = ndimage.label(labels == 2)
    voxel_mm3 = float(np.prod(spacing_kji))
    if count:  # specks and hesitant blobs first, all at once: a confused model can leave thousands
        indices = np.arange(1, count + 1)
        sizes = ndimage.sum(labels == 2, components, indices) * voxel_mm3
        peaks = ndimage.maximum(probabilities[2], components, indices)
        specks = np.isin(components, indices[(sizes < min_volume_mm3) | (peaks < min_peak_probability)])
        cleaned[0][specks] += cleaned[2][specks]
        cleaned[2][specks] = 0.0
        components[specks] = 0
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - _RING_VOXELS, 0), s.stop + _RING_VOXELS) for s in box)
        component = components[box] == index
        ring = ndimage.binary_dilation(component, iterations=_RING_VOXELS) & ~component
        lung_share = float((labels[box][ring] == 1).mean()) if ring.any() else 0.0
        if lung_share < _MIN_LUNG_SHARE_OF_BORDER:
            region = cleaned[(slice(None), *box)]
            region[0][component] += region[2][component]
            region[2][component] = 0.0
    return cleaned
