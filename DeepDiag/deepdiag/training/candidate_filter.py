"""Training patches for the candidate filter (false-positive reduction): nodules against the
things a segmentation model mistakes for them, on the segmentation model's own grid.

Positives are the truth nodules of the training phantoms, centred on the nodule and where the
segmentation model's components on them lie. Negatives are of two kinds: the segmentation
model's false-positive components at permissive thresholds (the mistakes the filter has to
undo), and points on vessels and airway walls drawn at random (dense structures that are not
nodules, so that the filter does not learn "bright means nodule"). :func:`spot_patches` adds the
bright spots the spot search finds: on a nodule as positives, elsewhere as negatives (those an
earlier filter scores highest first: the spots it would wrongly accept). :func:`detector_patches`
adds a detector's own candidates, so that a filter can be trained as that detector's second stage.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ..detection.inference import reaches_lungs, slice_boxes
from ..detection.merge import merge_slice_boxes
from ..measurements import equivalent_diameter_mm
from ..models.store import LoadedModel
from ..segmentation.bright_spots import SpotSearch, bright_spots
from ..segmentation.candidate_filter import nodule_probabilities, patches_around
from ..segmentation.inference import predict_probabilities
from ..segmentation.model_grid import Chest, Crop
from ..segmentation.postprocess import component_centres, keep_plausible_nodules, most_likely_class
from .classification import JITTER_VOXELS, NodulePatches
from .segmentation_data import Example

#: the most permissive rules a segmentation model's post-processing is tuned over: every
#: component they keep is one the filter may be asked about
MINING_MIN_VOLUME_MM3 = 8.0
#: normalized intensity above which a lung voxel counts as dense (about -500 HU in a
#: -1000..400 HU window): vessels, airway walls, nodules
DENSE = 0.36
VESSEL_POINTS_PER_CASE = 20
#: a negative lies at least this many voxels from every truth nodule
CLEARANCE_VOXELS = 4
SPOTS_PER_NODULE = 2  # a large nodule has dozens of spots; the strongest two are enough
HARD_SPOTS_PER_CASE = 20  # false spots an earlier filter scores highest
RANDOM_SPOTS_PER_CASE = 20


def stored_size(patch: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(n + 2 * JITTER_VOXELS for n in patch)


def case_patches(
    example: Example,
    patch: tuple[int, int, int],
    spacing_kji,
    rng: np.random.Generator,
    segmentation: LoadedModel | None = None,
    device: torch.device = torch.device("cpu"),
) -> NodulePatches:
    """Labelled patches of one prepared training case: 1 nodule, 0 not a nodule. With a
    segmentation model, its components on a nodule are positives too, centred where the model
    puts them (a partly segmented nodule's component is off the nodule's centre)."""
    instances = _instances(example)
    near_nodule = _near_nodules(instances)
    diameters_mm = _diameters_mm(example, spacing_kji)
    positives = [(v.mean(axis=0), d) for v, d in zip(example.nodule_voxels, diameters_mm)]
    negatives = vessel_points(example, near_nodule, rng)
    if segmentation is not None:
        on_nodule, off_nodule = predicted_components(example, instances, near_nodule, segmentation, spacing_kji, device)
        positives += [(centre, diameters_mm[nodule - 1]) for centre, nodule in on_nodule]
        negatives += off_nodule
    return _labelled_patches(example.image.astype(np.float32), positives, negatives, stored_size(patch))


def spot_patches(
    example: Example,
    patch: tuple[int, int, int],
    spacing_kji,
    rng: np.random.Generator,
    scorer: LoadedModel | None = None,
    device: torch.device = torch.device("cpu"),
    search: SpotSearch = SpotSearch(),
) -> NodulePatches:
    """Patches centred on the bright spots of one prepared training case: spots touching a nodule
    (its strongest few) are positives; spots away from every nodule are negatives, the ones
    ``scorer`` (an earlier filter) takes most for nodules first, then some drawn at random."""
    image = example.image.astype(np.float32)
    instances = _instances(example)
    near_nodule = _near_nodules(instances)
    spots = bright_spots(image, example.labels >= 1, spacing_kji, search=search)
    positives, negatives = [], []
    touched = [set(np.unique(instances[s.voxels]).tolist()) for s in spots]
    for nodule, diameter_mm in enumerate(_diameters_mm(example, spacing_kji), start=1):
        on_it = sorted((s for s, t in zip(spots, touched) if nodule in t), key=lambda s: -s.blobness)[:SPOTS_PER_NODULE]
        positives += [(s.centre, diameter_mm) for s in on_it]
    away = [s.centre for s in spots if not near_nodule[tuple(s.centre)]]
    if away:
        order = rng.permutation(len(away))
        if scorer is not None:
            scores = nodule_probabilities(scorer, image, away, device)
            hardest = np.argsort(-scores)[:HARD_SPOTS_PER_CASE]
            first = set(hardest.tolist())
            order = np.concatenate([hardest, [n for n in order if n not in first]])
        negatives = [away[n] for n in order[: HARD_SPOTS_PER_CASE + RANDOM_SPOTS_PER_CASE]]
    return _labelled_patches(image, positives, negatives, stored_size(patch))


def detector_patches(
    example: Example,
    patch: tuple[int, int, int],
    spacing_kji,
    detector: LoadedModel,
    device: torch.device = torch.device("cpu"),
) -> NodulePatches:
    """Patches centred where a 2.5D detector puts its merged 3D candidates on one prepared
    training case, at every score it reports: those on a nodule are positives (often off the
    nodule's centre: the filter must accept a nodule where the detector sees it), those away from
    every nodule that the detector would report (in or touching the lungs) negatives (vessel
    cross-sections, the chest wall, the real scan's own structures)."""
    image = example.image.astype(np.float32)
    instances = _instances(example)
    near_nodule = _near_nodules(instances)
    # the training case is a crop inside the body: all of it counts as body
    chest = Chest(np.ones(image.shape, bool), example.labels >= 1, Crop((0, 0, 0), image.shape), 0.0)
    diameters_mm = _diameters_mm(example, spacing_kji)
    positives, negatives = [], []
    for centre, diameter_mm, _ in merge_slice_boxes(slice_boxes(detector.network, image, device), spacing_kji):
        at = tuple(np.clip(np.round(centre).astype(int), 0, np.array(image.shape) - 1))
        if instances[at]:
            positives.append((np.asarray(centre), diameters_mm[instances[at] - 1]))
        elif not near_nodule[at] and reaches_lungs(chest, centre, diameter_mm, spacing_kji):
            negatives.append(np.asarray(centre))
    return _labelled_patches(image, positives, negatives, stored_size(patch))


def _labelled_patches(
    image: np.ndarray,
    positives: list[tuple[np.ndarray, float]],
    negatives: list[np.ndarray],
    size: tuple[int, int, int],
) -> NodulePatches:
    """Patches around (centre, nodule diameter) positives and around negative centres."""
    centres = [c for c, _ in positives] + negatives
    return NodulePatches(
        patches_around(image, centres, size).astype(np.float16),
        np.array([1] * len(positives) + [0] * len(negatives), dtype=np.int64),
        np.array([d for _, d in positives] + [0.0] * len(negatives), dtype=np.float32),
    )


def _near_nodules(instances: np.ndarray) -> np.ndarray:
    """Voxels within CLEARANCE_VOXELS of a nodule: neither positive nor negative."""
    return ndimage.binary_dilation(instances > 0, iterations=CLEARANCE_VOXELS) if instances.any() else instances > 0


def _diameters_mm(example: Example, spacing_kji) -> list[float]:
    voxel_mm3 = float(np.prod(spacing_kji))
    return [equivalent_diameter_mm(len(v) * voxel_mm3) for v in example.nodule_voxels]


def vessel_points(example: Example, near_nodule: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Random dense voxels inside the lungs, away from every nodule."""
    dense = np.argwhere((example.labels == 1) & (example.image > DENSE) & ~near_nodule)
    if not len(dense):
        return []
    chosen = rng.choice(len(dense), size=min(VESSEL_POINTS_PER_CASE, len(dense)), replace=False)
    return [dense[n].astype(np.float64) for n in chosen]


def predicted_components(
    example: Example,
    instances: np.ndarray,
    near_nodule: np.ndarray,
    segmentation: LoadedModel,
    spacing_kji,
    device: torch.device,
) -> tuple[list[tuple[np.ndarray, int]], list[np.ndarray]]:
    """The segmentation model's nodule components under permissive rules: (centre, nodule number)
    of those on a nodule, and the centres of those away from every nodule (the ones merely
    near a nodule are neither)."""
    image = example.image.astype(np.float32)
    probabilities = predict_probabilities(segmentation.network, image, tuple(segmentation.card.patch_size), device)
    probabilities = keep_plausible_nodules(probabilities, spacing_kji, MINING_MIN_VOLUME_MM3)
    components, count = ndimage.label(most_likely_class(probabilities) == 2, structure=np.ones((3, 3, 3), dtype=bool))
    near = set(np.unique(components[near_nodule]).tolist())
    centres = component_centres(components, count)
    on_nodule, off_nodule = [], []
    for value, (centre, box) in enumerate(zip(centres, ndimage.find_objects(components)), start=1):
        touched = instances[box][components[box] == value]
        if touched.any():
            on_nodule.append((np.asarray(centre), int(np.bincount(touched[touched > 0]).argmax())))
        elif value not in near:
            off_nodule.append(np.asarray(centre))
    return on_nodule, off_nodule


def _instances(example: Example) -> np.ndarray:
    """Nodule number (1, 2, ...) per voxel, 0 elsewhere."""
    instances = np.zeros(example.labels.shape, dtype=np.int32)
    for number, voxels in enumerate(example.nodule_voxels, start=1):
        instances[tuple(voxels.T)] = number
    return instances
