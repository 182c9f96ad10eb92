"""Synthetic chest CTs: reproducible, with truth that matches the voxels and realistic HU."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from scipy import ndimage

from deepdiag.image_io import read_volume

# A coarser grid than the default keeps the suite fast while nodules stay several voxels wide.
SMALL = ["--size", "192", "192", "120", "--spacing", "1.8", "1.8", "3.1"]


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantom")
    result = run_cli(
        "phantom",
        "-o",
        str(folder),
        "--cases",
        "3",
        "--seed",
        "11",
        "--nodules",
        "3",
        "4",
        "--diameter",
        "8",
        "24",
        "--progress",
        "none",
        *SMALL,
    )
    assert result.returncode == 0, result.stderr
    return folder


def _cases(folder):
    for truth_path in sorted((folder / "truth").glob("*.json")):
        name = truth_path.stem
        yield (
            json.loads(truth_path.read_text()),
            read_volume(folder / "images" / f"{name}.nrrd"),
            read_volume(folder / "labels" / f"{name}.nrrd"),
            read_volume(folder / "instances" / f"{name}.nrrd"),
        )


def _all_nodules(folder):
    for truth, ct, labels, instances in _cases(folder):
        for nodule in truth["nodules"]:
            yield nodule, ct, labels, instances


def test_same_seed_and_options_give_identical_files(phantom_dir, tmp_path):
    again = tmp_path / "again"
    result = run_cli(
        "phantom",
        "-o",
        str(again),
        "--cases",
        "3",
        "--seed",
        "11",
        "--nodules",
        "3",
        "4",
        "--diameter",
        "8",
        "24",
        "--progress",
        "none",
        *SMALL,
    )
    assert result.returncode == 0, result.stderr
    for kind in ("images", "labels", "instances", "truth"):
        for original in sorted((phantom_dir / kind).iterdir()):
            assert (again / kind / original.name).read_bytes() == original.read_bytes(), (
                f"{kind}/{original.name} differs"
            )


def test_another_seed_gives_another_case(phantom_dir, tmp_path):
    result = run_cli("phantom", "-o", str(tmp_path), "--seed", "12", "--progress", "none", *SMALL)
    assert result.returncode == 0, result.stderr
    other = read_volume(next((tmp_path / "images").iterdir()))
    first = read_volume(sorted((phantom_dir / "images").iterdir())[0])
    assert not np.array_equal(other.array, first.array)


def test_outputs_share_one_grid_and_labels_agree_with_instances(phantom_dir):
    for truth, ct, labels, instances in _cases(phantom_dir):
        assert ct.array.dtype == np.int16
        assert ct.same_grid(labels) and ct.same_grid(instances)
        assert ct.size == (192, 192, 120)
        assert np.array_equal(labels.array == 2, instances.array > 0)
        assert sorted(np.unique(instances.array[instances.array > 0])) == [n["id"] for n in truth["nodules"]]


def test_every_truth_center_lies_inside_its_nodule(phantom_dir):
    checked = 0
    for nodule, ct, _, instances in _all_nodules(phantom_dir):
        i, j, k = np.rint(ct.lps_to_ijk(np.array(nodule["center_lps"]))).astype(int)
        assert instances.array[k, j, i] == nodule["id"]
        checked += 1
    assert checked >= 9


def test_truth_sizes_agree_with_the_voxel_masks_within_one_voxel(phantom_dir):
    for nodule, ct, _, instances in _all_nodules(phantom_dir):
        mask = instances.array == nodule["id"]
        voxel_mm3 = float(np.prod(ct.spacing))
        one_voxel = max(ct.spacing)
        assert nodule["volume_mm3"] == pytest.approx(mask.sum() * voxel_mm3, rel=1e-6)
        assert nodule["equivalent_diameter_mm"] == pytest.approx(
            (6 * mask.sum() * voxel_mm3 / np.pi) ** (1 / 3), abs=one_voxel
        )
        assert nodule["long_axis_diameter_mm"] == pytest.approx(_longest_axial_extent(mask, ct.spacing), abs=one_voxel)
        if nodule["location"] != "juxtapleural" and nodule["shape"] != "spiculated":
            assert nodule["equivalent_diameter_mm"] == pytest.approx(nodule["nominal_diameter_mm"], abs=one_voxel)


def _longest_axial_extent(mask, spacing):
    """Brute force over all voxel pairs in each axial slice (independent of the generator's hull method)."""
    longest = 0.0
    for k in np.unique(np.nonzero(mask)[0]):
        j, i = np.nonzero(mask[k])
        points = np.column_stack([i * spacing[0], j * spacing[1]])
        distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).max()
        longest = max(longest, distances + min(spacing[:2]))
    return longest


