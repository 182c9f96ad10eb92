"""Lung-RADS v2022 baseline category of one pulmonary nodule from its type and size.

Source: American College of Radiology, "Lung-RADS v2022" assessment categories (released
November 2022), baseline screening column. Sizes are mean diameters (long + short axis) / 2
on the axial slice of largest extent, rounded to 0.1 mm.

=============  ========================================  ========
type           size                                      category
=============  ========================================  ========
solid          < 6 mm                                    2
solid          6 to < 8 mm                               3
solid          8 to < 15 mm                              4A
solid          >= 15 mm                                  4B
part-solid     total < 6 mm                              2
part-solid     total >= 6 mm, solid component < 6 mm     3
part-solid     solid component 6 to < 8 mm               4A
part-solid     solid component >= 8 mm                   4B
ground-glass   < 30 mm                                   2
ground-glass   >= 30 mm                                  3
(no nodule)                                              1
=============  ========================================  ========

Not modelled: juxtapleural/perifissural and airway nodules, calcification, category 4X
features and follow-up (interval) rules; a radiologist decides those.
"""

from __future__ import annotations

from .errors import DeepDiagError

NODULE_TYPES = ("solid", "part-solid", "ground-glass")
CATEGORIES = ("1", "2", "3", "4A", "4B")


def baseline_category(nodule_type: str, mean_diameter_mm: float, solid_mean_diameter_mm: float = 0.0) -> str:
    """The category of one nodule (``"2"``, ``"3"``, ``"4A"`` or ``"4B"``) by the table above."""
    if nodule_type == "solid":
        return _by_size(mean_diameter_mm, ((6.0, "2"), (8.0, "3"), (15.0, "4A")), "4B")
    if nodule_type == "part-solid":
        if mean_diameter_mm < 6.0:
            return "2"
        return _by_size(solid_mean_diameter_mm, ((6.0, "3"), (8.0, "4A")), "4B")
    if nodule_type == "ground-glass":
        return "2" if mean_diameter_mm < 30.0 else "3"
    raise DeepDiagError(f"unknown nodule type {nodule_type!r} (expected one of {', '.join(NODULE_TYPES)})")


def scan_category(categories: list[str]) -> str:
    """A scan is categorized by its most suspicious nodule; no nodule is category 1."""
    return max(categories, key=CATEGORIES.index, default="1")


def _by_size(size_mm: float, limits: tuple[tuple[float, str], ...], above: str) -> str:
    for limit, category in limits:
        if size_mm < limit:
            return category
    return above
