"""The phantom's preview: three planes through its largest nodule, truth outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..preview import write_preview as write_planes
from .case import PhantomCase


def write_preview(case: PhantomCase, path: str | Path) -> Path:
    return write_planes(case.ct, case.labels, _largest_nodule_voxel(case), path)


def _largest_nodule_voxel(case: PhantomCase) -> tuple[int, int, int]:
    nodules = case.truth["nodules"]
    if not nodules:
        return tuple(n // 2 for n in case.ct.array.shape)
    largest = max(nodules, key=lambda n: n["volume_mm3"])
    ijk = np.rint(case.ct.lps_to_ijk(np.array(largest["center_lps"]))).astype(int)
    return int(ijk[2]), int(ijk[1]), int(ijk[0])
