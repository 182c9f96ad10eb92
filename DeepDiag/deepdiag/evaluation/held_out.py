"""Measure a model on freshly generated phantoms whose seed training never used."""

from __future__ import annotations

import json
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from ..image_io import read_volume
from ..models.store import LoadedModel
from ..phantom import PhantomConfig, generate_case, write_case
from .segmentation import evaluate_folder

HELD_OUT = "default-grid phantoms (512x512x300, 0.7x0.7x1.25 mm)"
_DEFAULT_PHANTOM = PhantomConfig()  # how many nodules per case, of which diameters


def write_held_out_phantoms(
    cases: int,
    seed: int,
    folder: str | Path,
    workers: int = 2,
    nodules: tuple[int, int] = _DEFAULT_PHANTOM.nodules,
    diameter_mm: tuple[float, float] = _DEFAULT_PHANTOM.diameter_mm,
) -> Path:
    """``cases`` default-grid phantoms of ``seed`` (``nodules`` per case, of ``diameter_mm``) in
    ``folder/truth`` (cases already there are kept)."""
    truth = Path(folder) / "truth"
    missing = [i for i in range(cases) if not (truth / "truth" / f"phantom_s{seed}_{i:03d}.json").is_file()]
    if missing:
        with get_context("spawn").Pool(workers) as pool:
            pool.map(partial(_write_phantom, seed, str(truth), tuple(nodules), tuple(diameter_mm)), missing)
    return truth


def evaluate_on_phantoms(
    model: LoadedModel,
    device: torch.device,
    cases: int,
    seed: int,
    folder: str | Path,
    workers: int = 2,
    nodules: tuple[int, int] = _DEFAULT_PHANTOM.nodules,
    diameter_mm: tuple[float, float] = _DEFAULT_PHANTOM.diameter_mm,
) -> dict:
    """Segment held-out phantoms into ``folder/pred``; the pooled figures of :func:`evaluate_folder`
    (with per-case rows). Phantoms crowded with small nodules (``nodules``, ``diameter_mm``) make
    their sensitivity rest on dozens, not a handful."""
    from ..segmentation import segment_volume
    from ..segmentation_file import write_segmentation

    truth = write_held_out_phantoms(cases, seed, folder, workers, nodules, diameter_mm)
    started = time.perf_counter()
    for image in _images(truth, seed, cases):
        result = segment_volume(read_volume(image), model, device)
        write_segmentation(
            Path(folder) / "pred" / f"{image.name[:-5]}.seg.nrrd", result.labels, model.card.segment_classes()
        )
    seconds = time.perf_counter() - started
    figures = evaluate_folder(truth, Path(folder) / "pred")
    figures["seconds_per_case"] = round(seconds / cases, 1)  # reading, segmenting and writing
    default = (tuple(nodules), tuple(diameter_mm)) == (_DEFAULT_PHANTOM.nodules, _DEFAULT_PHANTOM.diameter_mm)
    crowded = (
        "" if default else f" with {nodules[0]}-{nodules[1]} nodules of {diameter_mm[0]:g}-{diameter_mm[1]:g} mm each"
    )
    figures["held_out"] = f"{cases} {HELD_OUT}{crowded}, seed {seed}"
    return figures


def evaluate_detection_on_phantoms(
    model: LoadedModel,
    device: torch.device,
    cases: int,
    seed: int,
    folder: str | Path,
    min_score: float = 0.05,
    workers: int = 2,
) -> dict:
    """Detect nodules in held-out phantoms into ``folder/findings``; the FROC figures."""
    from ..detection.inference import detect_volume
    from ..findings_file import write_findings
    from .detection import evaluate_detection_folder

    truth = write_held_out_phantoms(cases, seed, folder, workers)
    started = time.perf_counter()
    for image in _images(truth, seed, cases):
        result = detect_volume(read_volume(image), model, device, min_score)
        write_findings(Path(folder) / "findings", image.name[:-5], result.findings, model.card.full_id, str(image))
    seconds = time.perf_counter() - started
    figures = evaluate_detection_folder(truth, Path(folder) / "findings")
    figures["seconds_per_case"] = round(seconds / cases, 1)
    figures["held_out"] = f"{cases} {HELD_OUT}, seed {seed}"
    return figures


