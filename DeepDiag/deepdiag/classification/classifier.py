"""Run a classification model: on a patch around each finding (card ``input.region: finding``)
or on the whole scan (``input.region: volume``); calibrated probabilities and occlusion saliency.

Saliency is MONAI's occlusion sensitivity: how much the finding's class probability drops when
a small cube of the patch is blurred away. Grad-CAM was tried first; on this small network its
maps were nearly flat and peaked at the patch corners (0 of 22 held-out nodules within 5 mm),
while occlusion peaked on or near the nodule for 21 of 22.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.visualize import OcclusionSensitivity

from .. import kernel_noise
from ..errors import DeepDiagError
from ..geometry import Volume
from ..models.store import LoadedModel
from ..segmentation.model_grid import normalize
from .patches import extract_patch, patch_onto_grid

FINDING, VOLUME = "finding", "volume"


def class_names(model: LoadedModel) -> list[str]:
    return [c["name"] for c in model.card.classes]


def region(model: LoadedModel) -> str:
    kind = model.card.input.get("region", FINDING)
    if model.card.task != "classification" or kind not in (FINDING, VOLUME):
        raise DeepDiagError(f"model {model.card.full_id} is not a classification model of findings or volumes")
    return kind


def finding_probabilities(
    model: LoadedModel, volume: Volume, centers_lps: list, device: torch.device, seen: Volume | None = None
) -> np.ndarray:
    """Calibrated class probabilities, one row per finding centre; ``seen``: the scan as the network
    is given it (:func:`network_view`), when the caller has it already."""
    if not centers_lps:
        return np.zeros((0, len(model.card.classes)), dtype=np.float32)
    seen = seen if seen is not None else network_view(model, volume)[0]
    batch = torch.stack([_patch_tensor(model, seen, center) for center in centers_lps]).to(device)
    return _probabilities(model, batch)


def volume_probabilities(model: LoadedModel, volume: Volume, device: torch.device) -> np.ndarray:
    """Calibrated class probabilities of the whole scan, resampled to the card's patch size."""
    size = tuple(model.card.patch_size)  # [k, j, i], like the arrays
    extent = np.array(volume.size) * np.array(volume.spacing)
    spacing = tuple(extent / np.array(size[::-1]))
    center = volume.ijk_to_lps((np.array(volume.size) - 1) / 2)
    patch = extract_patch(volume, center, size, spacing)
    batch = torch.from_numpy(normalize(patch, model.card.input["intensity"]))[None, None].to(device)
    return _probabilities(model, batch)[0]


def saliency(
    model: LoadedModel,
    volume: Volume,
    centers_lps: list,
    classes: list[int],
    device: torch.device,
    seen: Volume | None = None,
) -> np.ndarray:
    """Each finding's occlusion saliency for its chosen class, mapped onto ``volume``'s grid (0
    elsewhere; overlapping patches keep the larger value); ``seen`` as for :func:`finding_probabilities`."""
    result = np.zeros(volume.array.shape, dtype=np.float32)
    seen = seen if seen is not None else network_view(model, volume)[0]
    for center, heat in zip(centers_lps, _heat_patches(model, seen, centers_lps, classes, device)):
        box, values = patch_onto_grid(heat, center, _patch_spacing(model), volume)
        result[box] = np.maximum(result[box], values)
    return result


def saliency_peaks(
    model: LoadedModel, volume: Volume, centers_lps: list, classes: list[int], device: torch.device
) -> list[np.ndarray]:
    """LPS position of each finding's saliency maximum (where its saliency volume peaks)."""
    spacing, peaks = _patch_spacing(model), []
    seen = network_view(model, volume)[0]
    for center, heat in zip(centers_lps, _heat_patches(model, seen, centers_lps, classes, device)):
        kji = np.array(np.unravel_index(int(np.argmax(heat)), heat.shape), dtype=float)
        peaks.append(np.asarray(center) + (kji[::-1] - (np.array(heat.shape[::-1]) - 1) / 2) * spacing)
    return peaks


def _heat_patches(model: LoadedModel, seen: Volume, centers_lps: list, classes: list[int], device: torch.device):
    """Per finding, on ``seen`` (the scan as the network is given it), the drop of its class
    probability when each place of the patch is occluded, scaled to 0..1 (the card's ``saliency``:
    occluding cube side in voxels and overlap)."""
    settings = model.card.extra.get("saliency", {})
    occlusion = OcclusionSensitivity(
        model.network,
        mask_size=int(settings.get("mask_voxels", 8)),
        n_batch=32,
        overlap=float(settings.get("overlap", 0.5)),
        mode="gaussian",
        verbose=False,
    )
    for center, class_index in zip(centers_lps, classes):
        patch = _patch_tensor(model, seen, center)[None].to(device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # MONAI's indexing style, deprecated by torch: not the user's concern
            baseline = torch.softmax(model.network(patch), dim=1)[0, class_index]
            occluded, _ = occlusion(patch)
        drop = (baseline - occluded[0, class_index]).clamp(min=0).cpu().numpy().astype(np.float32)
        yield drop / drop.max() if drop.max() > 0 else drop


def network_view(model: LoadedModel, volume: Volume, views: dict | None = None) -> tuple[Volume, list[str]]:
    """The scan as the network is given it (:func:`deepdiag.kernel_noise.network_view`, ``views``
    as there) and the warning when it was smoothed. Measurements are always taken on the scan as it is."""
    seen, warnings = kernel_noise.network_view(model.card, volume, "typed the findings", views)
    return seen, [f"{warning}; the measurements are on the scan as it is" for warning in warnings]


def _probabilities(model: LoadedModel, batch: torch.Tensor) -> np.ndarray:
    temperature = float(model.card.postprocessing.get("temperature", 1.0))
    with torch.inference_mode():
        logits = model.network(batch.float())
    return torch.softmax(logits / temperature, dim=1).cpu().numpy()


def _patch_tensor(model: LoadedModel, volume: Volume, center) -> torch.Tensor:
    patch = extract_patch(volume, center, tuple(model.card.patch_size), _patch_spacing(model))
    return torch.from_numpy(normalize(patch, model.card.input["intensity"]))[None]


def _patch_spacing(model: LoadedModel) -> tuple[float, float, float]:
    return model.card.spacing_mm
