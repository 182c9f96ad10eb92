"""Hard negatives for the detector: where an earlier detector fires on a training case without a nodule.

Patches drawn anywhere in the lung seldom show what a detector mistakes for a nodule (vessel
crossings, vessel ends, the chest wall), so its false positives score as high as small
nodules. Training on the places where the previous version fired wrongly (hard-negative
mining) shows it exactly those. Neither torchvision nor MONAI mines them for a 2.5D detector.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..detection.inference import slice_boxes
from .segmentation_data import Example

_NODULE = 2
#: a detector scores few false positives on its own training cases higher than this
MIN_SCORE = 0.1


def mine_hard_negatives(
    network: torch.nn.Module,
    example: Example,
    device: torch.device,
    min_score: float = MIN_SCORE,
    slice_step: int = 2,
    margin_voxels: int = 3,
) -> np.ndarray:
    """``(N, 3)`` voxel positions ``(k, j, i)`` of the detector's boxes scoring at least
    ``min_score`` whose centre is more than ``margin_voxels`` face-to-face steps from every nodule voxel
    (every ``slice_step``-th slice: a false positive spans several)."""
    network.to(device).eval()
    boxes = [
        b
        for b in slice_boxes(network, example.image.astype(np.float32), device, slice_step=slice_step)
        if b.score >= min_score
    ]
    near_nodule = ndimage.binary_dilation(example.labels == _NODULE, iterations=margin_voxels)
    positions = np.array([[b.k, *np.round(b.center_ji).astype(int)] for b in boxes], dtype=np.int32).reshape(-1, 3)
    positions = np.clip(positions, 0, np.array(example.image.shape) - 1)
    return positions[~near_nodule[tuple(positions.T)]]


def cached_hard_negatives(
    network: torch.nn.Module,
    model_name: str,
    examples: list[Example],
    names: list[str],
    cache: str | Path,
    device: torch.device,
    min_score: float = MIN_SCORE,
    on_case: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """:func:`mine_hard_negatives` per example, kept in ``cache`` under the model's and the case's
    names; ``on_case(done, total)`` after each case (mining takes seconds per case)."""
    mined = []
    for done, (example, name) in enumerate(zip(examples, names), start=1):
        path = Path(cache) / f"hard-negatives-{model_name}-score{min_score:g}-{name}.npy"
        if path.is_file():
            mined.append(np.load(path))
        else:
            mined.append(mine_hard_negatives(network, example, device, min_score))
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial.npy")
            np.save(partial, mined[-1])
            partial.replace(path)
        if on_case:
            on_case(done, len(examples))
    return mined
