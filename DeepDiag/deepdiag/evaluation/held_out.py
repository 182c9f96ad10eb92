"""Measure a model on freshly generated phantoms whose seed training never used."""

from __future__ import annotations

import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import torch

from ..image_io import read_volume
from ..models.store import LoadedModel
from ..phantom import PhantomConfig, generate_case, write_case
from .segmentation import evaluate_folder

HELD_OUT = "default-grid phantoms (512x512x300, 0.7x0.7x1.25 mm)"


def write_held_out_phantoms(cases: int, seed: int, folder: str | Path, workers: int = 2) -> Path:
    """``cases`` default-grid phantoms of ``seed`` in ``folder/truth`` (cases already there are kept)."""
    truth = Path(folder) / "truth"
    missing = [i for i in range(cases) if not (truth / "truth" / f"phantom_s{seed}_{i:03d}.json").is_file()]
    if missing:
        with get_context("spawn").Pool(workers) as pool:
            pool.map(partial(_write_phantom, seed, str(truth)), missing)
    return truth


def evaluate_on_phantoms(model: LoadedModel, device: torch.device, cases: int, seed: int, folder: str | Path, workers: int = 2) -> dict:
    """Segment held-out phantoms into ``folder/pred``; the pooled figures of :func:`evaluate_folder` (with per-case rows)."""
    from ..segmentation import segment_volume
    from ..segmentation_file import write_segmentation

    truth = write_held_out_phantoms(cases, seed, folder, workers)
    started = time.perf_counter()
    for image in _images(truth, seed, cases):
        result = segment_volume(read_volume(image), model, device)
        write_segmentation(Path(folder) / "pred" / f"{image.name[:-5]}.seg.nrrd", result.labels, model.card.segment_classes())
    seconds = time.perf_counter() - started
    figures = evaluate_folder(truth, Path(folder) / "pred")
    figures["seconds_per_case"] = round(seconds / cases, 1)  # reading, segmenting and writing
    figures["held_out"] = f"{cases} {HELD_OUT}, seed {seed}"
    return figures


def evaluate_detection_on_phantoms(model: LoadedModel, device: torch.device, cases: int, seed: int, folder: str | Path,
                                   min_score: float = 0.05, workers: int = 2) -> dict:
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


def _images(truth: Path, seed: int, cases: int) -> list[Path]:
    return [truth / "images" / f"phantom_s{seed}_{i:03d}.nrrd" for i in range(cases)]


def _write_phantom(seed: int, folder: str, index: int) -> None:
    write_case(generate_case(PhantomConfig(), seed, index), folder)
