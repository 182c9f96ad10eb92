"""Figures on real chest CTs, apart from the phantom figures: the marks each model makes on an
untouched real scan, and sensitivity and false positives on a real background scan with nodules
inserted (``deepdiag phantom --insert-into``), kept out of training.

Real scans hold real findings that are not annotated. ``KNOWN_LESIONS`` names those of the
shared scans; a mark on one is reported as such, neither as a false positive nor as a find, and
the inserted cases carry them in their truth (``known_lesions``), which the evaluations leave out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from ..classification.batch import classify_candidates
from ..classification.candidates import from_findings
from ..detection.inference import detect_volume
from ..findings_file import numbered, write_findings
from ..geometry import Volume
from ..image_io import input_stem, read_volume
from ..models.store import LoadedModel
from ..phantom import PhantomConfig, write_case
from ..phantom.case import PhantomCase
from ..phantom.imaging import sharper_kernel
from ..phantom.insertion import InsertionHost, insert_into, insertion_host
from ..segmentation import segment_volume
from ..segmentation.postprocess import component_centres
from ..segmentation_file import write_segmentation
from .classification import evaluate_classification_folder
from .detection import evaluate_detection_folder, hits, operating_point, read_scans
from .segmentation import evaluate_folder

#: real findings of the shared real scans (centre in LPS mm, a diameter that holds all of it),
#: measured on the untouched scan's segmentation
KNOWN_LESIONS = {
    "thorax_4dct_phase00": [
        {
            "center_lps": [-86.4, 81.7, -10.1],
            "diameter_mm": 32.0,
            "description": "right upper lobe mass (visible, not annotated), about 25 x 29 x 28 mm",
        }
    ],
}
#: what is inserted into a held-out real background: every type and shape, 3-30 mm
INSERTED = PhantomConfig(nodules=(8, 12), diameter_mm=(3.0, 30.0))
#: the same with real LIDC-IDRI outlines, a shape no model was trained on
INSERTED_LIDC = PhantomConfig(nodules=(8, 12), diameter_mm=(3.0, 30.0), shapes=("lidc",))
#: a sharp (lung) kernel's rendition of a soft-kernel scan: detail above 0.8 mm boosted 2.5 times
#: and 40 HU of fine noise added; on thorax_4dct_phase00 the noise in air goes from 15 to 36 HU
SHARP_KERNEL = {"amount": 2.5, "noise_hu": 40.0}


def known_lesions(scan: str | Path) -> list[dict]:
    """The ``KNOWN_LESIONS`` of a shared scan, by its file's stem or, as shared data keeps every scan
    as ``<name>/ct.nii.gz``, by its folder's name: looked up by the stem alone, a copy inserted into
    ``.../thorax_4dct_phase00/ct.nii.gz`` lost its mass and counted it as a false positive."""
    path = Path(scan)
    return KNOWN_LESIONS.get(input_stem(path)) or KNOWN_LESIONS.get(path.parent.name, [])


def marks_on_untouched_scan(
    path: str | Path, segmentation: LoadedModel, detection: LoadedModel, device: torch.device, output_dir: str | Path
) -> dict:
    """Segment and detect one untouched real scan: how many nodule components and findings (at the
    detector's default score) each model marks, which of them lie on a known lesion, and a PNG."""
    volume = read_volume(path)
    name = input_stem(path)
    lesions = known_lesions(path)
    started = time.perf_counter()
    segmented = segment_volume(volume, segmentation, device)
    segment_seconds = time.perf_counter() - started
    started = time.perf_counter()
    findings = detect_volume(volume, detection, device, detection.card.default_min_score).findings
    detect_seconds = time.perf_counter() - started
    centres = _component_centres_lps(segmented.labels)
    on_lesion = [any(hits(c, lesion["center_lps"], lesion["diameter_mm"]) for lesion in lesions) for c in centres]
    image = write_marks_png(
        volume, segmented.labels, [f.center_lps for f in findings], Path(output_dir) / f"{name}.marks.png"
    )
    return {
        "scan": name,
        "segmentation_components": len(centres),
        "segmentation_components_on_known_lesions": int(sum(on_lesion)),
        "detector_findings": len(findings),
        "detector_findings_on_known_lesions": int(
            sum(
                any(hits(f.center_lps, lesion["center_lps"], lesion["diameter_mm"]) for lesion in lesions)
                for f in findings
            )
        ),
        "known_lesions": [lesion["description"] for lesion in lesions],
        "known_lesions_found_by_segmentation": [
            any(hits(c, lesion["center_lps"], lesion["diameter_mm"]) for c in centres) for lesion in lesions
        ],
        "known_lesions_found_by_detector": [
            any(hits(f.center_lps, lesion["center_lps"], lesion["diameter_mm"]) for f in findings) for lesion in lesions
        ],
        "warnings": segmented.warnings,
        "seconds": {"segment": round(segment_seconds, 1), "detect": round(detect_seconds, 1)},
        "png": str(image),
    }


def write_inserted_cases(
    background: str | Path,
    cases: int,
    seed: int,
    folder: str | Path,
    config: PhantomConfig = INSERTED,
    kernel: dict | None = None,
) -> Path:
    """``cases`` copies of a real background scan with nodules inserted, in ``folder/truth`` as
    ``deepdiag phantom`` lays them out, with the background's known lesions in each truth; with a
    ``kernel`` (:data:`SHARP_KERNEL`), each copy as that sharper reconstruction kernel shows it."""
    background = Path(background)
    truth_dir = Path(folder) / "truth"
    host = insertion_host(read_volume(background), background)
    for index in range(cases):
        case = inserted_case(host, config, seed, index, kernel)
        write_case(case, truth_dir)
    return truth_dir


def inserted_case(
    host: InsertionHost, config: PhantomConfig, seed: int, index: int, kernel: dict | None = None
) -> PhantomCase:
    """Copy ``index`` of ``host`` with nodules inserted, its known lesions in the truth, and shown
    through ``kernel`` when given."""
    case = insert_into(host, config, seed, index)
    case.truth["known_lesions"] = known_lesions(host.source)
    if kernel:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 2)))
        case.ct = case.ct.with_array(sharper_kernel(case.ct.array, case.ct.spacing, **kernel, rng=rng))
        case.truth["kernel"] = kernel
    return case


