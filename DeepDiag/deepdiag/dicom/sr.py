"""Findings as a DICOM Structured Report: a TID 1500 measurement report in a Comprehensive 3D SR
(highdicom), one volumetric ROI group (TID 1411) per finding.

Each group holds the finding's tracking id and UID, its centre as a 3D SCOORD ("Center", LPS mm
in the source series' frame of reference), and what the run measured: the detector's diameter
and certainty, long and short axis, volume, mean HU, the type with its probability and the
Lung-RADS category. Its ROI is the finding's own segment of the SEG where it was measured on
one, else the centre point. A scan without findings gets one group "No nodule found" (TID 1500
needs a group), whose evaluation reads Nodule: Absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .. import __version__
from ..files import atomic_output
from ..findings_file import Finding
from ..terminology import (
    LUNG,
    LUNG_RADS_CATEGORY,
    NODULE,
    NODULE_TYPE,
    NODULE_TYPE_CODES,
    NODULE_TYPE_PROBABILITY,
    PRIVATE_SCHEME,
    lung_rads_code,
)
from .seg import SR_SERIES_NUMBER, coded
from .source import SourceSeries

_MM = codes.UCUM.Millimeter
_MM3 = codes.UCUM.CubicMillimeter
_HU = codes.UCUM.HounsfieldUnit
_UNITLESS = codes.UCUM.NoUnits
#: (finding detail, concept, unit) of each measurement a finding may carry
_MEASURED = (
    ("long_axis_mm", codes.SCT.LongAxis, _MM),
    ("short_axis_mm", codes.SCT.ShortAxis, _MM),
    ("volume_mm3", codes.SCT.Volume, _MM3),
    ("mean_hu", codes.DCM.MeanAttenuationCoefficient, _HU),
)


def write_dicom_sr(
    path: str | Path,
    source: SourceSeries,
    findings: Sequence[Finding],
    detector: str,
    segmentation: Dataset | None = None,
    finding_segments: dict[str, int] | None = None,
) -> Dataset:
    """Write the SR of ``findings`` (LPS centres on the source series) atomically.

    Args:
        detector: ``id@version`` of the detection model that found them.
        segmentation: the SEG of the same run, referenced by the findings measured on its segments.
        finding_segments: finding id -> its segment number in ``segmentation``.
    """
    finding_segments = finding_segments or {}
    groups = [
        _finding_group(f, source, detector, segmentation, finding_segments.get(f.id) if segmentation else None)
        for f in findings
    ]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(), name="DeepDiag", manufacturer_name="DeepDiag", model_name=detector
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Device, observer_identifying_attributes=device
            )
        ),
        procedure_reported=codes.LN.CTChestReport,
        imaging_measurements=groups or [_no_finding_group(detector)],
        title=codes.DCM.ImagingMeasurementReport,
    )
    evidence = list(source.slices) + ([segmentation] if segmentation is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="DeepDiag",
        series_description=f"DeepDiag findings ({detector})",
        software_versions=__version__,
    )
    sr.CodingSchemeIdentificationSequence = [_private_scheme()]
    with atomic_output(Path(path)) as temporary:
        sr.save_as(temporary)
    return sr


def _private_scheme() -> Dataset:
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = "DeepDiag nodule findings"
    scheme.CodingSchemeResponsibleOrganization = "DeepDiag"
    return scheme


def _no_finding_group(detector: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """What a scan without findings reports (TID 1500 needs a group): "Nodule: Absent", by the
    detector, with no ROI."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="No nodule found"),
        finding_type=coded(NODULE),
        finding_sites=[hd.sr.FindingSite(coded(LUNG))],
        algorithm_id=_algorithm(detector),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(coded(NODULE), codes.SCT.Absent)],
    )


def _algorithm(detector: str) -> hd.sr.AlgorithmIdentification:
    model_id, _, version = detector.partition("@")
    return hd.sr.AlgorithmIdentification(name=f"DeepDiag {model_id}", version=version or "1")


def _finding_group(
    finding: Finding, source: SourceSeries, detector: str, segmentation: Dataset | None, segment: int | None
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    centre = np.array([finding.center_lps], dtype=float)
    if segment is not None:
        roi = {"referenced_segment": hd.sr.ReferencedSegment.from_segmentation(segmentation, segment_number=segment)}
    else:
        roi = {
            "referenced_volume_surface": hd.sr.VolumeSurface(
                graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                graphic_data=centre,
                frame_of_reference_uid=source.frame_of_reference_uid,
                source_series=hd.sr.SourceSeriesForSegmentation(source.series_instance_uid),
            )
        }
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=finding.id),
        finding_type=coded(NODULE),
        finding_sites=[hd.sr.FindingSite(coded(LUNG))],
        algorithm_id=_algorithm(detector),
        measurements=_measurements(finding),
        qualitative_evaluations=_evaluations(finding),
        **roi,
    )
    group[0].ContentSequence.append(
        hd.sr.Scoord3DContentItem(
            name=codes.DCM.Center,
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=centre,
            frame_of_reference_uid=source.frame_of_reference_uid,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    return group


def _measurements(finding: Finding) -> list[hd.sr.Measurement]:
    rows = [
        hd.sr.Measurement(name=codes.SCT.Diameter, value=finding.diameter_mm, unit=_MM),
        hd.sr.Measurement(name=codes.DCM.CertaintyOfFinding, value=finding.score, unit=_UNITLESS),
    ]
    rows += [
        hd.sr.Measurement(name=concept, value=float(finding.details[key]), unit=unit)
        for key, concept, unit in _MEASURED
        if finding.details.get(key) is not None
    ]
    nodule_type = finding.details.get("type")
    if nodule_type in finding.details.get("probabilities", {}):
        probability = float(finding.details["probabilities"][nodule_type])
        rows.append(hd.sr.Measurement(name=coded(NODULE_TYPE_PROBABILITY), value=probability, unit=_UNITLESS))
    return rows


def _evaluations(finding: Finding) -> list[hd.sr.QualitativeEvaluation]:
    rows = []
    if finding.details.get("type") in NODULE_TYPE_CODES:
        rows.append(hd.sr.QualitativeEvaluation(coded(NODULE_TYPE), coded(NODULE_TYPE_CODES[finding.details["type"]])))
    if finding.details.get("lung_rads"):
        category = str(finding.details["lung_rads"])
        rows.append(hd.sr.QualitativeEvaluation(coded(LUNG_RADS_CATEGORY), coded(lung_rads_code(category))))
    return rows
