"""deepdiag classify and evaluate classification: findings from a detector's file or a
segmentation, type and probabilities, measurements, Lung-RADS category, saliency on the input
grid, clear errors; and a whole-volume classifier imported by a user. Accuracy bars with the
shipped classifier are in test_classification_accuracy.py."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_cli

from deepdiag.image_io import read_volume, write_volume
from deepdiag.lung_rads import NODULE_TYPES, baseline_category


def _classify(*arguments, env=None):
    result = run_cli("classify", *map(str, arguments), "--progress", "json", env=env)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, events


@pytest.fixture(scope="module")
def small_image(small_case):
    return next((small_case / "images").iterdir())


@pytest.fixture(scope="module")
def truth_findings(small_case, tmp_path_factory):
    """The truth nodules of the small case as a findings file, as a detector would write it."""
    nodules = json.loads(next((small_case / "truth").iterdir()).read_text())["nodules"]
    path = tmp_path_factory.mktemp("findings") / "truth.findings.json"
    rows = [
        {"id": f"N{n['id']}", "center_lps": n["center_lps"], "diameter_mm": n["equivalent_diameter_mm"], "score": 0.9}
        for n in nodules
    ]
    path.write_text(json.dumps({"input": "phantom", "findings": rows}))
    return path, nodules


def test_findings_get_type_probabilities_measurements_and_category(tmp_path, small_image, truth_findings):
    findings_file, nodules = truth_findings
    result, events = _classify(small_image, "--findings", findings_file, "-o", tmp_path, "--explain")
    assert result.returncode == 0, result.stderr
    output = events[-1]
    findings = json.loads(open(output["findings"]).read())["findings"]
    assert [f["id"] for f in findings] == [f"N{n['id']}" for n in nodules]
    for finding, truth in zip(findings, nodules):
        assert finding["type"] in NODULE_TYPES
        assert sum(finding["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert finding["probabilities"][finding["type"]] == max(finding["probabilities"].values())
        assert finding["lung_rads"] == baseline_category(
            finding["type"], finding["mean_diameter_mm"], finding["solid_mean_diameter_mm"]
        )
        assert finding["long_axis_mm"] == pytest.approx(
            truth["long_axis_diameter_mm"], abs=3 * 2.2
        )  # threshold mask, coarse grid
        assert finding["score"] == 0.9 and finding["classifier"].startswith("nodule-type-cls@")
    rows = list(csv.DictReader(open(output["table"])))
    assert [r["type"] for r in rows] == [f["type"] for f in findings] and "p_part-solid" in rows[0]
    saliency = read_volume(output["saliency"])
    assert saliency.same_grid(read_volume(small_image))
    assert 0 < saliency.array.max() <= 1.0


def test_segmentation_components_become_findings_measured_on_their_segments(tmp_path, small_case, small_image):
    labels = next((small_case / "labels").iterdir())  # 1 lungs, 2 nodules: a label map without segment names
    nodules_only = tmp_path / "nodules.nrrd"
    volume = read_volume(labels)
    write_volume(volume.with_array((volume.array == 2).astype(np.uint8)), nodules_only)
    result, events = _classify(small_image, "--segmentation", nodules_only, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    findings = json.loads(open(events[-1]["findings"]).read())["findings"]
    truths = json.loads(next((small_case / "truth").iterdir()).read_text())["nodules"]
    assert len(findings) == len(truths)
    for finding in findings:
        assert finding["measured_on"] == "segmentation"
        truth = min(truths, key=lambda t: np.linalg.norm(np.subtract(t["center_lps"], finding["center_lps"])))
        assert finding["volume_mm3"] == pytest.approx(truth["volume_mm3"], abs=0.006)
        assert finding["long_axis_mm"] == pytest.approx(truth["long_axis_diameter_mm"], abs=0.006)  # both rounded


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, small_image, tiny_model):
    not_json = tmp_path / "broken.findings.json"
    not_json.write_text("{ not json")
    volume = read_volume(small_image)
    other_grid = tmp_path / "other.nrrd"
    write_volume(
        replace(volume, origin=tuple(o + 5.0 for o in volume.origin), array=(volume.array > 0).astype(np.uint8)),
        other_grid,
    )
    cases = [
        ((small_image, "--findings", not_json), "broken.findings.json: not a findings file"),
        ((small_image,), "give --findings or --segmentation"),
        (
            (small_image, "--segmentation", other_grid),
            "other.nrrd: the segmentation does not lie on the image's voxel grid",
        ),
        ((small_image, "--findings", not_json, "--model", tiny_model), "not a classification model"),
    ]
    for arguments, message in cases:
        result, _ = _classify(*arguments, "-o", tmp_path / "out")
        assert result.returncode == 1, arguments
        assert message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists()


def test_a_users_whole_volume_classifier_classifies_the_scan(tmp_path, small_image):
    import torch

    from deepdiag.models import ModelCard
    from deepdiag.models.networks import build_network
    from deepdiag.models.store import save_model

    card = ModelCard(
        id="scan-level-test",
        version=1,
        task="classification",
        network={
            "name": "DenseNet121",
            "parameters": {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 2,
                "init_features": 4,
                "growth_rate": 4,
            },
        },
        input={
            "region": "volume",
            "channels": 1,
            "modality": "CT",
            "spacing_mm": [1, 1, 1],
            "intensity": {"min_hu": -1000, "max_hu": 400},
        },
        patch_size=[32, 32, 32],
        classes=[{"name": "normal"}, {"name": "abnormal"}],
    )
    torch.manual_seed(0)
    models = tmp_path / "models"
    save_model(build_network(card), card, models / "scan-level-test@1")
    result, events = _classify(
        small_image, "-o", tmp_path / "out", "--model", "scan-level-test", env={"DEEPDIAG_MODELS": str(models)}
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(open(events[-1]["classification"]).read())
    assert set(written["probabilities"]) == {"normal", "abnormal"}
    assert sum(written["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert written["probabilities"][written["class"]] == max(written["probabilities"].values())


def test_evaluation_scores_types_categories_and_sizes_against_truth(tmp_path, small_case, small_image, truth_findings):
    findings_file, nodules = truth_findings
    result, events = _classify(small_image, "--findings", findings_file, "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    findings = json.loads(open(events[-1]["findings"]).read())["findings"]
    evaluated = run_cli(
        "evaluate", "classification", "--truth", str(small_case), "--pred", str(tmp_path), "--progress", "json"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    figures = json.loads(evaluated.stdout.splitlines()[-1])
    assert figures["nodules"] == figures["matched"] == len(nodules)
    by_id = {f["id"]: f for f in findings}
    expected = np.mean([by_id[f"N{n['id']}"]["type"] == n["type"] for n in nodules])
    assert figures["type_accuracy"] == pytest.approx(expected)
    assert sum(sum(row.values()) for row in figures["confusion"].values()) == len(nodules)


def test_logic_on_a_real_scene_classifies_fiducials_without_changing_them(scene, small_image, truth_findings):
    from conftest import load_volume_node

    from DeepDiagLib import ClassificationLogic, EngineError

    _, nodules = truth_findings
    volume_node = load_volume_node(scene, small_image)
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my findings")
    for n in nodules:
        lps = n["center_lps"]
        index = markups.AddControlPoint(-lps[0], -lps[1], lps[2], f"N{n['id']}")
        markups.SetNthControlPointDescription(index, f"score 0.80, diameter {n['equivalent_diameter_mm']:.1f} mm")
    modified = markups.GetMTime()
    added = ClassificationLogic(scene).classifyFindings(volume_node, markups, device="cpu", explain=True, timeout=600)
    assert set(added) == {"table", "saliency"}  # the user's fiducials are the findings: no new fiducial node
    table = added["table"].GetTable()
    assert table.GetNumberOfRows() == len(nodules)
    assert added["table"].GetAttribute("DeepDiag.Warnings") == ""  # a phantom's noise: nothing smoothed, nothing to say
    column = {table.GetColumnName(c): c for c in range(table.GetNumberOfColumns())}
    for row, n in enumerate(nodules):
        assert table.GetValue(row, column["Finding"]).ToString() == f"N{n['id']}"
        assert table.GetValue(row, column["Type"]).ToString() in NODULE_TYPES
        assert table.GetValue(row, column["Lung-RADS"]).ToString() in {"2", "3", "4A", "4B"}
        assert table.GetValue(row, column["R (mm)"]).ToDouble() == pytest.approx(-n["center_lps"][0], abs=1e-3)
    saliency, volume = vtk_matrix(added["saliency"]), vtk_matrix(volume_node)
    assert np.allclose(saliency, volume, atol=1e-6)
    assert markups.GetMTime() == modified and markups.GetNumberOfControlPoints() == len(nodules)
    count = scene.GetNumberOfNodes()
    with pytest.raises(EngineError, match="no-such-model"):
        ClassificationLogic(scene).classifyFindings(
            volume_node, markups, modelId="no-such-model", device="cpu", timeout=600
        )
    assert scene.GetNumberOfNodes() == count


def test_logic_turns_a_segmentation_node_into_classified_fiducials(scene, small_case, small_image):
    from conftest import load_volume_node

    from deepdiag.segmentation_file import write_segmentation
    from deepdiag.terminology import LUNG_NODULES, LUNGS
    from DeepDiagLib import ClassificationLogic, addSegmentationFromFile

    labels = read_volume(next((small_case / "labels").iterdir()))
    path = write_segmentation(small_case.parent / "truth.seg.nrrd", labels, [LUNGS, LUNG_NODULES])
    volume_node = load_volume_node(scene, small_image)
    segmentation = addSegmentationFromFile(scene, path, volume_node)
    added = ClassificationLogic(scene).classifyFindings(
        volume_node, segmentationNode=segmentation, device="cpu", timeout=600
    )
    truths = json.loads(next((small_case / "truth").iterdir()).read_text())["nodules"]
    assert added["markups"].GetNumberOfControlPoints() == added["table"].GetNumberOfRows() == len(truths)
    assert added["table"].GetNodeReference("findings") is added["markups"]


def vtk_matrix(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
