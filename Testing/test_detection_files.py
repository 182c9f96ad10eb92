"""Findings files (.findings.json/.csv, .mrk.json) and the LUNA16-style FROC evaluation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import run_cli

from deepdiag.findings_file import numbered, read_findings, write_findings


def _truth_case(folder, name, nodules):
    (folder / "truth").mkdir(parents=True, exist_ok=True)
    rows = [{"id": i, "center_lps": list(c), "equivalent_diameter_mm": d} for i, (c, d) in enumerate(nodules, 1)]
    (folder / "truth" / f"{name}.json").write_text(json.dumps({"case": name, "nodules": rows}))


def test_findings_are_numbered_by_score_and_written_in_three_agreeing_files(tmp_path):
    findings = numbered([((10.0, -20.0, 30.0), 8.0, 0.4), ((-5.5, 6.25, -7.0), 12.5, 0.9)])
    assert [(f.id, f.score) for f in findings] == [("N1", 0.9), ("N2", 0.4)]
    paths = write_findings(tmp_path, "scan", findings, "test-det@1", "scan.nrrd")
    assert read_findings(paths["findings"]) == findings
    rows = list(csv.DictReader(open(paths["table"])))
    assert [r["id"] for r in rows] == ["N1", "N2"]
    assert [float(rows[0][k]) for k in ("ras_x", "ras_y", "ras_z")] == [5.5, -6.25, -7.0]  # RAS = LPS with x, y negated
    assert rows[0]["model"] == "test-det@1"


def test_markups_load_in_slicer_at_the_lps_positions_given(scene, tmp_path):
    import slicer

    findings = numbered([((10.0, -20.0, 30.0), 8.0, 0.7)])
    path = write_findings(tmp_path, "scan", findings, "test-det@1", "scan.nrrd")["markups"]
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    storage.SetFileName(path)
    assert storage.ReadData(node)
    assert node.GetNumberOfControlPoints() == 1 and node.GetNthControlPointLabel(0) == "N1"
    assert np.allclose(node.GetNthControlPointPosition(0), (-10.0, 20.0, 30.0))  # Slicer holds RAS
    assert "0.70" in node.GetNthControlPointDescription(0)


@pytest.fixture
def froc_case(tmp_path):
    """Two scans with hand-checkable findings (see the figures in the tests)."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _truth_case(truth, "a", [((0, 0, 0), 10.0), ((50, 0, 0), 4.0)])
    _truth_case(truth, "b", [((0, 0, 0), 20.0)])
    write_findings(
        pred,
        "a",
        numbered([((3, 0, 0), 0, 0.9), ((100, 0, 0), 0, 0.8), ((50, 1, 0), 0, 0.3), ((0, 5.01, 0), 0, 0.2)]),
        "m@1",
        "a",
    )
    write_findings(pred, "b", numbered([((0, 0, 60), 0, 0.95), ((0, 9, 0), 0, 0.5)]), "m@1", "b")
    return truth, pred


def test_froc_counts_hits_within_the_radius_and_reads_sensitivity_at_each_rate(froc_case):
    from deepdiag.evaluation.detection import evaluate_detection_folder

    figures = evaluate_detection_folder(*froc_case)
    every = figures["all"]
    # false positives by score: 0.95, 0.8, 0.2 (5.01 mm from a 10 mm nodule's centre is outside it)
    assert every["false_positives_per_scan_at_any_score"] == 1.5
    assert list(every["sensitivity_at_fp_per_scan"].values()) == [0.0, 0.0, round(1 / 3, 4), 1.0, 1.0, 1.0, 1.0]
    assert every["cpm"] == round((1 / 3 + 4) / 7, 4)
    large = figures["ge6mm"]  # the 4 mm nodule's hit is neither a hit nor a false positive here
    assert large["nodules"] == 2
    assert list(large["sensitivity_at_fp_per_scan"].values()) == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0]


def test_evaluate_detection_command_prints_the_froc_and_names_missing_predictions(froc_case, tmp_path):
    truth, pred = froc_case
    result = run_cli("evaluate", "detection", "--truth", str(truth), "--pred", str(pred), "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["all"]["cpm"] == round((1 / 3 + 4) / 7, 4)
    (pred / "b.findings.json").unlink()
    missing = run_cli("evaluate", "detection", "--truth", str(truth), "--pred", str(pred))
    assert missing.returncode == 1 and "no findings for case b" in missing.stderr


def test_operating_point_counts_what_a_reader_sees_at_a_threshold(froc_case):
    from deepdiag.evaluation.detection import operating_point, read_scans

    scans = read_scans(*froc_case)
    # at 0.5: a keeps a hit (0.9) and a false positive (0.8); b keeps a false positive (0.95) and a hit (0.5)
    assert operating_point(scans, 0.5) == {
        "min_score": 0.5,
        "false_positives_per_scan": 1.0,
        "sensitivity": 1.0,
        "nodules": 2,
    }
    # at 0.85 the 20 mm nodule's only hit (0.5) is gone; the 0.95 false positive stays
    assert operating_point(scans, 0.85) == {
        "min_score": 0.85,
        "false_positives_per_scan": 0.5,
        "sensitivity": 0.5,
        "nodules": 2,
    }
