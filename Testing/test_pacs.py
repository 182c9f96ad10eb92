"""deepdiag pacs against a real Orthanc: studies in over DICOMweb, SEG and SR back as new series of
each study, and a study whose series cannot be read gets an error row and nothing stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
import SimpleITK as sitk
from conftest import DICOM_SERIES, SMALL_CASE, assert_seg_matches, errors_of_dciodvfy, run_cli, with_uids
from orthanc_server import DICOMWEB_PLUGIN, get, running_orthanc, upload


def _modalities_by_study(server_root: str) -> dict[str, list[str]]:
    """StudyInstanceUID -> the modalities of its series in Orthanc, sorted."""
    found = {}
    for orthanc_id in get(server_root, "/studies"):
        study = get(server_root, f"/studies/{orthanc_id}")
        modalities = [get(server_root, f"/series/{s}")["MainDicomTags"]["Modality"] for s in study["Series"]]
        found[study["MainDicomTags"]["StudyInstanceUID"]] = sorted(modalities)
    return found


def _series_uid(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)


def _study_uid(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory) -> dict:
    """A phantom study, the real shared series (its UIDs put back) and a phantom study missing a
    slice go into Orthanc; ``deepdiag pacs --task analyze`` runs on all three."""
    assert shutil.which("Orthanc") and DICOMWEB_PLUGIN.exists(), "make test installs orthanc and orthanc-dicomweb"
    root = tmp_path_factory.mktemp("pacs")
    made = run_cli(
        "phantom",
        "-o",
        str(root / "phantoms"),
        "--cases",
        "3",
        "--seed",
        "5",
        "--dicom",
        *SMALL_CASE,
        "--progress",
        "none",
    )
    assert made.returncode == 0, made.stderr
    good = [root / "phantoms" / "dicom" / "phantom_s5_000", with_uids(DICOM_SERIES, root / "real")]
    broken = root / "phantoms" / "dicom" / "phantom_s5_001"
    (broken / "slice_0050.dcm").unlink()  # a gap in the middle: DeepDiag refuses the series
    with running_orthanc(root / "orthanc") as (server_root, server):
        for folder in [*good, broken]:
            upload(server_root, sorted(folder.iterdir()))
        studies = [_study_uid(f) for f in [*good, broken]]
        result = run_cli(
            "pacs",
            f"{server_root}/dicom-web",
            "--task",
            "analyze",
            "-o",
            str(root / "out"),
            *(a for s in studies for a in ("--study", s)),
            "--progress",
            "json",
        )
        series_of = _modalities_by_study(server_root)
        query = f"{server_root}/dicom-web?PatientID=phantom_s5_000"
        batch = run_cli("batch", query, "-o", str(root / "batch"), "--task", "segment", "--workers", "1",
                        "--progress", "json")  # fmt: skip
        series_after_batch = _modalities_by_study(server_root)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {
        "result": result,
        "summary": next(e for e in events if e.get("event") == "result"),
        "studies": studies,
        "series_of": series_of,
        "server_ended": server.poll() is not None,
        "batch": batch,
        "batch_out": root / "batch",
        "series_after_batch": series_after_batch,
        "out": root / "out",
        "sources": {_series_uid(f): f for f in good},
    }


def test_each_readable_study_gets_a_seg_and_an_sr_series_back_in_the_pacs(round_trip):
    for study in round_trip["studies"][:2]:
        assert round_trip["series_of"][study] == ["CT", "SEG", "SR"], study


def test_the_unreadable_study_is_one_error_row_and_nothing_is_stored_for_it(round_trip):
    result, summary, broken = round_trip["result"], round_trip["summary"], round_trip["studies"][2]
    assert result.returncode == 1  # part of the batch failed
    assert summary["summary"] == {**summary["summary"], "done": 2, "failed": 1}
    (failure,) = summary["failed"]
    assert failure["input"].startswith(f"{broken}/") and "not evenly sliced" in failure["error"]
    assert round_trip["series_of"][broken] == ["CT"]


def test_what_is_stored_is_what_was_written_locally(round_trip):
    for output in round_trip["summary"]["outputs"]:
        written = [
            str(pydicom.dcmread(output[k], stop_before_pixels=True).SOPInstanceUID) for k in ("dicom_seg", "dicom_sr")
        ]
        assert output["stored"] == written
    assert not (round_trip["out"] / ".pacs-download").exists()  # retrieved series are not left behind


def test_orthanc_is_stopped_after_the_test(round_trip):
    assert round_trip["server_ended"]


def test_an_unreachable_pacs_is_one_error_line(tmp_path, capsys):
    from deepdiag.cli import main

    url = "http://127.0.0.1:9/dicom-web"
    assert main(["pacs", url, "--study", "1.2.3", "-o", str(tmp_path / "out"), "--progress", "none"]) == 1
    assert capsys.readouterr().err.strip() == f"deepdiag: error: {url}: cannot reach the PACS (ConnectionError)"


def test_every_stored_report_passes_dciodvfy_and_a_scan_without_findings_says_so(round_trip):
    for output in round_trip["summary"]["outputs"]:
        assert errors_of_dciodvfy(Path(output["dicom_seg"])) == []
        assert errors_of_dciodvfy(Path(output["dicom_sr"])) == []
        content = hd.sr.srread(output["dicom_sr"]).content
        findings = json.loads(Path(output["findings"]).read_text())["findings"]
        assert len(content.get_volumetric_roi_measurement_groups()) == len(findings)
        if not findings:
            (group,) = content.get_image_measurement_groups()
            evaluations = [(q.name.meaning, q.value.meaning) for q in group.get_qualitative_evaluations()]
            assert (group.tracking_identifier, evaluations) == ("No nodule found", [("Nodule", "Absent")])
    assert any(
        output["findings"] and not json.loads(Path(output["findings"]).read_text())["findings"]
        for output in round_trip["summary"]["outputs"]
    ), "the real abdominal series has no nodule finding"


def test_the_results_reference_the_series_they_were_made_from(round_trip):
    for output in round_trip["summary"]["outputs"]:
        seg = pydicom.dcmread(output["dicom_seg"], stop_before_pixels=True)
        sr = pydicom.dcmread(output["dicom_sr"])
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == output["series"]
        assert seg.StudyInstanceUID == sr.StudyInstanceUID == output["study"]
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        assert output["series"] in {item.SeriesInstanceUID for item in evidence}


def test_a_ray_batch_over_a_pacs_query_stores_its_results_back(round_trip):
    batch, studies = round_trip["batch"], round_trip["studies"]
    assert batch.returncode == 0, batch.stderr
    summary = next(json.loads(line) for line in batch.stdout.splitlines() if '"event": "result"' in line)
    assert (summary["scans"], summary["done"], summary["failed"]) == (1, 1, [])  # the query matched one study
    assert round_trip["series_after_batch"][studies[0]] == ["CT", "SEG", "SEG", "SR"]  # a second SEG: the batch's
    assert round_trip["series_after_batch"][studies[1]] == round_trip["series_of"][studies[1]]
    assert not (round_trip["batch_out"] / ".pacs-download").exists()


def test_the_stored_seg_holds_the_seg_nrrd_voxels_on_the_pacs_series_slices(round_trip):
    for output in round_trip["summary"]["outputs"]:  # a phantom, and the real scanner series (JPEG 2000)
        assert_seg_matches(
            Path(output["dicom_seg"]), Path(output["segmentation"]), round_trip["sources"][output["series"]]
        )


def test_analyze_takes_the_real_dicom_series_and_writes_its_report_on_its_grid(round_trip):
    real = next(o for o in round_trip["summary"]["outputs"] if round_trip["sources"][o["series"]].name == "real")
    assert Path(real["report"]).is_file()
    written = sitk.ReadImage(real["segmentation"])
    source = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(round_trip["sources"][real["series"]])))
    assert written.GetSize() == source.GetSize() == (512, 512, 20)
    assert written.GetOrigin() == pytest.approx(source.GetOrigin())
    # the series is an abdomen with the lung bases at its top: some lung, not a blank result
    assert (sitk.GetArrayViewFromImage(written) == 1).sum() > 1000
