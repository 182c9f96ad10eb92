"""The grid a segmentation model works on, and the way there and back.

Any input (oblique, flipped, anisotropic) is resampled onto an axis-aligned LPS grid with
the model's spacing that covers it; results are resampled back onto the exact input grid,
which SimpleITK does in physical space, so orientation needs no separate step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..body_mask import find_body, padding_as_air
from ..geometry import Volume, box_corners, nonzero_box
from ..image_io import image_from_volume, volume_from_image
from ..lung_mask import find_lungs

AIR_HU = -1024.0
_CROP_MARGIN_MM = 10.0


@dataclass(frozen=True)
class Crop:
    """Index box ``[k0:k1, j0:j1, i0:i1]`` of the model grid that holds the lungs."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))


def to_model_grid(volume: Volume, spacing: tuple[float, float, float], labels: bool = False) -> Volume:
    """Resample onto an axis-aligned LPS grid of ``spacing`` covering the volume: linear for
    images (outside and the scanner's padding: air), nearest neighbour for label maps (outside: 0)."""
    lps = volume.ijk_to_lps(box_corners(np.zeros(3), np.array(volume.size) - 1))
    low, high = lps.min(axis=0), lps.max(axis=0)
    size = [int(np.floor((top - bottom) / s)) + 1 for bottom, top, s in zip(low, high, spacing)]
    source = volume if labels else volume.with_array(padding_as_air(volume.array))
    interpolator, outside, pixel = (
        (sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8) if labels else (sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)
    )
    image = sitk.Resample(
        image_from_volume(source),
        size,
        sitk.Transform(),
        interpolator,
        tuple(low),
        tuple(spacing),
        tuple(np.eye(3).ravel()),
        outside,
        pixel,
    )
    return volume_from_image(image)


@dataclass(frozen=True)
class Chest:
    """The body and threshold lungs of a model-grid CT, and the box around the lungs."""

    body: np.ndarray
    lungs: np.ndarray
    crop: Crop
    lung_litres: float

    def touches_lungs(self, centre_kji, radius_voxels) -> bool:
        """Whether a sphere-like box of ``radius_voxels`` (per axis) around ``centre_kji`` (model
        grid) holds a lung voxel: where a finding can be (in the lungs or on their wall)."""
        centre = np.round(np.asarray(centre_kji)).astype(int)
        reach = np.ceil(np.asarray(radius_voxels)).astype(int)
        low, high = np.maximum(centre - reach, 0), np.minimum(centre + reach + 1, self.lungs.shape)
        if np.any(low >= high) or not self.body[tuple(np.clip(centre, 0, np.array(self.body.shape) - 1))]:
            return False
        return bool(self.lungs[tuple(slice(a, b) for a, b in zip(low, high))].any())


def find_chest(volume: Volume) -> Chest:
    """Body, threshold lungs and lung box (plus a margin) of a CT on the model grid; the box is
    the whole grid if no lungs are found."""
    body = find_body(volume)
    lungs = find_lungs(volume, body)
    litres = float(lungs.sum() * volume.voxel_volume_mm3() / 1e6)
    box = nonzero_box(lungs, [int(np.ceil(_CROP_MARGIN_MM / s)) for s in volume.spacing[::-1]])
    if box is None:
        return Chest(body, lungs, Crop((0, 0, 0), volume.array.shape), litres)
    return Chest(body, lungs, Crop(tuple(int(a) for a in box[0]), tuple(int(b) for b in box[1])), litres)


def chest_on_model_grid(volume: Volume, spacing_mm, shared: dict | None = None) -> tuple[Volume, Chest]:
    """``volume`` on the model grid of ``spacing_mm`` and its :func:`find_chest`. ``shared``, one
    run's on one scan, hands the pair made for an earlier model to every later one on the same
    grid and the same view of the scan: the segmentation's and the detector's grids are the same,
    and ``analyze`` resampled the scan and searched its lungs twice (1.5-2 s). Neither model
    changes the pair."""
    shared = {} if shared is None else shared
    key = ("model grid", id(volume), tuple(float(s) for s in spacing_mm))
    entry = shared.get(key)
    if entry is None or entry[0] is not volume:  # the volume itself is kept, so its id is not reused
        model_volume = to_model_grid(volume, spacing_mm)
        entry = shared[key] = (volume, model_volume, find_chest(model_volume))
    return entry[1], entry[2]


