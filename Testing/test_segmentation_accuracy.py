"""The shipped segmentation model finds lungs and nodules on held-out phantoms (seeds never used
in training), through the command line and through the Slicer logic on a real MRML scene.

The bar here is a regression bar of the newest lung-nodules-seg on fewer cases with thick slices,
so that CI stays fast. It lies below issue 4's target (nodule Dice 0.80, sensitivity 0.90, <= 1
false positive per scan); see the model card for the figures on the issue's held-out cases.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_volume_node, run_cli
from scipy import ndimage

from deepdiag.image_io import read_volume
from deepdiag.segmentation_file import read_segmentation

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
HELD_OUT_SEED = 31  # training used seeds 1000 and 2000, tuning seed 8, the card's evaluation seed 7
# thick slices keep the cases quick to make; the in-plane spacing stays within the training range
# (0.6-0.9 mm), as the segmentation model and its candidate filter were trained and tuned there
CASE_OPTIONS = [
    "--size",
    "420",
    "420",
    "150",
    "--spacing",
    "0.85",
    "0.85",
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
    segmented = run_cli("segment", *images, "-o", str(folder / "pred"), "--device", "cpu", "--progress", "json")
    assert segmented.returncode == 0, segmented.stderr
    (folder / "events.jsonl").write_text(segmented.stdout)
    return folder


def test_progress_messages_say_what_is_being_done_to_which_scan(held_out):
    events = [json.loads(line) for line in (held_out / "events.jsonl").read_text().splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert {"infer", "postprocess"} <= {e["stage"] for e in progress}
    for event in progress:  # Slicer's status line shows the message: never a bare stage name or file name
        words = event["message"].split()
        assert words[0] != event["stage"] and not words[0].startswith("phantom_s31"), event
        assert "phantom_s31_00" in event["message"] and "of 3)" in event["message"], event


def test_shipped_model_meets_a_smaller_bar_on_held_out_cases(held_out):
    result = run_cli(
        "evaluate",
        "segmentation",
        "--truth",
        str(held_out / "truth"),
        "--pred",
        str(held_out / "pred"),
        "--progress",
        "none",
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["nodules_ge6mm"] >= 5
    assert figures["lungs_dice"] >= 0.95
    # lung-nodules-seg@10 with its candidate filter measured 0.88, 1.00 (7 of 7) and 1.00 on these cases,
    # spots on their 2.5 mm slices included (@8's filter searching them: 3.33 false positives per scan);
    # the bar allows two missed nodules and about one more false positive per scan
    assert figures["nodule_dice_ge6mm"] >= 0.75
    assert figures["sensitivity_ge6mm"] >= 0.7
    assert figures["false_positives_per_scan"] <= 2.0


def test_segment_logic_on_a_real_scene_puts_nodules_where_the_truth_has_them(scene, held_out):
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from DeepDiagLib import SegmentationLogic

    image = max(sorted((held_out / "truth" / "images").iterdir()), key=lambda path: _engine_hits(held_out, path.name))
    truth = json.loads((held_out / "truth" / "truth" / f"{image.name[:-5]}.json").read_text())
    instances = read_volume(held_out / "truth" / "instances" / image.name).array
    volume_node = load_volume_node(scene, image)
    node = SegmentationLogic(scene).process(volume_node, device="cpu", timeout=900)

    segmentation = node.GetSegmentation()
    nodule_id = segmentation.GetSegmentIdBySegmentName("Lung nodules")
    assert segmentation.GetSegmentIdBySegmentName("Lungs")
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(labelmap)
    ids = __import__("vtk").vtkStringArray()
    ids.InsertNextValue(nodule_id)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    assert logic.ExportSegmentsToLabelmapNode(node, ids, labelmap, volume_node)
    dims = labelmap.GetImageData().GetDimensions()
    predicted = vtk_to_numpy(labelmap.GetImageData().GetPointData().GetScalars()).reshape(dims[::-1]) > 0
    assert predicted.shape == instances.shape
    engine_labels, _ = read_segmentation(held_out / "pred" / f"{image.name[:-5]}.seg.nrrd")
    engine = engine_labels.array == 2
    # the scene's copy of the volume goes through MRML before the engine sees it; a few voxels at
    # the edge of a component may fall the other way, but never a whole nodule
    assert 2 * (predicted & engine).sum() >= 0.99 * (predicted.sum() + engine.sum()), (
        "Slicer must show what the engine predicted"
    )
    assert ndimage.label(predicted, _CONNECTIVITY)[1] == ndimage.label(engine, _CONNECTIVITY)[1]
    hits = [
        n for n in truth["nodules"] if (predicted & (instances == n["id"])).sum() > 0.5 * (instances == n["id"]).sum()
    ]
    assert hits, "no truth nodule is more than half covered by the nodule segment"
    assert predicted[instances > 0].sum() > 0.5 * predicted.sum(), (
        "most nodule voxels in Slicer must lie on truth nodules"
    )


def _engine_hits(folder, name: str) -> int:
    """Truth nodules that the engine's prediction of a case overlaps (picks the case to show in Slicer)."""
    predicted, _ = read_segmentation(folder / "pred" / f"{name[:-5]}.seg.nrrd")
    instances = read_volume(folder / "truth" / "instances" / name).array
    return len(set(np.unique(instances[predicted.array == 2])) - {0})