def evaluate_classification_on_phantoms(
    model: LoadedModel,
    segmentation: LoadedModel,
    device: torch.device,
    cases: int,
    seed: int,
    folder: str | Path,
    workers: int = 2,
) -> dict:
    """Classify held-out phantoms crowded with nodules (6-10 each) two ways: the nodules that
    ``segmentation`` finds, measured on its segments (as ``deepdiag classify --segmentation``),
    and every truth nodule at its true centre, measured on a local threshold (the classifier
    alone, without the segmentation's misses)."""
    from ..classification.batch import classify_candidates
    from ..classification.candidates import from_findings, from_segmentation
    from ..classification.classifier import class_names, saliency_peaks
    from ..findings_file import numbered, write_findings
    from .classification import evaluate_classification_folder

    truth = write_held_out_phantoms(cases, seed, folder, workers, nodules=(6, 10))
    started, saliency_distances = time.perf_counter(), []
    for image in _images(truth, seed, cases):
        volume, stem = read_volume(image), image.name[:-5]
        nodules = _segmented_nodules(volume, segmentation, device, Path(folder) / "segmentation" / f"{stem}.seg.nrrd")
        found = classify_candidates(model, volume, from_segmentation(nodules, volume), device)
        write_findings(Path(folder) / "segmented", stem, found, model.card.full_id, str(image))
        truths = json.loads((truth / "truth" / f"{stem}.json").read_text())["nodules"]
        ordered = sorted(
            truths, key=lambda n: -n["equivalent_diameter_mm"]
        )  # numbered keeps this order at equal scores
        at_truth = classify_candidates(
            model,
            volume,
            from_findings(numbered([(n["center_lps"], n["equivalent_diameter_mm"], 1.0) for n in ordered]), volume),
            device,
        )
        write_findings(Path(folder) / "at_truth", stem, at_truth, model.card.full_id, str(image))
        instances = read_volume(truth / "instances" / f"{stem}.nrrd")
        peaks = saliency_peaks(
            model,
            volume,
            [f.center_lps for f in at_truth],
            [class_names(model).index(f.details["type"]) for f in at_truth],
            device,
        )
        saliency_distances += [_distance_to_nodule(peak, instances, n["id"]) for peak, n in zip(peaks, ordered)]
    seconds = time.perf_counter() - started
    segmented = evaluate_classification_folder(truth, Path(folder) / "segmented")
    return {
        **{
            key: segmented[key]
            for key in ("type_accuracy", "lung_rads_agreement", "long_axis_abs_error_mm_median_ge6mm")
        },
        "segmented": segmented,
        "at_truth_centres": evaluate_classification_folder(truth, Path(folder) / "at_truth"),
        "saliency_peak_within_5mm_share": round(float(np.mean(np.array(saliency_distances) <= 5.0)), 4),
        "saliency_peak_distance_mm_median": round(float(np.median(saliency_distances)), 2),
        "segmentation_model": segmentation.card.full_id,
        "seconds_per_case": round(seconds / cases, 1),
        "held_out": f"{cases} {HELD_OUT} with 6-10 nodules each, seed {seed}",
    }


def _segmented_nodules(volume, segmentation: LoadedModel, device: torch.device, path: Path) -> np.ndarray:
    """The nodule mask of ``segmentation`` on ``volume``, kept at ``path`` so that measuring
    another classifier on the same cases does not segment them again."""
    from ..classification.candidates import nodule_mask
    from ..segmentation import segment_volume
    from ..segmentation_file import write_segmentation

    if not path.is_file():
        write_segmentation(
            path, segment_volume(volume, segmentation, device).labels, segmentation.card.segment_classes()
        )
    return nodule_mask(path, volume)


def _distance_to_nodule(point_lps: np.ndarray, instances, nodule_id: int) -> float:
    """mm from a point to the nearest voxel centre of a truth nodule (0 inside it)."""
    voxels = np.argwhere(instances.array == nodule_id)[:, ::-1]
    return float(np.sqrt(((instances.ijk_to_lps(voxels) - point_lps) ** 2).sum(axis=1)).min())


def _images(truth: Path, seed: int, cases: int) -> list[Path]:
    return [truth / "images" / f"phantom_s{seed}_{i:03d}.nrrd" for i in range(cases)]


def _write_phantom(
    seed: int, folder: str, nodules: tuple[int, int], diameter_mm: tuple[float, float], index: int
) -> None:
    write_case(generate_case(PhantomConfig(nodules=nodules, diameter_mm=diameter_mm), seed, index), folder)
