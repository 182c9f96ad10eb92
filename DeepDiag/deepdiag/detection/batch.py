"""``deepdiag detect``: each input to findings files (batch semantics in ``deepdiag.batch``)."""

from __future__ import annotations

from ..batch import ProcessOne, refuse_duplicate_stems, run_batch
from ..devices import pick_device
from ..dicom.results import check_dicom_inputs, dicom_source, write_dicom_results
from ..errors import DeepDiagError
from ..findings_file import write_findings
from ..image_io import input_stem, read_volume, volume_header
from ..models import find_model
from ..models.store import load_model
from ..progress import ProgressReporter
from ..segmentation.pipeline import check_memory
from . import DEFAULT_MODEL
from .inference import detect_volume


def check_min_score(min_score: float | None) -> None:
    if min_score is not None and not 0 <= min_score <= 1:
        raise DeepDiagError(f"--min-score must lie in [0, 1], got {min_score}")


def detect_files(
    inputs: list[str],
    output_dir: str,
    model_id: str | None,
    device: str,
    min_score: float | None,
    reporter: ProgressReporter,
    dicom_out: bool = False,
) -> bool:
    """Detect nodules in each input into ``output_dir``; report a result event; return whether all succeeded.

    ``min_score`` None means the model card's ``default_min_score``; ``dicom_out`` also writes a
    DICOM SR per input (all inputs must be DICOM series)."""
    check_min_score(min_score)
    refuse_duplicate_stems(inputs, ".findings.json")
    if dicom_out:
        check_dicom_inputs(inputs)
    process, header = detect_processor(output_dir, model_id, device, min_score, dicom_out)
    return run_batch(inputs, process, reporter, header)


def detect_processor(
    output_dir: str,
    model_id: str | None = None,
    device: str = "auto",
    min_score: float | None = None,
    dicom_out: bool = False,
) -> tuple[ProcessOne, dict]:
    """Load the model once; return what detects the nodules of one input into ``output_dir``, and
    the run's header."""
    check_min_score(min_score)
    torch_device = pick_device(device)
    model = load_model(find_model(model_id, "detection", DEFAULT_MODEL), torch_device)
    if model.card.task != "detection":
        raise DeepDiagError(f"model {model.card.full_id} is a {model.card.task} model, not a detection model")
    if min_score is None:
        min_score = model.card.default_min_score

    def detect_one(path: str, progress) -> dict:
        size, spacing = volume_header(path)
        check_memory(size, spacing, model.card.spacing_mm, path)
        progress("read", 0.0)
        volume = read_volume(path)
        source = dicom_source(path, volume, dicom_out)
        result = detect_volume(volume, model, torch_device, min_score, progress)
        files = write_findings(output_dir, input_stem(path), result.findings, model.card.full_id, str(path))
        if dicom_out:
            files |= write_dicom_results(
                source, output_dir, input_stem(path), findings=(result.findings, model.card.full_id, None)
            )
        return {"input": str(path), "findings": len(result.findings), "warnings": result.warnings, **files}

    return detect_one, {"model": model.card.full_id, "device": str(torch_device), "min_score": min_score}
