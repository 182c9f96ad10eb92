"""Choose the nodule post-processing rules of a segmentation model on validation phantoms.

The rules drop predicted nodule components that are too small (``min_nodule_volume_mm3``),
that the model is nowhere sure about (``min_nodule_peak_probability``) or, with
--candidate-filter, that the filter network scores under its ``min_probability``; with
--search-spots they also add the bright spots the model did not mark that the filter scores at
least ``spot_min_probability`` (searched as the filter's card says, as in the pipeline). They are chosen on a
validation seed (default 8) that neither training (1000, 2000) nor the held-out figures (7) use:
the most nodules found with at most --max-false-positives per scan (--small-nodule-cases adds
phantoms of the next seed (9) crowded with nodules of 3-6 mm, so that dozens of them, not a handful, weigh
in the choice). Each case is inferred once;
the rule grid is then pure bookkeeping over its components on the model grid.

    python scripts/tune_nodule_postprocessing.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-seg@2 --record
    python scripts/tune_nodule_postprocessing.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-seg@5 \
        --candidate-filter lung-nodules-fpr@1 --varied-scanners --cases 12 --record
    python scripts/tune_nodule_postprocessing.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-seg@6 \
        --candidate-filter lung-nodules-fpr@1 --search-spots --varied-scanners --cases 12 --record
"""

from __future__ import annotations

import argparse
import itertools
import sys
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

from training_common import SMALL_NODULE_CASES, SMALL_NODULE_MM, SMALL_NODULES_TEXT  # noqa: E402  (as the training's small-nodule phantoms)

from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.evaluation.segmentation import LARGE_MM, SMALL_MM  # noqa: E402
from deepdiag.models import find_model  # noqa: E402
from deepdiag.models.store import load_model, record_in_card  # noqa: E402
from deepdiag.phantom import PhantomConfig, generate_case  # noqa: E402
from deepdiag.segmentation.bright_spots import SpotSearch, bright_spots  # noqa: E402
from deepdiag.segmentation.candidate_filter import (  # noqa: E402
    SPOT_CLEARANCE_VOXELS,
    named_filters,
    nodule_probabilities,
)
from deepdiag.segmentation.inference import predict_probabilities  # noqa: E402
from deepdiag.segmentation.model_grid import lung_crop, normalize, to_model_grid  # noqa: E402
from deepdiag.segmentation.postprocess import keep_plausible_nodules  # noqa: E402
from deepdiag.training.segmentation_data import varied_scanner_config  # noqa: E402

