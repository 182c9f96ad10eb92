"""Batch semantics every model command shares: many inputs, one model load; a bad input is
reported and skipped; a summary at the end.

This module does not import torch: the command line asks :func:`refused_before_loading` first, so
that a mistyped path or a file that is no image is refused in about half a second rather than
after torch and the model have loaded (8-19 s measured on two cores)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .dicom.results import check_dicom_inputs
from .errors import DeepDiagError
from .image_io import input_stem, volume_header
from .progress import ProgressReporter

#: processes one input: (path, progress(stage, fraction of this input)) -> its output record
ProcessOne = Callable[[str, Callable[[str, float], None]], dict]

#: what each stage of the model commands does, for the progress message (Slicer's status line
#: shows the message, and a bare stage name like "postprocess" means little to a radiologist)
STAGE_TEXT = {
    "retrieve": "retrieving",
    "read": "reading",
    "resample": "resampling",
    "infer": "segmenting",
    "postprocess": "checking the nodules of",
    "spots": "looking for small nodules in",
    "detect": "detecting nodules in",
    "merge": "merging the findings of",
    "filter": "checking the findings of",
    "classify": "classifying the findings of",
    "explain": "explaining the findings of",
    "store": "storing the results of",
    "done": "finished",
}


def run_batch(inputs: list[str], process_one: ProcessOne, reporter: ProgressReporter, header: dict) -> bool:
    """Run ``process_one`` on each input; report one result event (``header`` + outputs, failures,
    summary); return whether all succeeded."""
    outputs, failures, started = [], [], time.perf_counter()
    for position, path in enumerate(inputs):

        def progress(stage: str, fraction: float) -> None:
            doing = STAGE_TEXT.get(stage, stage)
            reporter.progress(
                stage,
                (position + fraction) / len(inputs),
                f"{doing} {Path(path).name} ({position + 1} of {len(inputs)})",
            )

        case_started = time.perf_counter()
        try:
            outputs.append({**process_one(path, progress), "seconds": round(time.perf_counter() - case_started, 2)})
        except DeepDiagError as error:
            reporter.error(str(error), error.path)
            failures.append({"input": path, "error": str(error)})
        except Exception as error:  # a bug on one scan must not cost the user the rest of the batch
            from .devices import out_of_memory  # torch: loaded by then, as process_one ran a model

            message = (
                f"{path}: the GPU ran out of memory; close other programs that use it, or run with --device cpu"
                if out_of_memory(error)  # CUDA's and Apple's MPS's, which report it differently
                else f"{path}: internal error: {type(error).__name__}: {error}"
            )
            reporter.error(message, path)
            failures.append({"input": path, "error": message})
    _report_result(reporter, header, outputs, failures, time.perf_counter() - started)
    return not failures


def refused_before_loading(inputs: list[str], reporter: ProgressReporter, dicom_out: bool = False) -> bool:
    """Whether no input can be read at all (missing, not an image, an empty DICOM folder): then each
    is reported with its reason, as :func:`run_batch` would, and the result event is sent, without
    any model loaded. A batch with one readable input goes on as usual, the rest reported by it.
    With ``dicom_out``, an input that is no DICOM series is refused first, as the commands do."""
    if dicom_out:
        check_dicom_inputs(inputs)
    started, failures = time.perf_counter(), []
    for path in inputs:
        try:
            volume_header(path)
        except DeepDiagError as error:
            failures.append((path, error))
        else:
            return False
    for path, error in failures:
        reporter.error(str(error), error.path)
    refused = [{"input": path, "error": str(error)} for path, error in failures]
    _report_result(reporter, {}, [], refused, time.perf_counter() - started)
    return True


def _report_result(reporter: ProgressReporter, header: dict, outputs: list, failures: list, seconds: float) -> None:
    cases = len(outputs) + len(failures)
    reporter.result(
        {
            **header,
            "outputs": outputs,
            "failed": failures,
            "summary": {
                "done": len(outputs),
                "failed": len(failures),
                "seconds_per_case": round(seconds / max(cases, 1), 2),
            },
        }
    )


def refuse_duplicate_stems(inputs: list[str], example_output: str) -> None:
    """Inputs whose outputs would overwrite each other are refused before any work."""
    seen: dict[str, str] = {}
    for path in inputs:
        stem = input_stem(path)
        if stem in seen:
            raise DeepDiagError(
                f"has the same name as {seen[stem]}; their outputs would overwrite each other ({stem}{example_output})",
                path,
            )
        seen[stem] = path
