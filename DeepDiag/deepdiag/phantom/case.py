"""One synthetic chest CT with its ground truth."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..geometry import Volume
from ..terminology import LUNG_NODULES, LUNGS
from .anatomy import procedural_anatomy
from .config import PhantomConfig
from .grid import Grid
from .imaging import render_ct
from .lidc_anatomy import anatomy_from_masks
from .nodules import add_real_nodule, design_nodules, place_nodules


@dataclass
class PhantomCase:
    name: str
    ct: Volume  # int16 HU
    labels: Volume  # uint8: 1 lungs, 2 nodules
    instances: Volume  # uint8: nodule id per voxel
    truth: dict


def generate_case(config: PhantomConfig, seed: int, index: int) -> PhantomCase:
    """Case ``index`` of the series for ``seed``: the same arguments always give the same case."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    grid = Grid(config.size, config.spacing)
    instances, nodules = np.zeros(grid.shape, dtype=np.uint8), []
    if config.anatomy_folders:
        folder = Path(config.anatomy_folders[index % len(config.anatomy_folders)])
        anatomy, real_nodule = anatomy_from_masks(grid, folder, rng)
        if real_nodule is not None:
            nodules.append(add_real_nodule(grid, anatomy, real_nodule, instances))
    else:
        anatomy = procedural_anatomy(grid, rng)
    instances, nodules = place_nodules(grid, anatomy, design_nodules(config, rng), rng, instances, nodules)
    labels = np.where(instances > 0, LUNG_NODULES.label_value, np.where(anatomy.lungs, LUNGS.label_value, 0)).astype(
        np.uint8
    )
    ct = render_ct(grid, anatomy.tissue, config.noise_hu, config.blur_mm, rng, (config.hu_scale, config.hu_offset))
    name = f"phantom_s{seed}_{index:03d}"
    truth = case_truth(name, config, seed, index, anatomy.source, nodules)
    return PhantomCase(name, grid.volume(ct), grid.volume(labels), grid.volume(instances), truth)


def case_truth(name: str, config: PhantomConfig, seed: int, index: int, source: str, nodules: list[dict]) -> dict:
    """The truth document: how the case was made, and its nodules."""
    return {
        "case": name,
        "generator": f"deepdiag {__version__} phantom",
        "seed": seed,
        "index": index,
        "anatomy": source,
        "options": {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()},
        "labels": {"lungs": LUNGS.label_value, "nodules": LUNG_NODULES.label_value},
        "nodules": nodules,
    }
