"""The second candidate source: bright round spots are found, vessels are not, and the filter's
verdict decides which spots become nodules."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from test_candidate_filter import CentreBrightness

from deepdiag.models import ModelCard
from deepdiag.models.store import LoadedModel
from deepdiag.segmentation.bright_spots import SCALES_MM, SpotSearch, _smoothed_at_scales, bright_spots
from deepdiag.segmentation.candidate_filter import CandidateFilter, load_candidate_filter

SPACING_KJI = (1.25, 1.0, 1.0)
LUNG, DENSE = 0.1, 0.7  # normalized intensities of aerated lung and of soft tissue
GROUND_GLASS = 0.25  # about -650 HU


def _lung_with(nodule_centre=(24, 32, 20), nodule_diameter_mm=4.5, vessel_at=(24, 32, 44)):
    """Lung with a small round nodule and, beside it, a vessel of the same width crossing the whole image."""
    shape = (48, 64, 64)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    image = np.full(shape, LUNG, dtype=np.float32)
    radius = nodule_diameter_mm / 2
    nodule = ((k - nodule_centre[0]) * SPACING_KJI[0]) ** 2 + (j - nodule_centre[1]) ** 2 + (
        i - nodule_centre[2]
    ) ** 2 <= radius**2
    vessel = ((k - vessel_at[0]) * SPACING_KJI[0]) ** 2 + (i - vessel_at[2]) ** 2 <= radius**2
    image[nodule | vessel] = DENSE
    return image, nodule, vessel


def test_a_small_nodule_is_a_spot_and_a_vessel_of_the_same_width_is_not():
    image, nodule, vessel = _lung_with()
    spots = bright_spots(image, np.ones(image.shape, dtype=bool), SPACING_KJI)
    on_nodule = [s for s in spots if nodule[tuple(s.centre)]]
    assert len(on_nodule) == 1
    assert np.abs(on_nodule[0].centre - [24, 32, 20]).max() <= 1
    assert not any(vessel[tuple(s.centre)] for s in spots), "a tube curves in two directions only"
    found = np.zeros(image.shape, dtype=bool)
    found[on_nodule[0].voxels] = True
    assert found[nodule].mean() > 0.9, "the spot covers the nodule"
    assert found.sum() < 3 * nodule.sum(), "and not much more"
    assert not (found & vessel).any()


def test_no_spot_outside_the_lungs_or_on_excluded_voxels():
    image, nodule, _ = _lung_with()
    lungs = np.ones(image.shape, dtype=bool)
    lungs[:, :, :21] = False  # the lung mask stops one voxel short of the nodule's centre, as on a juxtapleural nodule
    assert any(nodule[tuple(s.centre)] for s in bright_spots(image, lungs, SPACING_KJI)), (
        "the lung's edge still reaches it"
    )
    lungs[:, :, :24] = False
    assert not any(nodule[tuple(s.centre)] for s in bright_spots(image, lungs, SPACING_KJI))
    assert not any(
        nodule[tuple(s.centre)]
        for s in bright_spots(image, np.ones(image.shape, dtype=bool), SPACING_KJI, excluded=nodule)
    )


def test_without_the_chest_wall_a_nodule_on_the_pleura_is_a_spot():
    image, nodule, _ = _lung_with(nodule_centre=(24, 32, 16), nodule_diameter_mm=5.0, vessel_at=(24, 32, 48))
    lungs = np.ones(image.shape, dtype=bool)
    lungs[:, :, :16] = False  # the wall starts at the nodule's centre: only its lung half is left
    image[nodule] = GROUND_GLASS
    image[~lungs] = DENSE
    nodule &= lungs
    with_wall = bright_spots(image, lungs, SPACING_KJI, search=SpotSearch(min_blobness=0.02))
    assert not any(nodule[tuple(s.centre)] for s in with_wall), "the wall's brightness rises across it"
    spots = bright_spots(image, lungs, SPACING_KJI, search=SpotSearch(min_blobness=0.02, without_chest_wall=True))
    assert any(nodule[tuple(s.centre)] for s in spots)
    assert all(lungs[s.voxels].all() for s in spots), "a spot's extent stays in the lungs"
    assert not any(s.centre[2] > 40 for s in spots), "the vessel still gives no spot"


def test_a_lower_blobness_finds_faint_ground_glass():
    image, nodule, _ = _lung_with(nodule_diameter_mm=5.0)
    image[nodule] = LUNG + 0.09  # about 125 HU above the lung: a small ground-glass nodule blurred by the scanner
    lungs = np.ones(image.shape, dtype=bool)
    assert not any(nodule[tuple(s.centre)] for s in bright_spots(image, lungs, SPACING_KJI))
    assert any(
        nodule[tuple(s.centre)] for s in bright_spots(image, lungs, SPACING_KJI, search=SpotSearch(min_blobness=0.02))
    )


def test_a_filter_card_says_how_its_spots_are_searched():
    card = ModelCard(
        id="f", version=1, task="candidate-classification", network={}, input={}, patch_size=[8, 8, 8], classes=[]
    )
    assert SpotSearch.from_card(card) == SpotSearch(), (
        "cards from before the setting keep the search they were trained with"
    )
    card.input["spot_search"] = SpotSearch(0.02, True).as_card_entry()
    assert SpotSearch.from_card(card) == SpotSearch(0.02, True)


def test_a_faint_speck_of_noise_is_no_spot():
    rng = np.random.default_rng(0)
    image = (LUNG + rng.normal(0, 0.01, (40, 48, 48))).astype(np.float32)  # 14 HU of noise in a -1000..400 window
    assert bright_spots(image, np.ones(image.shape, dtype=bool), SPACING_KJI) == []


def _filter(spot_min_probability=0.9, spot_search: SpotSearch | None = None) -> CandidateFilter:
    card = ModelCard(
        id="centre-test",
        version=1,
        task="candidate-classification",
        network={},
        input={},
        patch_size=[8, 8, 8],
        classes=[],
    )
    if spot_search:
        card.input["spot_search"] = spot_search.as_card_entry()
    return CandidateFilter(LoadedModel(card, CentreBrightness(), None), 0.5, spot_min_probability)


def _no_nodule_predicted(image):
    probabilities = np.zeros((3, *image.shape), dtype=np.float32)
    probabilities[1] = 1.0
    return probabilities


def test_spots_the_filter_accepts_become_nodules_and_the_others_stay_lung():
    image, nodule, vessel = _lung_with()
    probabilities = _no_nodule_predicted(image)
    lungs = np.ones(image.shape, dtype=bool)
    marked = _filter(0.9).add_spot_nodules(probabilities, lungs, image, SPACING_KJI, torch.device("cpu"))
    nodules = np.argmax(marked, axis=0) == 2
    assert nodules[nodule].mean() > 0.9 and not nodules[vessel].any()
    assert np.allclose(marked.sum(axis=0), 1.0)
    assert not (np.argmax(probabilities, axis=0) == 2).any(), "the caller's array is not changed"
    image[nodule] = 0.45  # the filter's verdict turns: its centre is no longer bright
    dimmer = _filter(0.9).add_spot_nodules(probabilities, lungs, image, SPACING_KJI, torch.device("cpu"))
    assert not (np.argmax(dimmer, axis=0) == 2).any()


def test_the_pipeline_searches_spots_as_the_filter_card_says():
    image, nodule, _ = _lung_with(nodule_diameter_mm=5.0)
    image += 0.35  # brighter lung, so that the test filter (bright centre: nodule) accepts the faint nodule
    image[nodule] = LUNG + 0.35 + 0.09
    probabilities, lungs = _no_nodule_predicted(image), np.ones(image.shape, dtype=bool)
    as_trained = _filter(0.5).add_spot_nodules(probabilities, lungs, image, SPACING_KJI, torch.device("cpu"))
    assert not (np.argmax(as_trained, axis=0) == 2).any(), "the default search does not reach so faint a spot"
    fainter = _filter(0.5, SpotSearch(min_blobness=0.02)).add_spot_nodules(
        probabilities, lungs, image, SPACING_KJI, torch.device("cpu")
    )
    assert (np.argmax(fainter, axis=0) == 2)[nodule].mean() > 0.5


def test_a_spot_on_a_kept_component_is_left_to_the_component():
    image, nodule, _ = _lung_with()
    probabilities = _no_nodule_predicted(image)
    probabilities[2][nodule], probabilities[1][nodule] = 0.6, 0.4
    marked = _filter(0.9).add_spot_nodules(
        probabilities, np.ones(image.shape, dtype=bool), image, SPACING_KJI, torch.device("cpu")
    )
    assert np.array_equal(marked, probabilities), "the component keeps its own probabilities and extent"


def test_a_segmentation_card_turns_the_spot_search_on():
    card = ModelCard(
        id="seg-test",
        version=1,
        task="segmentation",
        network={},
        input={"spacing_mm": [1.0, 1.0, 1.25], "intensity": {"type": "window", "min_hu": -1000.0, "max_hu": 400.0}},
        patch_size=[96, 96, 96],
        classes=[],
    )
    card.postprocessing = {
        "candidate_filter": {
            "model": "lung-nodules-fpr@9",
            "min_probability": 0.8,
            "spot_min_probability": 0.95,
            "spot_max_slice_mm": 2.0,
        }
    }
    loaded = load_candidate_filter(card, torch.device("cpu"))
    assert (loaded.min_probability, loaded.spot_min_probability) == (0.8, 0.95)
    assert loaded.searches_spots(1.25) and loaded.searches_spots(2.0) and not loaded.searches_spots(2.5), (
        "not on thick slices"
    )
    card.postprocessing = {"candidate_filter": {"model": "lung-nodules-fpr@9", "min_probability": 0.8}}
    assert not load_candidate_filter(card, torch.device("cpu")).searches_spots(1.0)


def test_training_spots_are_positives_on_nodules_and_negatives_elsewhere():
    from deepdiag.training.candidate_filter import spot_patches, stored_size
    from deepdiag.training.segmentation_data import Example

    image, nodule, vessel = _lung_with()
    image[tuple(slice(c - 2, c + 2) for c in (24, 12, 44))] = DENSE  # a round blob far from the nodule: a false spot
    labels = np.ones(image.shape, dtype=np.uint8)
    labels[nodule] = 2
    example = Example(image.astype(np.float16), labels, [np.argwhere(nodule).astype(np.int32)])
    patches = spot_patches(example, (8, 8, 8), SPACING_KJI, np.random.default_rng(0))
    centre = tuple(n // 2 for n in stored_size((8, 8, 8)))
    assert patches.labels.tolist().count(1) == 1, "one spot on the nodule"
    assert patches.images[patches.labels == 1][0][centre] == np.float16(DENSE)
    assert 4.0 < patches.diameters_mm[patches.labels == 1][0] < 5.0
    negatives = patches.images[patches.labels == 0]
    assert len(negatives) >= 1 and all(p[centre] == np.float16(DENSE) for p in negatives), (
        "negatives are bright spots, off the nodule"
    )


def test_the_scales_are_smoothed_in_millimetres_as_itks_gaussian_smooths_them():
    """The search's spots were first defined with SimpleITK's recursive Gaussian; the sampled one
    that replaced it for speed must smooth each axis by the scale in millimetres, as ITK does."""
    image, _, _ = _lung_with()
    spacing = (2.5, 0.7, 1.0)
    for scale, smoothed in zip(SCALES_MM, _smoothed_at_scales(image, spacing)):
        reference = sitk.GetImageFromArray(image)
        reference.SetSpacing(spacing[::-1])
        itk_smoothed = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(reference, scale))
        assert np.abs(smoothed - itk_smoothed).max() < 0.01 * (DENSE - LUNG), scale


def test_the_laplacians_and_filters_worked_out_in_slabs_give_the_whole_crops_voxels():
    """The spot search works slab by slab in threads: every voxel must be what one pass over the
    whole crop gives, at the crop's first and last slices and at every slab's edge."""
    from scipy import ndimage

    from deepdiag.segmentation import bright_spots as spots
    from deepdiag.slabs import in_slabs, per_slice

    rng = np.random.default_rng(5)
    image = ndimage.gaussian_filter(rng.random((61, 40, 36)), 1.0).astype(np.float32)  # 61: slabs of 24 do not fit
    lungs = image > 0.5
    smoothed = _smoothed_at_scales(image, SPACING_KJI)
    response, best_scale = spots._strongest_response(smoothed, SPACING_KJI)
    expected = None
    for index, (blurred, scale) in enumerate(zip(smoothed, SCALES_MM)):
        at_scale = spots._laplacian(blurred, SPACING_KJI) * np.float32(-(scale**2))
        if expected is None:
            expected, expected_scale = at_scale, np.zeros(at_scale.shape, np.uint8)
            continue
        expected_scale[at_scale > expected] = index
        expected = np.maximum(expected, at_scale)
    assert np.array_equal(response, expected) and np.array_equal(best_scale, expected_scale)
    assert len(set(best_scale.ravel().tolist())) > 1, "the scales compete"
    dilated = in_slabs(lambda slab: ndimage.binary_dilation(slab, iterations=2), lungs, 2)
    assert np.array_equal(dilated, ndimage.binary_dilation(lungs, iterations=2))
    peaks = in_slabs(lambda slab: ndimage.maximum_filter(slab, size=3), response, 1)
    assert np.array_equal(peaks, ndimage.maximum_filter(response, size=3))
    filled = per_slice(ndimage.binary_fill_holes, lungs)
    assert np.array_equal(filled, np.stack([ndimage.binary_fill_holes(axial) for axial in lungs]))
