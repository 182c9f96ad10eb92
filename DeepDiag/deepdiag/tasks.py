"""The model commands as tasks a batch runs over many scans: ``deepdiag pacs`` and ``deepdiag
batch`` run the same per-scan work as ``deepdiag segment``, ``detect`` and ``analyze``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import DeepDiagError

if TYPE_CHECKING:  # deepdiag.batch imports torch; the command line imports this module at start
    from .batch import ProcessOne

TASKS = ("segment", "detect", "analyze")
_ANALYZE_MODELS = "--model picks one model; analyze runs the newest segmentation, detection and classification models"


def task_processor(
    task: str,
    output_dir: str,
    model_id: str | None = None,
    device: str = "auto",
    min_score: float | None = None,
    dicom_out: bool = False,
) -> tuple[ProcessOne, dict]:
    """Load the task's models once; return what runs it on one scan into ``output_dir``, and the
    run's header (model ids, device)."""
    if task == "segment":
        from .segmentation.batch import segment_processor

        return segment_processor(output_dir, model_id, device, dicom_out=dicom_out)
    if task == "detect":
        from .detection.batch import detect_processor

        return detect_processor(output_dir, model_id, device, min_score, dicom_out)
    if task == "analyze":
        if model_id:
            raise DeepDiagError(
                "--model picks one model; analyze runs the newest segmentation, detection and classification models"
            )
        from .analyze import analyze_processor

        return analyze_processor(output_dir, device, min_score, dicom_out)
    raise DeepDiagError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")


def check_task(task: str, model_id: str | None = None, min_score: float | None = None) -> None:
    """Refuse an unknown task, a model it cannot use or a bad score before any worker starts."""
    from .detection.batch import check_min_score
    from .models import find_model

    if task not in TASKS:
        raise DeepDiagError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    check_min_score(min_score)
    if task == "analyze" and model_id:
        raise DeepDiagError(_ANALYZE_MODELS)
    if task == "segment":
        from .segmentation.batch import DEFAULT_MODEL as SEGMENTER

        find_model(model_id, "segmentation", SEGMENTER)
    if task == "detect":
        from .detection import DEFAULT_MODEL as DETECTOR

        find_model(model_id, "detection", DETECTOR)
