"""``--dicom-out``: a run's results as DICOM objects beside its Slicer files, for a DICOM series input.

``segment`` writes ``<name>.seg.dcm`` (SEG), ``detect`` writes ``<name>.sr.dcm`` (SR), and
``analyze`` writes both, each SR finding referencing its own nodule's SEG segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..classification.candidates import Candidate
from ..errors import DeepDiagError
from ..findings_file import Finding
from ..geometry import Volume
from ..models.card import ModelCard
from ..terminology import NODULE
from .source import SourceSeries, is_dicom_series, read_source_series

if TYPE_CHECKING:
    from .seg import Segment


def check_dicom_inputs(inputs: Sequence[str]) -> None:
    """Refuse ``--dicom-out`` before any work when an input is not a DICOM series folder."""
    for path in inputs:
        if not is_dicom_series(path):
            raise DeepDiagError(
                "is a file, not a DICOM series folder; --dicom-out writes DICOM results that reference "
                "the source series, so it needs DICOM input (leave --dicom-out out for this file)",
                path,
            )


def dicom_source(input_path: str, volume: Volume, dicom_out: bool) -> SourceSeries | None:
    """The source series results will reference, read and checked before any work on the input
    (so that a series DICOM results cannot reference fails before any of its files is written)."""
    return read_source_series(input_path, volume) if dicom_out else None


def write_dicom_results(
    source: SourceSeries,
    output_dir: str | Path,
    stem: str,
    segmentation: tuple[Volume, ModelCard] | None = None,
    findings: tuple[Sequence[Finding], str, Sequence[Candidate] | None] | None = None,
) -> dict[str, str]:
    """Write the SEG of ``segmentation`` (labels, model) and the SR of ``findings`` (findings,
    detector ``id@version``, the candidates they were measured on); returns their paths by kind."""
    # highdicom is imported here, not with the module: every command imports this module, and
    # highdicom's 0.4 s at start-up is for --dicom-out alone
    from .seg import write_dicom_seg
    from .sr import write_dicom_sr

    written, seg, finding_segments = {}, None, {}
    if segmentation is not None:
        labels, model = segmentation
        path = Path(output_dir) / f"{stem}.seg.dcm"
        made = write_dicom_seg(path, source, labels, model.segment_classes(), model)
        if made is not None:
            seg, numbers, segments = made
            written["dicom_seg"] = str(path)
            if findings is not None and findings[2] is not None:
                finding_segments = segments_of_findings(findings[2], numbers, segments)
    if findings is not None:
        path = Path(output_dir) / f"{stem}.sr.dcm"
        write_dicom_sr(path, source, findings[0], findings[1], seg, finding_segments)
        written["dicom_sr"] = str(path)
    return written


def segments_of_findings(
    candidates: Sequence[Candidate], numbers: np.ndarray, segments: Sequence[Segment]
) -> dict[str, int]:
    """Finding id -> the nodule segment it was measured on (the one most of its voxels lie in)."""
    nodule_numbers = np.array([s.number for s in segments if s.segment_class.type == NODULE])
    found = {}
    for candidate in candidates:
        if candidate.measured_on != "segmentation" or not len(nodule_numbers):
            continue
        under = numbers[candidate.box][candidate.mask]
        under = under[np.isin(under, nodule_numbers)]
        if under.size:
            found[candidate.finding.id] = int(np.bincount(under).argmax())
    return found
