"""The training recipes do what their cards say: small nodules drawn more often, a Dice per
patch, and hard negatives that are false positives only, never nodules."""

import numpy as np
import torch

from deepdiag.image_io import read_volume
from deepdiag.lung_rads import NODULE_TYPES
from deepdiag.models import find_model
from deepdiag.models.store import load_model
from deepdiag.phantom import PhantomConfig
from deepdiag.phantom.nodules import design_nodules
from deepdiag.training.classification import (
    JITTER_VOXELS,
    SMALL_NODULE_WEIGHT,
    draw_weights,
    real_background_patches,
)
from deepdiag.training.detection import sample_slice_patch
from deepdiag.training.hard_negatives import mine_hard_negatives
from deepdiag.training.real_backgrounds import real_background_examples, real_example_name
from deepdiag.training.segmentation import Recipe
from deepdiag.training.segmentation_data import (
    Example,
    draw_nodule,
    example_name,
    prepare_example,
    varied_scanner_config,
)

SPACING, WINDOW = [1.0, 1.0, 1.25], {"min_hu": -1000.0, "max_hu": 400.0}


def _ball(center, radius, shape=(40, 40, 40)) -> np.ndarray:
    grid = np.indices(shape)
    return np.argwhere(((grid - np.array(center)[:, None, None, None]) ** 2).sum(axis=0) <= radius**2).astype(np.int32)


def test_small_nodules_are_drawn_as_many_times_more_often_as_the_boost_says():
    small, large = _ball((10, 10, 10), 2), _ball((25, 25, 25), 6)  # 33 and 925 voxels
    assert len(small) < Recipe().small_nodule_voxels < len(large)
    rng = np.random.default_rng(0)
    for boost in (1.0, 3.0):
        draws = np.array([draw_nodule([small, large], rng, Recipe().small_nodule_voxels, boost) for _ in range(4000)])
        ratio = (draws == 0).sum() / (draws == 1).sum()
        assert abs(ratio - boost) < 0.15 * boost, (boost, ratio)


def test_small_nodule_phantoms_hold_only_nodules_of_the_asked_sizes_under_their_own_cache_name():
    config = varied_scanner_config(2001, 0, nodules=(4, 10), diameter_mm=(3.0, 6.0))
    diameters = [
        design.nominal_diameter_mm
        for index in range(20)
        for design in design_nodules(config, np.random.default_rng(index))
    ]
    assert 4 * 20 <= len(diameters) <= 10 * 20
    assert 3.0 <= min(diameters) and max(diameters) <= 6.0
    assert example_name(2001, 0, (4, 10), (3.0, 6.0)) != example_name(
        2001, 0, (4, 10)
    )  # a cache never serves the other set
    lidc_name = example_name(2001, 0, (4, 10), (3.0, 6.0), ("round", "lidc"))
    assert lidc_name != example_name(2001, 0, (4, 10), (3.0, 6.0)), "another shape set is another cache entry"
    assert varied_scanner_config(2001, 0, shapes=("lidc",)).shapes == ("lidc",)


def test_dice_per_patch_does_not_let_a_large_nodule_hide_a_missed_small_one():
    """Two patches: a large nodule found perfectly, a small one missed entirely. Over the batch,
    the small nodule's voxels barely count; per patch, the miss costs half the nodule Dice."""
    labels = torch.zeros(2, 1, 16, 16, 16, dtype=torch.long)
    labels[0, 0, 2:14, 2:14, 2:14] = 2
    labels[1, 0, 7:9, 7:9, 7:9] = 2
    logits = torch.full((2, 3, 16, 16, 16), -10.0)
    logits[:, 0] = 10.0  # background everywhere ...
    logits[0, 0][labels[0, 0] == 2], logits[0, 2][labels[0, 0] == 2] = -10.0, 10.0  # ... except the large nodule, found
    over_batch = Recipe(per_patch_dice=False).loss()(logits, labels)
    per_patch = Recipe(per_patch_dice=True).loss()(logits, labels)
    assert per_patch > over_batch + 0.1


