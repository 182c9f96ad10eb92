"""False-positive reduction: what the candidate filter keeps and drops, how a segmentation card
names it, and the patches it is trained on."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from deepdiag.errors import DeepDiagError
from deepdiag.models import ModelCard
from deepdiag.models.store import LoadedModel
from deepdiag.segmentation.candidate_filter import (
    CandidateFilter,
    load_candidate_filter,
    nodule_probabilities,
    patch_around,
    patches_around,
    with_zoomed_centre,
)
from deepdiag.training.candidate_filter import VESSEL_POINTS_PER_CASE, case_patches, detector_patches, stored_size
from deepdiag.training.classification import NodulePatches, centre_logits, train_classifier
from deepdiag.training.segmentation_data import Example


class CentreBrightness(torch.nn.Module):
    """Says "nodule" exactly when the patch's centre voxel is bright: a filter whose verdict the test knows."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        k, j, i = (n // 2 for n in patches.shape[2:])
        centre = patches[:, 0, k, j, i]
        return torch.stack([0.5 - centre, centre - 0.5], dim=1) * 20


def _filter(min_probability: float = 0.5) -> CandidateFilter:
    card = ModelCard(
        id="centre-test",
        version=1,
        task="candidate-classification",
        network={},
        input={},
        patch_size=[8, 8, 8],
        classes=[],
    )
    return CandidateFilter(LoadedModel(card, CentreBrightness(), None), min_probability)


def _two_blobs():
    """A dark and a bright blob, both predicted as nodules."""
    image = np.zeros((24, 24, 40), dtype=np.float32)
    probabilities = np.zeros((3, *image.shape), dtype=np.float32)
    probabilities[1] = 1.0
    for centre, brightness in (((12, 12, 10), 0.1), ((12, 12, 30), 0.9)):
        box = tuple(slice(c - 2, c + 3) for c in centre)
        image[box] = brightness
        probabilities[(1, *box)] = 0.1
        probabilities[(2, *box)] = 0.9
    return image, probabilities


def test_the_filter_drops_the_components_it_rejects_and_keeps_the_others_untouched():
    image, probabilities = _two_blobs()
    cleaned = _filter().keep_nodules(probabilities, image, torch.device("cpu"))
    nodules = np.argmax(cleaned, axis=0) == 2
    assert not nodules[:, :, :20].any(), "the dark blob is rejected"
    assert nodules[10:15, 10:15, 28:33].all(), "the bright blob is kept"
    assert np.array_equal(cleaned[:, :, :, 20:], probabilities[:, :, :, 20:])
    assert np.allclose(cleaned.sum(axis=0), 1.0), "a rejected component's probability goes to background"
    assert np.array_equal(probabilities[2, 12, 12, 10], np.float32(0.9)), "the caller's array is not changed"


def test_a_threshold_above_every_score_leaves_no_nodule():
    image, probabilities = _two_blobs()
    cleaned = _filter(min_probability=1.01).keep_nodules(probabilities, image, torch.device("cpu"))
    assert not (np.argmax(cleaned, axis=0) == 2).any()


def test_components_under_the_volume_rule_need_the_stricter_small_score():
    image = np.zeros((16, 16, 60), dtype=np.float32)
    probabilities = np.zeros((3, *image.shape), dtype=np.float32)
    probabilities[1] = 1.0
    # the filter scores brightness 0.6 at 0.98 and 0.9 at 1.0; 8 voxels of 1 mm3 are small, 125 are not
    large, small_dim, small_bright = (
        (slice(6, 11), slice(6, 11), slice(8, 13)),
        (slice(7, 9), slice(7, 9), slice(24, 26)),
        (slice(7, 9), slice(7, 9), slice(39, 41)),
    )
    for box, brightness in ((large, 0.6), (small_dim, 0.6), (small_bright, 0.9)):
        image[box] = brightness
        probabilities[(1, *box)], probabilities[(2, *box)] = 0.1, 0.9
    strict = _filter()
    strict.small_below_mm3, strict.small_min_volume_mm3, strict.small_min_probability = 25.0, 5.0, 0.99
    cleaned = strict.keep_nodules(probabilities, image, torch.device("cpu"))
    nodules = np.argmax(cleaned, axis=0) == 2
    assert nodules[large].all(), "a large component needs only min_probability"
    assert not nodules[small_dim].any(), "a small one scored 0.98 is dropped"
    assert nodules[small_bright].all(), "a small one scored above 0.99 stays"
    small = strict.small_nodules(cleaned)
    assert small.sum() == 8 and small[small_bright].all(), "only the small survivor counts as small"
    assert _filter().keep_nodules(probabilities, image, torch.device("cpu"))[2, 8, 8, 25] == np.float32(0.9), (
        "without the small rule every component needs min_probability alone"
    )