def lung_crop(volume: Volume) -> tuple[Crop, float]:
    """The lung box of :func:`find_chest` and the lung volume in litres."""
    chest = find_chest(volume)
    return chest.crop, chest.lung_litres


def normalize(array: np.ndarray, window: dict) -> np.ndarray:
    """Window ``[min_hu, max_hu]`` scaled to ``[0, 1]`` (MONAI's ScaleIntensityRange with clipping)."""
    low, high = float(window["min_hu"]), float(window["max_hu"])
    return np.clip((array.astype(np.float32) - low) / (high - low), 0.0, 1.0)


def back_to_input(
    probabilities: list[np.ndarray], model_volume: Volume, crop: Crop, target: Volume
) -> tuple[tuple[slice, slice, slice], list[np.ndarray]]:
    """Resample crop-sized probability maps (linear) onto the input grid, within the region of
    it that the crop covers: returns that region (``[k, j, i]`` slices of the input array; every
    map is zero outside it) and the maps on it. Full-size maps would be three float32 copies of the
    whole scan, mostly zeros. A map that is zero outside a small box (the nodules that passed one
    rule, a few hundred voxels) is resampled only where that box reaches: the same values, a
    fraction of the work."""
    low, high = _target_box(crop.start, crop.stop, model_volume, target)
    region = tuple(slice(int(bottom), int(top) + 1) for bottom, top in zip(low[::-1], high[::-1]))
    return region, [_map_back(probability, model_volume, crop, target, low, high) for probability in probabilities]


def _map_back(probability: np.ndarray, model_volume: Volume, crop: Crop, target: Volume, low, high) -> np.ndarray:
    """One map of :func:`back_to_input` on the region ``[low, high]`` (i, j, k) of ``target``,
    resampled only over the box of its nonzero voxels."""
    output = np.zeros(tuple(int(top - bottom + 1) for bottom, top in zip(low[::-1], high[::-1])), np.float32)
    box = nonzero_box(probability, 2)  # two zero voxels: interpolation at the box's edge sees zeros, as in the crop
    if box is None:
        return output
    start, stop = np.add(crop.start, box[0]), np.add(crop.start, box[1])
    box_low, box_high = _target_box(start, stop, model_volume, target)
    box_low, box_high = np.maximum(box_low, low), np.minimum(box_high, high)
    if (box_high >= box_low).all():
        within = tuple(slice(int(a - b), int(c - b) + 1) for a, c, b in zip(box_low, box_high, low))[::-1]
        source = probability[tuple(slice(a, b) for a, b in zip(*box))]
        output[within] = _resampled(source, model_volume, start, target, box_low, box_high)
    return output


def _target_box(start_kji, stop_kji, model_volume: Volume, target: Volume) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j, k) index box of ``target`` that the model-grid box ``[start, stop)`` covers,
    one voxel more on each side, within ``target``."""
    first, last = np.array(start_kji)[::-1], np.array(stop_kji)[::-1] - 1
    in_target = target.lps_to_ijk(model_volume.ijk_to_lps(box_corners(first, last)))
    low = np.clip(np.floor(in_target.min(axis=0)).astype(int) - 1, 0, np.array(target.size) - 1)
    high = np.clip(np.ceil(in_target.max(axis=0)).astype(int) + 1, 0, np.array(target.size) - 1)
    return low, high


def _resampled(source: np.ndarray, model_volume: Volume, start_kji, target: Volume, low, high) -> np.ndarray:
    """``source``, the model grid's box from ``start_kji``, resampled (linear, 0 outside) onto
    the (i, j, k) index box ``[low, high]`` of ``target``."""
    reference = sitk.Image([int(top - bottom + 1) for bottom, top in zip(low, high)], sitk.sitkFloat32)
    reference.SetSpacing(target.spacing)
    reference.SetDirection(tuple(target.direction.ravel()))
    reference.SetOrigin(tuple(target.ijk_to_lps(low)))
    image = sitk.GetImageFromArray(np.ascontiguousarray(source, dtype=np.float32))
    image.SetSpacing(model_volume.spacing)
    image.SetOrigin(tuple(model_volume.ijk_to_lps(np.array(start_kji)[::-1])))
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0))
