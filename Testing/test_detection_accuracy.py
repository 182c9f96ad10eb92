"""The shipped detector finds nodules on held-out phantoms (seeds never used in training), and the
DeepDiagDetect logic puts its fiducials inside the truth nodules on a real MRML scene.

The bar here is a regression bar of the shipped lung-nodules-det@2 on fewer, coarser cases, so that CI stays
fast; the card holds its FROC on the default grid against issue 5's target.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_volume_node, run_cli

HELD_OUT_SEED = 31  # training used seed 2000 and the card's evaluation seed 7
# lung-nodules-det@2 measured 0.875 and 0.82 on these cases (8 nodules >= 6 mm; @1: 0.75 and 0.71);
# the bar allows one more missed nodule
SENSITIVITY_AT_2_FP = 0.75
CPM = 0.70
CASE_OPTIONS = [
    "--size",
    "256",
    "256",
    "150",
    "--spacing",
    "1.4",
    "1.4",
    "2.5",
    "--nodules",
    "2",
    "3",
    "--diameter",
    "6",
    "24",
]


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held_out")
    made = run_cli(
        "phantom",
        "-o",
        str(folder / "truth"),
        "--cases",
        "3",
        "--seed",
        str(HELD_OUT_SEED),
        "--progress",
        "none",
        *CASE_OPTIONS,
    )
    assert made.returncode == 0, made.stderr
    images = sorted(str(p) for p in (folder / "truth" / "images").iterdir())
    detected = run_cli(
        "detect", *images, "-o", str(folder / "pred"), "--min-score", "0.05", "--device", "cpu", "--progress", "none"
    )
    assert detected.returncode == 0, detected.stderr
    return folder


def test_shipped_detector_meets_a_smaller_bar_on_held_out_cases(held_out):
    result = run_cli(
        "evaluate",
        "detection",
        "--truth",
        str(held_out / "truth"),
        "--pred",
        str(held_out / "pred"),
        "--progress",
        "none",
    )
    assert result.returncode == 0, result.stderr
    large = json.loads(result.stdout)["ge6mm"]
    assert large["nodules"] >= 5
    assert large["sensitivity_at_fp_per_scan"]["2.0"] >= SENSITIVITY_AT_2_FP
    assert large["cpm"] >= CPM


def test_detect_logic_on_a_real_scene_puts_true_findings_inside_their_nodules(scene, held_out):
    from deepdiag.image_io import read_volume
    from DeepDiagLib import DetectionLogic

    image = sorted((held_out / "truth" / "images").iterdir())[0]
    truth = read_volume(held_out / "truth" / "instances" / image.name)
    volume_node = load_volume_node(scene, image)
    markups, table = DetectionLogic(scene).process(volume_node, device="cpu", minScore=0.5, timeout=900)
    assert markups.GetNumberOfControlPoints() == table.GetNumberOfRows() >= 1
    inside = 0
    for n in range(markups.GetNumberOfControlPoints()):
        r, a, s = markups.GetNthControlPointPosition(n)
        i, j, k = np.round(truth.lps_to_ijk(np.array([[-r, -a, s]]))[0]).astype(int)
        inside += bool(truth.array[k, j, i] > 0)
    assert inside >= 1, "the best findings must lie inside truth nodules when read back through Slicer (RAS)"
