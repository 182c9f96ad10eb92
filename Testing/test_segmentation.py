"""deepdiag segment: files on the input grid, batch behaviour, clear errors, model integrity.

A tiny randomly initialised model exercises the machinery; accuracy with the shipped model
is tested in test_segmentation_accuracy.py.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import run_cli

from deepdiag.geometry import Volume
from deepdiag.image_io import read_volume, write_volume
from deepdiag.segmentation_file import read_segmentation


def _segment(*arguments):
    result = run_cli("segment", *map(str, arguments), "--progress", "json")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, events


def test_output_lies_exactly_on_an_oblique_input_grid_with_named_segments(tmp_path, small_case, tiny_model):
    ct = read_volume(next((small_case / "images").iterdir()))
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique = Volume(ct.array, (2.2, 2.3, 3.7), (-171.5, -160.25, -180.0), rotation)
    source = write_volume(oblique, tmp_path / "oblique.nrrd")
    result, events = _segment(source, "-o", tmp_path / "out", "--model", tiny_model, "--probabilities", "--preview")
    assert result.returncode == 0, result.stderr
    labels, segments = read_segmentation(tmp_path / "out" / "oblique.seg.nrrd")
    probability = read_volume(tmp_path / "out" / "oblique.nodule_prob.nrrd")
    assert labels.same_grid(read_volume(source)) and probability.same_grid(labels)
    assert [(s["Name"], s["LabelValue"]) for s in segments] == [("Lungs", "1"), ("Lung nodules", "2")]
    assert 0.0 <= probability.array.min() and probability.array.max() <= 1.0
    assert (tmp_path / "out" / "oblique.preview.png").stat().st_size > 1000
    assert any(e["event"] == "progress" and e["stage"] == "infer" for e in events)


def test_batch_goes_on_after_a_bad_input_and_summarizes(tmp_path, small_case, tiny_model):
    good = next((small_case / "images").iterdir())
    missing = tmp_path / "missing.nrrd"
    result, events = _segment(good, missing, "-o", tmp_path / "out", "--model", tiny_model)
    assert result.returncode == 1
    outcome = events[-1]
    assert outcome["event"] == "result"
    assert outcome["summary"]["done"] == 1 and outcome["summary"]["failed"] == 1
    assert outcome["failed"][0]["input"] == str(missing)
    assert (tmp_path / "out" / f"{good.name[:-5]}.seg.nrrd").is_file()
    assert f"{missing}: no such file" in result.stderr and "Traceback" not in result.stderr


def test_mr_scan_gets_a_warning_not_a_crash(tmp_path, shared_data, tiny_model):
    result, events = _segment(shared_data / "totalseg" / "abdomen_mr_3mm.nii.gz", "-o", tmp_path, "--model", tiny_model)
    assert result.returncode == 0, result.stderr
    warnings = events[-1]["outputs"][0]["warnings"]
    assert any("MR" in w for w in warnings)


def test_a_volume_too_large_for_memory_is_refused_before_reading_it(tmp_path, tiny_model):
    header = tmp_path / "huge.nhdr"
    header.write_text(
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 8000 8000 6000\n"
        "space directions: (0.5,0,0) (0,0.5,0) (0,0,0.5)\nkinds: domain domain domain\nendian: little\n"
        "encoding: raw\nspace origin: (0,0,0)\ndata file: huge.raw\n"
    )
    (tmp_path / "huge.raw").write_bytes(b"")  # 768 GB of voxels are promised, none exist: none may be read
    result, _ = _segment(header, "-o", tmp_path / "out", "--model", tiny_model)
    assert result.returncode == 1
    assert "too large to segment here" in result.stderr and str(header) in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_model_whose_weights_were_altered_is_refused(tmp_path, small_case, tiny_model):
    import shutil

    altered = tmp_path / "tiny-test-seg@1"
    shutil.copytree(tiny_model, altered)
    weights = altered / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    result, _ = _segment(next((small_case / "images").iterdir()), "-o", tmp_path / "out", "--model", altered)
    assert result.returncode == 1
    assert "tiny-test-seg@1" in result.stderr and "SHA-256" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_weights_file_is_refused_with_a_clear_message(tmp_path, small_case, tiny_model):
    import shutil

    broken = tmp_path / "tiny-test-seg@1"
    shutil.copytree(tiny_model, broken)
    card = json.loads((broken / "model.json").read_text())
    import hashlib

    (broken / "weights.safetensors").write_bytes(b"not safetensors at all")
    card["weights_sha256"] = hashlib.sha256(
        b"not safetensors at all"
    ).hexdigest()  # the reader itself must say what is wrong
    (broken / "model.json").write_text(json.dumps(card))
    result, _ = _segment(next((small_case / "images").iterdir()), "-o", tmp_path / "out", "--model", broken)
    assert result.returncode == 1
    assert "cannot read the weights" in result.stderr and "Traceback" not in result.stderr


def test_inputs_with_the_same_name_are_refused_before_any_work(tmp_path, small_case, tiny_model):
    image = next((small_case / "images").iterdir())
    other = tmp_path / "elsewhere" / image.name
    other.parent.mkdir()
    other.write_bytes(image.read_bytes())
    result, _ = _segment(image, other, "-o", tmp_path / "out", "--model", tiny_model)
    assert result.returncode == 1 and "overwrite each other" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_model_names_what_is_installed(tmp_path, small_case):
    result, _ = _segment(next((small_case / "images").iterdir()), "-o", tmp_path, "--model", "no-such-model")
    assert result.returncode == 1
    assert "no segmentation model 'no-such-model'" in result.stderr


def test_logic_on_a_real_scene_adds_one_segmentation_node_or_nothing(scene, small_case, tiny_model):
    from conftest import load_volume_node

    from DeepDiagLib import EngineError, SegmentationLogic

    volume_node = load_volume_node(scene, next((small_case / "images").iterdir()))
    count = scene.GetNumberOfNodes()
    node = SegmentationLogic(scene).process(volume_node, modelId=str(tiny_model), device="cpu", timeout=600)
    segmentation = node.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == [
        "Lungs",
        "Lung nodules",
    ]
    assert node.GetName() == f"{volume_node.GetName()} segmentation"
    assert node.GetNodeReference("referenceImageGeometryRef").GetID() == volume_node.GetID()
    added = scene.GetNumberOfNodes()
    assert added > count
    with pytest.raises(EngineError, match="no-such-model"):
        SegmentationLogic(scene).process(volume_node, modelId="no-such-model", device="cpu", timeout=600)
    assert scene.GetNumberOfNodes() == added


def test_a_map_zero_outside_a_small_box_comes_back_as_the_whole_crop_would(oblique_volume):
    from deepdiag.segmentation.model_grid import Crop, _resampled, _target_box, back_to_input, to_model_grid

    big = dataclasses.replace(oblique_volume, array=np.zeros((30, 40, 50), np.int16))
    model_volume = to_model_grid(big, (1.0, 1.0, 1.25))
    crop = Crop((3, 4, 5), tuple(n - 2 for n in model_volume.array.shape))
    shape = tuple(b - a for a, b in zip(crop.start, crop.stop))
    sparse = np.zeros(shape, np.float32)
    sparse[10:13, 12:16, 20:22] = np.linspace(0.2, 1.0, 24).reshape(3, 4, 2)
    dense = np.random.default_rng(5).random(shape, dtype=np.float32)
    region, (sparse_back, dense_back) = back_to_input([sparse, dense], model_volume, crop, big)
    low, high = _target_box(crop.start, crop.stop, model_volume, big)
    for mapped, whole_crop in ((sparse_back, sparse), (dense_back, dense)):
        assert np.array_equal(mapped, _resampled(whole_crop, model_volume, crop.start, big, low, high))
    assert (sparse_back > 0.5).sum() > 0, "the box's nodule reaches the input grid"
    assert not back_to_input([np.zeros(shape, np.float32)], model_volume, crop, big)[1][0].any()


def test_models_of_one_run_share_the_model_grid_and_leave_it_as_it_was(small_case, tiny_model, monkeypatch):
    import torch

    from deepdiag.models.store import load_model
    from deepdiag.segmentation import model_grid
    from deepdiag.segmentation.pipeline import segment_volume

    searches = []
    find_chest = model_grid.find_chest
    monkeypatch.setattr(model_grid, "find_chest", lambda volume: searches.append(volume) or find_chest(volume))
    ct = read_volume(next((small_case / "images").iterdir()))
    model = load_model(tiny_model, torch.device("cpu"))
    views = {}
    model_volume, chest = model_grid.chest_on_model_grid(ct, model.card.spacing_mm, views)
    before = [array.copy() for array in (model_volume.array, chest.body, chest.lungs)]
    segment_volume(ct, model, torch.device("cpu"), views=views)
    assert len(searches) == 1, "the segmentation took the run's model grid and lungs instead of searching again"
    for array, kept in zip((model_volume.array, chest.body, chest.lungs), before):
        assert np.array_equal(array, kept), "a later model of the run gets them as they were"
    other_view = ct.with_array(ct.array.copy())
    assert model_grid.chest_on_model_grid(other_view, model.card.spacing_mm, views)[0] is not model_volume
    assert len(searches) == 2, "another view of the scan (a smoothed one) gets its own"
