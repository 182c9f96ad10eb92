"""Input a hostile tester (or an ordinary hospital) sends: every task takes it or refuses it with
one clear line, and never writes a wrong result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DICOM_SERIES, run_cli


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory):
    """``deepdiag analyze`` on the shared DICOM series, once for the module's tests."""
    out = tmp_path_factory.mktemp("dicom_analyze")
    result = run_cli("analyze", str(DICOM_SERIES), "-o", str(out), "--progress", "none", timeout=600)
    return result, out


def test_segment_takes_a_dicom_folder_and_writes_on_its_grid(tmp_path):
    result = run_cli("segment", str(DICOM_SERIES), "-o", str(tmp_path), "--progress", "none", timeout=600)
    assert result.returncode == 0, result.stderr
    written = sitk.ReadImage(str(tmp_path / "abdomen_ct_dicom.seg.nrrd"))
    source = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(DICOM_SERIES)))
    assert written.GetSize() == source.GetSize() == (512, 512, 20)
    assert written.GetSpacing() == pytest.approx(source.GetSpacing())
    assert written.GetOrigin() == pytest.approx(source.GetOrigin())
    # the series is an abdomen with the lung bases at its top: some lung, not a blank result
    assert (sitk.GetArrayViewFromImage(written) == 1).sum() > 1000


def test_detect_takes_a_dicom_folder(tmp_path):
    result = run_cli("detect", str(DICOM_SERIES), "-o", str(tmp_path), "--progress", "none", timeout=600)
    assert result.returncode == 0, result.stderr
    findings = json.loads((tmp_path / "abdomen_ct_dicom.findings.json").read_text())
    assert findings["input"] == str(DICOM_SERIES)


def test_analyze_takes_a_dicom_folder_and_writes_its_report(dicom_run):
    result, out = dicom_run
    assert result.returncode == 0, result.stderr
    assert (out / "abdomen_ct_dicom.report.html").is_file()
    assert (out / "abdomen_ct_dicom.seg.nrrd").is_file()


def test_dicom_header_gives_the_series_size_and_slice_spacing():
    from deepdiag.image_io import read_volume, volume_header

    size, spacing = volume_header(DICOM_SERIES)
    volume = read_volume(DICOM_SERIES)
    assert size == (512, 512, 20) == volume.array.shape[::-1]
    assert spacing == pytest.approx(volume.spacing)
