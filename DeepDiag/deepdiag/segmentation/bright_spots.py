"""A second source of nodule candidates: bright round spots in the lungs that the U-Net did not mark.

The U-Net gives many nodules of 3–6 mm next to no probability, above all those touching a vessel
or the pleura, so no threshold on its output finds them. Classic lung CAD finds such candidates
with a blob detector instead: at a sphere's centre all three eigenvalues of the intensity's
Hessian are strongly negative, at a vessel's axis only two (along the vessel the intensity hardly
changes). Spots are the peaks of the scale-normalized Laplacian of Gaussian whose least negative
eigenvalue is still clearly negative; the candidate filter then judges each spot as it judges
the U-Net's components. Written here because neither MONAI nor SimpleITK gives blob centres with
their scale: ITK's objectness filter scores every voxel (about 2 s per scale on a chest crop) with
Frangi constants tied to the intensity range; the eigenvalues are only needed at the few
thousand Laplacian peaks.

A nodule on the pleura is half a sphere on a bright wall: across the wall the intensity keeps
rising, so at its centre one eigenvalue is positive and the spot is lost. :class:`SpotSearch` can
search an image in which everything outside the lungs is set to the lungs' median intensity:
the wall is gone and the nodule's lung side is a blob in dark surroundings.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
from scipy import ndimage

from ..slabs import in_slabs, run_slabs, slab_with_halo

#: Gaussian scales searched; a sphere of radius r responds most at sigma = r / sqrt(3), so these
#: cover nodules of about 3.5-7 mm
SCALES_MM = (1.0, 1.5, 2.0)
#: the least (scale-normalized) curvature a spot must have across every direction, in units of
#: the model's 0..1 intensity window; on the 8 default-grid validation phantoms (seed 8) 7 of the 8
#: nodules of 3-6 mm peak above it, with about 790 spots per scan. On 5 default-grid phantoms
#: crowded with small nodules (seed 19), ground-glass nodules of 3-6 mm peak at 0.014-0.047
#: (a third of a solid nodule's contrast), solid ones at 0.06-0.15.
MIN_BLOBNESS = 0.03
_LUNG_MARGIN_VOXELS = 2  # juxtapleural nodules sit on the lung's edge
_BACKGROUND_PERCENTILE = 20


@dataclass(frozen=True)
class SpotSearch:
    """How spots are searched; a candidate filter is trained on the spots of one search and its
    card records it (``input.spot_search``), so that it is always asked about the same kind."""

    min_blobness: float = MIN_BLOBNESS
    #: search an image where everything outside the lungs has the lungs' median intensity
    without_chest_wall: bool = False

    @classmethod
    def from_card(cls, card) -> "SpotSearch":
        recorded = card.input.get("spot_search", {})
        return cls(float(recorded.get("min_blobness", MIN_BLOBNESS)), bool(recorded.get("without_chest_wall", False)))

    def as_card_entry(self) -> dict:
        return asdict(self)


@dataclass
class Spot:
    """A spot's centre and scale; its extent is worked out when first asked for: most spots are
    judged by their centre alone and rejected (0.38 s for the 2,080 spots of a real chest CT, of
    which a few are kept)."""

    centre: np.ndarray  # voxel index (k, j, i) on the model grid
    scale_mm: float
    blobness: float
    _searched: tuple = field(repr=False)  # (image, its smoothing at this scale, spacing), shared by all spots

    @cached_property
    def voxels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The spot's extent, as numpy index arrays."""
        image, smoothed, spacing_kji = self._searched
        return _extent(image, smoothed, self.centre, self.scale_mm, spacing_kji)


def bright_spots(
    image: np.ndarray,
    lungs: np.ndarray,
    spacing_kji,
    excluded: np.ndarray | None = None,
    search: SpotSearch = SpotSearch(),
) -> list[Spot]:
    """Round spots brighter than their surroundings inside (or on the edge of) ``lungs``, away
    from ``excluded`` voxels; ``image`` is the normalized model-grid crop."""
    if search.without_chest_wall and lungs.any():
        image = np.where(lungs, image, np.median(image[lungs])).astype(np.float32)
    min_blobness = search.min_blobness
    smoothed = _smoothed_at_scales(image, spacing_kji)
    response, best_scale = _strongest_response(smoothed, spacing_kji)
    allowed = in_slabs(
        lambda slab: ndimage.binary_dilation(slab, iterations=_LUNG_MARGIN_VOXELS), lungs, _LUNG_MARGIN_VOXELS
    )
    if excluded is not None:
        allowed &= ~excluded
    # a blob's Laplacian is the sum of three eigenvalues, each at least min_blobness in size
    peaks = (response == in_slabs(lambda slab: ndimage.maximum_filter(slab, size=3), response, 1)) & allowed
    peaks &= response > 3 * min_blobness
    points = np.argwhere(peaks)
    spots = []
    for index, scale in enumerate(SCALES_MM):
        at_scale = points[best_scale[tuple(points.T)] == index]
        blobness = _least_curvature(smoothed[index], at_scale, spacing_kji) * scale**2
        strong = blobness > min_blobness
        for point, value in zip(at_scale[strong], blobness[strong]):
            spots.append(Spot(point, scale, float(value), (image, smoothed[index], spacing_kji)))
    return spots


