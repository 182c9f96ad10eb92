"""What to classify and measure: the connected components of a segmentation's nodule segment,
or a detector's findings (each measured on the segmentation component it lies in when a
segmentation is given, else on a local HU threshold around it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DeepDiagError
from ..findings_file import Finding, numbered
from ..geometry import Volume
from ..measurements import NoduleMeasurements, measure
from ..segmentation_file import read_segmentation

NODULE_SEGMENT = "Lung nodules"
#: the lowest HU a finding's voxels may have when no segmentation is given: ground glass lies
#: near -600 HU, aerated lung near -850 HU
LOCAL_THRESHOLD_HU = -720.0
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # as the segmentation evaluation counts components
#: how far the edge of a segmented or thresholded nodule may move to its half-maximum edge
EDGE_SEARCH_MM = 2.0


@dataclass
class Candidate:
    finding: Finding
    box: tuple[slice, slice, slice]  # where its mask lies on the input grid, [k, j, i]
    mask: np.ndarray
    measured_on: str  # "segmentation" or "threshold"

    def measure(self, volume: Volume) -> NoduleMeasurements:
        return measure(self.mask, volume.array[self.box].astype(np.float32), volume.spacing)


def nodule_mask(segmentation_path: str | Path, volume: Volume) -> np.ndarray:
    """The ``Lung nodules`` segment (or the only segment) of a ``.seg.nrrd`` on ``volume``'s grid;
    in a plain label map (no segment fields), every labelled voxel."""
    try:
        labels, segments = read_segmentation(segmentation_path)
    except RuntimeError as error:  # SimpleITK's reader on a file that is not an image
        raise DeepDiagError(f"not a readable segmentation ({str(error).splitlines()[0]})", segmentation_path) from None
    if not labels.same_grid(volume):
        raise DeepDiagError(
            "the segmentation does not lie on the image's voxel grid (segment the same image first)", segmentation_path
        )
    if not segments:
        return labels.array > 0
    chosen = [s for s in segments if s.get("Name") == NODULE_SEGMENT] or (segments if len(segments) == 1 else [])
    if not chosen:
        names = ", ".join(s.get("Name", "?") for s in segments) or "none"
        raise DeepDiagError(f"has no segment named {NODULE_SEGMENT!r} (segments: {names})", segmentation_path)
    return labels.array == int(chosen[0].get("LabelValue", 1))


def from_segmentation(mask: np.ndarray, volume: Volume) -> list[Candidate]:
    """One candidate per connected nodule component, largest first (findings N1, N2, ...)."""
    components, boxes = _components(mask)
    parts = []
    for value, box in enumerate(boxes, start=1):
        part = components[box] == value
        center_kji = np.array(ndimage.center_of_mass(part)) + [s.start for s in box]
        parts.append((*at_half_maximum(volume, box, part), volume.ijk_to_lps(center_kji[::-1])))
    parts.sort(key=lambda p: -p[1].sum())
    findings = numbered([(center, 0.0, 1.0) for _, _, center in parts])  # a segmentation has no detection score
    return [Candidate(f, box, part, "segmentation") for f, (box, part, _) in zip(findings, parts)]


def from_findings(findings: list[Finding], volume: Volume, mask: np.ndarray | None = None) -> list[Candidate]:
    """A candidate per finding, measured on the segmentation component nearest its centre
    (within its radius) when ``mask`` is given, else (or when none is that near) on a local threshold."""
    components, boxes = (None, []) if mask is None else _components(mask)
    candidates = []
    for finding in findings:
        box = _box_around(volume, finding.center_lps, _reach_mm(finding.diameter_mm))
        center = volume.lps_to_ijk(np.asarray(finding.center_lps))[::-1] - [s.start for s in box]
        value = _nearest_label(components[box], center) if components is not None else 0
        if value:
            whole = boxes[value - 1]
            candidates.append(
                Candidate(finding, *at_half_maximum(volume, whole, components[whole] == value), "segmentation")
            )
        else:
            part = _nearest_component(_local_threshold(volume, box, center, finding.diameter_mm), center)
            candidates.append(Candidate(finding, box, part, "threshold"))
    return candidates


def at_half_maximum(volume: Volume, box, mask: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """The nodule's edge moved (by up to EDGE_SEARCH_MM) to where the CT crosses half way from
    the nodule's median HU to the surrounding lung's, as volumetry software places it.

    Segmentation models draw a conservative edge (the shipped one measured nodules about 2 mm
    small), and a fixed threshold misplaces it by density: half maximum puts a solid nodule's
    edge near -410 HU and a ground-glass one's near -710 HU, where the blurred drawn edge lies.
    """
    if not mask.any():
        return box, mask
    spacing = np.array(volume.spacing[::-1])
    pad = np.ceil((EDGE_SEARCH_MM + 6.0) / spacing).astype(int)
    big = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pad, volume.array.shape))
    placed = np.zeros([s.stop - s.start for s in big], dtype=bool)
    placed[tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(box, big))] = mask
    hu = volume.array[big].astype(np.float32)
    distance = ndimage.distance_transform_edt(~placed, sampling=spacing)
    shell = (distance > 3.0) & (distance <= 6.0)
    lung = np.percentile(hu[shell], 25) if shell.any() else -850.0  # the lower quartile skips vessels in the shell
    edge = (float(np.median(hu[placed])) + lung) / 2
    grown = (distance <= EDGE_SEARCH_MM) & (hu >= edge)
    components, _ = ndimage.label(grown, structure=_CONNECTIVITY)
    kept = np.isin(components, np.unique(components[placed & grown])) & (components > 0)
    return (big, kept) if kept.any() else (box, mask)


def _components(mask: np.ndarray) -> tuple[np.ndarray, list]:
    components, _ = ndimage.label(mask, structure=_CONNECTIVITY)
    return components, ndimage.find_objects(components)


def _reach_mm(diameter_mm: float) -> float:
    """How far from a finding's centre its voxels are looked for: beyond the radius, since
    nodules are elongated, but not so far that the chest wall under a nodule counts much."""
    return 0.6 * diameter_mm + 1.5


def _box_around(volume: Volume, center_lps, radius_mm: float) -> tuple[slice, slice, slice]:
    center = volume.lps_to_ijk(np.asarray(center_lps))
    reach = np.ceil(radius_mm / np.array(volume.spacing)).astype(int) + 1
    low = np.clip(np.round(center).astype(int) - reach, 0, np.array(volume.size))
    high = np.clip(np.round(center).astype(int) + reach + 1, 0, np.array(volume.size))
    if np.any(high <= low):
        raise DeepDiagError(f"finding at LPS {list(center_lps)} lies outside the image")
    return tuple(slice(lo, hi) for lo, hi in zip(low[::-1], high[::-1]))


def _local_threshold(volume: Volume, box, center_kji: np.ndarray, diameter_mm: float) -> np.ndarray:
    """Voxels at or above the half-maximum HU between the finding's centre (median within a
    quarter of its diameter) and the lung around it (lower quartile of the sphere), within a
    sphere a little larger than the finding, opened so that vessels thinner than about 3 mm no
    longer join it. What touches the sphere broadly, such as the chest wall under a
    juxtapleural nodule, is only cut at the sphere."""
    grid = np.meshgrid(*[np.arange(s.stop - s.start) for s in box], indexing="ij")
    distance = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center_kji, volume.spacing[::-1])))
    hu = volume.array[box].astype(np.float32)
    sphere = distance <= _reach_mm(diameter_mm)
    centre = distance <= max(diameter_mm / 4, max(volume.spacing))
    edge = (float(np.median(hu[centre])) + float(np.percentile(hu[sphere], 25))) / 2
    mask = (hu >= max(edge, LOCAL_THRESHOLD_HU)) & sphere
    steps = max(1, int(round(1.5 / min(volume.spacing))))
    opened = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1), iterations=steps)
    return opened if opened.any() else mask  # a nodule thinner than the opening keeps its unopened voxels


def _nearest_label(labels: np.ndarray, center_kji: np.ndarray) -> int:
    """The label of the labelled voxel nearest ``center_kji``; 0 when there is none."""
    voxels = np.argwhere(labels > 0)
    if not len(voxels):
        return 0
    return int(labels[tuple(voxels[np.argmin(((voxels - center_kji) ** 2).sum(axis=1))])])


def _nearest_component(mask: np.ndarray, center_kji: np.ndarray) -> np.ndarray:
    """The component of ``mask`` holding the voxel nearest ``center_kji``; empty when none."""
    components, _ = ndimage.label(mask, structure=_CONNECTIVITY)
    value = _nearest_label(components, center_kji)
    return components == value if value else np.zeros(mask.shape, dtype=bool)
