"""Train the Faster R-CNN nodule detector on 2.5D patches of the segmentation training examples
(same phantoms, same model grid and lung crop as inference)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..detection.slices import boxes_in_slice, slice_stack
from .segmentation_data import SMALL_NODULE_VOXELS, Example, draw_nodule


def sample_slice_patch(
    example: Example,
    size: int,
    rng: np.random.Generator,
    nodule_share: float = 0.7,
    small_nodule_boost: float = 1.0,
    hard_negatives: np.ndarray | None = None,
    hard_negative_share: float = 0.0,
):
    """A ``(3, size, size)`` 2.5D patch and its nodule boxes: around a nodule (drawn first, those
    under 6 mm ``small_nodule_boost`` times as often, then one of its voxels) with probability
    ``nodule_share``, around one of the ``hard_negatives`` (``(N, 3)`` voxel positions) with
    probability ``hard_negative_share``, else anywhere in the lung crop."""
    depth, height, width = example.image.shape
    draw = rng.uniform()
    if example.nodule_voxels and draw < nodule_share:
        voxels = example.nodule_voxels[draw_nodule(example.nodule_voxels, rng, SMALL_NODULE_VOXELS, small_nodule_boost)]
        k, j, i = voxels[rng.integers(len(voxels))]
        j, i = np.array([j, i]) + rng.integers(-size // 4, size // 4 + 1, size=2)
    elif hard_negatives is not None and len(hard_negatives) and draw < nodule_share + hard_negative_share:
        k, j, i = hard_negatives[rng.integers(len(hard_negatives))]
        j, i = np.array([j, i]) + rng.integers(-size // 4, size // 4 + 1, size=2)
    else:
        k, j, i = rng.integers(depth), rng.integers(height), rng.integers(width)
    j0, i0 = int(j) - size // 2, int(i) - size // 2
    stack = slice_stack(example.image, int(k))
    patch = np.zeros((3, size, size), dtype=np.float32)  # normalized air is 0
    source = (slice(None), slice(max(j0, 0), min(j0 + size, height)), slice(max(i0, 0), min(i0 + size, width)))
    patch[:, source[1].start - j0 : source[1].stop - j0, source[2].start - i0 : source[2].stop - i0] = stack[source]
    boxes = boxes_in_slice(example.nodule_voxels, int(k)) - np.array([i0, j0, i0, j0], dtype=np.float32)
    boxes = np.clip(boxes, 0, size)
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    return patch, boxes[keep]


def train_detector(
    network: torch.nn.Module,
    examples: list[Example],
    patch_size: int,
    iterations: int,
    batch_size: int,
    device: torch.device,
    seed: int,
    learning_rate: float = 1e-3,
    on_progress: Callable[[int, dict], None] | None = None,
    small_nodule_boost: float = 1.0,
    hard_negatives: list[np.ndarray] | None = None,
    hard_negative_share: float = 0.0,
) -> dict:
    """Train in place; returns a summary (iterations, final losses, seconds). ``hard_negatives``
    holds per example the positions to draw ``hard_negative_share`` of the patches around."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network.to(device).train()
    network.transform.min_size, network.transform.max_size = (patch_size,), patch_size
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=iterations, pct_start=0.05
    )
    sampling = {"small_nodule_boost": small_nodule_boost, "hard_negative_share": hard_negative_share}
    started, recent = time.perf_counter(), []
    for step in range(iterations):
        images, targets = _batch(examples, patch_size, batch_size, rng, device, sampling, hard_negatives)
        losses = network(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
        optimizer.step()
        schedule.step()
        recent = (recent + [{k: float(v.detach()) for k, v in losses.items()}])[-50:]
        if on_progress and (step % 50 == 0 or step == iterations - 1):
            on_progress(step + 1, _mean(recent))
    network.eval()
    return {"iterations": iterations, "final_losses": _mean(recent), "seconds": round(time.perf_counter() - started, 1)}


def _batch(examples, size, batch_size, rng, device, sampling: dict, hard_negatives):
    images, targets = [], []
    for _ in range(batch_size):
        index = int(rng.integers(len(examples)))
        patch, boxes = sample_slice_patch(
            examples[index], size, rng, hard_negatives=hard_negatives[index] if hard_negatives else None, **sampling
        )
        if rng.uniform() < 0.5:  # left-right flip
            patch = patch[:, :, ::-1].copy()
            boxes = (
                np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)
                if len(boxes)
                else boxes
            )
        patch = patch * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)  # scanner calibration varies
        images.append(torch.from_numpy(patch.astype(np.float32)).to(device))
        targets.append(
            {
                "boxes": torch.from_numpy(boxes.reshape(-1, 4)).to(device),
                "labels": torch.ones(len(boxes), dtype=torch.int64, device=device),
            }
        )
    return images, targets


def _mean(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]} if rows else {}
