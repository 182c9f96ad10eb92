"""Lung nodules: shape, type and placement, drawn into the anatomy with exact truth.

- Shapes: ``round``; ``lobulated`` (a sphere swollen by 3–6 random lobes); ``spiculated``
  (a lobulated core with 6–14 thin tapering spikes). The core is scaled so that its volume
  is that of a sphere of the nominal diameter. ``lidc``: a real nodule outlined by an LIDC-IDRI
  radiologist (``lidc_nodules.py``) of about the nominal size, at its own size, turned at random
  in the axial plane; its type is the one its texture rating gives.
- Types: ``solid``; ``ground-glass``; ``part-solid`` (ground glass around a solid core of
  35–60 % of the radius).
- Placements: ``isolated`` (≥ 1.5 mm from pleura and vessels), ``juxtavascular`` (touching a
  vessel), ``juxtapleural`` (touching the pleura; the part beyond it is cut away).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from scipy import ndimage

from ..lung_rads import baseline_category
from ..measurements import axial_axes_mm, equivalent_diameter_mm, largest_component, mean_diameter
from .anatomy import Anatomy
from .config import NODULE_PLACEMENTS, PhantomConfig
from .grid import Grid
from .lidc_nodules import LidcShape, lidc_shape, pick_annotation
from .tissues import Tissue
from .trees import Segment, tube_mask

_TYPE_WEIGHTS = {"solid": 0.55, "part-solid": 0.15, "ground-glass": 0.30}
# With every shape allowed, half the nodules are real LIDC outlines.
_SHAPE_WEIGHTS = {"round": 0.4, "lobulated": 0.35, "spiculated": 0.25, "lidc": 1.0}
_PLACEMENT_TRIES = 400


@dataclass
class NoduleDesign:
    """What to draw: type, shape, placement and nominal diameter, plus the random shape parameters."""

    type: str
    shape: str
    placement: str
    nominal_diameter_mm: float
    lobes: np.ndarray  # (n, 4): unit direction and amplitude
    spikes: np.ndarray  # (n, 4): unit direction and length relative to the radius
    core_fraction: float
    lidc: LidcShape | None = None
    turn: tuple[float, bool] = (0.0, False)  # the LIDC shape's axial rotation (radians) and mirroring


def design_nodules(config: PhantomConfig, rng: np.random.Generator) -> list[NoduleDesign]:
    count = int(rng.integers(config.nodules[0], config.nodules[1] + 1))
    types = list(config.types)
    weights = np.array([_TYPE_WEIGHTS[t] for t in types])
    shape_weights = np.array([_SHAPE_WEIGHTS[s] for s in config.shapes])
    designs = []
    for _ in range(count):
        diameter = float(np.exp(rng.uniform(*np.log(config.diameter_mm))))  # small nodules are the common ones
        shape = str(rng.choice(config.shapes, p=shape_weights / shape_weights.sum()))
        lobe_count = int(rng.integers(3, 7)) if shape in ("lobulated", "spiculated") else 0
        spike_count = int(rng.integers(6, 15)) if shape == "spiculated" else 0
        design = NoduleDesign(
            type=str(rng.choice(types, p=weights / weights.sum())),
            shape=shape,
            placement=str(rng.choice(NODULE_PLACEMENTS, p=[0.5, 0.25, 0.25])),
            nominal_diameter_mm=diameter,
            lobes=np.column_stack([_directions(rng, lobe_count), rng.uniform(0.15, 0.35, lobe_count)]),
            spikes=np.column_stack([_directions(rng, spike_count), rng.uniform(0.5, 1.1, spike_count)]),
            core_fraction=float(rng.uniform(0.35, 0.6)),
        )
        designs.append(_with_lidc_shape(design, rng) if shape == "lidc" else design)
    return designs


def _with_lidc_shape(design: NoduleDesign, rng: np.random.Generator) -> NoduleDesign:
    """The design drawn with a real outline of its type and nominal size; drawn last, so that the
    procedural shapes' random streams stay those of earlier versions."""
    annotation = pick_annotation(design.type, design.nominal_diameter_mm, rng)
    turn = (float(rng.uniform(0, 2 * np.pi)), bool(rng.integers(2)))
    return replace(
        design, nominal_diameter_mm=annotation.equivalent_diameter_mm, lidc=lidc_shape(annotation), turn=turn
    )


