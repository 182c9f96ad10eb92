"""Geometry survives reading and writing exactly, and matches what Slicer computes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import DICOM_SERIES, load_volume_node

from deepdiag.geometry import Volume, lps_to_ras
from deepdiag.image_io import input_stem, read_volume, write_volume


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_round_trip_of_oblique_anisotropic_volume_is_exact(tmp_path, oblique_volume, suffix):
    first = write_volume(oblique_volume, tmp_path / f"first{suffix}")
    once = read_volume(first)
    twice = read_volume(write_volume(once, tmp_path / f"second{suffix}"))

    assert np.array_equal(twice.array, oblique_volume.array)
    assert twice.array.dtype == oblique_volume.array.dtype
    # Geometry is kept to the last digit the format stores: MHA keeps spacing and direction
    # as written; NRRD keeps spacing × direction with 17 significant digits, so splitting it
    # back may differ in the last bit (1e-16 relative) and no more.
    if suffix == ".mha":
        assert once.spacing == oblique_volume.spacing and once.origin == oblique_volume.origin
        assert np.array_equal(once.direction, oblique_volume.direction)
    assert twice.same_grid(once) and once.same_grid(oblique_volume)
    assert np.allclose(twice.ijk_to_lps_matrix(), oblique_volume.ijk_to_lps_matrix(), rtol=0, atol=1e-12)


def test_nifti_keeps_geometry_to_its_single_precision(tmp_path, oblique_volume):
    again = read_volume(write_volume(oblique_volume, tmp_path / "volume.nii.gz"))
    assert np.array_equal(again.array, oblique_volume.array)
    assert np.allclose(again.ijk_to_lps_matrix(), oblique_volume.ijk_to_lps_matrix(), atol=1e-4)


def test_ijk_to_ras_matches_slicer_for_the_same_file(tmp_path, oblique_volume, scene):
    import vtk

    path = write_volume(oblique_volume, tmp_path / "oblique.nrrd")
    node = load_volume_node(scene, path)
    slicer_matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(slicer_matrix)
    slicer_ijk_to_ras = np.array([[slicer_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])

    engine_volume = read_volume(path)
    assert np.allclose(engine_volume.ijk_to_ras_matrix(), slicer_ijk_to_ras, rtol=0, atol=1e-9)
    voxel = np.array([4, 7, 3])
    assert np.allclose(engine_volume.ijk_to_ras(voxel), (slicer_ijk_to_ras @ [*voxel, 1])[:3], atol=1e-9)


def test_point_conversions_invert_each_other(oblique_volume):
    points = np.array([[0, 0, 0], [12, 10, 8], [3.5, 2.25, 7.75]])
    lps = oblique_volume.ijk_to_lps(points)
    assert np.allclose(oblique_volume.lps_to_ijk(lps), points, atol=1e-9)
    assert np.allclose(lps_to_ras(lps_to_ras(lps)), lps)
    assert np.allclose(oblique_volume.ijk_to_ras(points)[:, :2], -lps[:, :2])


def test_shared_dicom_series_loads_with_its_geometry_and_hounsfield_units():
    volume = read_volume(DICOM_SERIES)
    assert volume.size == (512, 512, 20)
    assert np.allclose(volume.spacing, (0.9765625, 0.9765625, 2.0))
    # Hounsfield units: air at about -1000 below the body, soft tissue above 0, bone higher.
    assert volume.array.min() <= -1000
    assert np.median(volume.array[volume.array > -200]) > 0
    assert volume.array.max() > 700
    assert input_stem(DICOM_SERIES) == "abdomen_ct_dicom"


def test_output_names_drop_image_extensions(tmp_path):
    for name, stem in [("case.nii.gz", "case"), ("a.b.nrrd", "a.b"), ("scan.seg.nrrd", "scan"), ("x.mha", "x")]:
        assert input_stem(tmp_path / name) == stem


def test_volume_refuses_arrays_that_are_not_3d():
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((4, 4)), (1, 1, 1), (0, 0, 0), np.eye(3))


def test_failed_write_leaves_no_file(tmp_path, oblique_volume, monkeypatch):
    target = tmp_path / "out.nrrd"

    def broken_writer(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_writer)
    with pytest.raises(RuntimeError):
        write_volume(oblique_volume, target)
    assert list(tmp_path.iterdir()) == []