def test_a_card_sets_the_small_component_rule_beside_its_volume_rule():
    named = {"model": "lung-nodules-fpr@9", "small_min_volume_mm3": 5.0, "small_min_probability": 0.9}
    loaded = load_candidate_filter(_card(min_nodule_volume_mm3=25.0, candidate_filter=named), torch.device("cpu"))
    assert (loaded.small_below_mm3, loaded.small_min_volume_mm3, loaded.small_min_probability) == (25.0, 5.0, 0.9)
    plain = _card(min_nodule_volume_mm3=25.0, candidate_filter={"model": "lung-nodules-fpr@9"})
    unset = load_candidate_filter(plain, torch.device("cpu"))
    assert unset.small_min_volume_mm3 is None and unset.small_below_mm3 == 0.0, "no component is small without the rule"


def test_patches_reach_past_the_image_edge_as_air():
    image = np.ones((10, 10, 10), dtype=np.float32)
    patch = patch_around(image, (0, 0, 0), (6, 6, 6))
    assert patch.shape == (6, 6, 6)
    assert patch[3:, 3:, 3:].min() == 1.0 and patch[:3].max() == 0.0


def test_patches_cut_at_once_are_the_patches_cut_one_by_one():
    image = np.random.default_rng(3).random((20, 24, 28), dtype=np.float32)
    centres = [(10, 12, 14), (2.6, 20, 27), (0, 0, 0), (9.4, 11.5, 3), (19, 23, 27)]  # inside, across edges, rounding
    together = patches_around(image, centres, (6, 8, 10))
    assert together.shape == (5, 6, 8, 10)
    for centre, patch in zip(centres, together):
        assert np.array_equal(patch, patch_around(image, centre, (6, 8, 10))), centre
    thin = image[:4]  # a scan of a few slices, thinner than a patch
    assert np.array_equal(
        patches_around(thin, [(2, 12, 14)], (6, 8, 10))[0], patch_around(thin, (2, 12, 14), (6, 8, 10))
    )


def _card(**changes) -> ModelCard:
    card = ModelCard(
        id="seg-test",
        version=1,
        task="segmentation",
        network={},
        input={"spacing_mm": [1.0, 1.0, 1.25], "intensity": {"type": "window", "min_hu": -1000.0, "max_hu": 400.0}},
        patch_size=[96, 96, 96],
        classes=[],
    )
    card.postprocessing = changes
    return card