VOLUMES_MM3 = (8.0, 15.0, 25.0, 40.0)
PEAKS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
FILTER_PROBABILITIES = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)  # 0: no filter
SPOT_PROBABILITIES = (None, 0.8, 0.9, 0.95, 0.98)  # None: no spot search
SPOT_MAX_SLICES_MM = (1.5, 2.0, 2.5)  # the spot search runs on scans with slices this thin
DEFAULT_NODULES = {"nodules": PhantomConfig().nodules, "diameter_mm": PhantomConfig().diameter_mm}
SMALL_NODULES = {"nodules": SMALL_NODULE_CASES, "diameter_mm": SMALL_NODULE_MM}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--max-false-positives", type=float, default=0.5, help="per scan, on the validation cases")
    parser.add_argument(
        "--varied-scanners",
        action="store_true",
        help="validation phantoms with the training's spread of pixel size, slice thickness, noise and blur "
        "instead of the default grid, so that the rules hold on thick slices too",
    )
    parser.add_argument(
        "--small-nodule-cases",
        type=int,
        default=0,
        help="this many more validation phantoms (seed --seed + 1, made like the other ones) with "
        f"{SMALL_NODULES_TEXT}: "
        "a few dozen small nodules rather than a few decide the choice",
    )
    parser.add_argument(
        "--candidate-filter", help="a candidate-classification model (id@version or folder) to tune with"
    )
    parser.add_argument(
        "--search-spots",
        action="store_true",
        help="also tune the filter's threshold for bright spots the model did not mark",
    )
    parser.add_argument("--record", action="store_true", help="write the chosen rules into the model's card")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    model = load_model(args.model)
    if args.record and len(named_filters(model.card.postprocessing, model.card.full_id)) > 1:
        parser.error(
            f"{model.card.full_id} names several candidate filters; this tuning tries one (--candidate-filter) and "
            "--record would replace them: make a new version with scripts/new_postprocessing_version.py instead"
        )
    device = pick_device("auto")
    candidate_filter = None
    if args.candidate_filter:
        candidate_filter = load_model(
            find_model(args.candidate_filter, "candidate-classification", args.candidate_filter), device
        )
    filter_grid = FILTER_PROBABILITIES if candidate_filter else (0.0,)
    spot_grid = SPOT_PROBABILITIES if candidate_filter and args.search_spots else (None,)
    slice_grid = SPOT_MAX_SLICES_MM if candidate_filter and args.search_spots else (None,)
    if len(spot_grid) > 1:
        print(
            f"spots searched as {candidate_filter.card.full_id}'s card says: "
            f"{SpotSearch.from_card(candidate_filter.card)}"
        )
    with get_context("spawn").Pool(args.workers) as pool:
        cases = pool.map(
            partial(_truth_on_model_grid, args.seed, model.card.spacing_mm, args.varied_scanners, DEFAULT_NODULES),
            range(args.cases),
        )
        cases += pool.map(
            partial(_truth_on_model_grid, args.seed + 1, model.card.spacing_mm, args.varied_scanners, SMALL_NODULES),
            range(args.small_nodule_cases),
        )
    components = [_components(model, candidate_filter, device, spot_grid, *case) for case in cases]
    rules = [
        r
        for r in itertools.product(VOLUMES_MM3, PEAKS, filter_grid, spot_grid, slice_grid)
        if r[3] is not None or r[4] == slice_grid[-1]
    ]
    rows = [_score(components, *rule) for rule in rules]
    print(
        f"{'min mm3':>8} {'min peak':>8} {'filter':>8} {'spots':>8} {'slices<=':>8} {'sens>=6':>8} {'sens3-6':>8} "
        f"{'FP/scan':>8}"
    )
    for row in rows:
        print(
            f"{row['min_nodule_volume_mm3']:8.0f} {row['min_nodule_peak_probability']:8.2f} "
            f"{row['filter_probability']:8.2f} "
            f"{row['spot_probability'] or 0:8.2f} {row['spot_max_slice_mm'] or 0:8.1f} {row['sensitivity_ge6mm']:8.3f} "
            f"{row['sensitivity_3to6mm']:8.3f} {row['false_positives_per_scan']:8.2f}"
        )
    allowed = [r for r in rows if r["false_positives_per_scan"] <= args.max_false_positives] or [
        min(rows, key=lambda r: r["false_positives_per_scan"])
    ]
    best = max(allowed, key=lambda r: (r["found"], -r["false_positives_per_scan"]))
    print(
        f"chosen: {best['min_nodule_volume_mm3']} mm3, peak {best['min_nodule_peak_probability']}, filter "
        f"{best['filter_probability']}, "
        f"spots {best['spot_probability']} on slices up to {best['spot_max_slice_mm']} mm"
    )
    if args.record:
        record_in_card(args.model, postprocessing=_rules(model.card.postprocessing, best, candidate_filter, args))