def evaluate_inserted(
    truth_dir: str | Path,
    segmentation: LoadedModel,
    detection: LoadedModel,
    device: torch.device,
    folder: str | Path,
    classification: LoadedModel | None = None,
) -> dict:
    """Segmentation and detection figures on the inserted cases of ``truth_dir``; with a
    ``classification`` model, its type accuracy at the inserted nodules' true centres."""
    folder = Path(folder)
    for image in sorted((Path(truth_dir) / "images").glob("*.nrrd")):
        volume = read_volume(image)
        result = segment_volume(volume, segmentation, device)
        write_segmentation(
            folder / "pred" / f"{image.name[:-5]}.seg.nrrd", result.labels, segmentation.card.segment_classes()
        )
        found = detect_volume(volume, detection, device, min_score=0.05).findings
        write_findings(folder / "findings", image.name[:-5], found, detection.card.full_id, str(image))
        if classification is not None:
            _classify_at_truth(classification, volume, image, Path(truth_dir), folder / "at_truth", device)
    segmentation_figures = evaluate_folder(truth_dir, folder / "pred")
    segmentation_figures["false_positives_per_scan_in_every_copy"] = _in_every_copy(
        [case["false_positive_centres_lps"] for case in segmentation_figures.pop("per_case")]
    )
    detection_figures = evaluate_detection_folder(truth_dir, folder / "findings")
    scans = read_scans(truth_dir, folder / "findings")
    default = operating_point(scans, detection.card.default_min_score, smallest_mm=3.0)
    shown = sum(f.score >= detection.card.default_min_score for _, findings in scans for f in findings)
    default["findings_per_scan"] = round(shown / len(scans), 2)
    figures = {"segmentation": segmentation_figures, "detection": {**detection_figures, "at_default_score": default}}
    if classification is not None:
        figures["classification_at_truth_centres"] = evaluate_classification_folder(truth_dir, folder / "at_truth")
    return figures


#: a false positive of one copy and one of another this close are the same place of the background
SAME_PLACE_MM = 5.0


def _in_every_copy(false_positive_centres: list[list]) -> float:
    """False positives per copy that lie at the same place in every copy of the background: a
    structure of the background scan itself (a vessel, a lesion nobody annotated), not one that
    an inserted nodule caused."""
    copies = [np.asarray(centres, dtype=float).reshape(-1, 3) for centres in false_positive_centres]
    if not copies:
        return 0.0

    def everywhere(point: np.ndarray) -> bool:
        return all(len(c) and np.linalg.norm(c - point, axis=1).min() <= SAME_PLACE_MM for c in copies)

    return round(sum(everywhere(point) for centres in copies for point in centres) / len(copies), 3)


def _classify_at_truth(
    model: LoadedModel, volume: Volume, image: Path, truth_dir: Path, output: Path, device: torch.device
) -> None:
    nodules = json.loads((truth_dir / "truth" / f"{image.name[:-5]}.json").read_text())["nodules"]
    ordered = sorted(nodules, key=lambda n: -n["equivalent_diameter_mm"])
    candidates = from_findings(numbered([(n["center_lps"], n["equivalent_diameter_mm"], 1.0) for n in ordered]), volume)
    write_findings(
        output, image.name[:-5], classify_candidates(model, volume, candidates, device), model.card.full_id, str(image)
    )


def _component_centres_lps(labels: Volume) -> list[np.ndarray]:
    components, count = ndimage.label(labels.array == 2, structure=np.ones((3, 3, 3), bool))
    return [labels.ijk_to_lps(np.asarray(c)[::-1]) for c in component_centres(components, count)]


def write_marks_png(ct: Volume, labels: Volume, finding_centres_lps: list, path: Path, height: int = 512) -> Path:
    """A coronal overview: the CT's mean along the antero-posterior axis in a lung window, the
    segmented nodules projected in red and each detector finding as a yellow circle."""
    mean = np.clip((ct.array.clip(-1024, None).mean(axis=1) + 1000) / 1400, 0, 1) * 255
    rgb = np.stack([mean] * 3, axis=-1)
    rgb[(labels.array == 2).any(axis=1)] = (255, 40, 40)
    picture = Image.fromarray(rgb[::-1].astype(np.uint8))  # head up
    scale_k = ct.spacing[2] / ct.spacing[0]
    picture = picture.resize((picture.width, max(1, int(round(picture.height * scale_k)))))
    draw = ImageDraw.Draw(picture)
    for centre in finding_centres_lps:
        i, _, k = ct.lps_to_ijk(np.asarray(centre, dtype=float))
        x, y = i, (ct.array.shape[0] - 1 - k) * scale_k
        draw.ellipse([x - 8, y - 8, x + 8, y + 8], outline=(255, 220, 0), width=2)
    factor = height / picture.height
    picture = picture.resize((max(1, int(picture.width * factor)), height))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path
