"""``deepdiag classify``: type, probabilities, measurements and Lung-RADS category of each
finding of one scan (or the class of the whole scan), written as findings files; optionally a
saliency volume that shows what the classifier looked at."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..devices import pick_device
from ..errors import DeepDiagError
from ..files import atomic_output
from ..findings_file import Finding, read_findings, write_findings
from ..geometry import Volume
from ..image_io import input_stem, read_volume, write_volume
from ..lung_rads import baseline_category, scan_category
from ..models import find_model
from ..models.store import LoadedModel, load_model
from .candidates import Candidate, from_findings, from_segmentation, nodule_mask
from .classifier import (
    FINDING,
    class_names,
    finding_probabilities,
    network_view,
    region,
    saliency,
    volume_probabilities,
)

DEFAULT_MODEL = "nodule-type-cls"


def classify_file(
    image: str,
    output_dir: str,
    findings_file: str | None = None,
    segmentation_file: str | None = None,
    model_id: str | None = None,
    device: str = "auto",
    explain: bool = False,
    on_progress: Callable[[str, float], None] | None = None,
) -> dict:
    """Classify the findings of ``image`` (from ``findings_file`` and/or ``segmentation_file``),
    or the whole image for a volume model; returns what was written and the findings."""
    report = on_progress or (lambda stage, fraction: None)
    torch_device = pick_device(device)
    model = load_model(find_model(model_id, "classification", DEFAULT_MODEL), torch_device)
    kind = region(model)
    if kind == FINDING and not (findings_file or segmentation_file):
        raise DeepDiagError(f"model {model.card.full_id} classifies findings: give --findings or --segmentation")
    report("read", 0.0)
    volume = read_volume(image)
    stem = input_stem(image)
    if kind != FINDING:
        return _classify_volume(model, volume, torch_device, image, output_dir, stem)
    candidates = _candidates(volume, findings_file, segmentation_file)
    report("classify", 0.3)
    seen, warnings = network_view(model, volume)
    findings = classify_candidates(model, volume, candidates, torch_device, seen)
    if explain:  # computed before anything is written, so that a failure leaves no partial result
        report("explain", 0.6)
        names = class_names(model)
        heat = saliency(
            model,
            volume,
            [f.center_lps for f in findings],
            [names.index(f.details["type"]) for f in findings],
            torch_device,
            seen,
        )
    files = write_findings(output_dir, stem, findings, model.card.full_id, str(image))
    if explain:
        files["saliency"] = str(write_volume(volume.with_array(heat), Path(output_dir) / f"{stem}.saliency.nrrd"))
    report("done", 1.0)
    return {
        "input": str(image),
        "model": model.card.full_id,
        "findings": [_summary(f) for f in findings],
        "lung_rads": scan_category([f.details["lung_rads"] for f in findings]),
        "warnings": warnings,
        **files,
    }


def classify_candidates(
    model: LoadedModel, volume, candidates: list[Candidate], device: torch.device, seen: Volume | None = None
) -> list[Finding]:
    """The candidates' findings with type, calibrated probabilities, measurements and category added
    (``seen``: the scan as the classifier is given it, :func:`.classifier.network_view`)."""
    names = class_names(model)
    probabilities = finding_probabilities(model, volume, [c.finding.center_lps for c in candidates], device, seen)
    findings = []
    for candidate, row in zip(candidates, probabilities):
        measured = candidate.measure(volume)
        nodule_type = names[int(np.argmax(row))]
        diameter = candidate.finding.diameter_mm or measured.long_axis_mm
        findings.append(
            replace(
                candidate.finding,
                diameter_mm=round(diameter, 2),
                details={
                    "type": nodule_type,
                    "probabilities": {name: round(float(p), 4) for name, p in zip(names, row)},
                    **measured.as_dict(),
                    "lung_rads": baseline_category(
                        nodule_type, measured.mean_diameter_mm, measured.solid_mean_diameter_mm
                    ),
                    "measured_on": candidate.measured_on,
                    "classifier": model.card.full_id,
                },
            )
        )
    return findings


def _candidates(volume, findings_file: str | None, segmentation_file: str | None) -> list[Candidate]:
    mask = nodule_mask(segmentation_file, volume) if segmentation_file else None
    if not findings_file:
        return from_segmentation(mask, volume)
    try:
        findings = read_findings(findings_file)
    except FileNotFoundError:
        raise DeepDiagError("no such findings file", findings_file) from None
    except (ValueError, KeyError, TypeError) as error:
        raise DeepDiagError(
            f"not a findings file as deepdiag detect writes ({type(error).__name__}: {error})", findings_file
        ) from None
    return from_findings(findings, volume, mask)


def _classify_volume(model: LoadedModel, volume, device, image: str, output_dir: str, stem: str) -> dict:
    names = class_names(model)
    row = volume_probabilities(model, volume, device)
    result = {
        "input": str(image),
        "model": model.card.full_id,
        "class": names[int(np.argmax(row))],
        "probabilities": {name: round(float(p), 4) for name, p in zip(names, row)},
    }
    path = Path(output_dir) / f"{stem}.classification.json"
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(result, indent=2))
    return {**result, "classification": str(path)}


def _summary(finding: Finding) -> dict:
    keys = ("type", "lung_rads", "long_axis_mm", "short_axis_mm", "volume_mm3")
    return {"id": finding.id, **{k: finding.details[k] for k in keys}}