def test_nodules_lie_inside_the_lungs(phantom_dir):
    for nodule, _, labels, instances in _all_nodules(phantom_dir):
        mask = instances.array == nodule["id"]
        ring = ndimage.binary_dilation(mask) & ~mask
        lung_share = np.isin(labels.array[ring], (1, 2)).mean()
        if nodule["location"] == "juxtapleural":
            assert lung_share > 0.4, f"nodule {nodule['id']} sits mostly outside the lungs"
        else:
            assert lung_share == 1.0, f"{nodule['location']} nodule {nodule['id']} leaves the lungs"


def test_tissue_hounsfield_values_are_realistic(phantom_dir):
    solid, ground_glass = [], []
    for truth, ct, labels, instances in _cases(phantom_dir):
        assert -900 <= np.median(ct.array[labels.array == 1]) <= -800
        for nodule in truth["nodules"]:
            values = ct.array[instances.array == nodule["id"]]
            {"solid": solid, "ground-glass": ground_glass}.get(nodule["type"], []).append(float(np.median(values)))
    assert solid and ground_glass, "the fixture should produce both types"
    assert all(-100 <= v <= 100 for v in solid), solid
    assert all(-750 <= v <= -300 for v in ground_glass), ground_glass


def test_scanner_calibration_maps_every_voxel_to_scale_times_hu_plus_offset(phantom_dir, tmp_path):
    """Another imaging domain for fine-tuning: same anatomy and noise, other stored values."""
    result = run_cli(
        "phantom",
        "-o",
        str(tmp_path),
        "--seed",
        "11",
        "--nodules",
        "3",
        "4",
        "--diameter",
        "8",
        "24",
        "--hu-scale",
        "0.9",
        "--hu-offset",
        "120",
        "--progress",
        "none",
        *SMALL,
    )
    assert result.returncode == 0, result.stderr
    name = "phantom_s11_000.nrrd"
    plain = read_volume(phantom_dir / "images" / name).array.astype(np.float32)
    shifted = read_volume(tmp_path / "images" / name).array.astype(np.float32)
    inside = (plain > -1000) & (plain < 2500)  # away from the clipping limits
    assert np.abs(shifted[inside] - (0.9 * plain[inside] + 120)).max() <= 1.0  # rounding to integers
    assert np.array_equal(
        read_volume(tmp_path / "labels" / name).array, read_volume(phantom_dir / "labels" / name).array
    )


@pytest.mark.parametrize(
    "options, problem",
    [
        (["--size", "-5", "64", "64"], "--size"),
        (["--diameter", "0.5", "10"], "--diameter"),
        (["--diameter", "5", "61"], "--diameter"),
        (["--types", "calcified"], "--types"),
        (["--cases", "0"], "--cases"),
        (["--hu-scale", "3"], "--hu-scale"),
    ],
)
def test_bad_options_give_a_clear_error_and_write_nothing(tmp_path, options, problem):
    target = tmp_path / "out"
    result = run_cli("phantom", "-o", str(target), "--progress", "none", *SMALL, *options)
    assert result.returncode == 1
    assert result.stderr.startswith("deepdiag: error: ") and problem in result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists()


def test_preview_png_shows_three_planes(tmp_path):
    from PIL import Image

    result = run_cli(
        "phantom",
        "-o",
        str(tmp_path),
        "--preview",
        "--nodules",
        "1",
        "1",
        "--diameter",
        "10",
        "15",
        "--progress",
        "none",
        *SMALL,
    )
    assert result.returncode == 0, result.stderr
    with Image.open(next((tmp_path / "previews").iterdir())) as preview:
        assert preview.height == 384 and preview.width > 2 * 384
        pixels = np.asarray(preview.convert("RGB"))
    from deepdiag.preview import NODULE_OUTLINE

    outline_pixels = (pixels == NODULE_OUTLINE).all(axis=-1).sum()
    assert outline_pixels >= 3 * 8, "each of the three planes should outline the nodule"


