"""The Slicer bridge runs the engine as a subprocess on nodes of a real MRML scene."""

from __future__ import annotations

import os

import pytest
from conftest import DICOM_SERIES, load_volume_node


def _scene_snapshot(scene):
    return [(scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetMTime()) for i in range(scene.GetNumberOfNodes())]


def test_info_runs_through_the_subprocess_and_reports_progress(tmp_path, scene, oblique_volume):
    from deepdiag.image_io import write_volume
    from DeepDiagLib import EngineTask

    volume_node = load_volume_node(scene, write_volume(oblique_volume, tmp_path / "oblique.nrrd"))
    before = _scene_snapshot(scene)
    events = []
    with EngineTask("info", [volume_node]) as task:
        result = task.run(onEvent=events.append, timeout=120)
        work_dir = task.workDir
    progress = [e for e in events if e["event"] == "progress"]

    assert result["size"] == [13, 11, 9]
    assert result["spacing"] == pytest.approx(oblique_volume.spacing, abs=1e-12)
    assert len(progress) >= 2
    assert progress[-1]["fraction"] == 1.0
    assert [e["fraction"] for e in progress] == sorted(e["fraction"] for e in progress)
    assert _scene_snapshot(scene) == before, "exporting the input must not change the user's node or the scene"
    assert not work_dir.exists(), "temporary files must be removed"


def test_cancelled_run_leaves_the_scene_unchanged_and_no_files(scene):
    from DeepDiagLib import EngineError, EngineTask

    volume_node = load_volume_node(scene, DICOM_SERIES / sorted(os.listdir(DICOM_SERIES))[0])
    before = _scene_snapshot(scene)
    task = EngineTask("info", [volume_node])
    task.start()
    task.cancel()
    with pytest.raises(EngineError) as raised:
        task.run(timeout=60)
    task.cleanup()

    assert raised.value.cancelled
    assert not task.process.running
    assert _scene_snapshot(scene) == before
    assert not task.workDir.exists()


def test_engine_failure_reaches_the_caller_as_one_clear_message(scene):
    from DeepDiagLib import EngineError, EngineProcess

    process = EngineProcess(["info", "/no/such/scan.nrrd"])
    with pytest.raises(EngineError, match=r"/no/such/scan.nrrd: no such file or folder") as raised:
        process.wait(timeout=120)
    assert raised.value.returncode == 1
    assert not raised.value.cancelled


def test_a_missing_result_file_adds_no_node(tmp_path, scene):
    from DeepDiagLib import addFiducialsFromFile, addSegmentationFromFile

    count = scene.GetNumberOfNodes()
    (tmp_path / "broken.seg.nrrd").write_text("not an image")
    with pytest.raises(OSError, match="broken.seg.nrrd"):
        addSegmentationFromFile(scene, tmp_path / "broken.seg.nrrd")
    with pytest.raises(OSError, match="missing.mrk.json"):
        addFiducialsFromFile(scene, tmp_path / "missing.mrk.json")
    assert scene.GetNumberOfNodes() == count


def test_the_self_tests_sample_is_a_chest_ct_volume_node(scene, tmp_path):
    from DeepDiagLib import sampleChestVolumeNode

    node = sampleChestVolumeNode(scene, tmp_path / "sample")
    assert node.GetScene() is scene and node.GetName() == "DeepDiag sample chest"
    assert node.GetImageData().GetDimensions() == (160, 160, 100)
    assert node.GetSpacing() == pytest.approx((2.2, 2.2, 3.75))
    assert len(list((tmp_path / "sample" / "truth").glob("*.json"))) == 1
