"""Bad input ends the command with one line that names the file and the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import DICOM_SERIES, run_cli


def _assert_one_line_error(result, path, problem: str):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("deepdiag: error: ")
    assert str(path) in lines[0]
    assert problem in lines[0]


def _bad_inputs(tmp_path):
    text_file = tmp_path / "notes.nrrd"
    text_file.write_text("these are notes, not an image\n")
    flat = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.int16)), str(flat))
    series = tmp_path / "series.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), np.int16), isVector=False), str(series))
    color = tmp_path / "color.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True), str(color))
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    return {
        "missing": (tmp_path / "absent.nrrd", "no such file"),
        "text renamed .nrrd": (text_file, "not a readable image"),
        "2D image": (flat, "2D image"),
        "4D image": (series, "4D image"),
        "vector image": (color, "3 values per voxel"),
        "empty folder": (empty, "no DICOM series"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "text renamed .nrrd", "2D image", "4D image", "vector image", "empty folder"]
)
def test_bad_input_gives_one_line_naming_file_and_problem(tmp_path, case):
    path, problem = _bad_inputs(tmp_path)[case]
    _assert_one_line_error(run_cli("info", str(path), "--progress", "none"), path, problem)


def test_json_progress_reports_the_error_as_an_event(tmp_path):
    result = run_cli("info", str(tmp_path / "absent.nrrd"), "--progress", "json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "error"
    assert events[-1]["path"] == str(tmp_path / "absent.nrrd")


def test_info_on_the_dicom_series_prints_geometry_and_guesses_ct():
    result = run_cli("info", str(DICOM_SERIES), "--progress", "none")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["size"] == [512, 512, 20]
    assert info["spacing"] == pytest.approx([0.9765625, 0.9765625, 2.0])
    assert info["modality_guess"] == "CT"


def test_info_guesses_mr_for_the_mr_scan(shared_data):
    result = run_cli("info", str(shared_data / "totalseg" / "abdomen_mr_3mm.nii.gz"), "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["modality_guess"] == "MR"
