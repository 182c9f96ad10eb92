"""Insert synthetic nodules into the lungs of a real CT (``deepdiag phantom --insert-into``).

The lungs are found by threshold (``deepdiag.lung_mask``); nodules are placed in them but never in
or against the lumen of the trachea and main bronchi, which that mask holds too. Nodules are drawn
as in the procedural phantom, blurred by the scanner PSF and given noise of the level
measured in the scan, then blended into the real image. Outputs keep the scan's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ..errors import DeepDiagError
from ..geometry import Volume, box_slices, nonzero_box
from ..lung_mask import MIN_LUNG_ML, find_central_airways, find_lungs
from .anatomy import Anatomy, sample_vessel_points
from .config import PhantomConfig
from .grid import Grid
from .imaging import correlated_noise, smooth_field
from .nodules import design_nodules, place_nodules
from .tissues import appearance_tables

if TYPE_CHECKING:
    from .case import PhantomCase


@dataclass(frozen=True, eq=False)
class InsertionHost:
    """A real CT prepared once for all the copies made of it: finding its lungs, its airways and
    its noise takes a third of a copy's time, and they are the same for every copy. Its masks are
    read-only, so that no copy can change what the next one is made from."""

    ct: Volume
    source: Path
    lungs: np.ndarray  # the truth's lungs: threshold lungs, the airway lumen they hold included
    placeable: np.ndarray  # where nodules may go: the lungs away from the central airways
    vessels: np.ndarray
    noise_hu: float


def insertion_host(ct: Volume, source: Path) -> InsertionHost:
    """``ct`` (read from ``source``, which errors name) ready for :func:`insert_into`."""
    lungs = find_lungs(ct)
    found_ml = lungs.sum() * ct.voxel_volume_mm3() / 1000
    if found_ml < MIN_LUNG_ML:  # an abdominal CT's lung bases, or no lungs at all
        found = "no lungs found" if found_ml == 0 else f"only {found_ml:.0f} mL of lung found"
        raise DeepDiagError(f"{found}; nodules are inserted into 100 mL or more of air-filled lung", source)
    placeable = lungs & ~_by_central_airways(ct, lungs)
    vessels = lungs & (ct.array > -400)
    for mask in (lungs, placeable, vessels):
        mask.flags.writeable = False
    return InsertionHost(ct, Path(source), lungs, placeable, vessels, _noise_level(ct, lungs))


def insert_into(host: InsertionHost, config: PhantomConfig, seed: int, index: int) -> PhantomCase:
    """A PhantomCase made of the host's scan with nodules added; see the module docstring."""
    from .case import PhantomCase, case_truth  # case.py imports this module

    ct = host.ct
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    grid = Grid(ct.size, ct.spacing, fixed_origin=ct.origin)
    anatomy = Anatomy(
        np.zeros(grid.shape, np.uint8),
        host.placeable,  # the truth's lungs stay ``host.lungs``
        host.vessels,
        *sample_vessel_points(grid, host.vessels, rng),
        source=f"ct:{host.source.name}",
    )
    instances, nodules = place_nodules(grid, anatomy, design_nodules(config, rng), rng)
    for nodule in nodules:  # the grid frame ignores the scan's direction; truth is in true LPS
        ijk = (np.array(nodule["center_lps"]) - grid.origin) / np.array(grid.spacing)
        nodule["center_lps"] = [round(float(c), 4) for c in ct.ijk_to_lps(ijk)]
    image = _blend(ct, grid, anatomy.tissue, instances > 0, host.noise_hu, config.blur_mm, rng)
    labels = np.where(instances > 0, 2, np.where(host.lungs, 1, 0)).astype(np.uint8)
    name = f"{host.source.name.split('.')[0]}_s{seed}_{index:03d}"
    truth = case_truth(name, config, seed, index, anatomy.source, nodules)
    truth["lungs_label"] = "threshold estimate of the real scan's lungs"
    return PhantomCase(name, ct.with_array(image), ct.with_array(labels), ct.with_array(instances), truth)


