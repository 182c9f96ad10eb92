"""Clean the prediction: lungs and nodules lie inside the body and in or beside the lungs, and
nodules are not specks, on the model's grid and again on the scan's own."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_MIN_LUNG_SHARE_OF_BORDER = 0.3  # juxtapleural nodules border the lung on about half their surface
_RING_VOXELS = 2
#: a sphere of 3 mm, the smallest nodule DeepDiag reports (LUNA16 counts nodules from 3 mm)
SMALLEST_NODULE_MM3 = 4.0 / 3.0 * np.pi * 1.5**3
#: from this volume (a sphere of 7.3 mm: 160 voxels on the model grid) a component's shape is judged;
#: the phantoms' smaller true components can be flat (one of 118 mm³ at 0.25 on the held-out set)
SHAPE_MIN_VOLUME_MM3 = 200.0


def keep_inside_chest(probabilities: np.ndarray, body: np.ndarray, lungs: np.ndarray | None) -> np.ndarray:
    """Move lung and nodule probability to background outside the body (the air by the skin, the
    table, clothes) and in pieces that do not reach the threshold ``lungs`` (bowel gas, the
    oesophagus; not checked when there are none); ``probabilities`` ``(3, k, j, i)`` is changed
    in place and returned."""
    outside = ~body
    probabilities[0][outside] = 1.0
    probabilities[1:, outside] = 0.0
    if lungs is None:
        return probabilities
    pieces, count = ndimage.label(most_likely_class(probabilities) >= 1)
    if count:
        reaching = np.zeros(count + 1, bool)
        reaching[pieces[lungs]] = True
        astray = ~reaching[pieces]  # piece 0 (background) never reaches: it is left as it is
        astray &= pieces > 0
        probabilities[0][astray] = 1.0
        probabilities[1:, astray] = 0.0
    return probabilities


def keep_plausible_nodules(
    probabilities: np.ndarray,
    spacing_kji: tuple[float, ...],
    min_volume_mm3: float,
    min_peak_probability: float = 0.0,
    lungs: np.ndarray | None = None,
    min_thickness_ratio: float = 0.0,
) -> np.ndarray:
    """Move the probability of implausible nodule components to background; returns a cleaned copy.

    ``probabilities`` is ``(3, k, j, i)``: background, lungs, nodules. A component is dropped
    when it is smaller than ``min_volume_mm3``, when the model is nowhere in it more sure than
    ``min_peak_probability`` (hesitant blobs on vessel crossings are the typical false positive),
    or when less than 30 % of the ring around it is lung (a nodule sits in the lung; a false
    positive in the mediastinum or wall does not), or when it neither lies in nor touches the
    threshold ``lungs`` (a nodule in the heart or the wall that the network's own lung label
    reaches), or when it is a sheet: thinner than ``min_thickness_ratio`` of its length (see
    :func:`thickness_ratio`).
    """
    cleaned = probabilities.copy()
    labels = most_likely_class(probabilities)
    components, count = ndimage.label(labels == 2)
    voxel_mm3 = float(np.prod(spacing_kji))
    if count:  # specks and hesitant blobs first, all at once: a confused model can leave thousands
        indices = np.arange(1, count + 1)
        sizes, peaks = component_sizes_and_peaks(components, count, probabilities[2])
        specks = np.isin(components, indices[(sizes * voxel_mm3 < min_volume_mm3) | (peaks < min_peak_probability)])
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
        touches_lungs = lungs is None or bool(lungs[box][component | ring].any())
        sheet = min_thickness_ratio > 0 and thickness_ratio(component, spacing_kji) < min_thickness_ratio
        if lung_share < _MIN_LUNG_SHARE_OF_BORDER or not touches_lungs or sheet:
            region = cleaned[(slice(None), *box)]
            region[0][component] += region[2][component]
            region[2][component] = 0.0
    return cleaned


def thickness_ratio(component: np.ndarray, spacing_kji: tuple[float, ...]) -> float:
    """Thinnest over longest extent of a component: the square root of the smallest over the
    largest eigenvalue of its voxels' covariance in mm (1 for a ball, 0 for a flat sheet).

    On real scans the network marks sheets of partial-volume lung along the diaphragm's dome,
    the fissures and dependent atelectasis (ratios 0.15-0.3 at 200-13,000 mm³); the nodules of the
    phantoms and of real backgrounds with nodules inserted are compact (0.5 and more from 150
    mm³). Components under ``SHAPE_MIN_VOLUME_MM3`` count as compact.
    """
    voxels = np.argwhere(component)
    if len(voxels) * float(np.prod(spacing_kji)) < SHAPE_MIN_VOLUME_MM3:
        return 1.0
    eigenvalues = np.linalg.eigvalsh(np.cov((voxels * np.asarray(spacing_kji)).T))
    return float(np.sqrt(max(eigenvalues[0], 0.0) / max(eigenvalues[-1], 1e-9)))


def keep_nodules_on_output_grid(
    labels: np.ndarray,
    nodule_map: np.ndarray,
    spacing_kji: tuple[float, ...],
    min_volume_mm3: float,
    min_peak_probability: float = 0.0,
    own_rules: tuple[tuple[np.ndarray, float], ...] = (),
) -> np.ndarray:
    """Apply the volume and peak rules again on the scan's own grid, in place: resampling a
    component back onto thick slices can leave slivers of a few mm³ that the model grid never had.
    ``own_rules`` pairs the voxels of nodules that passed another rule on the model grid (the
    filter's score instead of the volume and peak: the bright spots, the small components) with
    the volume each component holding such a voxel needs here instead. A dropped component
    becomes lung (it lay where lung and nodule outweighed background)."""
    components, count = ndimage.label(labels == 2)
    if not count:
        return labels
    indices = np.arange(1, count + 1)
    sizes, peaks = component_sizes_and_peaks(components, count, nodule_map)
    volumes = sizes * float(np.prod(spacing_kji))
    failing = (volumes < min_volume_mm3) | (peaks < min_peak_probability)
    for passed, own_min_volume_mm3 in own_rules:
        holding = np.isin(indices, components[passed & (components > 0)])
        failing = np.where(holding, volumes < own_min_volume_mm3, failing)
    labels[np.isin(components, indices[failing])] = 1
    return labels


def most_likely_class(probabilities: np.ndarray) -> np.ndarray:
    """``np.argmax(probabilities, axis=0)`` (the first class on ties) as uint8, for the three
    classes background, lungs, nodules. numpy's argmax across the leading axis walks the arrays
    with a stride and takes 0.2-1 s on a chest crop; three comparisons take a tenth of that."""
    background, lungs, nodules = probabilities
    labels = (lungs > background).astype(np.uint8)
    labels[nodules > np.maximum(background, lungs)] = 2
    return labels


def component_centres(components: np.ndarray, count: int) -> list[tuple[float, float, float]]:
    """The mean voxel index (k, j, i) of each component 1..count, as ``ndimage.center_of_mass``
    with unit weights gives it; that sums over the whole grid once per axis (0.9 s on a chest
    crop), this reads only the components' voxels."""
    where = np.nonzero(components)
    members = components[where]
    sizes = np.maximum(np.bincount(members, minlength=count + 1)[1:], 1)
    sums = [np.bincount(members, weights=axis, minlength=count + 1)[1:] for axis in where]
    return list(zip(*(total / sizes for total in sums)))


def component_sizes_and_peaks(components: np.ndarray, count: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel count and largest value of each component 1..count. ndimage.sum and .maximum sort
    every voxel of the grid (18 s on a default case); this reads only the components' voxels."""
    inside = components > 0
    members = components[inside]
    sizes = np.bincount(members, minlength=count + 1)[1:]
    peaks = np.full(count + 1, -np.inf, dtype=np.float64)
    np.maximum.at(peaks, members, values[inside])
    return sizes, peaks[1:]
