"""Sharp reconstruction kernels: the scan's noise measured in its air, a sharp-kernel scan smoothed
under the classifier's and the detector's bound before their networks see it, and a scan within
the bound untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from deepdiag.classification.classifier import finding_probabilities, network_view
from deepdiag.detection.inference import detect_volume
from deepdiag.errors import DeepDiagError
from deepdiag.evaluation.detection import hits, in_known_lesion
from deepdiag.evaluation.real_scans import INSERTED, SHARP_KERNEL, inserted_case
from deepdiag.image_io import read_volume
from deepdiag.kernel_noise import air_noise_hu, harmonized
from deepdiag.lung_rads import NODULE_TYPES
from deepdiag.models import ModelCard, find_model
from deepdiag.models.store import load_model
from deepdiag.phantom import PhantomConfig, generate_case
from deepdiag.phantom.imaging import sharper_kernel
from deepdiag.phantom.insertion import insertion_host

THORAX = SHARED_DATA / "chest_ct" / "thorax_4dct_phase00" / "ct.nii.gz"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def thorax():
    return read_volume(THORAX)


@pytest.fixture(scope="module")
def thorax_host(thorax):
    return insertion_host(thorax, THORAX)


@pytest.fixture(scope="module")
def classifier():
    return load_model(find_model(None, "classification", "nodule-type-cls"), CPU)


def test_the_shipped_classifier_bounds_the_noise_it_is_given(classifier):
    assert float(classifier.card.input["max_air_noise_hu"]) > 0


def test_a_soft_kernel_real_ct_and_a_default_phantom_reach_the_classifier_voxel_for_voxel(thorax, classifier):
    bound = float(classifier.card.input["max_air_noise_hu"])
    phantom = generate_case(PhantomConfig(size=(512, 512, 24), nodules=(0, 0)), 7, 0).ct
    for scan in (thorax, phantom):
        assert air_noise_hu(scan) < bound
        seen, sigma_mm = harmonized(scan, bound)
        assert seen is scan and sigma_mm == 0.0


def test_a_sharp_kernel_rendition_is_noisier_and_is_smoothed_in_plane_under_the_bound(thorax, classifier):
    bound = float(classifier.card.input["max_air_noise_hu"])
    padded = thorax.array.copy()
    padded[:, :20, :] = -3024  # a scanner's outside-field padding, which must stay as it is
    sharp = thorax.with_array(sharper_kernel(padded, thorax.spacing, **SHARP_KERNEL, rng=np.random.default_rng(0)))
    assert air_noise_hu(sharp) > 1.5 * air_noise_hu(thorax)
    seen, sigma_mm = harmonized(sharp, bound)
    assert sigma_mm > 0
    assert air_noise_hu(seen) <= bound
    assert np.all(seen.array[:, :20, :] == -3024)
    # the user is told, naming the model; a soft scan gives no such word
    assert [classifier.card.full_id in w for w in network_view(classifier, sharp)[1]] == [True]
    assert network_view(classifier, thorax)[1] == []
    # models of one run with the same bound share one smoothing (analyze: the detector's and the classifier's)
    views = {}
    assert network_view(classifier, sharp, views)[0] is network_view(classifier, sharp, views)[0]
    assert list(views) == [bound]
    # in-plane only: a slice's mean is kept, nothing of one slice leaks into the next
    middle = sharp.array.shape[0] // 2
    inside = sharp.array[middle] >= -1024
    assert abs(seen.array[middle][inside].mean() - sharp.array[middle][inside].mean()) < 1.0


def test_on_a_sharp_kernel_real_ct_the_bound_types_more_inserted_nodules_right(thorax_host, classifier):
    """Two copies of the held-out real CT with nodules inserted (the real-scan evaluation's seed and
    set, copies 1 and 3: 9 of their 19 nodules are ground glass), shown through a sharp kernel."""
    without_bound = load_model(classifier.folder, CPU)
    without_bound.card.input.pop("max_air_noise_hu")
    right = {"shipped": 0, "without the bound": 0}
    total = 0
    for index in (1, 3):
        case = inserted_case(thorax_host, INSERTED, 6001, index, SHARP_KERNEL)
        nodules = case.truth["nodules"]
        truth = np.array([NODULE_TYPES.index(n["type"]) for n in nodules])
        centres = [n["center_lps"] for n in nodules]
        total += len(nodules)
        for name, model in (("shipped", classifier), ("without the bound", without_bound)):
            right[name] += int((finding_probabilities(model, case.ct, centres, CPU).argmax(1) == truth).sum())
    assert right["shipped"] >= right["without the bound"] + 2, right
    assert right["shipped"] / total >= 0.7, (right, total)


def test_a_card_whose_noise_bound_is_not_a_positive_number_is_refused(classifier, tmp_path):
    document = json.loads((classifier.folder / "model.json").read_text())
    for bad in (-3, "20", 0):
        document["input"]["max_air_noise_hu"] = bad
        (tmp_path / "model.json").write_text(json.dumps(document))
        with pytest.raises(DeepDiagError, match="input.max_air_noise_hu"):
            ModelCard.read(tmp_path)


def test_on_a_sharp_kernel_real_ct_the_bounded_detector_marks_fewer_false_positives_and_says_why(thorax_host):
    """Copy 0 of the held-out real CT's inserted set (seed 6001) through a sharp kernel: version 4
    of the detector, the same weights without the bound, marked 3 places there that are no
    inserted nodule at its default score; the shipped detector marks at most one."""
    detector = load_model(find_model(None, "detection", "lung-nodules-det"), CPU)
    without_bound = load_model(detector.folder, CPU)
    without_bound.card.input.pop("max_air_noise_hu")
    case = inserted_case(thorax_host, INSERTED, 6001, 0, SHARP_KERNEL)
    nodules = [(n["center_lps"], n["equivalent_diameter_mm"]) for n in case.truth["nodules"]]
    false_positives, warnings = {}, {}
    for name, model in (("shipped", detector), ("without the bound", without_bound)):
        result = detect_volume(case.ct, model, CPU, model.card.default_min_score)
        false_positives[name] = sum(
            not in_known_lesion(f.center_lps, case.truth) and not any(hits(f.center_lps, *n) for n in nodules)
            for f in result.findings
        )
        warnings[name] = [w for w in result.warnings if "smoothed" in w]
    assert false_positives["shipped"] < false_positives["without the bound"], false_positives
    assert false_positives["shipped"] <= 1, false_positives
    assert [detector.card.full_id in w for w in warnings["shipped"]] == [True]
    assert warnings["without the bound"] == []
