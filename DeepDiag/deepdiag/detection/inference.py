"""Detect nodules in one CT: model grid, lung crop, Faster R-CNN slice by slice, 3D findings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..findings_file import Finding, numbered
from ..geometry import Volume
from ..models.store import LoadedModel
from ..segmentation.model_grid import lung_crop, normalize, to_model_grid
from ..segmentation.pipeline import input_warnings
from .merge import SliceBox, merge_slice_boxes
from .slices import slice_stack

_SLICES_PER_BATCH = 8


@dataclass
class DetectionResult:
    findings: list[Finding]
    warnings: list[str]


def detect_volume(volume: Volume, model: LoadedModel, device: torch.device, min_score: float,
                  on_progress: Callable[[str, float], None] | None = None) -> DetectionResult:
    """Findings (centre in LPS mm, diameter, score >= ``min_score``) of a CT volume in HU."""
    report = on_progress or (lambda stage, fraction: None)
    report("resample", 0.0)
    model_volume = to_model_grid(volume, model.card.spacing_mm)
    crop, lung_litres = lung_crop(model_volume)
    warnings = input_warnings(volume, lung_litres)
    image = normalize(model_volume.array[crop.slices], model.card.input["intensity"])
    boxes = slice_boxes(model.network, image, device, lambda f: report("detect", 0.1 + 0.85 * f))
    report("merge", 0.95)
    spacing_kji = model_volume.spacing[::-1]
    merged = merge_slice_boxes(boxes, spacing_kji)
    offset = np.array(crop.start, dtype=float)
    findings = [
        (model_volume.ijk_to_lps((offset + center)[::-1]), diameter, score)
        for center, diameter, score in merged if score >= min_score
    ]
    report("done", 1.0)
    return DetectionResult(numbered(findings), warnings)


def slice_boxes(network, image: np.ndarray, device: torch.device, on_progress=None, slice_step: int = 1) -> list[SliceBox]:
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
