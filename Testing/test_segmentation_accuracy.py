"""The shipped segmentation model finds lungs and nodules on held-out phantoms (seeds never used
in training), through the command line and through the Slicer logic on a real MRML scene.

The bar here is a regression bar of the newest lung-nodules-seg on fewer, coarser cases, so that CI
stays fast. It lies below issue 4's target (nodule Dice 0.80, sensitivity 0.90, <= 1 false
positive per scan), which the shipped versions do not reach yet; see the model card for their figures.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_volume_node, run_cli
from deepdiag.image_io import read_volume
from deepdiag.segmentation_file import read_segmentation

HELD_OUT_SEED = 31  # training used seeds 1000 and 2000, tuning seed 8, the card's evaluation seed 7
CASE_OPTIONS = ["--size", "256", "256", "150", "--spacing", "1.4", "1.4", "2.5", "--nodules", "2", "3", "--diameter", "6", "24"]


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held_out")
    made = run_cli("phantom", "-o", str(folder / "truth"), "--cases", "3", "--seed", str(HELD_OUT_SEED), "--progress", "none", *CASE_OPTIONS)
    assert made.returncode == 0, made.stderr
    images = sorted(str(p) for p in (folder / "truth" / "images").iterdir())
    segmented = run_cli("segment", *images, "-o", str(folder / "pred"), "--device", "cpu", "--progress", "none")
    assert segmented.returncode == 0, segmented.stderr
    return folder


def test_shipped_model_meets_a_smaller_bar_on_held_out_cases(held_out):
    result = run_cli("evaluate", "segmentation", "--truth", str(held_out / "truth"), "--pred", str(held_out / "pred"), "--progress", "none")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["nodules_ge6mm"] >= 5
    assert figures["lungs_dice"] >= 0.95
    # lung-nodules-seg@3 measured 0.88, 0.875 (7 of 8) and 1.33 on these cases (@2: 0.84, 0.75, 0.33);
    # the bar allows one more missed nodule and about one more false positive per scan
    assert figures["nodule_dice_ge6mm"] >= 0.75
    assert figures["sensitivity_ge6mm"] >= 0.75
    assert figures["false_positives_per_scan"] <= 2.5


def test_segment_logic_on_a_real_scene_puts_nodules_where_the_truth_has_them(scene, held_out):
    import slicer
    from DeepDiagLib.segmentation_logic import segment_volume_node
    from vtkmodules.util.numpy_support import vtk_to_numpy

    image = max(sorted((held_out / "truth" / "images").iterdir()), key=lambda path: _engine_hits(held_out, path.name))
    truth = json.loads((held_out / "truth" / "truth" / f"{image.name[:-5]}.json").read_text())
    instances = read_volume(held_out / "truth" / "instances" / image.name).array
    volume_node = load_volume_node(scene, image)
    node = segment_volume_node(scene, volume_node, device="cpu", timeout=900)

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
    assert np.array_equal(predicted, engine_labels.array == 2), "Slicer must show exactly what the engine predicted"
    hits = [n for n in truth["nodules"] if (predicted & (instances == n["id"])).sum() > 0.5 * (instances == n["id"]).sum()]
    assert hits, "no truth nodule is more than half covered by the nodule segment"
    assert predicted[instances > 0].sum() > 0.5 * predicted.sum(), "most nodule voxels in Slicer must lie on truth nodules"


def _engine_hits(folder, name: str) -> int:
    """Truth nodules that the engine's prediction of a case overlaps (picks the case to show in Slicer)."""
    predicted, _ = read_segmentation(folder / "pred" / f"{name[:-5]}.seg.nrrd")
    instances = read_volume(folder / "truth" / "instances" / name).array
    return len(set(np.unique(instances[predicted.array == 2])) - {0})
