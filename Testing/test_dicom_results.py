"""--dicom-out: DICOM SEG and SR results that a PACS and Slicer's DICOM module accept, holding the
same voxels, positions and measurements as the Slicer files of the same run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import DICOM_SERIES, SMALL_CASE, assert_seg_matches, errors_of_dciodvfy, run_cli, source_uids

from deepdiag.image_io import dicom_series_files, read_volume

CENTER = "111010"  # DCM "Center"
TYPE_MEANINGS = {"solid": "Solid nodule", "part-solid": "Part-solid nodule", "ground-glass": "Ground-glass nodule"}
MEASUREMENTS = {"Long axis": "long_axis_mm", "Short axis": "short_axis_mm", "Volume": "volume_mm3"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A phantom written as a DICOM series, analyzed and detected with --dicom-out (the real shared
    series goes through analyze --dicom-out in test_pacs.py)."""
    root = tmp_path_factory.mktemp("dicom-results")
    made = run_cli("phantom", "-o", str(root / "phantom"), "--seed", "5", "--dicom", "--progress", "none", *SMALL_CASE)
    assert made.returncode == 0, made.stderr
    series = root / "phantom" / "dicom" / "phantom_s5_000"
    for command in ("analyze", "detect"):
        result = run_cli(command, str(series), "-o", str(root / command), "--dicom-out", "--progress", "none")
        assert result.returncode == 0, result.stderr
    return {"root": root, "series": series}


def test_phantom_dicom_series_is_valid_ct_with_the_phantoms_geometry_and_values(runs):
    series = runs["series"]
    assert not errors_of_dciodvfy(sorted(series.iterdir())[0])
    from_dicom, from_nrrd = (
        read_volume(series),
        read_volume(runs["root"] / "phantom" / "images" / f"{series.name}.nrrd"),
    )
    assert from_dicom.same_grid(from_nrrd)
    assert np.array_equal(from_dicom.array, np.round(from_nrrd.array))


@pytest.mark.parametrize(
    "name", ["analyze/phantom_s5_000.seg.dcm", "analyze/phantom_s5_000.sr.dcm", "detect/phantom_s5_000.sr.dcm"]
)
def test_dicom_results_pass_dciodvfy_without_errors(runs, name):
    assert shutil.which("dciodvfy"), "dciodvfy (Debian dicom3tools) is installed by make test"
    assert errors_of_dciodvfy(runs["root"] / name) == []


def test_seg_holds_the_voxels_of_the_seg_nrrd_on_the_source_slices(runs):
    folder = runs["root"] / "analyze"
    assert_seg_matches(folder / "phantom_s5_000.seg.dcm", folder / "phantom_s5_000.seg.nrrd", runs["series"])


def _groups(path: Path) -> list:
    return hd.sr.srread(path).content.get_volumetric_roi_measurement_groups()


def _center(group) -> np.ndarray:
    item = next(i for i in group[0].ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == CENTER)
    return np.asarray(item.GraphicData, dtype=float)


@pytest.mark.parametrize("run", ["analyze", "detect"])
def test_sr_has_one_group_per_finding_with_the_values_of_the_findings_json(runs, run):
    findings = json.loads((runs["root"] / run / "phantom_s5_000.findings.json").read_text())["findings"]
    groups = _groups(runs["root"] / run / "phantom_s5_000.sr.dcm")
    assert findings and [g.tracking_identifier for g in groups] == [f["id"] for f in findings]
    assert len({g.tracking_uid for g in groups}) == len(groups)
    for group, finding in zip(groups, findings):
        assert np.allclose(_center(group), finding["center_lps"], atol=1e-3)  # SCOORD3D is float32 LPS mm
        measured = {m.name.meaning: m.value for m in group.get_measurements()}
        assert measured["Diameter"] == pytest.approx(finding["diameter_mm"])
        assert measured["Certainty of Finding"] == pytest.approx(finding["score"])
        evaluations = {q.name.meaning: q.value.meaning for q in group.get_qualitative_evaluations()}
        if run == "detect":
            assert set(measured) == {"Diameter", "Certainty of Finding"} and not evaluations
            continue
        for meaning, key in MEASUREMENTS.items():
            assert measured[meaning] == pytest.approx(finding[key])
        assert measured["Mean Attenuation Coefficient"] == pytest.approx(finding["mean_hu"])
        assert measured["Probability of the nodule type"] == pytest.approx(finding["probabilities"][finding["type"]])
        assert evaluations["Lung-RADS category"] == f"Lung-RADS {finding['lung_rads']}"
        assert evaluations["Nodule type"] == TYPE_MEANINGS[finding["type"]]


def test_each_analyzed_finding_references_its_own_nodule_segment_or_its_centre(runs):
    folder = runs["root"] / "analyze"
    findings = json.loads((folder / "phantom_s5_000.findings.json").read_text())["findings"]
    seg = hd.seg.segread(folder / "phantom_s5_000.seg.dcm")
    numbers = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=source_uids(runs["series"]), combine_segments=True, skip_overlap_checks=True
    )
    volume = read_volume(runs["series"])
    referenced = []
    for group, finding in zip(_groups(folder / "phantom_s5_000.sr.dcm"), findings):
        if finding["measured_on"] != "segmentation":
            assert group.referenced_segment is None and group.roi is not None  # the centre as a POINT
            continue
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        (number,) = group.referenced_segment.referenced_segment_numbers
        assert seg.get_segment_description(number).SegmentLabel.startswith("Lung nodule")
        voxels = volume.ijk_to_lps(np.argwhere(numbers == number)[:, ::-1])
        nearest = np.min(np.linalg.norm(voxels - finding["center_lps"], axis=1))
        assert nearest <= finding["long_axis_mm"] / 2, f"{finding['id']}: its segment lies {nearest:.1f} mm away"
        referenced.append(number)
    assert referenced and len(set(referenced)) == len(referenced)


def test_results_join_the_source_study_as_new_series(runs):
    source = pydicom.dcmread(dicom_series_files(runs["series"])[0], stop_before_pixels=True)
    seg = pydicom.dcmread(runs["root"] / "analyze" / "phantom_s5_000.seg.dcm", stop_before_pixels=True)
    sr = pydicom.dcmread(runs["root"] / "analyze" / "phantom_s5_000.sr.dcm")
    for result in (seg, sr):
        assert (result.StudyInstanceUID, result.PatientID) == (source.StudyInstanceUID, source.PatientID)
        assert result.SeriesInstanceUID != source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage


def test_dicom_out_refuses_a_file_input_before_any_work(tmp_path, capsys):
    from deepdiag.cli import main

    image = tmp_path / "scan.nrrd"
    image.write_bytes(b"refused before it is read")
    assert main(["segment", str(image), "-o", str(tmp_path / "out"), "--dicom-out", "--progress", "none"]) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"deepdiag: error: {image}: is a file, not a DICOM")
    assert not list((tmp_path / "out").glob("*"))


def test_dicom_out_refuses_a_series_whose_uids_were_emptied_before_writing_anything(tmp_path, capsys):
    from deepdiag.cli import main

    arguments = ["segment", str(DICOM_SERIES), "-o", str(tmp_path / "out"), "--dicom-out", "--progress", "none"]
    assert main(arguments) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"deepdiag: error: {DICOM_SERIES}: ") and "has no StudyInstanceUID" in message
    assert not list((tmp_path / "out").glob("*"))
