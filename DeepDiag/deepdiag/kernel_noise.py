"""Image noise of a CT's reconstruction kernel, and smoothing a sharp-kernel scan down to a model's.

Scanners reconstruct the same raw data with soft kernels (body, mediastinum) or sharp ones
(lung, bone): a sharp kernel raises the noise and rings at edges. A network trained on softer
images reads that noise as structure; the nodule-type classifier called most ground-glass
nodules part-solid or solid on a sharp rendition of the held-out real CT (docs/models/nodule-type-cls.md).
A card may therefore bound the noise its network saw (``input.max_air_noise_hu``): a noisier scan
is smoothed in-plane, where the kernel acts, just enough to come under it, and a scan within the
bound is used as it is, voxel for voxel.

The noise is measured in the air around the patient (inside the scanner's field, outside the
body), the one large region of known, uniform density that every chest CT has. Neither MONAI nor
SimpleITK estimates a CT's noise level, hence this module.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import Volume

#: in-plane Gaussian scales tried in turn, the first that brings the noise under the bound is used
SMOOTHING_SIGMAS_MM = (0.5, 0.7, 1.0, 1.4, 2.0)
#: air: a 5x5-voxel local mean within this HU band (padding below -1024 is outside the scan)
_AIR_HU = (-1010.0, -960.0)
_LOCAL_VOXELS = 5
#: slices measured: the noise is a property of the reconstruction, alike on every slice
_SLICES_MEASURED = 16
_MIN_AIR_VOXELS = 2000


def air_noise_hu(volume: Volume) -> float | None:
    """The standard deviation of the noise in the scan's air, in HU (robust: 1.4826 x the median
    absolute deviation from the local mean); None when the scan shows too little air around the body."""
    return _noise_of(_measured_slices(volume.array))


def harmonized(volume: Volume, max_noise_hu: float | None) -> tuple[Volume, float]:
    """``volume`` smoothed in-plane with the smallest of :data:`SMOOTHING_SIGMAS_MM` that brings
    its air noise to ``max_noise_hu`` or under (the largest when none does), and that scale in mm;
    ``volume`` itself and 0.0 when its noise is within the bound, cannot be measured, or no bound
    is given."""
    if max_noise_hu is None:
        return volume, 0.0
    slices = _measured_slices(volume.array)
    noise = _noise_of(slices)
    if noise is None or noise <= max_noise_hu:
        return volume, 0.0
    for sigma_mm in SMOOTHING_SIGMAS_MM:
        noise = _noise_of(_smooth_in_plane(slices, volume.spacing, sigma_mm))
        if noise is None or noise <= max_noise_hu:
            break
    padding = volume.array < -1024
    smoothed = _smooth_in_plane(volume.array, volume.spacing, sigma_mm)
    smoothed[padding] = volume.array[padding]
    return volume.with_array(smoothed), sigma_mm


def network_view(card, volume: Volume, what_it_did: str, views: dict | None = None) -> tuple[Volume, list[str]]:
    """The scan as the network of the model ``card`` describes is given it: smoothed in-plane
    when its kernel is noisier than the card's ``input.max_air_noise_hu``, else ``volume``
    itself; and the warning that says so, ``what_it_did`` naming the model's work ("typed the
    findings"). ``views`` (by bound) lets the models of one run on one scan share a smoothing."""
    bound = card.input.get("max_air_noise_hu")
    if bound is None:
        return volume, []
    views, bound = ({} if views is None else views), float(bound)
    if bound not in views:
        views[bound] = harmonized(volume, bound)
    seen, sigma_mm = views[bound]
    if not sigma_mm:
        return seen, []
    return seen, [
        f"the scan is noisier than {card.full_id} was trained on ({air_noise_hu(volume):.0f} HU in its air, "
        f"a sharp reconstruction kernel?): it {what_it_did} on the scan smoothed in-plane by {sigma_mm} mm"
    ]


def _measured_slices(array: np.ndarray) -> np.ndarray:
    step = max(1, array.shape[0] // _SLICES_MEASURED)
    return array[::step].astype(np.float32)


def _noise_of(slices: np.ndarray) -> float | None:
    local_mean = ndimage.uniform_filter(slices, size=(1, _LOCAL_VOXELS, _LOCAL_VOXELS))
    air = (local_mean > _AIR_HU[0]) & (local_mean < _AIR_HU[1]) & (slices >= -1024)
    if air.sum() < _MIN_AIR_VOXELS:
        return None
    return float(np.median(np.abs(slices - local_mean)[air]) * 1.4826)


def _smooth_in_plane(array: np.ndarray, spacing, sigma_mm: float) -> np.ndarray:
    """Padding (below -1024 HU) counts as air, so that it does not bleed into the field's edge.
    In-plane only: a reconstruction kernel filters each slice, and smoothing across slices would
    blur small nodules."""
    image = np.maximum(array, -1024).astype(np.float32)
    return ndimage.gaussian_filter(image, sigma=(0.0, sigma_mm / spacing[1], sigma_mm / spacing[0]), output=np.float32)
