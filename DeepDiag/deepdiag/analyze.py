"""``deepdiag analyze``: segment, detect and classify one scan after another, then a report.

The detector's findings are the report's findings (they carry a confidence); each is measured
on the segmentation's nodule component under it (a local threshold when the segmentation
missed it) and classified. All models are loaded once for a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .batch import ProcessOne, refuse_duplicate_stems, run_batch
from .classification.batch import DEFAULT_MODEL as CLASSIFIER
from .classification.batch import classify_candidates
from .classification.candidates import from_findings
from .classification.classifier import network_view
from .detection.batch import DEFAULT_MODEL as DETECTOR
from .detection.batch import check_min_score
from .detection.inference import detect_volume
from .devices import pick_device
from .dicom.results import check_dicom_inputs, dicom_source, write_dicom_results
from .findings_file import write_findings
from .image_io import input_stem, read_volume, volume_header
from .lung_rads import scan_category
from .models import find_model
from .models.store import LoadedModel, load_model
from .progress import ProgressReporter
from .report import write_key_image, write_report
from .segmentation.batch import DEFAULT_MODEL as SEGMENTER
from .segmentation.pipeline import check_memory, segment_volume
from .segmentation_file import write_segmentation


@dataclass
class Models:
    segmentation: LoadedModel
    detection: LoadedModel
    classification: LoadedModel

    @property
    def ids(self) -> list[str]:
        return [m.card.full_id for m in (self.segmentation, self.detection, self.classification)]


def analyze_files(
    inputs: list[str],
    output_dir: str,
    device: str,
    min_score: float | None,
    reporter: ProgressReporter,
    dicom_out: bool = False,
) -> bool:
    """Analyze each input into ``output_dir``; ``dicom_out`` also writes a DICOM SEG and SR per
    input (all inputs must be DICOM series). Returns whether all succeeded."""
    check_min_score(min_score)
    refuse_duplicate_stems(inputs, ".report.html")
    if dicom_out:
        check_dicom_inputs(inputs)
    process, header = analyze_processor(output_dir, device, min_score, dicom_out)
    return run_batch(inputs, process, reporter, header)


def analyze_processor(
    output_dir: str, device: str = "auto", min_score: float | None = None, dicom_out: bool = False
) -> tuple[ProcessOne, dict]:
    """Load the three models once; return what analyzes one input into ``output_dir``, and the run's header."""
    check_min_score(min_score)
    torch_device = pick_device(device)
    models = Models(
        *(
            load_model(find_model(None, task, default), torch_device)
            for task, default in (("segmentation", SEGMENTER), ("detection", DETECTOR), ("classification", CLASSIFIER))
        )
    )
    if min_score is None:
        min_score = models.detection.card.default_min_score

    def process(path: str, progress) -> dict:
        return analyze_one(path, Path(output_dir), models, torch_device, min_score, progress, dicom_out)

    return process, {"models": models.ids, "device": str(torch_device), "min_score": min_score}


def analyze_one(
    path: str,
    output_dir: Path,
    models: Models,
    device: torch.device,
    min_score: float,
    progress,
    dicom_out: bool = False,
) -> dict:
    size, spacing = volume_header(path)
    check_memory(size, spacing, models.segmentation.card.spacing_mm, path)
    progress("read", 0.0)
    volume = read_volume(path)
    source = dicom_source(path, volume, dicom_out)
    # a sharp-kernel scan smoothed once for the detector and the classifier alike; the model grid
    # and its lungs made once for the segmentation and the detector where both see the same scan
    views = {}
    segmented = segment_volume(
        volume, models.segmentation, device, on_progress=lambda s, f: progress(s, 0.05 + 0.45 * f), views=views
    )
    detected = detect_volume(
        volume, models.detection, device, min_score, lambda s, f: progress(s, 0.5 + 0.4 * f), views
    )
    progress("classify", 0.9)
    nodules = segmented.labels.array == 2
    candidates = from_findings(detected.findings, volume, nodules)
    seen, typing_warnings = network_view(models.classification, volume, views)
    findings = classify_candidates(models.classification, volume, candidates, device, seen)
    stem = input_stem(path)
    key_images = {}
    for finding, candidate in zip(findings, candidates):
        image = output_dir / f"{stem}.keyimages" / f"{finding.id}.png"
        key_images[finding.id] = str(
            write_key_image(volume, finding, (candidate.box, candidate.mask), image).relative_to(output_dir)
        )
    files = {
        "segmentation": str(
            write_segmentation(
                output_dir / f"{stem}.seg.nrrd", segmented.labels, models.segmentation.card.segment_classes()
            )
        )
    }
    files |= write_findings(output_dir, stem, findings, models.detection.card.full_id, str(path))
    warnings = segmented.warnings + [w for w in detected.warnings if w not in segmented.warnings] + typing_warnings
    report = write_report(output_dir / f"{stem}.report.html", str(path), findings, key_images, models.ids, warnings)
    files["report"] = str(report)
    if dicom_out:
        files |= write_dicom_results(
            source,
            output_dir,
            stem,
            segmentation=(segmented.labels, models.segmentation.card),
            findings=(findings, models.detection.card.full_id, candidates),
        )
    return {
        "input": str(path),
        "findings": len(findings),
        "lung_rads": scan_category([f.details["lung_rads"] for f in findings]),
        "warnings": warnings,
        **files,
    }
