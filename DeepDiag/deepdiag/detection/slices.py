"""2.5D inputs: an axial slice with its two neighbours as channels, and nodule boxes per slice."""

from __future__ import annotations

import numpy as np


def slice_stack(image: np.ndarray, k: int) -> np.ndarray:
    """Slices k-1, k, k+1 of a ``[k, j, i]`` image as a ``(3, j, i)`` float32 array (edges repeat)."""
    last = image.shape[0] - 1
    return np.stack([image[min(max(n, 0), last)] for n in (k - 1, k, k + 1)]).astype(np.float32)


def boxes_in_slice(nodule_voxels: list[np.ndarray], k: int, min_pixels: int = 1) -> np.ndarray:
    """``(N, 4)`` boxes ``(i0, j0, i1, j1)`` (exclusive ends, pixel units) of each nodule's
    cross-section on slice ``k``."""
    boxes = []
    for voxels in nodule_voxels:
        section = voxels[voxels[:, 0] == k]
        if len(section) >= min_pixels:
            j0, i0 = section[:, 1].min(), section[:, 2].min()
            j1, i1 = section[:, 1].max() + 1, section[:, 2].max() + 1
            boxes.append((i0, j0, i1, j1))
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)
