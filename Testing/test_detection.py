"""deepdiag detect: findings files on the input's physical space, batch behaviour, clear errors,
and the DeepDiagDetect logic on a real MRML scene. A tiny untrained detector exercises the
machinery; accuracy with the shipped detector is in test_detection_accuracy.py."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import run_cli

from deepdiag.image_io import read_volume


@pytest.fixture(scope="module")
def small_image(small_case):
    return next((small_case / "images").iterdir())


def _detect(*arguments):
    result = run_cli("detect", *map(str, arguments), "--progress", "json")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, events


def test_findings_files_agree_and_lie_inside_the_scan(tmp_path, small_image, tiny_detector):
    result, events = _detect(small_image, "-o", tmp_path, "--model", tiny_detector, "--min-score", "0")
    assert result.returncode == 0, result.stderr
    output = events[-1]["outputs"][0]
    findings = json.loads(open(output["findings"]).read())["findings"]
    assert findings and output["findings"].endswith("phantom_s5_000.findings.json")
    assert [f["id"] for f in findings] == [f"N{n}" for n in range(1, len(findings) + 1)]
    assert [f["score"] for f in findings] == sorted((f["score"] for f in findings), reverse=True)
    volume = read_volume(small_image)
    corners = volume.ijk_to_lps(np.array([[0, 0, 0], np.array(volume.size) - 1]))
    for finding in findings:
        assert np.all(finding["center_lps"] >= corners.min(axis=0) - 1e-6) and np.all(
            finding["center_lps"] <= corners.max(axis=0) + 1e-6
        )
        assert finding["center_ras"] == [-finding["center_lps"][0], -finding["center_lps"][1], finding["center_lps"][2]]
        assert finding["model"] == "tiny-test-det@1"
    rows = list(csv.DictReader(open(output["table"])))
    markups = json.loads(open(output["markups"]).read())["markups"][0]
    assert len(rows) == len(markups["controlPoints"]) == len(findings)


def test_batch_goes_on_after_a_bad_input_and_writes_nothing_for_it(tmp_path, small_image, tiny_detector):
    bad = tmp_path / "broken.nrrd"
    bad.write_text("not an image")
    result, events = _detect(bad, small_image, "-o", tmp_path / "out", "--model", tiny_detector, "--min-score", "0.5")
    assert result.returncode == 1
    assert "broken.nrrd" in result.stderr and "Traceback" not in result.stderr
    summary = events[-1]
    assert summary["summary"]["done"] == 1 and summary["summary"]["failed"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "phantom_s5_000.findings.csv",
        "phantom_s5_000.findings.json",
        "phantom_s5_000.mrk.json",
    ]


def test_a_segmentation_model_or_a_bad_score_is_refused_clearly(tmp_path, small_image, tiny_model):
    wrong, _ = _detect(small_image, "-o", tmp_path, "--model", tiny_model)
    assert wrong.returncode == 1 and "not a detection model" in wrong.stderr
    score, _ = _detect(small_image, "-o", tmp_path, "--min-score", "2")
    assert score.returncode == 1 and "--min-score" in score.stderr
    assert not any(tmp_path.iterdir())


def test_logic_on_a_real_scene_adds_fiducials_and_a_matching_table_or_nothing(scene, small_image, tiny_detector):
    from conftest import load_volume_node

    from DeepDiagLib import DetectionLogic, EngineError

    volume_node = load_volume_node(scene, small_image)
    markups, table = DetectionLogic(scene).process(
        volume_node, modelId=str(tiny_detector), device="cpu", minScore=0.0, timeout=600
    )
    assert markups.GetNumberOfControlPoints() == table.GetNumberOfRows() > 0
    assert markups.GetNthControlPointLabel(0) == table.GetTable().GetValue(0, 0).ToString() == "N1"
    position = markups.GetNthControlPointPosition(0)
    assert np.allclose(
        position, [table.GetTable().GetValue(0, c).ToDouble() for c in (1, 2, 3)], atol=1e-3
    )  # table in RAS too
    count = scene.GetNumberOfNodes()
    with pytest.raises(EngineError, match="no-such-model"):
        DetectionLogic(scene).process(volume_node, modelId="no-such-model", device="cpu", timeout=600)
    assert scene.GetNumberOfNodes() == count


def test_the_panel_threshold_is_the_chosen_detectors_own(tiny_detector):
    from deepdiag.models import find_model
    from deepdiag.models.card import ModelCard
    from DeepDiagLib import DetectionLogic

    newest = ModelCard.read(find_model(None, "detection", "lung-nodules-det"))
    assert (
        DetectionLogic().defaultMinScore() == newest.postprocessing["default_min_score"]
    )  # chosen on its validation cases
    assert DetectionLogic().defaultMinScore(str(tiny_detector)) == 0.5  # a card that names none
