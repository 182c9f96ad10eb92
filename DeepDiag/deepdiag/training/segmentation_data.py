"""Training examples for the segmentation model: phantom cases on the model's grid, cropped
to the lungs exactly as inference crops them, and patches sampled with nodules over-represented."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..phantom import PhantomConfig, generate_case
from ..segmentation.model_grid import lung_crop, normalize, to_model_grid


@dataclass
class Example:
    image: np.ndarray  # float16, normalized, [k, j, i]
    labels: np.ndarray  # uint8: 0 background, 1 lungs, 2 nodules
    nodule_voxels: np.ndarray  # (N, 3) indices, for nodule-centred sampling


def make_example(seed: int, index: int, spacing, window, rng_options: np.random.Generator | None = None) -> Example:
    """Phantom case ``index`` of ``seed`` with varied scanner settings, prepared for training."""
    options = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))
    in_plane, slice_mm = options.uniform(0.6, 0.9), options.choice([1.0, 1.25, 1.5, 2.0, 2.5])
    config = PhantomConfig(
        size=(int(358 / in_plane), int(358 / in_plane), int(375 / slice_mm)),
        spacing=(in_plane, in_plane, slice_mm),
        noise_hu=float(options.uniform(8, 35)),
        blur_mm=float(options.uniform(0.4, 0.9)),
        nodules=(2, 6),
    )
    case = generate_case(config, seed, index)
    ct = to_model_grid(case.ct, spacing)
    labels = to_model_grid(case.labels, spacing, labels=True)
    crop, _ = lung_crop(ct)
    image = normalize(ct.array[crop.slices], window).astype(np.float16)
    label_crop = labels.array[crop.slices].astype(np.uint8)
    return Example(image, label_crop, np.argwhere(label_crop == 2).astype(np.int32))


def sample_patch(example: Example, patch: tuple[int, int, int], rng: np.random.Generator, nodule_share: float = 0.5):
    """A patch centred on a nodule voxel with probability ``nodule_share``, else anywhere; padded with air."""
    if example.nodule_voxels.size and rng.uniform() < nodule_share:
        center = example.nodule_voxels[rng.integers(len(example.nodule_voxels))] + rng.integers(-patch[0] // 4, patch[0] // 4 + 1, size=3)
    else:
        center = np.array([rng.integers(n) for n in example.image.shape])
    start = center - np.array(patch) // 2
    image = np.zeros(patch, dtype=np.float32)  # normalized air is 0
    labels = np.zeros(patch, dtype=np.int64)
    source = tuple(slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, patch, example.image.shape))
    target = tuple(slice(src.start - s, src.stop - s) for src, s in zip(source, start))
    image[target] = example.image[source]
    labels[target] = example.labels[source]
    return image, labels
