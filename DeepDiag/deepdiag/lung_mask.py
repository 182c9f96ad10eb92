"""A threshold estimate of the lungs in a CT: for cropping, sanity checks, nodule insertion and
the places where a finding can be.

Air-like components (< -400 HU) inside the body (so never the air around the patient or the
scanner's padding) of at least 100 mL whose median lies between -950 and
-500 HU are lung parenchyma (outside air and the trachea sit near -1000); holes are filled
slice by slice so that vessels belong to them. The trachea and main bronchi join the lungs through
the bronchial tree, so they are part of that mask; :func:`find_central_airways` finds their lumen.

Bowel gas can pass for lung: mixed with stool and blurred by thick slices, its median lies in
the lungs' range (-900 HU for the colon of abdomen_ct_3mm on the 1 mm model grid). Unlike lung it
is largely darker than -950 HU, and it lies below the lungs: such air is set apart
(:func:`find_lungs`). A scan that holds only the lung bases or apices (an abdominal CT) has
lungs under 100 mL; they count when no larger ones are found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .body_mask import find_body
from .geometry import Volume, box_corners
from .slabs import per_slice

MIN_LUNG_ML = 100.0
#: the lung bases of abdomen_ct_3mm are 38 and 66 mL on the 1 mm grid; the air by the skin that the
#: body mask holds on the real chest CTs (52 and 83 mL) passes the median rule too, and is only
#: taken when no larger lungs are found
MIN_PARTIAL_LUNG_ML = 20.0
#: the median a lung's air lies between: parenchyma, not outside air or pure gas (near -1000)
_LUNG_MEDIAN_HU = (-950.0, -500.0)
#: lungs hold little air darker than this (the emphysema index's -950 HU): 0.5-6 % of the lungs of
#: the real chest CTs of shared data, up to about 35 % in severe emphysema; 42 % of the colon's gas
#: in abdomen_ct_3mm. Gassier air is lung unless it lies below the lungs
GAS_HU = -950.0
_MAX_CLEAR_LUNG_GAS_SHARE = 0.15
#: airway lumen is air (-1000 HU) with noise; smoothed over 3 voxels it stays under this, while
#: inflated parenchyma (-800 to -900 HU on both real chest CTs of shared data) stays above
AIRWAY_LUMEN_HU = -930.0
#: a lumen grown further than this has leaked into emphysematous lung: a stricter threshold is tried
MAX_AIRWAY_ML = 150.0


@dataclass(frozen=True)
class _AirComponent:
    """One air component inside the body whose median lies in the lungs' range."""

    label: int
    box: tuple[slice, ...]
    ml: float
    gas_share: float


def find_lungs(ct: Volume, body: np.ndarray | None = None) -> np.ndarray:
    """Boolean lung mask of a CT in HU (vessels included); empty if there are no lungs.

    Bowel or stomach gas that passed for lung is left out: an air component of
    :data:`MIN_LUNG_ML` or more, gassier than lung (:data:`GAS_HU`), centred below the lowest point
    of the clear lungs (those under the gas share, of MIN_LUNG_ML or more, or of
    :data:`MIN_PARTIAL_LUNG_ML` where none is that large).

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
    boxes = ndimage.find_objects(components)
    large = _aerated(ct, components, boxes, sizes_ml, MIN_LUNG_ML, np.inf)
    clear = [a for a in large if a.gas_share <= _MAX_CLEAR_LUNG_GAS_SHARE]
    if not clear:  # the smaller pieces are judged only where no large lung is clear
        partial = _aerated(ct, components, boxes, sizes_ml, MIN_PARTIAL_LUNG_ML, MIN_LUNG_ML)
        clear = [a for a in partial if a.gas_share <= _MAX_CLEAR_LUNG_GAS_SHARE]
    bottom = min((_lowest_height(ct, a.box) for a in clear), default=-np.inf)
    kept = [a for a in large if a.gas_share <= _MAX_CLEAR_LUNG_GAS_SHARE or _centre_height(ct, components, a) >= bottom]
    kept = kept or clear  # a scan that holds only the lung bases or apices
    lungs = np.zeros(air.shape, bool)
    for a in kept:
        lungs[a.box] |= components[a.box] == a.label
    if kept:
        # a hole lies inside the lungs' box, and what touches the box's faces is open to the
        # outside: filling within the box is exact, and a third of the work on a full chest CT
        box = tuple(slice(min(a.box[d].start for a in kept), max(a.box[d].stop for a in kept)) for d in range(3))
        lungs[box] = per_slice(ndimage.binary_fill_holes, lungs[box])
    return lungs


def _aerated(
    ct: Volume, components: np.ndarray, boxes: list, sizes_ml: np.ndarray, low_ml: float, high_ml: float
) -> list[_AirComponent]:
    """The air components from ``low_ml`` to under ``high_ml`` whose median lies in the lungs'
    range, with their share of gas."""
    aerated = []
    for c in np.flatnonzero((sizes_ml >= low_ml) & (sizes_ml < high_ml)) + 1:
        # the median within the component's own box: ndimage.median over the whole label image
        # sorts every voxel (8 s on a default case)
        values = ct.array[boxes[c - 1]][components[boxes[c - 1]] == c]
        if _LUNG_MEDIAN_HU[0] < np.median(values) < _LUNG_MEDIAN_HU[1]:
            aerated.append(_AirComponent(int(c), boxes[c - 1], float(sizes_ml[c - 1]), float(np.mean(values < GAS_HU))))
    return aerated


def _lowest_height(ct: Volume, box: tuple[slice, ...]) -> float:
    """The lowest LPS z (mm; up is superior) of the index box ``box`` (k, j, i)."""
    first, last = np.array([b.start for b in box[::-1]]), np.array([b.stop - 1 for b in box[::-1]])
    return float(ct.ijk_to_lps(box_corners(first, last).astype(float))[:, 2].min())


def _centre_height(ct: Volume, components: np.ndarray, component: _AirComponent) -> float:
    """LPS z (mm) of the centre of an air component."""
    centre_kji = np.add(
        ndimage.center_of_mass(components[component.box] == component.label), [b.start for b in component.box]
    )
    return float(ct.ijk_to_lps(centre_kji[::-1])[2])


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