class CentreDarkness(CentreBrightness):
    """The opposite verdict: "nodule" exactly when the centre voxel is dark."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return super().forward(patches).flip(1)


def test_filters_combined_by_min_keep_only_what_each_one_accepts():
    image, probabilities = _two_blobs()
    both = _filter()
    both.others = (LoadedModel(both.model.card, CentreDarkness(), None),)
    centres = [(12, 12, 10), (12, 12, 30)]
    alone = both.model, both.others[0]
    single = [nodule_probabilities(m, image, centres, torch.device("cpu")) for m in alone]
    assert single[0][1] > 0.99 and single[1][0] > 0.99, "each filter accepts one blob"
    combined = both.nodule_probabilities(image, centres, torch.device("cpu"))
    assert combined == pytest.approx(np.minimum(*single))
    cleaned = both.keep_nodules(probabilities, image, torch.device("cpu"))
    assert not (np.argmax(cleaned, axis=0) == 2).any(), "neither blob has both filters' consent"
    both.combine = "mean"
    assert both.nodule_probabilities(image, centres, torch.device("cpu")) == pytest.approx((single[0] + single[1]) / 2)
    first = both.nodule_probabilities(image, centres, torch.device("cpu"), combine="first")
    assert first == pytest.approx(single[0]), "the first filter alone"


class CountedDarkness(CentreDarkness):
    """CentreDarkness that counts the patches it is asked about."""

    asked = 0

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        self.asked += len(patches)
        return super().forward(patches)


def test_under_min_the_second_filter_is_asked_only_about_what_the_first_accepts():
    image, probabilities = _two_blobs()
    both, counted = _filter(), CountedDarkness()
    both.others = (LoadedModel(both.model.card, counted, None),)
    centres = [(12, 12, 10), (12, 12, 30), (12, 12, 20)]
    full = both.nodule_probabilities(image, centres, torch.device("cpu"))
    counted.asked = 0
    lazy = both.nodule_probabilities(image, centres, torch.device("cpu"), needed=0.5)
    first_accepts = nodule_probabilities(both.model, image, centres, torch.device("cpu")) >= 0.5
    assert counted.asked == first_accepts.sum() < len(centres)
    assert np.array_equal(lazy >= 0.5, full >= 0.5), "the same verdicts"
    assert lazy[first_accepts] == pytest.approx(full[first_accepts]), "the asked ones get both filters' minimum"
    cleaned = both.keep_nodules(probabilities, image, torch.device("cpu"))
    assert not (np.argmax(cleaned, axis=0) == 2).any(), "keep_nodules still needs both filters' consent"


def test_a_card_names_several_filters_and_how_they_combine():
    card = _card(candidate_filter={"model": ["lung-nodules-fpr@9", "lung-nodules-fpr@9"], "combine": "mean"})
    loaded = load_candidate_filter(card, torch.device("cpu"))
    assert loaded.model.card.full_id == "lung-nodules-fpr@9" and len(loaded.others) == 1
    assert loaded.combine == loaded.spot_combine == "mean", "spots are combined alike unless the card says otherwise"
    card.postprocessing["candidate_filter"]["spot_combine"] = "first"
    assert load_candidate_filter(card, torch.device("cpu")).spot_combine == "first"
    for unnamed in ([], None, "", ["lung-nodules-fpr@9", 3]):
        with pytest.raises(DeepDiagError, match="candidate_filter.model must name a filter"):
            load_candidate_filter(_card(candidate_filter={"model": unnamed}), torch.device("cpu"))
    card.postprocessing["candidate_filter"]["combine"] = "vote"
    with pytest.raises(DeepDiagError, match="candidate_filter.combine must be one of min, mean, got 'vote'"):
        load_candidate_filter(card, torch.device("cpu"))


def test_a_segmentation_card_without_a_filter_loads_none():
    assert load_candidate_filter(_card(), torch.device("cpu")) is None


def test_a_card_naming_a_missing_filter_fails_clearly():
    with pytest.raises(DeepDiagError, match="no candidate-classification model 'no-such-filter@3' is installed"):
        load_candidate_filter(_card(candidate_filter={"model": "no-such-filter@3"}), torch.device("cpu"))


def test_a_filter_that_sees_another_grid_is_refused(tmp_path):
    from deepdiag.models.networks import build_network
    from deepdiag.models.store import save_model

    filter_card = ModelCard(
        id="grid-test-fpr",
        version=1,
        task="candidate-classification",
        network={
            "name": "ResNet",
            "parameters": {
                "block": "basic",
                "layers": [1, 1, 1, 1],
                "block_inplanes": [4, 4, 4, 4],
                "spatial_dims": 3,
                "n_input_channels": 1,
                "num_classes": 2,
            },
        },
        input={"spacing_mm": [2.0, 2.0, 2.0], "intensity": {"type": "window", "min_hu": -1000.0, "max_hu": 400.0}},
        patch_size=[16, 16, 16],
        classes=[],
    )
    folder = save_model(build_network(filter_card), filter_card, tmp_path / "grid-test-fpr@1")
    with pytest.raises(DeepDiagError, match="does not see the image as seg-test@1"):
        load_candidate_filter(_card(candidate_filter={"model": str(folder)}), torch.device("cpu"))


def test_training_patches_are_nodules_and_dense_lung_away_from_them():
    labels = np.zeros((40, 40, 40), dtype=np.uint8)
    labels[5:35, 5:35, 5:35] = 1
    image = np.full(labels.shape, 0.1, dtype=np.float16)
    image[10:30, 20, 20] = 0.6  # a vessel
    nodule = np.argwhere(np.ones((3, 3, 3))) + [18, 10, 10]
    labels[tuple(nodule.T)] = 2
    image[tuple(nodule.T)] = 0.7
    example = Example(image, labels, [nodule.astype(np.int32)])
    patches = case_patches(example, (8, 8, 8), (1.25, 1.0, 1.0), np.random.default_rng(0))
    assert patches.images.shape[1:] == stored_size((8, 8, 8))
    assert patches.labels.tolist().count(1) == 1 and patches.labels[0] == 1
    centre = tuple(n // 2 for n in stored_size((8, 8, 8)))
    assert patches.images[0][centre] == np.float16(0.7), "the positive is centred on the nodule"
    negatives = patches.images[patches.labels == 0]
    assert len(negatives) >= 5
    assert all(p[centre] == np.float16(0.6) for p in negatives), "negatives lie on the vessel, none on the nodule"
    assert 3.5 < patches.diameters_mm[0] < 4.5, "27 voxels of 1.25 mm3 are a 4 mm nodule"


class BrightIsNodule(torch.nn.Module):
    """A segmentation network that calls every bright voxel a nodule and the rest lung."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        nodule = (image > 0.5).float() * 10
        return torch.cat([torch.zeros_like(image), 5 - nodule / 2, nodule], dim=1)


