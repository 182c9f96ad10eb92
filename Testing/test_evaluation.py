"""deepdiag evaluate segmentation computes the figures the model card reports, correctly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from deepdiag.geometry import Volume
from deepdiag.image_io import write_volume
from deepdiag.segmentation_file import write_segmentation
from deepdiag.terminology import LUNG_NODULES, LUNGS


def _ball(shape, center, radius):
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (k - center[0]) ** 2 + (j - center[1]) ** 2 + (i - center[2]) ** 2 <= radius**2


@pytest.fixture
def truth_dir(tmp_path):
    """One 1-mm case: lungs, a large (10 mm) solid and a small (4 mm) ground-glass nodule."""
    shape = (48, 48, 48)
    lungs = _ball(shape, (24, 24, 24), 20)
    instances = np.zeros(shape, np.uint8)
    instances[_ball(shape, (24, 24, 14), 5)] = 1
    instances[_ball(shape, (24, 24, 34), 2)] = 2
    labels = np.where(instances > 0, 2, lungs.astype(np.uint8)).astype(np.uint8)
    grid = Volume(labels, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    write_volume(grid, tmp_path / "truth" / "labels" / "c.nrrd")
    write_volume(grid.with_array(instances), tmp_path / "truth" / "instances" / "c.nrrd")
    nodules = [
        {"id": i, "type": kind, "equivalent_diameter_mm": float((6 * (instances == i).sum() / np.pi) ** (1 / 3))}
        for i, kind in ((1, "solid"), (2, "ground-glass"))
    ]
    (tmp_path / "truth" / "truth").mkdir(parents=True)
    (tmp_path / "truth" / "truth" / "c.json").write_text(json.dumps({"nodules": nodules}))
    return tmp_path / "truth", grid, labels


def _evaluate(truth, prediction_labels, grid, tmp_path):
    write_segmentation(tmp_path / "pred" / "c.seg.nrrd", grid.with_array(prediction_labels), [LUNGS, LUNG_NODULES])
    result = run_cli(
        "evaluate", "segmentation", "--truth", str(truth), "--pred", str(tmp_path / "pred"), "--progress", "none"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_perfect_prediction_scores_perfectly(truth_dir, tmp_path):
    truth, grid, labels = truth_dir
    figures = _evaluate(truth, labels, grid, tmp_path)
    assert figures["nodule_dice_ge6mm"] == 1.0
    assert figures["sensitivity_ge6mm"] == 1.0 and figures["sensitivity_3to6mm"] == 1.0
    assert figures["false_positives_per_scan"] == 0
    assert figures["lungs_dice"] == 1.0
    assert (figures["nodules_ge6mm"], figures["nodules_3to6mm"]) == (1, 1)


def test_missed_small_nodule_and_extra_blob_are_counted_and_dice_ignores_small_nodules(truth_dir, tmp_path):
    truth, grid, labels = truth_dir
    prediction = labels.copy()
    prediction[prediction == 2] = 1
    prediction[_ball(labels.shape, (24, 24, 14), 5)] = 2  # the large nodule, exactly
    prediction[_ball(labels.shape, (12, 30, 24), 2)] = 2  # a false positive in the lung
    figures = _evaluate(truth, prediction, grid, tmp_path)
    assert figures["sensitivity_3to6mm"] == 0.0
    assert figures["sensitivity_ge6mm"] == 1.0
    assert figures["found_by_type"] == {"ground-glass": {"3to6mm": "0/1"}, "solid": {"ge6mm": "1/1"}}
    assert figures["false_positives_per_scan"] == 1
    result = run_cli("evaluate", "segmentation", "--truth", str(truth), "--pred", str(tmp_path / "pred"), "--per-case")
    (case,) = json.loads(result.stdout)["per_case"]
    assert case["false_positive_centres_lps"] == [[24.0, 30.0, 12.0]], "where the false blob is (x, y, z in mm)"
    fp = _ball(labels.shape, (12, 30, 24), 2).sum()
    large = _ball(labels.shape, (24, 24, 14), 5).sum()
    assert figures["nodule_dice_ge6mm"] == pytest.approx(2 * large / (2 * large + fp), abs=1e-4)


def test_a_missing_prediction_is_named(truth_dir, tmp_path):
    truth, _, _ = truth_dir
    (tmp_path / "empty").mkdir()
    result = run_cli(
        "evaluate", "segmentation", "--truth", str(truth), "--pred", str(tmp_path / "empty"), "--progress", "none"
    )
    assert result.returncode == 1 and "no prediction for case c" in result.stderr


def test_a_false_positive_at_the_same_place_of_every_copy_is_the_backgrounds_own():
    """On copies of one real background, a structure of the scan itself is marked on each copy;
    one caused by an inserted nodule is not."""
    from deepdiag.evaluation.real_scans import _in_every_copy

    vessel = [[10.0, 20.0, 30.0], [11.0, 20.0, 30.0], [10.0, 21.0, 29.0]]  # within 5 mm of each other
    copies = [[vessel[0], [80.0, 0.0, 0.0]], [vessel[1]], [vessel[2], [-60.0, 5.0, 5.0]]]
    assert _in_every_copy(copies) == 1.0  # 3 of the 5 false positives, over 3 copies
    assert _in_every_copy([[vessel[0]], []]) == 0.0, "missing from one copy"


def test_a_shared_scan_keeps_its_known_lesions_whether_named_by_file_or_by_folder():
    from deepdiag.evaluation.real_scans import KNOWN_LESIONS, known_lesions

    mass = KNOWN_LESIONS["thorax_4dct_phase00"]
    assert known_lesions("/data/real/chest_ct/thorax_4dct_phase00/ct.nii.gz") == mass
    assert known_lesions("/output/scans/thorax_4dct_phase00.nii.gz") == mass
    assert known_lesions("/data/real/chest_ct/covid_ricord_419639/ct.nii.gz") == []
