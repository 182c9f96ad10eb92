"""Segment one CT: to the model grid, crop to the lungs, infer, clean, back to the input grid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..devices import available_memory_bytes
from ..errors import DeepDiagError
from ..geometry import Volume
from ..info import guess_modality
from ..models.store import LoadedModel
from .candidate_filter import load_candidate_filter
from .inference import predict_probabilities
from .model_grid import back_to_input, chest_on_model_grid, normalize
from .postprocess import (
    SMALLEST_NODULE_MM3,
    keep_inside_chest,
    keep_nodules_on_output_grid,
    keep_plausible_nodules,
    most_likely_class,
)

_MIN_CHEST_LUNG_LITRES = 0.5
# bytes per voxel held at the peak (an upper bound): input int16 + its padding-as-air copy (float32 for
# float scans) + four float32 maps on the input region the lungs cover (lungs, nodules, the spots and the
# small components that passed the filter's score) + the label map; and on the
# model grid: image, normalized crop, 3 probabilities, logits
_BYTES_PER_INPUT_VOXEL = 2 + 4 + 16 + 1
_BYTES_PER_MODEL_VOXEL = 4 + 4 + 12 + 12 + 12


@dataclass
class SegmentationResult:
    labels: Volume  # uint8 on the input grid: 0 background, 1 lungs, 2 nodules
    nodule_probability: Volume | None
    nodule_count: int
    warnings: list[str] = field(default_factory=list)


def check_memory(
    size: tuple[int, int, int],
    spacing: tuple[float, float, float],
    model_spacing: tuple[float, float, float],
    source: str,
) -> None:
    """Refuse, before reading any voxel, a volume whose segmentation would not fit in memory."""
    input_voxels = float(np.prod(size))
    model_voxels = float(np.prod([n * s / m for n, s, m in zip(size, spacing, model_spacing)]))
    needed = input_voxels * _BYTES_PER_INPUT_VOXEL + model_voxels * _BYTES_PER_MODEL_VOXEL
    available = available_memory_bytes()
    if available and needed > available:
        raise DeepDiagError(
            f"too large to segment here: {'x'.join(map(str, size))} voxels need about {needed / 1e9:.1f} GB, "
            f"{available / 1e9:.1f} GB are available",
            source,
        )


def segment_volume(
    volume: Volume,
    model: LoadedModel,
    device,
    with_probabilities: bool = False,
    on_progress: Callable[[str, float], None] | None = None,
    views: dict | None = None,
) -> SegmentationResult:
    """Segment lungs and lung nodules of a CT volume (HU); every output lies on its grid.
    ``views``: what the models of one run on this scan share (:func:`.chest_on_model_grid`)."""
    report = on_progress or (lambda stage, fraction: None)
    card = model.card
    report("resample", 0.0)
    model_volume, chest = chest_on_model_grid(volume, card.spacing_mm, views)
    crop = chest.crop
    warnings = input_warnings(volume, chest.lung_litres)
    image = normalize(model_volume.array[crop.slices], card.input["intensity"])
    report("infer", 0.1)
    probabilities = predict_probabilities(
        model.network,
        image,
        tuple(card.patch_size),
        device,
        lambda f: report("infer", 0.1 + 0.75 * f),
        warnings.append,
    )
    report("postprocess", 0.85)
    rules = card.postprocessing
    spacing_kji = model_volume.spacing[::-1]
    candidate_filter = load_candidate_filter(card, device)
    searches_spots = candidate_filter is not None and candidate_filter.searches_spots(max(volume.spacing))
    min_volume, min_peak = (
        float(rules.get("min_nodule_volume_mm3", 0.0)),
        float(rules.get("min_nodule_peak_probability", 0.0)),
    )
    # a scan with hardly any lung (an abdomen with the lung bases) gives the threshold nothing to
    # check the network's lungs and nodules against: then only the body bounds them
    threshold_lungs = chest.lungs[crop.slices] if chest.lungs.any() else None
    probabilities = keep_inside_chest(probabilities, chest.body[crop.slices], threshold_lungs)
    lungs = (
        most_likely_class(probabilities) >= 1 if searches_spots else None
    )  # before the rules drop components to background
    small_min_volume = candidate_filter.small_min_volume_mm3 if candidate_filter else None
    probabilities = keep_plausible_nodules(
        probabilities,
        spacing_kji,
        min_volume if small_min_volume is None else small_min_volume,  # the filter judges the smaller ones
        min_peak,
        threshold_lungs,
        float(rules.get("min_nodule_thickness_ratio", 0.0)),
    )
    maps, own_volumes, small = [], [], None  # nodules that passed the filter's score instead of the volume rule
    if candidate_filter:
        probabilities = candidate_filter.keep_nodules(probabilities, image, device)
        if small_min_volume is not None:
            small = candidate_filter.small_nodules(probabilities)
            maps.append(small.astype(np.float32))
            own_volumes.append(small_min_volume)
    if searches_spots:
        report("spots", 0.9)  # a few seconds on CPU: the progress bar should not look stuck
        before = most_likely_class(probabilities) == 2
        probabilities = candidate_filter.add_spot_nodules(probabilities, lungs, image, spacing_kji, device, small)
        maps.append(((most_likely_class(probabilities) == 2) & ~before).astype(np.float32))
        own_volumes.append(SMALLEST_NODULE_MM3)
    region, (lung_map, nodule_map, *passed_maps) = back_to_input(
        [probabilities[1], probabilities[2], *maps], model_volume, crop, volume
    )
    region_labels = keep_nodules_on_output_grid(
        _labels(lung_map, nodule_map),
        nodule_map,
        volume.spacing[::-1],
        min_volume,
        min_peak,
        tuple((passed > 0.5, own) for passed, own in zip(passed_maps, own_volumes)),
    )
    nodule_count = int(ndimage.label(region_labels == 2)[1])
    report("done", 1.0)
    labels = np.zeros(volume.array.shape, dtype=np.uint8)
    labels[region] = region_labels
    probability = None
    if with_probabilities:
        probability = volume.with_array(np.zeros(volume.array.shape, dtype=np.float32))
        probability.array[region] = nodule_map
    return SegmentationResult(volume.with_array(labels), probability, nodule_count, warnings)


def _labels(lung_map: np.ndarray, nodule_map: np.ndarray) -> np.ndarray:
    """Lungs (nodules included) where lung + nodule outweighs background; nodules where most likely."""
    labels = np.zeros(lung_map.shape, dtype=np.uint8)
    background = 1.0 - lung_map - nodule_map
    labels[(lung_map + nodule_map) > background] = 1
    labels[(nodule_map > lung_map) & (nodule_map > background)] = 2
    return labels


def input_warnings(volume: Volume, lung_litres: float) -> list[str]:
    """What makes a chest-CT model's result unreliable: not CT, or hardly any lung."""
    warnings = []
    modality = guess_modality(volume.array)
    if modality == "MR":
        warnings.append(
            "this looks like an MR scan (no Hounsfield air values); the model was trained on chest CT, results are "
            "unreliable"
        )
    elif modality != "CT":
        warnings.append("intensities do not look like CT Hounsfield units; results are unreliable")
    if lung_litres < _MIN_CHEST_LUNG_LITRES:
        warnings.append(
            f"found only {lung_litres:.2f} L of air-filled lung; this may not be a chest CT, results are unreliable"
        )
    return warnings
