"""Segment classes with their display color and SNOMED CT terminology, in Slicer's encoding."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """A coded concept (DICOM style): coding scheme, code value, meaning."""

    scheme: str
    value: str
    meaning: str

    def encode(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


_EMPTY = Code("", "", "")


@dataclass(frozen=True)
class SegmentClass:
    """What one label value means: a named, colored, coded segment.

    Attributes:
        name: segment name shown to the user.
        label_value: voxel value in the label map.
        color: RGB in 0..1.
        category, type: SNOMED CT category and type of the structure.
        region: anatomic region the structure lies in, if it is not itself an organ.
    """

    name: str
    label_value: int
    color: tuple[float, float, float]
    category: Code
    type: Code
    region: Code = _EMPTY

    def slicer_terminology_tag(self) -> str:
        """Encode as the ``TerminologyEntry`` tag that Slicer stores in ``.seg.nrrd`` headers."""
        region_context = "Anatomic codes - DICOM master list" if self.region.value else ""
        return "~".join(
            [
                "Segmentation category and type - 3D Slicer General Anatomy list",
                self.category.encode(),
                self.type.encode(),
                _EMPTY.encode(),
                region_context,
                self.region.encode(),
                _EMPTY.encode(),
            ]
        )


ANATOMICAL_STRUCTURE = Code("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("SCT", "49755003", "Morphologically Altered Structure")
LUNG = Code("SCT", "39607008", "Lung")
NODULE = Code("SCT", "27925004", "Nodule")

LUNGS = SegmentClass("Lungs", 1, (197 / 255, 165 / 255, 145 / 255), ANATOMICAL_STRUCTURE, LUNG)
LUNG_NODULES = SegmentClass("Lung nodules", 2, (0.95, 0.25, 0.15), MORPHOLOGICALLY_ALTERED_STRUCTURE, NODULE, LUNG)

#: DeepDiag's own coding scheme (DICOM's "99" prefix for private schemes), for what neither DCM
#: nor SNOMED CT codes: the nodule types as Lung-RADS names them, and the Lung-RADS category.
PRIVATE_SCHEME = "99DEEPDIAG"
NODULE_TYPE = Code(PRIVATE_SCHEME, "NODTYPE", "Nodule type")
NODULE_TYPE_PROBABILITY = Code(PRIVATE_SCHEME, "NODTYPEPROB", "Probability of the nodule type")
NODULE_TYPE_CODES = {
    "solid": Code(PRIVATE_SCHEME, "SOLID", "Solid nodule"),
    "part-solid": Code(PRIVATE_SCHEME, "PARTSOLID", "Part-solid nodule"),
    "ground-glass": Code(PRIVATE_SCHEME, "GROUNDGLASS", "Ground-glass nodule"),
}
LUNG_RADS_CATEGORY = Code(PRIVATE_SCHEME, "LUNGRADS", "Lung-RADS category")


def lung_rads_code(category: str) -> Code:
    """The coded value of a Lung-RADS category ("2", "3", "4A", "4B")."""
    return Code(PRIVATE_SCHEME, f"LR{category}", f"Lung-RADS {category}")
