"""Procedural chest anatomy: body wall, ribs, spine, mediastinum, heart, lungs, vessels, airways.

Shapes are ellipses and ellipsoids with seeded random proportions, sized in millimetres
like an adult thorax, and a bifurcating vessel and airway tree inside the lungs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .grid import Grid
from .tissues import Tissue
from .trees import Segment, draw_segments, grow_tree


@dataclass
class Anatomy:
    """A tissue map and the masks later steps need."""

    tissue: np.ndarray  # uint8 Tissue codes, [k, j, i]
    lungs: np.ndarray  # bool: the lung envelope, vessels and airways inside it included
    vessels: np.ndarray  # bool: pulmonary vessels inside the lungs
    vessel_points: np.ndarray  # (N, 3) mm: points on vessel axes, where juxtavascular nodules can sit
    vessel_radii: np.ndarray  # (N,) mm
    source: str = "procedural"


def procedural_anatomy(grid: Grid, rng: np.random.Generator) -> Anatomy:
    x, y, z = grid.coordinates()
    fov_z = grid.size[2] * grid.spacing[2]
    cavity_a, cavity_b = 150 * rng.uniform(0.9, 1.1) - 25, 105 * rng.uniform(0.9, 1.1) - 25
    lung_height = min(250.0, 0.85 * fov_z) * rng.uniform(0.9, 1.0)
    lung_base = -lung_height / 2 + rng.uniform(-0.05, 0.05) * lung_height

    tissue, cavity, vertebra = chest_wall(grid, cavity_a, cavity_b, rng)
    spine_y = cavity_b * 0.72
    heart = _ellipsoid(
        x,
        y,
        z,
        (cavity_a * 0.12, -cavity_b * 0.3, lung_base + 0.22 * lung_height),
        (cavity_a * 0.42, cavity_b * 0.45, lung_height * 0.24),
    )
    aorta = np.broadcast_to(_ellipse(x, y, cavity_a * 0.16, spine_y - 26, 12, 12), grid.shape) & (
        z < lung_base + 0.8 * lung_height
    )
    tissue[heart | aorta] = Tissue.BLOOD

    lungs = _lungs(x, y, z, cavity_a, cavity_b, lung_base, lung_height, rng) & cavity & ~heart & ~aorta & ~vertebra
    lungs &= np.abs(x - cavity_a * 0.05) > 18 + 10 * np.clip((z - lung_base) / lung_height, 0, 1)
    tissue[lungs] = Tissue.LUNG

    vessel_segments = _vessel_trees(grid, lungs, cavity_a, cavity_b, lung_base, lung_height, rng)
    vessels = draw_segments(grid, vessel_segments) & lungs
    tissue[vessels] = Tissue.VESSEL
    _draw_airways(grid, tissue, lungs, cavity, cavity_b, lung_base, lung_height, rng)
    points = np.array([s.start + rng.uniform() * (s.end - s.start) for s in vessel_segments]).reshape(-1, 3)
    radii = np.array([(s.r_start + s.r_end) / 2 for s in vessel_segments])
    return Anatomy(tissue, lungs, vessels, points, radii)


def chest_wall(grid: Grid, cavity_a: float, cavity_b: float, rng: np.random.Generator):
    """Body outline with fat and muscle, ribs and spine around an elliptic pleural cavity of
    semi-axes ``cavity_a`` × ``cavity_b`` mm; the cavity is filled with soft tissue.

    Returns the tissue map, the cavity mask and the vertebral column mask.
    """
    x, y, z = grid.coordinates()
    fat, wall = rng.uniform(10, 22), rng.uniform(8, 12)
    body_a, body_b = cavity_a + fat + wall, cavity_b + fat + wall
    tissue = np.empty(grid.shape, dtype=np.uint8)
    tissue[:] = np.where(_ellipse(x, y, 0, 0, body_a, body_b), Tissue.FAT, Tissue.AIR)
    tissue[np.broadcast_to(_ellipse(x, y, 0, 0, body_a - fat, body_b - fat), grid.shape)] = Tissue.MUSCLE
    cavity = np.broadcast_to(_ellipse(x, y, 0, 0, cavity_a, cavity_b), grid.shape)
    tissue[cavity] = Tissue.SOFT_TISSUE
    tissue[_ribs(x, y, z, cavity_a, cavity_b)] = Tissue.BONE
    vertebra = np.broadcast_to(_ellipse(x, y, 0, cavity_b * 0.72, 22, 17), grid.shape) & (np.mod(z, 28.0) > 5.0)
    tissue[vertebra] = Tissue.BONE
    return tissue, cavity, vertebra


def sample_vessel_points(
    grid: Grid, vessels: np.ndarray, rng: np.random.Generator, count: int = 4000, radius_mm: float = 1.0
):
    """A random sample of vessel voxels (mm) with a nominal radius: where juxtavascular nodules are tried."""
    flat = np.flatnonzero(vessels)
    if flat.size == 0:
        return np.zeros((0, 3)), np.zeros(0)
    chosen = np.sort(rng.choice(flat, size=min(count, flat.size), replace=False))
    k, j, i = np.unravel_index(chosen, vessels.shape)
    points = np.column_stack([grid.axis_mm(0)[i], grid.axis_mm(1)[j], grid.axis_mm(2)[k]])
    return points, np.full(len(points), radius_mm)


def _ellipse(x, y, cx, cy, a, b):
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _ellipsoid(x, y, z, center, semi_axes):
    return ((x - center[0]) / semi_axes[0]) ** 2 + ((y - center[1]) / semi_axes[1]) ** 2 + (
        (z - center[2]) / semi_axes[2]
    ) ** 2 <= 1.0


def _ribs(x, y, z, cavity_a, cavity_b):
    """Rib arcs just outside the pleural cavity, every ~25 mm, sloping down towards the front."""
    radial = np.sqrt((x / cavity_a) ** 2 + (y / cavity_b) ** 2)
    ring = (radial > 1.0) & (radial < 1.0 + 9.0 / cavity_b)
    slope = 0.25 * (cavity_b - y)  # anterior ends lie lower, as ribs do
    return ring & (np.mod(z + slope, 25.0) < 8.0) & ~((np.abs(x) < 15) & (y < 0))


def _lungs(x, y, z, cavity_a, cavity_b, base, height, rng):
    relative = (z - base) / height
    taper = np.clip(1.3 * np.sqrt(np.clip(1.0 - relative, 0.0, 1.0)), 0.0, 1.0)  # narrow apex
    lungs = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=bool)
    for side, width in ((-1, 0.47), (1, 0.43)):  # LPS: x < 0 is the patient's right (larger) lung
        cx, cy = side * cavity_a * 0.5, cavity_b * 0.08
        ax, by = cavity_a * width * rng.uniform(0.95, 1.05), cavity_b * 0.86
        dome = 30.0 * np.clip(1 - ((x - cx) / ax) ** 2 - ((y - cy) / by) ** 2, 0, 1)  # the diaphragm
        cross_section = ((x - cx) / (ax * taper + 1e-3)) ** 2 + ((y - cy) / (by * taper + 1e-3)) ** 2 <= 1
        lungs |= cross_section & (z >= base + dome) & (z <= base + height)
    return lungs


def _vessel_trees(grid, lungs, cavity_a, cavity_b, base, height, rng) -> list[Segment]:
    inside = partial(grid.contains, lungs)
    min_radius = max(0.5, 0.35 * min(grid.spacing))
    segments: list[Segment] = []
    for side in (-1, 1):
        hilum = np.array([side * cavity_a * 0.36, cavity_b * 0.05, base + 0.55 * height])
        for _ in range(12):  # lobar and segmental trunks fanning out from the hilum
            direction = np.array([side * rng.uniform(0.3, 1.0), rng.uniform(-0.8, 0.8), rng.uniform(-1.2, 1.2)])
            segments += grow_tree(hilum, direction, rng.uniform(3.0, 4.5), rng, inside, min_radius)
    return segments


def _draw_airways(grid, tissue, lungs, cavity, cavity_b, base, height, rng) -> None:
    """Trachea down to the carina, then a bronchial tree: air lumen inside a soft-tissue wall."""
    carina = np.array([0.0, -cavity_b * 0.05, base + 0.62 * height])
    top = np.array([0.0, -cavity_b * 0.15, grid.axis_mm(2)[-1] + 10])
    segments = [Segment(top, carina, 9.0, 8.0)]
    x, _, z = grid.coordinates()
    allowed = lungs | (np.asarray(cavity) & (np.abs(x) < 35) & (z > carina[2] - 30))  # lungs, or around the trachea
    inside = partial(grid.contains, allowed)
    for side in (-1, 1):
        segments += grow_tree(
            carina,
            np.array([side, 0.1, -0.7]),
            6.5,
            rng,
            inside,
            min_radius=max(1.0, 0.5 * min(grid.spacing)),
            max_depth=7,
        )
    wall = draw_segments(grid, segments, radius_scale=1.3) & allowed
    lumen = draw_segments(grid, segments) & allowed
    tissue[wall & ~lumen] = Tissue.AIRWAY_WALL
    tissue[lumen] = Tissue.AIR
