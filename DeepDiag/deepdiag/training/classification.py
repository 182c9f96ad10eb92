"""Train the nodule-type classifier on patches around the phantoms' truth nodules, and
calibrate its probabilities (temperature scaling) on separate validation phantoms."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandFlip,
    RandGaussianNoise,
    RandRotate90,
    RandScaleIntensity,
    RandShiftIntensity,
    RandSpatialCrop,
)

from ..classification.patches import extract_patch
from ..image_io import read_volume
from ..phantom import PhantomConfig, generate_case
from ..phantom.case import PhantomCase
from ..phantom.config import PROCEDURAL_SHAPES
from ..phantom.insertion import InsertionHost, insert_into, insertion_host
from ..segmentation.model_grid import normalize
from .real_backgrounds import real_copy_name
from .segmentation_data import shapes_suffix, varied_scanner_config

#: extra voxels on each side of a stored patch, so that training crops can move the finding
#: off centre by up to this much, as detectors and segmentations place it
JITTER_VOXELS = 3
#: how much more often a nodule under 6 mm is drawn than a larger one of its class: small
#: nodules are few (diameters are drawn uniformly from 3-30 mm) and the hardest to type
SMALL_NODULE_WEIGHT = 3.0


@dataclass
class NodulePatches:
    images: np.ndarray  # (N, K, J, I) float16, normalized, JITTER_VOXELS wider on each side
    labels: np.ndarray  # (N,) class index
    diameters_mm: np.ndarray  # (N,) mean diameter (Lung-RADS)

    @classmethod
    def concatenate(cls, parts: list[NodulePatches]) -> NodulePatches:
        return cls(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in ("images", "labels", "diameters_mm"))
        )


def case_patches(
    seed: int,
    index: int,
    classes: list[str],
    patch: list[int],
    spacing,
    window,
    nodules=(6, 12),
    cache: str | None = None,
    shapes: tuple[str, ...] = PROCEDURAL_SHAPES,
) -> NodulePatches:
    """Patches around every truth nodule of phantom ``index`` of ``seed`` (varied scanner settings)."""
    nodule_set = f"nodules{nodules[0]}to{nodules[1]}{shapes_suffix(shapes)}"
    name = f"seed{seed}-case{index:03d}-{nodule_set}-patch{patch[0]}at{spacing[0]}mm.npz"

    def make() -> NodulePatches:
        config = varied_scanner_config(seed, index, nodules, shapes=shapes)
        return truth_patches(generate_case(config, seed, index), classes, patch, spacing, window)

    return cached_patches(Path(cache) / name if cache else None, make)


def real_background_patches(
    background: str | Path,
    seed: int,
    index: int,
    classes: list[str],
    patch: list[int],
    spacing,
    window,
    config: PhantomConfig,
    cache: str | None = None,
) -> NodulePatches:
    """Patches around the nodules inserted into copy ``index`` of a real CT (its own vessels,
    walls, noise and kernel around them)."""
    background = Path(background)
    inserted = (
        f"nodules{config.nodules[0]}to{config.nodules[1]}of{config.diameter_mm[0]:g}to{config.diameter_mm[1]:g}mm"
    )
    shapes = "+".join(config.shapes)
    name = f"{real_copy_name(background, seed, index)}-{inserted}-{shapes}-patch{patch[0]}at{spacing[0]}mm.npz"

    def make() -> NodulePatches:
        case = insert_into(_host(background), config, seed, index)
        return truth_patches(case, classes, patch, spacing, window)

    return cached_patches(Path(cache) / name if cache else None, make)


@lru_cache(maxsize=1)
def _host(path: Path) -> InsertionHost:
    """The real CT whose copies are made one after the other, read and prepared once."""
    return insertion_host(read_volume(path), path)


def truth_patches(case: PhantomCase, classes: list[str], patch: list[int], spacing, window) -> NodulePatches:
    size = tuple(n + 2 * JITTER_VOXELS for n in patch)
    truths = case.truth["nodules"]
    images = [
        normalize(extract_patch(case.ct, n["center_lps"], size, spacing), window).astype(np.float16) for n in truths
    ]
    return NodulePatches(
        np.stack(images) if images else np.zeros((0, *size), np.float16),
        np.array([classes.index(n["type"]) for n in truths], dtype=np.int64),
        np.array([n["mean_diameter_mm"] for n in truths], dtype=np.float32),
    )


def cached_patches(cached: Path | None, make: Callable[[], NodulePatches]) -> NodulePatches:
    """Patches read from ``cached`` when made before, else made and written there atomically."""
    if cached and cached.is_file():
        with np.load(cached) as stored:
            return NodulePatches(stored["images"], stored["labels"], stored["diameters_mm"])
    result = make()
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + ".partial.npz")
        np.savez(partial, images=result.images, labels=result.labels, diameters_mm=result.diameters_mm)
        partial.replace(cached)
    return result


def augmentation(patch: list[int], seed: int) -> Compose:
    """Off-centre crops, flips, axial quarter turns, intensity scale/shift and noise (on [0, 1] data)."""
    transforms = Compose(
        [
            RandSpatialCrop(patch, random_center=True, random_size=False),
            RandFlip(prob=0.5, spatial_axis=0),
            RandFlip(prob=0.5, spatial_axis=1),
            RandFlip(prob=0.5, spatial_axis=2),
            RandRotate90(prob=0.75, spatial_axes=(1, 2)),
            RandScaleIntensity(factors=0.05, prob=1.0),
            RandShiftIntensity(offsets=0.02, prob=1.0),
            RandGaussianNoise(prob=0.5, std=0.015),
        ]
    )
    transforms.set_random_state(seed)
    return transforms


def _as_is(patches: torch.Tensor) -> torch.Tensor:
    return patches


def train_classifier(
    network: torch.nn.Module,
    data: NodulePatches,
    patch: list[int],
    iterations: int,
    batch: int,
    learning_rate: float,
    device: torch.device,
    seed: int,
    on_progress: Callable[[int, float], None] | None = None,
    small_nodule_share: float | None = None,
    network_input: Callable[[torch.Tensor], torch.Tensor] = _as_is,
) -> dict:
    """Cross-entropy training on class-balanced batches (each class drawn equally often, since
    part-solid nodules are rarer; small nodules drawn more often within a class, or, with
    ``small_nodule_share``, making that share of the draws of every class that has both sizes);
    ``network_input`` turns a batch of augmented patches into what the network takes. Returns
    timing and the final loss."""
    rng = np.random.default_rng(seed)
    augment = augmentation(patch, seed)
    by_class = [np.flatnonzero(data.labels == c) for c in range(int(data.labels.max()) + 1)]
    weights = [draw_weights(data.diameters_mm[members] < 6.0, small_nodule_share) for members in by_class]
    network.to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=iterations)
    started, recent = time.perf_counter(), []
    for step in range(1, iterations + 1):
        classes = rng.integers(len(by_class), size=batch)
        chosen = [rng.choice(by_class[c], p=weights[c]) for c in classes]
        images = torch.stack([torch.as_tensor(augment(data.images[n][None].astype(np.float32))) for n in chosen]).to(
            device
        )
        labels = torch.from_numpy(data.labels[chosen]).to(device)
        loss = torch.nn.functional.cross_entropy(network(network_input(images.float())), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
        if on_progress and (step % 100 == 0 or step == iterations):
            on_progress(step, float(np.mean(recent)))
    network.eval()
    return {"seconds": round(time.perf_counter() - started, 1), "final_loss": round(float(np.mean(recent)), 4)}


def draw_weights(small: np.ndarray, small_share: float | None) -> np.ndarray:
    """How often each member of a class is drawn (summing to 1)."""
    if small_share is None or small.all() or not small.any():
        weights = np.where(small, SMALL_NODULE_WEIGHT, 1.0)
        return weights / weights.sum()
    return np.where(small, small_share / small.sum(), (1.0 - small_share) / (~small).sum())


def centre_logits(
    network: torch.nn.Module,
    data: NodulePatches,
    patch: list[int],
    device: torch.device,
    network_input: Callable[[torch.Tensor], torch.Tensor] = _as_is,
) -> torch.Tensor:
    """Logits of the centred patches, as inference sees a well-placed finding."""
    m = JITTER_VOXELS
    centred = data.images[:, m : m + patch[0], m : m + patch[1], m : m + patch[2]].astype(np.float32)
    with torch.no_grad():  # not inference mode: calibration differentiates through these logits
        return torch.cat(
            [
                network(network_input(torch.from_numpy(centred[s : s + 32, None]).to(device))).cpu()
                for s in range(0, len(centred), 32)
            ]
        )


def fit_temperature(logits: torch.Tensor, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the one scalar that minimizes validation NLL.
    Written here because MONAI and torch have no calibration helper."""
    log_t = torch.zeros(1, requires_grad=True)
    target = torch.from_numpy(labels)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