def _rules(previous: dict, best: dict, candidate_filter, args) -> dict:
    rules = {k: v for k, v in previous.items() if k != "candidate_filter"}
    rules.update(
        min_nodule_volume_mm3=best["min_nodule_volume_mm3"],
        min_nodule_peak_probability=best["min_nodule_peak_probability"],
    )
    if best["filter_probability"] > 0 or best["spot_probability"] is not None:
        rules["candidate_filter"] = {
            "model": candidate_filter.card.full_id,
            "min_probability": best["filter_probability"],
        }
        if best["spot_probability"] is not None:
            rules["candidate_filter"].update(
                spot_min_probability=best["spot_probability"], spot_max_slice_mm=best["spot_max_slice_mm"]
            )
    phantoms = (
        "phantoms with varied pixel size (0.6-0.9 mm), slices (1-2.5 mm), noise and blur"
        if args.varied_scanners
        else "default-grid phantoms"
    )
    small = (
        f" and {args.small_nodule_cases} more with {SMALL_NODULES_TEXT}, seed {args.seed + 1}"
        if args.small_nodule_cases
        else ""
    )
    rules["chosen_on"] = (
        f"{args.cases} {phantoms}, seed {args.seed}{small}, on the model grid: most nodules found "
        f"with at most {args.max_false_positives} false positives per scan"
    )
    return rules


def _truth_on_model_grid(seed: int, spacing, varied: bool, nodules: dict, index: int):
    """``nodules``: PhantomConfig's nodule options (how many per case, of which diameters)."""
    config = varied_scanner_config(seed, index, **nodules) if varied else PhantomConfig(**nodules)
    case = generate_case(config, seed, index)
    sizes = {n["id"]: n["equivalent_diameter_mm"] for n in case.truth["nodules"]}
    return (
        to_model_grid(case.ct, spacing),
        to_model_grid(case.instances, spacing, labels=True).array,
        sizes,
        max(case.ct.spacing),
    )


def _components(model, candidate_filter, device, spot_grid, ct, instances, sizes, slice_mm) -> dict:
    """Per predicted nodule component (after the rules that need no threshold): volume, peak
    probability, the filter's nodule probability (1 without a filter) and the truth nodules it
    touches; with a spot grid, every bright spot (see :func:`_scored_spots`)."""
    crop, _ = lung_crop(ct)
    image = normalize(ct.array[crop.slices], model.card.input["intensity"])
    raw = predict_probabilities(model.network, image, tuple(model.card.patch_size), device)
    probabilities = keep_plausible_nodules(raw, ct.spacing[::-1], 0.0)
    labels, count = ndimage.label(np.argmax(probabilities, axis=0) == 2, structure=np.ones((3, 3, 3)))
    truth = instances[crop.slices]
    voxel_mm3 = float(np.prod(ct.spacing))
    found = []
    centres = ndimage.center_of_mass(np.ones_like(labels), labels, np.arange(1, count + 1))
    scores = nodule_probabilities(candidate_filter, image, centres, device) if candidate_filter else np.ones(count)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = labels[box] == index
        found.append(
            {
                "volume_mm3": float(inside.sum() * voxel_mm3),
                "peak": float(probabilities[2][box][inside].max()),
                "filter": float(scores[index - 1]),
                "touches": set(np.unique(truth[box][inside]).tolist()) - {0},
            }
        )
    spots = (
        _scored_spots(raw, image, labels, truth, ct.spacing[::-1], candidate_filter, device)
        if len(spot_grid) > 1
        else []
    )
    return {"components": found, "sizes": sizes, "spots": spots, "slice_mm": slice_mm}


def _scored_spots(raw, image, components, truth, spacing_kji, candidate_filter, device) -> list[dict]:
    """Every bright spot with the filter's score, the truth nodules it touches, the components
    whose keeping would exclude it, and the spots it touches (so that touching ones count once)."""
    spots = bright_spots(
        image, np.argmax(raw, axis=0) >= 1, spacing_kji, search=SpotSearch.from_card(candidate_filter.card)
    )
    scores = nodule_probabilities(candidate_filter, image, [s.centre for s in spots], device)
    near = [_labels_within(components, s.centre, SPOT_CLEARANCE_VOXELS) for s in spots]
    centres_mm = np.array([s.centre * spacing_kji for s in spots]).reshape(-1, 3)
    reach_mm = np.array(
        [np.sqrt((((np.stack(s.voxels, axis=1) - s.centre) * spacing_kji) ** 2).sum(axis=1).max()) for s in spots]
    )
    gaps = np.linalg.norm(centres_mm[:, None] - centres_mm[None], axis=2) - reach_mm[:, None] - reach_mm[None]
    return [
        {
            "score": float(score),
            "touches": set(np.unique(truth[s.voxels]).tolist()) - {0},
            "near": near[n],
            "touching_spots": set(np.flatnonzero(gaps[n] <= 1.5 * max(spacing_kji)).tolist()) - {n},
        }
        for n, (s, score) in enumerate(zip(spots, scores))
    ]


