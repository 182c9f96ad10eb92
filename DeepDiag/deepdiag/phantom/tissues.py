"""Tissue classes of the phantom and their CT appearance (Hounsfield units).

Mean values follow standard CT references for non-contrast chest CT; ``texture_hu`` is the
amplitude of smooth within-tissue variation (before scanner blur and noise).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    SOFT_TISSUE = 3
    BLOOD = 4
    BONE = 5
    LUNG = 6
    VESSEL = 7
    AIRWAY_WALL = 8
    NODULE_SOLID = 9
    NODULE_GROUND_GLASS = 10
    FISSURE = 11


#: (mean HU, texture amplitude HU) per tissue
APPEARANCE = {
    Tissue.AIR: (-1000.0, 0.0),
    Tissue.FAT: (-100.0, 12.0),
    Tissue.MUSCLE: (45.0, 8.0),
    Tissue.SOFT_TISSUE: (35.0, 10.0),
    Tissue.BLOOD: (40.0, 5.0),
    Tissue.BONE: (450.0, 120.0),
    Tissue.LUNG: (-860.0, 22.0),
    Tissue.VESSEL: (40.0, 5.0),
    Tissue.AIRWAY_WALL: (-30.0, 20.0),
    Tissue.NODULE_SOLID: (30.0, 15.0),
    Tissue.NODULE_GROUND_GLASS: (-560.0, 45.0),
    Tissue.FISSURE: (-150.0, 20.0),  # sub-millimetre sheet: reads about -700 after blur
}


def appearance_tables(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables (indexed by tissue code) of mean HU and texture amplitude, jittered per case
    the way scanners and patients differ (calibration offsets of a few HU, lung inflation)."""
    means = np.array([APPEARANCE[t][0] for t in Tissue], dtype=np.float32)
    texture = np.array([APPEARANCE[t][1] for t in Tissue], dtype=np.float32)
    soft = [t for t in Tissue if t not in (Tissue.AIR, Tissue.LUNG, Tissue.NODULE_GROUND_GLASS)]
    means[soft] += rng.uniform(-8, 8)
    means[Tissue.LUNG] += rng.uniform(-20, 20)
    means[Tissue.NODULE_GROUND_GLASS] += rng.uniform(-60, 60)
    return means, texture
