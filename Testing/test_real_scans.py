"""Real patient CTs: outside-field padding, the body, where findings can be, and the rules that
must hold on the scan's own grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED_DATA, run_cli
from scipy import ndimage

FULL_THORAX = {
    "thorax_4dct_phase00": SHARED_DATA / "chest_ct" / "thorax_4dct_phase00" / "ct.nii.gz",
    "covid_ricord_419639": SHARED_DATA / "chest_ct" / "covid_ricord_419639" / "ct.nii.gz",
}


def _padded(volume, value: float):
    """The scan with everything outside a centred circle of the slice set to ``value``, as a
    scanner pads outside its reconstruction field."""
    k, j, i = volume.array.shape
    jj, ii = np.mgrid[:j, :i]
    outside = (jj - j / 2) ** 2 + (ii - i / 2) ** 2 > (0.45 * min(i, j)) ** 2
    array = volume.array.astype(np.int16).copy()
    array[:, outside] = value
    return volume.with_array(array)


@pytest.mark.parametrize("padding", [-2048, -3024, -2000])
def test_modality_is_ct_whatever_the_scanners_padding(shared_data, padding):
    from deepdiag.image_io import read_volume
    from deepdiag.info import describe_volume, guess_modality

    volume = _padded(read_volume(shared_data / "totalseg" / "abdomen_ct_3mm.nii.gz"), padding)
    assert guess_modality(volume.array) == "CT"
    info = describe_volume(volume)
    assert info["modality_guess"] == "CT"
    assert info["intensity"]["outside_field_share"] > 0.1
    assert info["intensity"]["percentiles"]["0.5"] >= -1024  # the padding is no intensity


@pytest.mark.parametrize("name", sorted(FULL_THORAX))
def test_every_real_chest_ct_in_shared_data_is_called_ct(name):
    result = run_cli("info", str(FULL_THORAX[name]), "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["modality_guess"] == "CT"


def test_padding_is_neither_lung_nor_body(shared_data):
    from deepdiag.body_mask import find_body
    from deepdiag.image_io import read_volume
    from deepdiag.lung_mask import find_lungs

    # a scan with lungs to lose: the abdominal CT's lung bases are 75 mL on its own 3 mm grid
    volume = read_volume(FULL_THORAX["thorax_4dct_phase00"])
    padded = _padded(volume, -3024)
    outside = padded.array < -1024
    assert outside.mean() > 0.1
    assert not find_body(padded)[outside].any()
    lungs, padded_lungs = find_lungs(volume), find_lungs(padded)
    assert lungs.sum() * volume.voxel_volume_mm3() > 1e6  # over a litre
    assert not padded_lungs[outside].any()
    assert abs(int(padded_lungs.sum()) - int(lungs.sum())) <= 0.02 * lungs.sum()


def test_body_leaves_out_the_air_around_the_patient_and_the_table(shared_data):
    from deepdiag.body_mask import find_body
    from deepdiag.image_io import read_volume

    volume = read_volume(FULL_THORAX["thorax_4dct_phase00"])
    body = find_body(volume)
    middle = volume.array.shape[0] // 2
    assert not body[middle, 0].any() and not body[middle, -1].any()  # image corners: air, table
    assert body[middle, volume.array.shape[1] // 2, volume.array.shape[2] // 2]
    assert 0.2 < body.mean() < 0.6


def test_chest_keeps_lungs_and_nodules_inside_the_body_and_by_the_lungs():
    from deepdiag.segmentation.postprocess import keep_inside_chest

    probabilities = np.zeros((3, 10, 20, 20), np.float32)
    probabilities[0] = 1.0
    for region in [(slice(2, 8), slice(2, 8), slice(2, 8)), (slice(2, 8), slice(12, 18), slice(12, 18))]:
        probabilities[(1, *region)], probabilities[(0, *region)] = 1.0, 0.0  # two lung-labelled pieces
    probabilities[(2, 4, 0, slice(0, 3))], probabilities[(0, 4, 0, slice(0, 3))] = (
        1.0,
        0.0,
    )  # a "nodule" outside the body
    body = np.ones((10, 20, 20), bool)
    body[:, 0, :] = False
    lungs = np.zeros_like(body)
    lungs[3:6, 3:6, 3:6] = True  # the threshold finds only the first piece
    labels = np.argmax(keep_inside_chest(probabilities, body, lungs), axis=0)
    assert (labels[2:8, 2:8, 2:8] == 1).all()
    assert (labels[2:8, 12:18, 12:18] == 0).all()  # bowel gas the network took for lung
    assert (labels[:, 0] == 0).all()


def test_nodules_obey_the_cards_rules_on_the_scans_own_grid():
    from deepdiag.segmentation.postprocess import SMALLEST_NODULE_MM3, keep_nodules_on_output_grid

    labels = np.ones((20, 40, 40), np.uint8)
    nodule_map = np.zeros(labels.shape, np.float32)
    labels[5:10, 5:15, 5:15], nodule_map[5:10, 5:15, 5:15] = 2, 0.9  # 500 voxels: 1,250 mm3 at 2.5 mm slices
    labels[12, 30, 30:32], nodule_map[12, 30, 30:32] = 2, 0.9  # a 2-voxel sliver: 5 mm3
    labels[15, 5:10, 5:10], nodule_map[15, 5:10, 5:10] = 2, 0.4  # hesitant: peak below the rule
    labels[17, 30:33, 5:8], nodule_map[17, 30:33, 5:8] = 2, 0.97  # a spot nodule of 22 mm3: its own rule
    labels[19, 20, 20], nodule_map[19, 20, 20] = 2, 0.97  # a spot's sliver of 2.5 mm3
    spots = np.zeros(labels.shape, bool)
    spots[17, 31, 6] = spots[19, 20, 20] = True
    cleaned = keep_nodules_on_output_grid(
        labels.copy(), nodule_map, (2.5, 1.0, 1.0), 25.0, 0.5, ((spots, SMALLEST_NODULE_MM3),)
    )
    assert ndimage.label(cleaned == 2)[1] == 2
    assert (cleaned[5:10, 5:15, 5:15] == 2).all() and (cleaned[17, 30:33, 5:8] == 2).all()
    assert cleaned[12, 30, 30] == cleaned[15, 7, 7] == cleaned[19, 20, 20] == 1  # dropped nodules become lung


def test_a_small_nodule_the_filter_accepted_keeps_its_own_volume_rule_on_the_scans_own_grid():
    from deepdiag.segmentation.postprocess import keep_nodules_on_output_grid

    labels = np.ones((10, 20, 20), np.uint8)
    nodule_map = np.zeros(labels.shape, np.float32)
    labels[3, 5:7, 5:7], nodule_map[3, 5:7, 5:7] = 2, 0.8  # 10 mm3 at 2.5 mm slices: under the card's 25
    labels[6, 15, 15], nodule_map[6, 15, 15] = 2, 0.8  # its sliver, 2.5 mm3
    small = labels == 2
    cleaned = keep_nodules_on_output_grid(labels.copy(), nodule_map, (2.5, 1.0, 1.0), 25.0, 0.5, ((small, 5.0),))
    assert (cleaned[3, 5:7, 5:7] == 2).all(), "accepted at the filter's small score, it needs 5 mm3 here"
    assert cleaned[6, 15, 15] == 1, "a sliver under the small rule's own volume is dropped"
    assert not (keep_nodules_on_output_grid(labels.copy(), nodule_map, (2.5, 1.0, 1.0), 25.0, 0.5) == 2).any()


def test_a_finding_must_touch_the_lungs():
    from deepdiag.segmentation.model_grid import Chest, Crop

    lungs = np.zeros((30, 30, 30), bool)
    lungs[5:15, 5:25, 5:15] = True
    chest = Chest(np.ones_like(lungs), lungs, Crop((0, 0, 0), lungs.shape), 1.0)
    assert chest.touches_lungs((10, 10, 10), (2, 2, 2))
    assert chest.touches_lungs((10, 10, 17), (3, 3, 3))  # on the lung's wall
    assert not chest.touches_lungs((25, 10, 25), (3, 3, 3))  # in the "mediastinum"


@pytest.fixture(scope="module")
def segmented_thorax(tmp_path_factory):
    out = tmp_path_factory.mktemp("thorax")
    result = run_cli(
        "segment", str(FULL_THORAX["thorax_4dct_phase00"]), "-o", str(out), "--progress", "none", timeout=900
    )
    assert result.returncode == 0, result.stderr
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ct.seg.nrrd"))), json.loads(result.stdout)


def test_lungs_never_outside_the_body_on_a_real_scan(segmented_thorax):
    from deepdiag.image_io import read_volume

    labels, _ = segmented_thorax
    volume = read_volume(FULL_THORAX["thorax_4dct_phase00"])
    ct = volume.array
    # outside the body: air joined to the slice's edge (not air inside the chest)
    outside = np.stack([_joined_to_edge(axial < -500) for axial in ct])
    assert not (labels[outside] > 0).any()
    # and the lungs are there: a body mask that left them out would pass the line above
    voxel_litres = float(np.prod(volume.spacing)) / 1e6
    assert 3.0 < (labels >= 1).sum() * voxel_litres < 8.0


def test_no_sliver_of_a_nodule_on_a_real_scans_own_grid(segmented_thorax):
    """The 2 mm slices of this scan are coarser than the model's 1.25 mm: every nodule written is
    at least a 3 mm sphere (the card's volume rule is checked exactly in the test above)."""
    from deepdiag.image_io import read_volume
    from deepdiag.segmentation.postprocess import SMALLEST_NODULE_MM3

    labels, _ = segmented_thorax
    voxel_mm3 = float(np.prod(read_volume(FULL_THORAX["thorax_4dct_phase00"]).spacing))
    components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3), bool))
    volumes = np.bincount(components.ravel())[1:] * voxel_mm3
    assert count and volumes.min() >= SMALLEST_NODULE_MM3


