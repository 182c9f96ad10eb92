"""Branching tubes (pulmonary vessels, airways): grown as segments, then drawn into a grid.

Vessel calibre follows Murray's law (children ≈ 0.79 × parent for a symmetric split), so
tubes taper outward as in real lungs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .grid import Grid


@dataclass(frozen=True)
class Segment:
    """A tapered tube from ``start`` to ``end`` (mm), radius ``r_start`` → ``r_end``."""

    start: np.ndarray
    end: np.ndarray
    r_start: float
    r_end: float


def grow_tree(
    start: np.ndarray,
    direction: np.ndarray,
    radius: float,
    rng: np.random.Generator,
    inside: Callable[[np.ndarray], bool],
    min_radius: float,
    max_depth: int = 12,
) -> list[Segment]:
    """Grow a bifurcating tree until branches get thinner than ``min_radius`` or leave ``inside``."""
    segments: list[Segment] = []
    stack = [(np.asarray(start, float), _unit(direction), float(radius), 0)]
    while stack:
        point, heading, r, depth = stack.pop()
        length = r * rng.uniform(5.0, 8.0) + 3.0
        end = point + heading * length
        if not inside(end):  # at the pleura: bend away once, as vessels follow the lung's shape
            heading = _unit(heading + rng.normal(scale=0.8, size=3))
            end = point + heading * length * 0.6
            if not inside(end):
                continue
        child_radius = r * rng.uniform(0.72, 0.85)
        segments.append(Segment(point, end, r, child_radius))
        if child_radius < min_radius or depth >= max_depth:
            continue
        normal = _unit(np.cross(heading, rng.normal(size=3)))
        for sign in (1.0, -1.0):
            angle = np.radians(rng.uniform(20, 40))
            child = heading * np.cos(angle) + sign * normal * np.sin(angle) + rng.normal(scale=0.1, size=3)
            stack.append((end, _unit(child), child_radius, depth + 1))
    return segments


def draw_segments(grid: Grid, segments: list[Segment], radius_scale: float = 1.0) -> np.ndarray:
    """Boolean mask of the voxels within ``radius_scale`` × each tube's radius."""
    mask = np.zeros(grid.shape, dtype=bool)
    for segment in segments:
        reach = max(segment.r_start, segment.r_end) * radius_scale
        low = np.minimum(segment.start, segment.end) - reach
        high = np.maximum(segment.start, segment.end) + reach
        box = grid.box(low, high)
        if box is None:
            continue
        slices, (x, y, z) = box
        mask[slices] |= tube_mask(segment, x, y, z, radius_scale)
    return mask


def tube_mask(segment: Segment, x: np.ndarray, y: np.ndarray, z: np.ndarray, radius_scale: float = 1.0) -> np.ndarray:
    """Which points (broadcastable mm coordinates) lie inside the tapered tube."""
    axis = (segment.end - segment.start).astype(np.float32)
    length_squared = max(float(axis @ axis), 1e-6)
    dx, dy, dz = x - segment.start[0], y - segment.start[1], z - segment.start[2]
    t = np.clip((dx * axis[0] + dy * axis[1] + dz * axis[2]) / length_squared, 0.0, 1.0)
    distance_squared = (dx - t * axis[0]) ** 2 + (dy - t * axis[1]) ** 2 + (dz - t * axis[2]) ** 2
    radius = (segment.r_start + t * (segment.r_end - segment.r_start)) * radius_scale
    return distance_squared <= radius**2


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, float)
    return vector / max(np.linalg.norm(vector), 1e-9)