def test_the_segmentation_models_components_become_positives_on_nodules_and_negatives_elsewhere():
    labels = np.ones((32, 48, 48), dtype=np.uint8)
    image = np.full(labels.shape, 0.1, dtype=np.float16)
    nodule = np.argwhere(np.ones((3, 3, 3))) + [14, 10, 10]
    labels[tuple(nodule.T)] = 2
    image[13:18, 9:14, 9:14] = 0.7  # the model's component: the nodule and a rim around it, off its centre
    image[14:17, 35:38, 35:38] = 0.7  # a blob far from the nodule
    example = Example(image, labels, [nodule.astype(np.int32)])
    card = ModelCard(
        id="bright-test", version=1, task="segmentation", network={}, input={}, patch_size=[32, 32, 32], classes=[]
    )
    model = LoadedModel(card, BrightIsNodule(), None)
    patches = case_patches(example, (8, 8, 8), (1.0, 1.0, 1.0), np.random.default_rng(0), model)
    assert patches.labels.tolist().count(1) == 2, "the nodule at its centre and the component on it"
    centre = tuple(n // 2 for n in stored_size((8, 8, 8)))
    negatives = patches.images[patches.labels == 0]
    assert len(negatives) == VESSEL_POINTS_PER_CASE + 1, (
        "dense points drawn at random, and the far blob as one component"
    )
    assert all(p[centre] == np.float16(0.7) for p in negatives), (
        "all on the far blob: nothing near the nodule is a negative"
    )
    assert np.allclose(patches.diameters_mm[:2], patches.diameters_mm[0]), "the component carries its nodule's diameter"


def test_the_zoomed_channel_shows_the_middle_of_the_box_twice_as_large():
    patches = torch.zeros((1, 1, 8, 8, 8))
    patches[0, 0, 3:5, 3:5, 3:5] = 1.0  # a nodule 2 voxels across
    both = with_zoomed_centre(patches, 2)
    assert both.shape == (1, 2, 8, 8, 8)
    assert torch.equal(both[:, :1], patches), "the first channel is the box as it was"
    across = both[0, 1, 4, 4] > 0.5
    assert across.sum() == 4 and across[2:6].all(), "in the second channel the nodule is 4 voxels across, still centred"
    assert with_zoomed_centre(patches, 1) is patches


class InputShapes(torch.nn.Module):
    """Says "nodule" for every patch and remembers the shape of what it was given."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(patches.shape[1:]))
        return torch.tensor([[0.0, 1.0]]).repeat(len(patches), 1)


@pytest.mark.parametrize("card_input, channels", [({}, 1), ({"centre_zoom": 2}, 2)])
def test_the_filter_is_given_the_zoomed_channel_when_its_card_asks_for_it(card_input, channels):
    card = ModelCard(
        id="zoom-test",
        version=1,
        task="candidate-classification",
        network={},
        input=card_input,
        patch_size=[8, 8, 8],
        classes=[],
    )
    network = InputShapes()
    scores = nodule_probabilities(
        LoadedModel(card, network, None), np.zeros((20, 20, 20), np.float32), [(10, 10, 10)] * 3, torch.device("cpu")
    )
    assert scores.tolist() == pytest.approx([0.731] * 3, abs=1e-3)
    assert network.shapes == [(channels, 8, 8, 8)]


def test_a_filter_trains_on_the_zoomed_channel_and_tells_a_small_nodule_from_an_empty_box():
    from monai.networks.nets import ResNet

    images = np.zeros((40, 14, 14, 14), dtype=np.float16)  # 8-voxel boxes and 3 voxels of jitter on each side
    images[:20, 6:8, 6:8, 6:8] = 0.8  # a 2-voxel nodule in the middle of the first 20
    data = NodulePatches(images, np.array([1] * 20 + [0] * 20), np.array([4.0] * 20 + [0.0] * 20, dtype=np.float32))
    torch.manual_seed(0)
    network = ResNet(
        "basic",
        [1, 1, 1, 1],
        [4, 4, 4, 4],
        spatial_dims=3,
        n_input_channels=2,
        conv1_t_stride=2,
        no_max_pool=True,
        num_classes=2,
    )
    zoom = functools.partial(with_zoomed_centre, zoom=2)
    train_classifier(network, data, [8, 8, 8], 60, 8, 1e-2, torch.device("cpu"), 0, network_input=zoom)
    logits = centre_logits(network, data, [8, 8, 8], torch.device("cpu"), zoom)
    assert (logits.argmax(1).numpy() == data.labels).all()


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # the detector's score stays; the filter only drops the dark spot however sure the detector is
        ("detector", [0.3, 0.4]),
        # ranked by the filter: the brightest spot first, whatever the detector thought of it
        ("filter", [1.0, 0.88]),
        ("geometric_mean", [0.55, 0.59]),
    ],
)
def test_a_detection_cards_score_rule_says_how_the_filter_ranks_the_findings(rule, expected):
    from deepdiag.detection.inference import _second_stage

    image = np.zeros((24, 24, 40), dtype=np.float32)
    image[12, 12, 10], image[12, 12, 20], image[12, 12, 30] = 0.9, 0.55, 0.1
    findings = [(np.array([12.0, 12.0, i]), 8.0, score) for i, score in ((10, 0.3), (20, 0.4), (30, 0.95))]
    candidate_filter = _filter()
    candidate_filter.score = rule
    kept = _second_stage(candidate_filter, image, findings, torch.device("cpu"), min_score=0.05)
    assert [f[0][2] for f in kept] == [10, 20]  # the dark spot is dropped under every rule
    assert [f[2] for f in kept] == pytest.approx(expected, abs=0.01)
    # under a ranking rule the score threshold applies to the new score (the detector's was applied before)
    strict = _second_stage(candidate_filter, image, findings, torch.device("cpu"), min_score=0.95)
    assert [f[0][2] for f in strict] == {"detector": [10, 20], "filter": [10], "geometric_mean": []}[rule]


def test_a_score_rule_the_engine_does_not_know_is_refused_naming_the_field():
    from deepdiag.models.registry import find_model

    card = ModelCard.read(find_model(None, "detection", "lung-nodules-det"))
    card.postprocessing["candidate_filter"] = {**card.postprocessing["candidate_filter"], "score": "best"}
    with pytest.raises(DeepDiagError, match="candidate_filter.score must be one of detector, geometric_mean, filter"):
        load_candidate_filter(card, torch.device("cpu"))


class FixedBoxes(torch.nn.Module):
    """A detector that reports the same boxes (i0, j0, i1, j1) on slices 10-14 of any image and
    nothing elsewhere: candidates whose places the test knows."""

    def __init__(self, boxes: list[list[float]]):
        super().__init__()
        self.boxes = torch.tensor(boxes, dtype=torch.float32)
        self.transform = type("Transform", (), {"min_size": (0,), "max_size": 0})()
        self.slice = 0

    def forward(self, batch: list[torch.Tensor]) -> list[dict]:
        outputs = []
        for _ in batch:
            on = 10 <= self.slice <= 14
            boxes = self.boxes if on else torch.zeros((0, 4))
            outputs.append({"boxes": boxes, "scores": torch.full((len(boxes),), 0.8)})
            self.slice += 1
        return outputs


def test_a_detectors_candidates_become_positives_on_nodules_and_negatives_in_the_lungs_elsewhere():
    labels = np.zeros((24, 48, 48), dtype=np.uint8)
    labels[:, 4:44, 4:30] = 1  # the lungs; columns 30 and on are chest wall
    image = np.full(labels.shape, 0.1, dtype=np.float16)
    nodule = np.argwhere(np.ones((5, 5, 5))) + [10, 8, 8]
    labels[tuple(nodule.T)] = 2
    image[tuple(nodule.T)] = 0.7
    example = Example(image, labels, [nodule.astype(np.int32)])
    card = ModelCard(
        id="boxes-test", version=1, task="detection", network={}, input={}, patch_size=[48, 48], classes=[]
    )
    on_nodule, in_lungs, by_nodule, in_wall = [9, 9, 12, 12], [18, 30, 22, 34], [14, 9, 16, 11], [38, 20, 42, 24]
    detector = LoadedModel(card, FixedBoxes([on_nodule, in_lungs, by_nodule, in_wall]), None)
    patches = detector_patches(example, (8, 8, 8), (1.0, 1.0, 1.0), detector)
    assert patches.labels.tolist() == [1, 0], "one positive on the nodule, one negative in the lungs"
    centre = tuple(n // 2 for n in stored_size((8, 8, 8)))
    assert patches.images[0][centre] == np.float16(0.7), "the positive is where the detector put it, on the nodule"
    assert patches.images[1][centre] == np.float16(0.1), "the negative is the candidate in the lungs"
    assert 6.0 < patches.diameters_mm[0] < 6.5, "the positive carries its nodule's diameter (125 voxels: 6.2 mm)"
