"""From per-slice boxes to 3D findings.

Hand-written because torchvision and MONAI offer 2D and 3D box NMS but nothing that links boxes
on neighbouring slices into one object: boxes on slices at most two apart whose centres lie
within half the larger box of each other form one finding; its centre is the score-weighted
mean, its diameter the largest in-plane box side, its score the best box score. Findings whose
centre lies inside a better finding's radius are then dropped (3D non-maximum suppression).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_MAX_SLICE_GAP = 2


@dataclass
class SliceBox:
    k: int
    box: np.ndarray  # i0, j0, i1, j1 in pixels
    score: float

    @property
    def center_ji(self) -> np.ndarray:
        return np.array([(self.box[1] + self.box[3]) / 2, (self.box[0] + self.box[2]) / 2])

    @property
    def side(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class _Cluster:
    members: list[SliceBox] = field(default_factory=list)

    def accepts(self, candidate: SliceBox) -> bool:
        return any(
            abs(member.k - candidate.k) <= _MAX_SLICE_GAP
            and np.linalg.norm(member.center_ji - candidate.center_ji) <= max(member.side, candidate.side) / 2
            for member in self.members
        )


def merge_slice_boxes(
    boxes: list[SliceBox], spacing_kji: tuple[float, float, float]
) -> list[tuple[np.ndarray, float, float]]:
    """``(center_kji in voxels, diameter_mm, score)`` per 3D finding, best first."""
    clusters: list[_Cluster] = []
    for candidate in sorted(boxes, key=lambda b: -b.score):
        home = next((c for c in clusters if c.accepts(candidate)), None)
        if home is None:
            home = _Cluster()
            clusters.append(home)
        home.members.append(candidate)
    findings = [_summary(c.members, spacing_kji) for c in clusters]
    return _suppress_inside_better(sorted(findings, key=lambda f: -f[2]), np.array(spacing_kji))


def _summary(members: list[SliceBox], spacing_kji) -> tuple[np.ndarray, float, float]:
    weights = np.array([m.score for m in members])
    centers = np.array([[m.k, *m.center_ji] for m in members])
    center = (weights[:, None] * centers).sum(axis=0) / weights.sum()
    diameter = max(m.side for m in members) * float(np.mean(spacing_kji[1:]))
    return center, diameter, float(weights.max())


def _suppress_inside_better(findings, spacing: np.ndarray) -> list:
    kept = []
    for center, diameter, score in findings:
        if all(np.linalg.norm((center - other) * spacing) > other_diameter / 2 for other, other_diameter, _ in kept):
            kept.append((center, diameter, score))
    return kept