#: which placement rules made an inserted copy; cached training copies carry it in their name.
#: 2: nodules kept out of the central airways (version 1 put some inside the trachea)
INSERTION_VERSION = 2
#: an airway wall is 1-3 mm thick: a nodule placed within this of the lumen would sit in the wall
AIRWAY_CLEARANCE_MM = 3.0
_GAUSSIAN_TRUNCATE = 4.0  # scipy's default, named because the nodules' blur box depends on it


def _by_central_airways(ct: Volume, lungs: np.ndarray) -> np.ndarray:
    """The central airways' lumen (:func:`.find_central_airways`) and what lies within
    :data:`AIRWAY_CLEARANCE_MM` of it."""
    airways = find_central_airways(ct, lungs)
    # the lumen and all within reach of it: the distances are needed nowhere else
    box = nonzero_box(airways, [int(np.ceil(AIRWAY_CLEARANCE_MM / s)) for s in ct.spacing[::-1]])
    if box is None:
        return airways
    box = box_slices(box)
    near = np.zeros_like(airways)
    near[box] = ndimage.distance_transform_edt(~airways[box], sampling=ct.spacing[::-1]) <= AIRWAY_CLEARANCE_MM
    return near


def _blend(ct, grid, tissue, nodules, noise_hu, blur_mm, rng) -> np.ndarray:
    means, texture = appearance_tables(rng)
    target = means[tissue] + texture[tissue] * smooth_field(grid, rng)
    change = np.where(nodules, target - ct.array, 0).astype(np.float32)
    sigma = [blur_mm / s for s in grid.spacing[::-1]]
    box = _blur_box(nodules, sigma)
    change = _blurred_in(change, box, sigma)
    weight = _blurred_in(nodules.astype(np.float32), box, sigma)
    noise = correlated_noise(grid.shape, rng) * noise_hu
    blended = ct.array + change + weight * noise  # the nodule replaced real noise; give it back
    image = ct.array.copy()
    touched = weight > 0  # elsewhere the real scan stays exactly as it was
    image[touched] = np.clip(np.rint(blended[touched]), -1024, 3071)
    return image


def _blur_box(support: np.ndarray, sigma: list[float]) -> tuple[slice, ...] | None:
    """The box in which ``ndimage.gaussian_filter(values, sigma)`` of ``values`` that are zero
    outside the boolean ``support`` can differ from zero, with a kernel radius of zeros around
    it: what the filter reflects at the box's edge is then zero, as it is in the whole volume, so
    blurring the box alone gives the same voxels (about a tenth of a chest CT for a copy's
    nodules). None when ``support`` is empty."""
    reach = [int(_GAUSSIAN_TRUNCATE * s + 0.5) for s in sigma]  # scipy's kernel radius
    box = nonzero_box(support, [2 * r + 1 for r in reach])
    return None if box is None else box_slices(box)


def _blurred_in(values: np.ndarray, box: tuple[slice, ...] | None, sigma: list[float]) -> np.ndarray:
    """``ndimage.gaussian_filter(values, sigma)`` computed in ``box`` (:func:`_blur_box`) only."""
    blurred = np.zeros_like(values)
    if box is not None:
        blurred[box] = ndimage.gaussian_filter(values[box], sigma, truncate=_GAUSSIAN_TRUNCATE)
    return blurred


def _noise_level(ct: Volume, lungs: np.ndarray) -> float:
    """Noise standard deviation in HU, from the lung parenchyma's high-frequency part."""
    detail = ct.array.astype(np.float32) - ndimage.uniform_filter(ct.array.astype(np.float32), 3)
    parenchyma = lungs & (ct.array < -600)
    return float(np.std(detail[parenchyma]) * 1.15) if parenchyma.any() else 15.0