def test_hard_negatives_are_detector_hits_away_from_every_nodule(small_case):
    stem = "phantom_s5_000"
    example = prepare_example(
        read_volume(small_case / "images" / f"{stem}.nrrd"),
        read_volume(small_case / "labels" / f"{stem}.nrrd"),
        SPACING,
        WINDOW,
    )
    detector = load_model(find_model("lung-nodules-det", "detection", "lung-nodules-det"))
    margin = 3
    everything = mine_hard_negatives(
        detector.network,
        Example(example.image, np.zeros_like(example.labels), []),
        torch.device("cpu"),
        min_score=0.05,
        margin_voxels=margin,
    )
    mined = mine_hard_negatives(detector.network, example, torch.device("cpu"), min_score=0.05, margin_voxels=margin)
    nodule_voxels = np.concatenate(example.nodule_voxels)
    steps = np.array([np.abs(nodule_voxels - position).sum(axis=1).min() for position in mined])
    assert len(everything) > len(mined), "the detector's hits on the nodules were kept as negatives"
    assert (steps > margin).all()

    rng = np.random.default_rng(1)
    for _ in range(20):  # a patch drawn around a hard negative has it inside and its slice among the mined ones
        patch, _ = sample_slice_patch(example, 64, rng, nodule_share=0.0, hard_negatives=mined, hard_negative_share=1.0)
        assert patch.shape == (3, 64, 64) and np.abs(patch).sum() > 0


def test_a_small_nodule_share_keeps_large_nodules_as_common_however_many_small_ones_are_added():
    for small_count in (10, 100, 1000):
        small = np.array([True] * small_count + [False] * 50)
        weights = draw_weights(small, 0.43)
        assert np.isclose(weights.sum(), 1.0)
        assert np.isclose(weights[~small].sum(), 0.57)
    small = np.array([True] * 10 + [False] * 50)
    by_default = draw_weights(small, None)
    assert np.isclose(by_default[0] / by_default[-1], SMALL_NODULE_WEIGHT)  # the nodule-type classifier's recipe
    assert np.allclose(draw_weights(np.zeros(5, bool), 0.43), 0.2)  # negatives have no size: drawn alike


def test_classifier_patches_on_a_real_background_centre_each_inserted_nodule_with_its_type(shared_data, tmp_path):
    background = shared_data / "totalseg" / "chest_ct_crop_1p5mm.nii.gz"
    config = PhantomConfig(nodules=(3, 3), diameter_mm=(8.0, 14.0), shapes=("lidc",))
    window, patch = {"min_hu": -1000.0, "max_hu": 400.0}, [24, 24, 24]
    made = real_background_patches(background, 5, 0, list(NODULE_TYPES), patch, [1.0] * 3, window, config, tmp_path)
    cached = real_background_patches(background, 5, 0, list(NODULE_TYPES), patch, [1.0] * 3, window, config, tmp_path)
    procedural = PhantomConfig(nodules=(3, 3), diameter_mm=(8.0, 14.0))
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert np.array_equal(made.images, cached.images) and np.array_equal(made.labels, cached.labels)
    assert len(made.labels) >= 2 and made.images.shape[1:] == tuple(n + 2 * JITTER_VOXELS for n in patch)
    centre = made.images[:, 15, 15, 15].astype(float) * 1400 - 1000  # back to HU
    for hu, label in zip(centre, made.labels):
        assert hu > -800, "the patch centre lies on the nodule, not on the lung around it"
        if NODULE_TYPES[label] == "solid":
            assert hu > -300
    real_background_patches(background, 5, 0, list(NODULE_TYPES), patch, [1.0] * 3, window, procedural, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2, "another shape set is another cache entry"


def test_segmentation_examples_on_a_real_background_label_each_inserted_lidc_outline_as_nodule(shared_data, tmp_path):
    background = shared_data / "totalseg" / "chest_ct_crop_1p5mm.nii.gz"
    config = PhantomConfig(nodules=(3, 3), diameter_mm=(8.0, 14.0), shapes=("lidc",))
    (example,) = real_background_examples(background, 1, 3, SPACING, WINDOW, tmp_path, config)
    assert [p.name for p in tmp_path.glob("*.npz")] == [f"{real_example_name(background, 3, 0, config)}.npz"]
    assert "lidc" in real_example_name(background, 3, 0, config)
    assert "lidc" not in real_example_name(background, 3, 0, PhantomConfig(nodules=(3, 3)))
    one, other = (
        shared_data / "chest_ct" / scan / "ct.nii.gz" for scan in ("thorax_4dct_phase00", "covid_ricord_419639")
    )
    assert real_example_name(one, 3, 0) != real_example_name(other, 3, 0), "two scans both named ct.nii.gz"
    assert len(example.nodule_voxels) >= 2
    for voxels in example.nodule_voxels:
        assert len(voxels) >= 100, "an 8 mm outline or larger on the 1 x 1 x 1.25 mm model grid"
        assert (example.labels[tuple(voxels.T)] == 2).all()
    assert (example.labels == 2).sum() == sum(len(v) for v in example.nodule_voxels)
    assert (example.labels == 1).sum() > 50 * (example.labels == 2).sum(), "the real lungs around them"
