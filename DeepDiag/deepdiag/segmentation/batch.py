"""``deepdiag segment``: each input to a ``.seg.nrrd`` (batch semantics in ``deepdiag.batch``)."""

from __future__ import annotations

from pathlib import Path

from ..batch import ProcessOne, refuse_duplicate_stems, run_batch
from ..devices import pick_device
from ..dicom.results import check_dicom_inputs, dicom_source, write_dicom_results
from ..image_io import input_stem, read_volume, volume_header, write_volume
from ..models import find_model
from ..models.store import load_model
from ..preview import largest_component_center, write_preview
from ..progress import ProgressReporter
from ..segmentation_file import write_segmentation
from .pipeline import check_memory, segment_volume

DEFAULT_MODEL = "lung-nodules-seg"


def segment_files(
    inputs: list[str],
    output_dir: str,
    model_id: str | None,
    device: str,
    with_probabilities: bool,
    reporter: ProgressReporter,
    preview: bool = False,
    dicom_out: bool = False,
) -> bool:
    """Segment each input into ``output_dir``; report a result event; return whether all succeeded.

    ``dicom_out`` also writes a DICOM SEG per input (all inputs must be DICOM series)."""
    refuse_duplicate_stems(inputs, ".seg.nrrd")
    if dicom_out:
        check_dicom_inputs(inputs)
    process, header = segment_processor(output_dir, model_id, device, with_probabilities, preview, dicom_out)
    return run_batch(inputs, process, reporter, header)


def segment_processor(
    output_dir: str,
    model_id: str | None = None,
    device: str = "auto",
    with_probabilities: bool = False,
    preview: bool = False,
    dicom_out: bool = False,
) -> tuple[ProcessOne, dict]:
    """Load the model once; return what segments one input into ``output_dir``, and the run's header."""
    torch_device = pick_device(device)
    model = load_model(find_model(model_id, "segmentation", DEFAULT_MODEL), torch_device)

    def process(path: str, progress) -> dict:
        return _segment_one(path, output_dir, model, torch_device, with_probabilities, preview, dicom_out, progress)

    return process, {"model": model.card.full_id, "device": str(torch_device)}


def _segment_one(path, output_dir, model, device, with_probabilities, preview, dicom_out, progress) -> dict:
    size, spacing = volume_header(path)
    check_memory(size, spacing, model.card.spacing_mm, path)
    progress("read", 0.0)
    volume = read_volume(path)
    source = dicom_source(path, volume, dicom_out)
    result = segment_volume(volume, model, device, with_probabilities, progress)
    stem = input_stem(path)
    output = {"input": str(path), "nodules": result.nodule_count, "warnings": result.warnings}
    output["segmentation"] = str(
        write_segmentation(Path(output_dir) / f"{stem}.seg.nrrd", result.labels, model.card.segment_classes())
    )
    if result.nodule_probability is not None:
        output["nodule_probabilities"] = str(
            write_volume(result.nodule_probability, Path(output_dir) / f"{stem}.nodule_prob.nrrd")
        )
    if dicom_out:
        output |= write_dicom_results(source, output_dir, stem, segmentation=(result.labels, model.card))
    if preview:
        center = largest_component_center(result.labels.array == 2) or tuple(n // 2 for n in volume.array.shape)
        output["preview"] = str(write_preview(volume, result.labels, center, Path(output_dir) / f"{stem}.preview.png"))
    return output