def test_the_real_mass_is_segmented(segmented_thorax):
    from deepdiag.evaluation.real_scans import KNOWN_LESIONS
    from deepdiag.image_io import read_volume

    labels, _ = segmented_thorax
    volume = read_volume(FULL_THORAX["thorax_4dct_phase00"])
    mass = KNOWN_LESIONS["thorax_4dct_phase00"][0]
    i, j, k = np.round(volume.lps_to_ijk(np.array(mass["center_lps"]))).astype(int)
    assert (labels[k - 3 : k + 4, j - 3 : j + 4, i - 3 : i + 4] == 2).any()


def test_bowel_gas_below_the_lung_bases_is_not_lung():
    """The colon's gas in the abdominal CT passes the lungs' median rule on the 1 mm model grid (-900
    HU: stool and partial volume) and reaches up to the top slice; the lung bases beside it are
    under 100 mL each."""
    from deepdiag.image_io import read_volume
    from deepdiag.lung_mask import find_lungs
    from deepdiag.segmentation.model_grid import to_model_grid

    ct = to_model_grid(read_volume(SHARED_DATA / "totalseg" / "abdomen_ct_3mm.nii.gz"), (1.0, 1.0, 1.0))
    lungs = find_lungs(ct)
    lung_slices = np.flatnonzero(lungs.any(axis=(1, 2)))  # the model grid's k goes up
    assert 50 < lungs.sum() / 1000 < 200, "both bases, some 100 mL"
    assert lung_slices[0] > ct.array.shape[0] - 50, "all within the top 50 mm, above the diaphragm"