def place_nodules(
    grid: Grid,
    anatomy: Anatomy,
    designs: list[NoduleDesign],
    rng: np.random.Generator,
    instances: np.ndarray | None = None,
    truths: list[dict] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Draw each nodule into ``anatomy.tissue``; return the instance map and each nodule's truth.

    ``instances`` and ``truths`` may already hold nodules (a real one); new ids follow theirs.
    A nodule that finds no place after many tries is left out (the truth lists only drawn ones).
    """
    instances = np.zeros(grid.shape, dtype=np.uint8) if instances is None else instances
    truths = [] if truths is None else truths
    for design in designs:
        placed = _find_place(grid, anatomy, instances, design, rng)
        if placed is None:
            continue
        slices, mask, core, center = placed
        nodule_id = len(truths) + 1
        instances[slices][mask] = nodule_id
        region = anatomy.tissue[slices]
        if design.type == "solid":
            region[mask] = Tissue.NODULE_SOLID
        else:
            region[mask] = Tissue.NODULE_GROUND_GLASS
            if design.type == "part-solid":
                region[core & mask] = Tissue.NODULE_SOLID
        truths.append(measure_nodule(grid, instances, nodule_id, design, center, anatomy.tissue))
    return instances, truths


def add_real_nodule(grid: Grid, anatomy: Anatomy, mask: np.ndarray, instances: np.ndarray) -> dict:
    """Make a nodule given as a mask (a real, hand-segmented one) nodule 1; return its truth."""
    instances[mask] = 1
    anatomy.tissue[mask] = Tissue.NODULE_SOLID
    k, j, i = np.nonzero(mask)
    centroid = np.array([k.mean(), j.mean(), i.mean()])
    nearest = int(np.argmin(((np.column_stack([k, j, i]) - centroid) ** 2).sum(axis=1)))
    center = np.array([grid.axis_mm(0)[i[nearest]], grid.axis_mm(1)[j[nearest]], grid.axis_mm(2)[k[nearest]]])
    volume = k.size * float(np.prod(grid.spacing))
    design = NoduleDesign(
        type="solid",
        shape="real",
        placement=_location_class(mask, anatomy),
        nominal_diameter_mm=equivalent_diameter_mm(volume),
        lobes=np.zeros((0, 4)),
        spikes=np.zeros((0, 4)),
        core_fraction=0.0,
    )
    return measure_nodule(grid, instances, 1, design, center, anatomy.tissue)


def _location_class(mask: np.ndarray, anatomy: Anatomy) -> str:
    ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
    if not anatomy.lungs[ring].all():
        return "juxtapleural"
    return "juxtavascular" if anatomy.vessels[ring].any() else "isolated"


def measure_nodule(
    grid: Grid, instances: np.ndarray, nodule_id: int, design: NoduleDesign, center: np.ndarray, tissue: np.ndarray
) -> dict:
    """Truth of one nodule, measured on its voxel mask; its solid component is the nodule's
    solid tissue as drawn (exact, where a reader of the image would threshold HU)."""
    box = ndimage.find_objects((instances == nodule_id).astype(np.uint8))[0]
    mask = instances[box] == nodule_id
    volume = float(mask.sum() * np.prod(grid.spacing))
    long_axis, short_axis = axial_axes_mm(mask, grid.spacing)
    solid = largest_component(mask & (tissue[box] == Tissue.NODULE_SOLID))
    size = mean_diameter(long_axis, short_axis)
    solid_size = mean_diameter(*axial_axes_mm(solid, grid.spacing))
    return {
        "id": nodule_id,
        "center_lps": [round(float(c), 4) for c in center],
        "equivalent_diameter_mm": round(equivalent_diameter_mm(volume), 3),
        "long_axis_diameter_mm": round(long_axis, 3),
        "short_axis_diameter_mm": round(short_axis, 3),
        "mean_diameter_mm": size,
        "solid_component_mean_diameter_mm": solid_size,
        "volume_mm3": round(volume, 3),
        "nominal_diameter_mm": round(design.nominal_diameter_mm, 3),
        "type": design.type,
        "lung_rads": baseline_category(design.type, size, solid_size),
        "shape": design.shape,
        **({"lidc_annotation_id": design.lidc.annotation.annotation_id} if design.lidc else {}),
        "location": design.placement,
        "voxels": int(mask.sum()),
    }


def _find_place(grid, anatomy, instances, design, rng):
    radius = design.nominal_diameter_mm / 2
    lobe_scale = 1.0 if design.lidc else _volume_scale(design, max(min(grid.spacing) / 2, radius / 12))
    for _ in range(_PLACEMENT_TRIES):
        center = _candidate_center(grid, anatomy, design, radius, rng)
        if center is None:
            continue
        reach = _reach_mm(design, radius)
        box = grid.box(center - reach, center + reach)
        if box is None:
            continue
        slices, coords = box
        shape = _shape_at(design, center, coords)
        mask = shape(radius * lobe_scale)
        margin = shape(radius * lobe_scale + 1.5)
        lungs, vessels = anatomy.lungs[slices], anatomy.vessels[slices]
        if instances[slices][shape(radius * lobe_scale + 3.0)].any():
            continue  # keep nodules apart, so each is a separate finding
        if not _fits(design.placement, mask, margin, lungs, vessels):
            continue
        core = shape(radius * lobe_scale * design.core_fraction, spikes=False)
        mask &= lungs
        center_in_box = tuple(index - s.start for index, s in zip(grid.index_of(center), slices))
        if mask[center_in_box]:  # the truth centre must lie inside the nodule
            return slices, mask, core, center
    return None


def _fits(placement: str, mask, margin, lungs, vessels) -> bool:
    inside = (mask & lungs).sum() / max(mask.sum(), 1)
    touching_vessels = (mask & vessels).sum() / max(mask.sum(), 1)
    if placement == "isolated":
        return bool(lungs[margin].all() and not vessels[margin].any())
    if placement == "juxtavascular":
        return bool(lungs[margin].all() and 0.005 < touching_vessels < 0.3)
    return bool(0.8 < inside < 0.99 and not vessels[mask].any())  # juxtapleural


def _candidate_center(grid, anatomy, design, radius, rng) -> np.ndarray | None:
    """A voxel centre in the lungs, chosen to suit the placement."""
    lungs_at = partial(grid.contains, anatomy.lungs)
    if design.placement == "juxtavascular":
        if len(anatomy.vessel_points) == 0:
            return None
        pick = int(rng.integers(len(anatomy.vessel_points)))
        away = rng.normal(size=3)
        away /= max(np.linalg.norm(away), 1e-9)
        center = anatomy.vessel_points[pick] + away * (anatomy.vessel_radii[pick] + radius * 0.85)
    else:
        center = _random_lung_point(grid, anatomy.lungs, rng)
        if center is None:
            return None
        if design.placement == "juxtapleural":
            direction = rng.normal(size=3)
            direction /= max(np.linalg.norm(direction), 1e-9)
            edge = _walk_to_pleura(center, direction, lungs_at)
            if edge is None:
                return None
            center = edge - direction * radius * 0.8
    snapped = np.array(grid.origin) + np.rint((center - grid.origin) / grid.spacing) * grid.spacing
    return snapped if lungs_at(snapped) else None


def _walk_to_pleura(start, direction, lungs_at, step=1.0, limit=200.0):
    """Last lung point on the ray from ``start`` along the unit ``direction``."""
    for distance in np.arange(step, limit, step):
        if not lungs_at(start + direction * distance):
            return start + direction * (distance - step)
    return None


def _random_lung_point(grid, lungs, rng, tries=200):
    for _ in range(tries):
        k, j, i = (int(rng.integers(n)) for n in lungs.shape)
        if lungs[k, j, i]:
            return np.array([grid.axis_mm(0)[i], grid.axis_mm(1)[j], grid.axis_mm(2)[k]])
    return None


def _reach_mm(design: NoduleDesign, radius: float) -> float:
    """How far from its centre the nodule, grown by the placement margins, may reach."""
    if design.lidc:
        return design.lidc.reach_mm
    return radius * (1.4 + (design.spikes[:, 3].max() if len(design.spikes) else 0)) + 3.0


def _shape_at(design: NoduleDesign, center, coords):
    """radius -> the nodule's mask of that radius on the box. An LIDC outline is sampled once,
    and a radius beyond its nominal one grows it (or, for a solid core, shrinks it)."""
    if design.lidc:
        signed = design.lidc.signed_mm_at(center, *coords, *design.turn)
        nominal, depth = design.nominal_diameter_mm / 2, design.lidc.depth_mm

        def grown(radius: float, spikes: bool = True) -> np.ndarray:
            # A core (radius under the nominal one) is measured on the outline's own depth: a flat
            # or lobed nodule is shallower than a sphere of its volume, and would get no core.
            return signed <= (radius - nominal if radius >= nominal else -(1 - radius / nominal) * depth)

        return grown
    return lambda radius, spikes=True: _shape_mask(design, radius, center, *coords, spikes=spikes)


def _shape_mask(design, radius, center, x, y, z, spikes=True):
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    distance = np.sqrt(dx**2 + dy**2 + dz**2) + 1e-6
    surface = np.full(distance.shape, radius, dtype=np.float32)
    for lx, ly, lz, amplitude in design.lobes:
        alignment = np.clip((dx * lx + dy * ly + dz * lz) / distance, 0, 1)
        surface += radius * amplitude * alignment**3
    mask = distance <= surface
    if spikes:
        for sx, sy, sz, length in design.spikes:
            tip = np.asarray(center) + np.array([sx, sy, sz]) * radius * (1.0 + length)
            mask |= tube_mask(Segment(np.asarray(center, float), tip, max(0.9, radius * 0.12), 0.35), x, y, z)
    return mask


def _volume_scale(design, voxel_mm) -> float:
    """Radius factor that gives the lobed core the volume of a sphere of the nominal diameter."""
    radius = 10.0
    reach = radius * 1.5
    axis = np.arange(-reach, reach + 1e-6, 0.25, dtype=np.float32)
    x, y, z = axis[None, None, :], axis[None, :, None], axis[:, None, None]
    volume = _shape_mask(design, radius, np.zeros(3), x, y, z, spikes=False).sum() * 0.25**3
    return float((4 / 3 * np.pi * radius**3 / volume) ** (1 / 3))


def _directions(rng, count) -> np.ndarray:
    vectors = rng.normal(size=(count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if count else np.zeros((0, 3))
