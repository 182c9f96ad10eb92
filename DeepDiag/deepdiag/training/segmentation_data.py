"""Training examples for the segmentation model: phantom cases on the model's grid, cropped
to the lungs exactly as inference crops them, and patches sampled with nodules over-represented."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..geometry import Volume
from ..phantom import PhantomConfig, generate_case
from ..phantom.config import PROCEDURAL_SHAPES
from ..segmentation.model_grid import lung_crop, normalize, to_model_grid

DEFAULT_DIAMETER_MM = PhantomConfig().diameter_mm
SMALL_NODULE_VOXELS = 90  # a nodule "under 6 mm": fewer voxels than a 6 mm sphere on the 1 x 1 x 1.25 mm model grid


@dataclass
class Example:
    image: np.ndarray  # float16, normalized, [k, j, i]
    labels: np.ndarray  # uint8: 0 background, 1 lungs, 2 nodules
    nodule_voxels: list[np.ndarray]  # per nodule, its (N, 3) voxel indices

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, *self.nodule_voxels, image=self.image, labels=self.labels)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Example:
        with np.load(path) as stored:
            voxels = [stored[f"arr_{n}"] for n in range(len(stored.files) - 2)]
            return cls(stored["image"], stored["labels"], voxels)


def make_example(
    seed: int,
    index: int,
    spacing,
    window,
    nodules=(2, 6),
    cache: str | None = None,
    diameter_mm=DEFAULT_DIAMETER_MM,
    shapes: tuple[str, ...] = PROCEDURAL_SHAPES,
) -> Example:
    """Phantom case ``index`` of ``seed`` with varied scanner settings, prepared for training;
    read from / written to ``cache`` when given, since making one takes about 30 s."""
    cached = Path(cache) / f"{example_name(seed, index, nodules, diameter_mm, shapes)}.npz" if cache else None
    if cached and cached.is_file():
        return Example.load(cached)
    case = generate_case(varied_scanner_config(seed, index, nodules, diameter_mm, shapes), seed, index)
    example = prepare_example(case.ct, case.labels, spacing, window, case.instances)
    if cached:
        example.save(cached)
    return example


def example_name(
    seed: int, index: int, nodules=(2, 6), diameter_mm=DEFAULT_DIAMETER_MM, shapes=PROCEDURAL_SHAPES
) -> str:
    sizes = "" if tuple(diameter_mm) == DEFAULT_DIAMETER_MM else f"-{diameter_mm[0]:g}to{diameter_mm[1]:g}mm"
    return f"seed{seed}-case{index:03d}-nodules{nodules[0]}to{nodules[1]}{sizes}{shapes_suffix(shapes)}"


def shapes_suffix(shapes: tuple[str, ...]) -> str:
    """What a cache name adds for nodule shapes other than the procedural ones (older names stay valid)."""
    return "" if tuple(shapes) == PROCEDURAL_SHAPES else "-" + "+".join(shapes)


def varied_scanner_config(
    seed: int, index: int, nodules=(2, 6), diameter_mm=DEFAULT_DIAMETER_MM, shapes=PROCEDURAL_SHAPES
) -> PhantomConfig:
    """Phantom options of training case ``index``: a chest-sized field of view at a random
    in-plane spacing, slice thickness, noise and blur, as scanners differ."""
    options = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))
    in_plane, slice_mm = options.uniform(0.6, 0.9), options.choice([1.0, 1.25, 1.5, 2.0, 2.5])
    return PhantomConfig(
        size=(int(358 / in_plane), int(358 / in_plane), int(375 / slice_mm)),
        spacing=(in_plane, in_plane, slice_mm),
        noise_hu=float(options.uniform(8, 35)),
        blur_mm=float(options.uniform(0.4, 0.9)),
        nodules=tuple(nodules),
        diameter_mm=tuple(diameter_mm),
        shapes=tuple(shapes),
    )


def prepare_example(ct: Volume, labels: Volume, spacing, window, instances: Volume | None = None) -> Example:
    """A CT and its label map (0 background, 1 lungs, 2 nodules) on the model grid, cropped to
    the lungs as inference crops them; nodules are told apart by ``instances`` when given,
    else as connected components."""
    model_ct = to_model_grid(ct, spacing)
    model_labels = to_model_grid(labels, spacing, labels=True).array
    nodules = (
        to_model_grid(instances, spacing, labels=True).array
        if instances is not None
        else ndimage.label(model_labels == 2)[0]
    )
    crop, _ = lung_crop(model_ct)
    nodules = np.where(model_labels == 2, nodules, 0)[crop.slices]
    return Example(
        normalize(model_ct.array[crop.slices], window).astype(np.float16),
        model_labels[crop.slices].astype(np.uint8),
        _voxels_per_nodule(nodules),
    )


def _voxels_per_nodule(instances: np.ndarray) -> list[np.ndarray]:
    boxes = ndimage.find_objects(instances)
    voxels = []
    for value, box in enumerate(boxes, start=1):
        if box is not None:  # a small nodule can vanish when resampled to the coarser model grid
            offset = np.array([s.start for s in box], dtype=np.int32)
            voxels.append(np.argwhere(instances[box] == value).astype(np.int32) + offset)
    return voxels


def sample_patch(
    example: Example,
    patch: tuple[int, int, int],
    rng: np.random.Generator,
    nodule_share: float = 0.5,
    small_nodule_voxels: int = 0,
    small_nodule_boost: float = 1.0,
):
    """A patch around a nodule with probability ``nodule_share``, else anywhere; padded with air.

    The nodule is drawn first, then one of its voxels: drawing voxels directly would let a
    30 mm nodule (1000 times the voxels of a 3 mm one) crowd the small ones out of training.
    Nodules of fewer than ``small_nodule_voxels`` voxels are drawn ``small_nodule_boost`` times
    as often as the others.
    """
    if example.nodule_voxels and rng.uniform() < nodule_share:
        voxels = example.nodule_voxels[draw_nodule(example.nodule_voxels, rng, small_nodule_voxels, small_nodule_boost)]
        center = voxels[rng.integers(len(voxels))] + rng.integers(-patch[0] // 4, patch[0] // 4 + 1, size=3)
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


def draw_nodule(
    nodule_voxels: list[np.ndarray], rng: np.random.Generator, small_nodule_voxels: int, small_nodule_boost: float
) -> int:
    """Index of a nodule drawn at random, those under ``small_nodule_voxels`` ``small_nodule_boost`` times as likely."""
    if small_nodule_boost == 1.0:  # the draw versions 1 and 2 were trained with (same random stream)
        return int(rng.integers(len(nodule_voxels)))
    weights = np.array([small_nodule_boost if len(v) < small_nodule_voxels else 1.0 for v in nodule_voxels])
    return int(rng.choice(len(weights), p=weights / weights.sum()))
