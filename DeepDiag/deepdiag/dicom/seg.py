"""Segmentation results as a DICOM Segmentation (SEG) referencing the source series (highdicom).

The segments are those of the ``.seg.nrrd`` of the same run, except that each connected
component of a nodule class becomes a segment of its own ("Lung nodule 1", "Lung nodule 2", ...,
largest first): a DICOM SR finding then references its own nodule's segment, as Slicer's
QuantitativeReporting expects. The lungs and the union of the nodule segments hold exactly the
voxels of the ``.seg.nrrd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from scipy import ndimage

from .. import __version__
from ..files import atomic_output
from ..geometry import Volume
from ..models.card import ModelCard
from ..terminology import NODULE, Code, SegmentClass
from .source import SourceSeries

#: DICOM series numbers of DeepDiag's results, after the scanner's own series
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 900, 901
#: as the segmentation evaluation and the candidates count nodule components
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Segment:
    """One segment of the SEG: its number, what it is, and the label map value it comes from."""

    number: int
    label: str
    segment_class: SegmentClass
    tracking_id: str


def segments_of(labels: np.ndarray, classes: list[SegmentClass]) -> tuple[np.ndarray, list[Segment]]:
    """A map of segment numbers on the label map's grid and the segments it holds (empty ones left out).

    Classes coded as nodules are split into their connected components, largest first.
    """
    numbers = np.zeros(labels.shape, dtype=np.uint16)
    segments: list[Segment] = []
    for segment_class in classes:
        mask = labels == segment_class.label_value
        parts = _components_largest_first(mask) if segment_class.type == NODULE else [mask]
        for index, part in enumerate(p for p in parts if p.any()):
            name = f"Lung nodule {index + 1}" if segment_class.type == NODULE else segment_class.name
            segments.append(Segment(len(segments) + 1, name, segment_class, name))
            numbers[part] = len(segments)
    return numbers, segments


def write_dicom_seg(
    path: str | Path, source: SourceSeries, labels: Volume, classes: list[SegmentClass], model: ModelCard
) -> tuple[Dataset, np.ndarray, list[Segment]] | None:
    """Write the SEG of ``labels`` (on the source series' grid) atomically.

    Returns:
        The SEG dataset, its map of segment numbers and its segments; None when nothing was
        segmented (a SEG must hold a segment).
    """
    numbers, segments = segments_of(labels.array, classes)
    if not segments:
        return None
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"DeepDiag {model.id}", family=codes.cid7162.ArtificialIntelligence, version=str(model.version)
    )
    seg = hd.seg.Segmentation(
        source_images=list(source.slices),
        pixel_array=numbers,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(s, algorithm) for s in segments],
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="DeepDiag",
        manufacturer_model_name=model.full_id,
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"DeepDiag segmentation ({model.full_id})",
    )
    with atomic_output(Path(path)) as temporary:
        seg.save_as(temporary)
    return seg, numbers, segments


def _description(segment: Segment, algorithm: hd.AlgorithmIdentificationSequence) -> hd.seg.SegmentDescription:
    region = segment.segment_class.region
    return hd.seg.SegmentDescription(
        segment_number=segment.number,
        segment_label=segment.label,
        segmented_property_category=coded(segment.segment_class.category),
        segmented_property_type=coded(segment.segment_class.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=generate_uid(),
        tracking_id=segment.tracking_id,
        anatomic_regions=[coded(region)] if region.value else None,
    )


def coded(code: Code) -> hd.sr.CodedConcept:
    """A terminology code as highdicom's coded concept."""
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)


def _components_largest_first(mask: np.ndarray) -> list[np.ndarray]:
    components, count = ndimage.label(mask, structure=_CONNECTIVITY)
    sizes = np.bincount(components[mask], minlength=count + 1)[1:]
    return [components == value for value in np.argsort(-sizes, kind="stable") + 1]