def _smoothed_at_scales(image: np.ndarray, spacing_kji) -> list[np.ndarray]:
    """``image`` smoothed with a Gaussian of each of :data:`SCALES_MM`, one thread per scale.
    SciPy's sampled Gaussian (edges extended, as ITK's recursive filter does) runs its 1D passes
    without the Python lock, so the scales run side by side: 0.4-0.5 s for the three on a chest
    crop of 19 million voxels, where SimpleITK's recursive Gaussian took 0.5 s for each. On the
    real CTs' crops the two differ by at most 0.0053 in the 0..1 window (ITK's is a recursive
    approximation of the Gaussian): 2-3 % of the spots come or go (856 -> 833, 2131 -> 2082), and
    the labels of the held-out real CT's inserted copies are the same, voxel for voxel.
    """
    image = image.astype(np.float32, copy=False)
    with ThreadPoolExecutor(len(SCALES_MM)) as pool:
        return list(
            pool.map(
                lambda scale: ndimage.gaussian_filter(image, [scale / step for step in spacing_kji], mode="nearest"),
                SCALES_MM,
            )
        )


def _strongest_response(smoothed: list[np.ndarray], spacing_kji) -> tuple[np.ndarray, np.ndarray]:
    """The largest scale-normalized minus-Laplacian over the scales, and the index of its scale
    (the first on ties). Worked out slab by slab of axial slices, the slabs side by side in
    threads (SciPy's 1D filters and NumPy's arithmetic run without the Python lock): each slab
    reads one slice more on each side, so every voxel gets the same sums, in the same order, as
    from passes over the whole crop, and no crop-sized array is held per scale."""
    shape = smoothed[0].shape
    response = np.empty(shape, smoothed[0].dtype)
    best_scale = np.zeros(shape, np.uint8)

    def fill(start: int) -> None:
        slab, read, inner = slab_with_halo(start, shape[0], 1)  # a second difference reaches one slice
        for index, (blurred, scale) in enumerate(zip(smoothed, SCALES_MM)):
            at_scale = _laplacian(blurred[read], spacing_kji)[inner]
            at_scale *= -(scale**2)
            if index == 0:
                response[slab] = at_scale
                continue
            best_scale[slab][at_scale > response[slab]] = index
            np.maximum(response[slab], at_scale, out=response[slab])

    run_slabs(fill, shape[0])
    return response, best_scale


def _laplacian(smoothed: np.ndarray, spacing_kji) -> np.ndarray:
    """Sum of the central second differences (zero on the array's faces), one pass per axis."""
    result = np.zeros_like(smoothed)
    term = np.empty_like(smoothed)
    for axis, step in enumerate(spacing_kji):
        ndimage.correlate1d(smoothed, np.array([1.0, -2.0, 1.0]) / step**2, axis=axis, output=term)
        for face in (0, -1):
            term[(slice(None),) * axis + (face,)] = 0.0
        result += term
    return result


def _least_curvature(smoothed: np.ndarray, points: np.ndarray, spacing_kji) -> np.ndarray:
    """Minus the largest Hessian eigenvalue at each point (central differences): positive only
    where the intensity falls off in every direction."""
    if not len(points):
        return np.zeros(0, np.float32)
    padded = np.pad(smoothed, 1, mode="edge")
    centre = points + 1

    def value(offset):
        return padded[tuple((centre + offset).T)]

    hessian = np.zeros((len(points), 3, 3), np.float64)
    unit = np.eye(3, dtype=int)
    for a in range(3):
        for b in range(a, 3):
            if a == b:
                second = value(unit[a]) - 2 * value(0 * unit[a]) + value(-unit[a])
            else:
                second = (
                    value(unit[a] + unit[b])
                    - value(unit[a] - unit[b])
                    - value(unit[b] - unit[a])
                    + value(-unit[a] - unit[b])
                ) / 4
            hessian[:, a, b] = hessian[:, b, a] = second / (spacing_kji[a] * spacing_kji[b])
    return -np.linalg.eigvalsh(hessian)[:, 2]


def _extent(image: np.ndarray, smoothed: np.ndarray, point: np.ndarray, scale_mm: float, spacing_kji):
    """The voxels of the spot: within twice its radius, brighter than halfway between the spot's
    smoothed peak and the lung around it, and connected to its centre."""
    radius_mm = 2 * np.sqrt(3) * scale_mm
    reach = np.ceil(radius_mm / np.asarray(spacing_kji)).astype(int)
    low = np.maximum(point - reach, 0)
    high = np.minimum(point + reach + 1, image.shape)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    grid = np.meshgrid(
        *[(np.arange(lo, hi) - p) * s for lo, hi, p, s in zip(low, high, point, spacing_kji)], indexing="ij"
    )
    distance_mm2 = sum(g**2 for g in grid)
    ball = distance_mm2 <= radius_mm**2
    region = image[box]
    level = (smoothed[tuple(point)] + np.percentile(region[ball], _BACKGROUND_PERCENTILE)) / 2
    bright, _ = ndimage.label(ball & (region >= level))
    centre = tuple(point - low)
    if bright[centre]:
        inside = bright == bright[centre]
    else:  # the centre voxel itself is under the level (noise): take the inner half of the ball
        inside = distance_mm2 <= (radius_mm / 2) ** 2
    return tuple(index + lo for index, lo in zip(np.nonzero(inside), low))
