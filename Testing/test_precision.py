"""Reduced precision at inference (bfloat16 on CPUs that run it natively, float16 on CUDA) gives
the results of float32: the same nodules and findings; DEEPDIAG_PRECISION=float32 turns it off,
and training never runs in it.

bfloat16 is forced here, so that these tests check the reduced path on CPUs that do not use it
by default too (AVX-512 without AVX512-BF16: oneDNN emulates it, slower, the same numbers). Where
oneDNN has no bfloat16 kernels at all, torch's own 3D convolutions would take many minutes, and
the two segmentation and detection comparisons are skipped: DeepDiag never takes that path there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from deepdiag import precision
from deepdiag.detection.inference import detect_volume
from deepdiag.devices import pick_device
from deepdiag.errors import DeepDiagError
from deepdiag.image_io import read_volume
from deepdiag.models import find_model
from deepdiag.models.store import load_model
from deepdiag.segmentation.pipeline import segment_volume

CPU = torch.device("cpu")
_ONEDNN_BFLOAT16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
needs_onednn_bfloat16 = pytest.mark.skipif(
    not _ONEDNN_BFLOAT16, reason="oneDNN has no bfloat16 kernels on this CPU: DeepDiag runs float32 here"
)


@pytest.fixture
def bfloat16_cpu(monkeypatch):
    monkeypatch.delenv(precision.PRECISION_VARIABLE, raising=False)
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)


def _case_ct(small_case):
    return read_volume(next((small_case / "images").glob("*.nrrd")))


def test_float32_setting_turns_reduced_precision_off_on_every_device(bfloat16_cpu, monkeypatch):
    assert precision.reduced_precision_dtype("cpu") == torch.bfloat16
    assert precision.reduced_precision_dtype("cuda") == torch.float16
    monkeypatch.setenv(precision.PRECISION_VARIABLE, "float32")
    assert precision.reduced_precision_dtype("cpu") is None
    assert precision.reduced_precision_dtype("cuda") is None


def test_an_unknown_precision_setting_is_refused_before_any_scan_with_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv(precision.PRECISION_VARIABLE, "half")
    with pytest.raises(DeepDiagError, match="DEEPDIAG_PRECISION must be one of auto, float32, got 'half'"):
        pick_device("cpu")  # what every model command does once, before its first scan


def test_only_inference_runs_in_reduced_precision_never_training(bfloat16_cpu):
    with precision.reduced_precision(CPU):
        assert not torch.is_autocast_enabled("cpu"), "training and fine-tuning compute as before"
    with torch.inference_mode(), precision.reduced_precision(CPU):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


@needs_onednn_bfloat16
def test_bfloat16_segmentation_finds_the_nodules_of_float32(bfloat16_cpu, monkeypatch, small_case):
    ct = _case_ct(small_case)
    model = load_model(find_model(None, "segmentation", "lung-nodules-seg"), CPU)
    reduced = segment_volume(ct, model, CPU).labels.array
    monkeypatch.setenv(precision.PRECISION_VARIABLE, "float32")
    full = segment_volume(ct, model, CPU).labels.array
    nodules, full_nodules = reduced == 2, full == 2
    assert full_nodules.sum() > 100, "the case's two nodules of 10-18 mm are found in float32"
    assert ndimage.label(nodules)[1] == ndimage.label(full_nodules)[1]
    dice = 2 * (nodules & full_nodules).sum() / (nodules.sum() + full_nodules.sum())
    assert dice >= 0.98, f"nodule Dice of bfloat16 against float32: {dice:.3f}"
    assert ((reduced >= 1) == (full >= 1)).mean() >= 0.999, "the lungs agree"


@needs_onednn_bfloat16
def test_bfloat16_detection_gives_the_findings_of_float32_with_float32_boxes(bfloat16_cpu, monkeypatch, small_case):
    ct = _case_ct(small_case)
    model = load_model(find_model(None, "detection", "lung-nodules-det"), CPU)
    with torch.inference_mode():
        features = model.network.backbone(torch.zeros(1, 3, 64, 64))
    assert features.dtype == torch.float32, "proposals and boxes are computed from float32 features"
    reduced = detect_volume(ct, model, CPU, model.card.default_min_score).findings
    monkeypatch.setenv(precision.PRECISION_VARIABLE, "float32")
    full = detect_volume(ct, model, CPU, model.card.default_min_score).findings
    assert full, "the case's nodules are found in float32"
    assert len(reduced) == len(full)
    for ours, theirs in zip(reduced, full):
        assert np.linalg.norm(np.subtract(ours.center_lps, theirs.center_lps)) < 1.0
        assert abs(ours.diameter_mm - theirs.diameter_mm) < 1.0
        assert abs(ours.score - theirs.score) < 0.02


@needs_onednn_bfloat16
def test_the_candidate_filter_runs_in_bfloat16_and_scores_as_float32(bfloat16_cpu, monkeypatch, small_case):
    from deepdiag.segmentation.candidate_filter import nodule_probabilities
    from deepdiag.segmentation.model_grid import chest_on_model_grid, normalize

    model = load_model(find_model("lung-nodules-fpr@9", "candidate-classification", "lung-nodules-fpr@9"), CPU)
    model_volume, chest = chest_on_model_grid(_case_ct(small_case), model.card.spacing_mm)
    image = normalize(model_volume.array[chest.crop.slices], model.card.input["intensity"])
    lung_voxels = np.argwhere(chest.lungs[chest.crop.slices])
    centres = lung_voxels[np.random.default_rng(0).choice(len(lung_voxels), 40, replace=False)].astype(float)
    first_layer = next(m for m in model.network.modules() if isinstance(m, torch.nn.Conv3d))
    output_types = []
    first_layer.register_forward_hook(lambda module, inputs, output: output_types.append(output.dtype))
    reduced = nodule_probabilities(model, image, centres, CPU)
    monkeypatch.setenv(precision.PRECISION_VARIABLE, "float32")
    full = nodule_probabilities(model, image, centres, CPU)
    assert output_types[0] == torch.bfloat16 and output_types[-1] == torch.float32
    assert reduced.dtype == np.float32 and np.abs(reduced - full).max() < 0.03