def _labels_within(labels: np.ndarray, centre: np.ndarray, reach: int) -> set:
    """The labels within ``reach`` voxels (city-block, as ``reach`` 6-connected dilations) of ``centre``."""
    low = np.maximum(centre - reach, 0)
    box = labels[tuple(slice(lo, c + reach + 1) for lo, c in zip(low, centre))]
    offsets = np.abs(
        np.stack(np.meshgrid(*[np.arange(lo, lo + n) - c for lo, n, c in zip(low, box.shape, centre)], indexing="ij"))
    ).sum(axis=0)
    return set(np.unique(box[offsets <= reach]).tolist()) - {0}


def _added_spots(spots: list[dict], kept_components: set, threshold: float | None) -> tuple[set, int]:
    """The truth nodules the spots added at ``threshold`` touch, and how many groups of touching
    added spots touch none."""
    if threshold is None:
        return set(), 0
    added = {n for n, s in enumerate(spots) if s["score"] >= threshold and not s["near"] & kept_components}
    touched, false_positives, seen = set(), 0, set()
    for start in added - seen:
        if start in seen:
            continue
        group, stack = set(), [start]
        while stack:
            n = stack.pop()
            if n not in group:
                group.add(n)
                stack.extend(spots[n]["touching_spots"] & added)
        seen |= group
        hits = set().union(*(spots[n]["touches"] for n in group))
        touched |= hits
        false_positives += not hits
    return touched, false_positives


def _score(
    cases: list[dict],
    min_volume: float,
    min_peak: float,
    min_filter: float,
    spot_probability: float | None,
    spot_max_slice_mm: float | None,
) -> dict:
    found = {"large": 0, "small": 0}
    totals = {"large": 0, "small": 0}
    false_positives = 0
    for case in cases:
        kept_labels = {
            n
            for n, c in enumerate(case["components"], start=1)
            if c["volume_mm3"] >= min_volume and c["peak"] >= min_peak and c["filter"] >= min_filter
        }
        kept = [case["components"][n - 1] for n in kept_labels]
        searched = spot_probability is not None and case["slice_mm"] <= spot_max_slice_mm
        spot_touched, spot_false_positives = _added_spots(
            case["spots"], kept_labels, spot_probability if searched else None
        )
        touched = set().union(spot_touched, *(c["touches"] for c in kept))
        false_positives += sum(not c["touches"] for c in kept) + spot_false_positives
        for nodule, diameter in case["sizes"].items():
            size = "large" if diameter >= LARGE_MM else "small" if diameter >= SMALL_MM else None
            if size:
                totals[size] += 1
                found[size] += nodule in touched
    return {
        "min_nodule_volume_mm3": min_volume,
        "min_nodule_peak_probability": min_peak,
        "filter_probability": min_filter,
        "spot_probability": spot_probability,
        "spot_max_slice_mm": spot_max_slice_mm if spot_probability is not None else None,
        "found": found["large"] + found["small"],
        "sensitivity_ge6mm": found["large"] / max(totals["large"], 1),
        "sensitivity_3to6mm": found["small"] / max(totals["small"], 1),
        "false_positives_per_scan": false_positives / len(cases),
    }


if __name__ == "__main__":
    main()
