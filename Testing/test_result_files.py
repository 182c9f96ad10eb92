"""Segmentation and markups files written by the engine load in Slicer as intended."""

from __future__ import annotations

import numpy as np

from deepdiag.geometry import Volume
from deepdiag.markups_file import ControlPoint, read_fiducials, write_fiducials
from deepdiag.segmentation_file import read_segmentation, write_segmentation
from deepdiag.terminology import LUNG_NODULES, LUNGS


def _labelmap(oblique_volume: Volume) -> Volume:
    labels = np.zeros(oblique_volume.array.shape, dtype=np.uint8)
    labels[2:7, 3:9, 2:10] = 1
    labels[4:6, 5:7, 5:8] = 2
    return oblique_volume.with_array(labels)


def test_seg_nrrd_loads_in_slicer_with_names_colors_and_voxel_counts(tmp_path, oblique_volume, scene):
    from DeepDiagLib import addSegmentationFromFile

    labelmap = _labelmap(oblique_volume)
    path = write_segmentation(tmp_path / "case.seg.nrrd", labelmap, [LUNGS, LUNG_NODULES])
    node = addSegmentationFromFile(scene, path, name="case segmentation")
    segmentation = node.GetSegmentation()

    assert segmentation.GetNumberOfSegments() == 2
    for segment_class in (LUNGS, LUNG_NODULES):
        segment_id = segmentation.GetSegmentIdBySegmentName(segment_class.name)
        segment = segmentation.GetSegment(segment_id)
        assert segment is not None, f"no segment named {segment_class.name}"
        assert np.allclose(segment.GetColor(), segment_class.color, atol=1e-5)
        voxels = _segment_voxels(node, segment_id)
        assert int(np.count_nonzero(voxels)) == int(np.count_nonzero(labelmap.array == segment_class.label_value))
        assert f"SCT^{segment_class.type.value}^{segment_class.type.meaning}" in segment.GetTerminology()


def _segment_voxels(node, segment_id: str) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    labelmap = node.GetSegmentation().GetSegment(segment_id).GetRepresentation("Binary labelmap")
    values = vtk_to_numpy(labelmap.GetPointData().GetScalars())
    label_value = node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    return values == label_value


def test_seg_nrrd_lies_on_the_input_grid(tmp_path, oblique_volume):
    labelmap = _labelmap(oblique_volume)
    path = write_segmentation(tmp_path / "case.seg.nrrd", labelmap, [LUNGS, LUNG_NODULES])
    read_back, fields = read_segmentation(path)
    assert np.array_equal(read_back.array, labelmap.array)
    assert np.allclose(read_back.ijk_to_lps_matrix(), labelmap.ijk_to_lps_matrix(), atol=1e-12)
    assert [f["Name"] for f in fields] == ["Lungs", "Lung nodules"]


def test_mrk_json_loads_in_slicer_at_the_right_ras_positions(tmp_path, scene):
    from DeepDiagLib import addFiducialsFromFile

    points = [
        ControlPoint("N1", (10.5, -20.25, 30.0), "score 0.97, 8.1 mm"),
        ControlPoint("N2", (-5.0, 7.0, -12.0), "score 0.51"),
    ]
    path = write_fiducials(tmp_path / "case.mrk.json", points)
    node = addFiducialsFromFile(scene, path, name="case findings")

    assert node.GetNumberOfControlPoints() == 2
    for index, point in enumerate(points):
        ras = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(index, ras)
        assert np.allclose(ras, [-point.position_lps[0], -point.position_lps[1], point.position_lps[2]])
        assert node.GetNthControlPointLabel(index) == point.label
        assert node.GetNthControlPointDescription(index) == point.description
    assert [p.position_lps for p in read_fiducials(path)] == [p.position_lps for p in points]