def test_segmenting_an_abdominal_ct_marks_the_lung_bases_and_nothing_in_the_bowel(tmp_path):
    source = SHARED_DATA / "totalseg" / "abdomen_ct_3mm.nii.gz"
    result = run_cli("segment", str(source), "-o", str(tmp_path), "--progress", "none", timeout=900)
    assert result.returncode == 0, result.stderr
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "abdomen_ct_3mm.seg.nrrd")))
    top = labels.shape[0] - 1  # the lung bases lie in the top slices of this scan (3 mm apart)
    lung_slices = np.flatnonzero((labels >= 1).any(axis=(1, 2)))
    assert (labels >= 1).sum() * 27 / 1000 > 50
    assert lung_slices[0] >= top - 15, "no lung 45 mm or more below the top slice: the colon is not lung"
    assert json.loads(result.stdout)["outputs"][0]["nodules"] == 0


def _joined_to_edge(air: np.ndarray) -> np.ndarray:
    components, _ = ndimage.label(air)
    edge = np.unique(np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]]))
    return np.isin(components, edge[edge > 0])


def test_a_sheet_along_the_diaphragm_is_no_nodule_but_a_ball_and_a_lens_are():
    from deepdiag.segmentation.postprocess import keep_plausible_nodules, thickness_ratio

    spacing = (1.25, 1.0, 1.0)
    k, j, i = np.mgrid[:30, :60, :60]
    ball = (((k - 10) * 1.25) ** 2 + (j - 15) ** 2 + (i - 15) ** 2) <= 6**2
    lens = ball & (k >= 10)  # a juxtapleural nodule cut by the wall
    sheet = (k >= 22) & (k <= 23) & (j >= 20) & (j < 55) & (i >= 30) & (i < 58)  # 2.5 mm thick, 35 x 28 mm
    assert thickness_ratio(ball, spacing) > 0.9 and thickness_ratio(lens, spacing) > 0.45
    assert thickness_ratio(sheet, spacing) < 0.1
    probabilities = np.zeros((3, *ball.shape), np.float32)
    probabilities[1] = 1.0
    for mask in (ball, sheet):
        probabilities[2][mask], probabilities[1][mask] = 1.0, 0.0
    kept = np.argmax(keep_plausible_nodules(probabilities, spacing, 25.0, 0.5, min_thickness_ratio=0.3), axis=0) == 2
    assert kept[ball].all() and not kept[sheet].any()


