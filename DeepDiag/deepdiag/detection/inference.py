"""Detect nodules in one CT: model grid, lung crop, Faster R-CNN slice by slice, 3D findings.

A 2.5D detector sees a vessel's cross-section as a round spot. As in the LUNA16 two-stage
systems, a detection card may name a 3D candidate filter (``postprocessing.candidate_filter``,
the segmentation's false-positive reduction network) that judges each finding in its 3D box;
findings it scores below its ``min_probability`` are dropped. A card that bounds the noise its
networks saw (``input.max_air_noise_hu``) has a sharp-kernel scan smoothed in-plane first
(:mod:`deepdiag.kernel_noise`): the detector read a lung kernel's noise as nodules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..findings_file import Finding, numbered
from ..geometry import Volume
from ..kernel_noise import network_view
from ..models.store import LoadedModel
from ..segmentation.candidate_filter import load_candidate_filter
from ..segmentation.model_grid import Chest, chest_on_model_grid, normalize
from ..segmentation.pipeline import input_warnings
from .merge import SliceBox, merge_slice_boxes
from .slices import slice_stack

_SLICES_PER_BATCH = 8
_LUNG_CONTACT_MM = 2.0


@dataclass
class DetectionResult:
    findings: list[Finding]
    warnings: list[str]


def detect_volume(
    volume: Volume,
    model: LoadedModel,
    device: torch.device,
    min_score: float,
    on_progress: Callable[[str, float], None] | None = None,
    views: dict | None = None,
) -> DetectionResult:
    """Findings (centre in LPS mm, diameter, score >= ``min_score``) of a CT volume in HU;
    ``views``: what other models of the same run made of ``volume`` and share: its smoothed views
    (:func:`deepdiag.kernel_noise.network_view`) and its model grid with the lungs found on it
    (:func:`deepdiag.segmentation.model_grid.chest_on_model_grid`)."""
    report = on_progress or (lambda stage, fraction: None)
    report("resample", 0.0)
    seen, noise_warnings = network_view(model.card, volume, "looked for nodules", views)
    model_volume, chest = chest_on_model_grid(seen, model.card.spacing_mm, views)
    crop = chest.crop
    warnings = input_warnings(volume, chest.lung_litres) + noise_warnings
    image = normalize(model_volume.array[crop.slices], model.card.input["intensity"])
    boxes = slice_boxes(model.network, image, device, lambda f: report("detect", 0.1 + 0.85 * f))
    report("merge", 0.95)
    spacing_kji = model_volume.spacing[::-1]
    merged = merge_slice_boxes(boxes, spacing_kji)
    offset = np.array(crop.start, dtype=float)
    spacing = np.array(spacing_kji)
    candidate_filter = load_candidate_filter(model.card, device)
    ranked_by_filter = candidate_filter is not None and candidate_filter.score != "detector"
    kept = [
        (center, diameter, score)
        for center, diameter, score in merged
        if (ranked_by_filter or score >= min_score) and reaches_lungs(chest, offset + center, diameter, spacing)
    ]
    if candidate_filter and kept:
        report("filter", 0.97)
        kept = _second_stage(candidate_filter, image, kept, device, min_score)
    findings = [(model_volume.ijk_to_lps((offset + center)[::-1]), diameter, score) for center, diameter, score in kept]
    report("done", 1.0)
    return DetectionResult(numbered(findings), warnings)


def reaches_lungs(chest: Chest, centre_kji, diameter_mm: float, spacing_kji) -> bool:
    """Whether a finding lies in the lungs or touches them: a round spot in the heart, the liver or
    the chest wall is no lung nodule, however sure the detector is."""
    return chest.touches_lungs(centre_kji, (diameter_mm / 2 + _LUNG_CONTACT_MM) / np.asarray(spacing_kji))


def _second_stage(candidate_filter, image: np.ndarray, kept: list, device: torch.device, min_score: float) -> list:
    """The findings the filter accepts; under the ``geometric_mean`` rule with the geometric mean
    of both stages' scores as their score (``min_score`` then applies to it)."""
    scores = candidate_filter.nodule_probabilities(image, [center for center, _, _ in kept], device)
    accepted = [(finding, p) for finding, p in zip(kept, scores) if p >= candidate_filter.min_probability]
    if candidate_filter.score == "detector":
        return [finding for finding, _ in accepted]
    rescored = [
        (center, diameter, float(np.sqrt(score * p) if candidate_filter.score == "geometric_mean" else p))
        for (center, diameter, score), p in accepted
    ]
    return [finding for finding in rescored if finding[2] >= min_score]


def slice_boxes(
    network, image: np.ndarray, device: torch.device, on_progress=None, slice_step: int = 1
) -> list[SliceBox]:
    """The detector's boxes on every ``slice_step``-th axial slice of a normalized ``[k, j, i]`` image."""
    on_progress = on_progress or (lambda fraction: None)
    height, width = image.shape[1:]
    network.transform.min_size, network.transform.max_size = (min(height, width),), max(height, width)  # no resizing
    boxes = []
    with torch.inference_mode():
        slices = range(0, image.shape[0], slice_step)
        for start in range(0, len(slices), _SLICES_PER_BATCH):
            ks = slices[start : start + _SLICES_PER_BATCH]
            batch = [torch.from_numpy(slice_stack(image, k)).to(device) for k in ks]
            for k, output in zip(ks, network(batch)):
                boxes += [SliceBox(k, b.cpu().numpy(), float(s)) for b, s in zip(output["boxes"], output["scores"])]
            on_progress(ks[-1] / max(image.shape[0] - 1, 1))
    return boxes