def test_real_lidc_anatomy_keeps_its_real_nodule(shared_data, tmp_path):
    case2 = shared_data / "lidc_anatomy" / "case2"  # its nodule: about 12 mm (shared/data/README.md)
    result = run_cli(
        "phantom",
        "-o",
        str(tmp_path),
        "--anatomy",
        str(case2),
        "--nodules",
        "1",
        "1",
        "--diameter",
        "8",
        "15",
        "--progress",
        "none",
        "--size",
        "224",
        "224",
        "160",
        "--spacing",
        "1.5",
        "1.5",
        "2.5",
    )
    assert result.returncode == 0, result.stderr
    truth, ct, labels, instances = next(_cases(tmp_path))
    real = truth["nodules"][0]
    assert truth["anatomy"] == "masks:case2"
    assert real["id"] == 1 and real["shape"] == "real"
    assert real["equivalent_diameter_mm"] == pytest.approx(12.0, abs=1.5)
    i, j, k = np.rint(ct.lps_to_ijk(np.array(real["center_lps"]))).astype(int)
    assert instances.array[k, j, i] == 1
    assert -900 <= np.median(ct.array[labels.array == 1]) <= -800
    assert (labels.array == 1).sum() * np.prod(ct.spacing) / 1e6 == pytest.approx(_real_lung_litres(case2), rel=0.1), (
        "the lungs keep their real volume"
    )


def _real_lung_litres(folder):
    lungs = read_volume(folder / "lungs.nii.gz")
    return (lungs.array > 0).sum() * np.prod(lungs.spacing) / 1e6


def test_anatomy_folder_without_lung_mask_is_refused_before_writing(tmp_path):
    empty = tmp_path / "anatomy"
    empty.mkdir()
    (empty / "vessels.nii.gz").write_text("")
    target = tmp_path / "out"
    result = run_cli("phantom", "-o", str(target), "--anatomy", str(empty), "--progress", "none", *SMALL)
    assert result.returncode == 1
    assert "lungs.nii.gz" in result.stderr and str(empty) in result.stderr
    assert not target.exists()


def test_insertion_into_a_real_ct_keeps_its_grid_and_changes_only_the_nodules(shared_data, tmp_path):
    source = shared_data / "totalseg" / "chest_ct_crop_1p5mm.nii.gz"
    result = run_cli(
        "phantom",
        "-o",
        str(tmp_path),
        "--insert-into",
        str(source),
        "--cases",
        "2",
        "--nodules",
        "2",
        "3",
        "--diameter",
        "8",
        "16",
        "--types",
        "solid",
        "--progress",
        "none",
    )
    assert result.returncode == 0, result.stderr
    original = read_volume(source)
    seen = 0
    for truth, ct, labels, instances in _cases(tmp_path):
        assert ct.same_grid(original) and labels.same_grid(original)
        near_nodules = ndimage.binary_dilation(instances.array > 0, iterations=3)
        assert np.array_equal(ct.array[~near_nodules], original.array[~near_nodules])
        for nodule in truth["nodules"]:
            i, j, k = np.rint(ct.lps_to_ijk(np.array(nodule["center_lps"]))).astype(int)
            assert instances.array[k, j, i] == nodule["id"]
            placed_on = original.array[instances.array == nodule["id"]]
            assert np.median(placed_on) < -600, "the nodule was put where the real scan has lung parenchyma"
            assert -100 <= np.median(ct.array[instances.array == nodule["id"]]) <= 100
            seen += 1
    assert seen >= 4


def test_insertion_refuses_a_scan_without_lungs(shared_data, tmp_path):
    source = shared_data / "totalseg" / "abdomen_mr_3mm.nii.gz"
    result = run_cli("phantom", "-o", str(tmp_path / "out"), "--insert-into", str(source), "--progress", "none")
    assert result.returncode == 1
    assert "no lungs found" in result.stderr and str(source) in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_nodules_blur_computed_near_them_equals_the_whole_volumes_blur():
    """Insertion blurs a copy's nodules only in the box the blur can reach: the voxels must be the
    ones a blur of the whole scan gives, at the scan's corners as inside it."""
    from deepdiag.phantom.insertion import _blur_box, _blurred_in

    rng = np.random.default_rng(3)
    shape = (40, 60, 70)
    for corner in ((0, 0, 0), (18, 25, 30), (35, 55, 64)):  # on three faces of the volume, inside, on three others
        support = np.zeros(shape, dtype=bool)
        support[tuple(slice(c, c + 5) for c in corner)] = (
            rng.random((5, 5, 5))[tuple(slice(0, n - c) for c, n in zip(corner, shape))] > 0.3
        )
        values = np.where(support, rng.normal(0, 300, shape), 0).astype(np.float32)
        for sigma in ([0.3, 0.61, 0.61], [1.5, 0.8, 2.2]):
            whole = ndimage.gaussian_filter(values, sigma)
            assert np.array_equal(_blurred_in(values, _blur_box(support, sigma), sigma), whole)
    assert _blur_box(np.zeros(shape, bool), [1.0] * 3) is None
    assert not _blurred_in(np.zeros(shape, np.float32), None, [1.0] * 3).any()