def test_the_trachea_and_main_bronchi_are_found_inside_the_threshold_lungs():
    from deepdiag.image_io import read_volume
    from deepdiag.lung_mask import find_central_airways, find_lungs

    ct = read_volume(FULL_THORAX["thorax_4dct_phase00"])
    lungs = find_lungs(ct)
    airways = find_central_airways(ct, lungs)
    millilitres = airways.sum() * ct.voxel_volume_mm3() / 1000
    assert 10 < millilitres < 80, "the trachea and main bronchi hold a few tens of mL"
    assert lungs[airways].all() and airways[-1].any(), "they enter the lungs' mask at its top (superior) slice"
    assert np.median(ct.array[airways]) < -930 < np.median(ct.array[lungs & ~airways]), "air, not parenchyma"
    length_mm = np.ptp(np.flatnonzero(airways.any(axis=(1, 2)))) * ct.spacing[2]
    assert length_mm > 100, "down past the carina"
    below_carina = read_volume(SHARED_DATA / "totalseg" / "abdomen_ct_3mm.nii.gz")
    assert not find_central_airways(below_carina, find_lungs(below_carina)).any()


def test_nodules_inserted_into_a_real_ct_stay_out_of_its_central_airways():
    """Copy 3 of the held-out LIDC-shaped set (seed 6002) once put a 10 mm nodule inside the
    trachea: the threshold lungs hold the airways, and a juxtapleural nodule walked to their wall."""
    from deepdiag.evaluation.real_scans import INSERTED_LIDC
    from deepdiag.image_io import read_volume
    from deepdiag.lung_mask import find_central_airways, find_lungs
    from deepdiag.phantom.insertion import AIRWAY_CLEARANCE_MM, insert_into, insertion_host

    source = FULL_THORAX["thorax_4dct_phase00"]
    ct = read_volume(source)
    airways = find_central_airways(ct, find_lungs(ct))
    distance_mm = ndimage.distance_transform_edt(~airways, sampling=ct.spacing[::-1])
    case = insert_into(insertion_host(ct, source), INSERTED_LIDC, seed=6002, index=3)
    assert len(case.truth["nodules"]) >= 8
    nodules = case.instances.array > 0
    assert distance_mm[nodules].min() > AIRWAY_CLEARANCE_MM - 1.0
