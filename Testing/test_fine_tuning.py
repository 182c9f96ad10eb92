"""deepdiag train: fine-tuning writes a new, complete model version and never touches the base."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import PROJECT_ROOT, run_cli

SMALL_CASE = [
    "--size",
    "160",
    "160",
    "100",
    "--spacing",
    "2.2",
    "2.2",
    "3.75",
    "--nodules",
    "2",
    "3",
    "--diameter",
    "10",
    "18",
]


@pytest.fixture(scope="module")
def labeled_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cases")
    result = run_cli(
        "phantom",
        "-o",
        str(folder),
        "--cases",
        "3",
        "--seed",
        "21",
        "--noise",
        "30",
        "--hu-offset",
        "60",
        "--progress",
        "none",
        *SMALL_CASE,
    )
    assert result.returncode == 0, result.stderr
    images = sorted((folder / "images").iterdir())
    return images, [folder / "labels" / p.name for p in images]


def _train_arguments(tiny_model, labeled_cases, *extra):
    images, labels = labeled_cases
    return [
        "train",
        "--base",
        str(tiny_model),
        "--images",
        *map(str, images),
        "--labels",
        *map(str, labels),
        "--steps-per-epoch",
        "4",
        "--lr",
        "3e-3",
        *extra,
    ]


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_fine_tuning_reports_each_epoch_and_registers_a_new_version(tmp_path, tiny_model, labeled_cases):
    base_files = _files(tiny_model)
    result = run_cli(
        *_train_arguments(tiny_model, labeled_cases, "--epochs", "2", "--progress", "json"),
        env={"DEEPDIAG_MODELS": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["loss"] > 0 and 0 <= e["val_nodule_dice"] <= 1 and 0 <= e["val_lungs_dice"] <= 1 for e in epochs)
    summary = events[-1]
    assert summary["event"] == "result" and summary["model"] == "tiny-test-seg@2"

    card = json.loads((tmp_path / "tiny-test-seg@2" / "model.json").read_text())
    assert card["training"]["base_model"] == "tiny-test-seg@1"
    assert len(card["training"]["data"]) == 3 and all(len(d["sha256"]) == 64 for d in card["training"]["data"])
    assert set(card["metrics"]) == {"validation_before", "validation_after"}
    assert card["metrics"]["validation_after"]["mean_dice"] == max(
        e["val_mean_dice"] for e in epochs
    )  # the best epoch is kept
    assert _files(tiny_model) == base_files  # the base model is only read

    listed = run_cli("models", "show", "tiny-test-seg@2", "--progress", "none", env={"DEEPDIAG_MODELS": str(tmp_path)})
    assert listed.returncode == 0 and json.loads(listed.stdout)["version"] == 2


def test_interrupting_keeps_the_best_complete_epoch_and_nothing_broken(tmp_path, tiny_model, labeled_cases):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepdiag",
            *_train_arguments(tiny_model, labeled_cases, "--epochs", "200", "--progress", "json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={"PYTHONPATH": str(PROJECT_ROOT / "DeepDiag"), "PATH": "/usr/bin:/bin", "DEEPDIAG_MODELS": str(tmp_path)},
    )
    for line in process.stdout:
        if json.loads(line)["event"] == "epoch":
            break
    time.sleep(0.5)  # somewhere inside the next epoch
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    models = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in models] == ["tiny-test-seg@2"]
    card = json.loads((models[0] / "model.json").read_text())
    assert card["training"]["epochs_completed"] < 200
    loaded = run_cli("models", "show", "tiny-test-seg@2", "--progress", "none", env={"DEEPDIAG_MODELS": str(tmp_path)})
    assert loaded.returncode == 0


def test_killing_before_an_epoch_completes_registers_nothing(tmp_path, tiny_model, labeled_cases):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepdiag",
            *_train_arguments(tiny_model, labeled_cases, "--epochs", "200", "--progress", "json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={"PYTHONPATH": str(PROJECT_ROOT / "DeepDiag"), "PATH": "/usr/bin:/bin", "DEEPDIAG_MODELS": str(tmp_path)},
    )
    for line in process.stdout:
        if json.loads(line).get("stage") == "train":
            break
    process.kill()
    process.communicate(timeout=60)
    listed = run_cli("models", "list", "--progress", "json", env={"DEEPDIAG_MODELS": str(tmp_path)})
    assert not [m for m in json.loads(listed.stdout)["models"] if m["source"] == "user"]


def test_bad_training_input_names_the_file_and_registers_nothing(tmp_path, tiny_model, labeled_cases):
    images, labels = labeled_cases
    mismatch = run_cli(
        "train",
        "--base",
        str(tiny_model),
        "--images",
        *map(str, images),
        "--labels",
        str(labels[0]),
        env={"DEEPDIAG_MODELS": str(tmp_path)},
    )
    assert mismatch.returncode == 1 and "as many --labels as --images" in mismatch.stderr

    wrong = run_cli(
        "train",
        "--base",
        str(tiny_model),
        "--images",
        str(images[0]),
        "--labels",
        str(images[1]),
        env={"DEEPDIAG_MODELS": str(tmp_path)},
    )
    assert wrong.returncode == 1 and str(images[1]) in wrong.stderr and "label values" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert not any(tmp_path.iterdir())


def _scene_pair(scene, labeled_cases, tmp_path, index=0):
    from conftest import load_volume_node

    from deepdiag.image_io import read_volume
    from deepdiag.segmentation_file import write_segmentation
    from deepdiag.terminology import LUNG_NODULES, LUNGS
    from DeepDiagLib import addSegmentationFromFile

    images, labels = labeled_cases
    volume_node = load_volume_node(scene, images[index])
    truth = read_volume(labels[index])
    seg_file = write_segmentation(tmp_path / f"truth{index}.seg.nrrd", truth, [LUNGS, LUNG_NODULES])
    return volume_node, addSegmentationFromFile(scene, seg_file, volume_node, name=f"truth {index}"), truth


def test_scene_segmentations_export_as_the_models_label_values_on_the_volume_grid(
    scene, tmp_path, labeled_cases, tiny_model
):
    from deepdiag.image_io import read_volume
    from DeepDiagLib.fine_tuning_logic import modelClassNames, writeLabels

    volume_node, segmentation_node, truth = _scene_pair(scene, labeled_cases, tmp_path)
    nodes = scene.GetNumberOfNodes()
    exported = read_volume(
        writeLabels(segmentation_node, volume_node, modelClassNames(str(tiny_model)), tmp_path / "labels.nrrd")
    )
    assert exported.same_grid(truth)
    assert (exported.array == truth.array).mean() > 0.999  # surface conversions may move a few border voxels
    assert ((exported.array == 2) & (truth.array == 2)).sum() >= 0.99 * (truth.array == 2).sum()
    assert scene.GetNumberOfNodes() == nodes  # the temporary label map node is gone


def test_fine_tuning_from_the_scene_registers_a_model_and_plots_each_epoch(
    scene, tmp_path, labeled_cases, tiny_model, monkeypatch
):
    from DeepDiagLib import FineTuningLogic, FineTuningTask

    monkeypatch.setenv("DEEPDIAG_MODELS", str(tmp_path / "models"))
    pairs = [_scene_pair(scene, labeled_cases, tmp_path, i)[:2] for i in range(2)]
    modified = [node.GetMTime() for pair in pairs for node in pair]
    result, table = FineTuningLogic(scene).fineTune(
        pairs, str(tiny_model), epochs=2, stepsPerEpoch=2, learningRate=3e-3, device="cpu", timeout=600
    )
    assert result["model"] == "tiny-test-seg@2"
    assert (tmp_path / "models" / "tiny-test-seg@2" / "weights.safetensors").is_file()
    assert table.GetNumberOfRows() == 2
    assert [table.GetTable().GetValue(r, 0).ToDouble() for r in range(2)] == [1.0, 2.0]
    assert [node.GetMTime() for pair in pairs for node in pair] == modified

    volume_node, segmentation_node = pairs[0]
    segmentation_node.GetSegmentation().RemoveSegment(segmentation_node.GetSegmentation().GetNthSegmentID(1))
    with pytest.raises(ValueError, match="Lung nodules"):
        FineTuningTask([(volume_node, segmentation_node)], str(tiny_model))
