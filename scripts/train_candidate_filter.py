"""Train the lung-nodule candidate filter (false-positive reduction) for a segmentation model.

Seeded like the other training scripts: the training phantoms (--data-seed, the segmentation
model's own, read from the same cache) and the training run (--train-seed). The segmentation
model is run on the first --mined-cases phantoms; its components that touch no nodule become
negatives. The filter's threshold is then chosen on validation phantoms (seed 8) and recorded
in the segmentation model's card; held-out figures come from scripts/evaluate_model.py:

    python scripts/train_candidate_filter.py --segmentation-model lung-nodules-seg@4 \\
        --output DeepDiag/deepdiag/models/builtin/lung-nodules-fpr@1
    python scripts/tune_nodule_postprocessing.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-seg@4 \\
        --candidate-filter lung-nodules-fpr@1 --record
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
from training_common import (
    SPACING,
    WINDOW,
    add_real_background_options,
    common_parser,
    data_description,
    device_description,
    initial_network,
    log,
    prepare_examples,
    real_data_description,
    real_insertions,
    training_cases,
)

from deepdiag import __version__  # noqa: E402
from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.models import ModelCard, find_model  # noqa: E402
from deepdiag.models.store import load_model, save_model  # noqa: E402
from deepdiag.segmentation.bright_spots import MIN_BLOBNESS, SpotSearch  # noqa: E402
from deepdiag.segmentation.candidate_filter import network_input  # noqa: E402
from deepdiag.training.candidate_filter import case_patches, detector_patches, spot_patches  # noqa: E402
from deepdiag.training.classification import NodulePatches, cached_patches, centre_logits, train_classifier  # noqa: E402
from deepdiag.training.real_backgrounds import real_background_examples, real_example_name  # noqa: E402

PATCH = [32, 32, 32]


def card_template(args, segmentation: ModelCard, detector: ModelCard | None) -> ModelCard:
    judged = (
        f"each candidate {detector.full_id} finds"
        if detector
        else f"each nodule component {segmentation.full_id} predicts"
    )
    return ModelCard(
        id="lung-nodules-fpr",
        version=args.version,
        task="candidate-classification",
        network={
            "name": "ResNet",
            "parameters": {
                "block": "basic",
                "layers": [1, 1, 1, 1],
                "block_inplanes": list(args.channels),
                "spatial_dims": 3,
                "n_input_channels": channels(args),
                "conv1_t_size": 5,
                "conv1_t_stride": 2,
                "no_max_pool": True,
                "num_classes": 2,
            },
        },
        input={
            "region": "detector candidate" if detector else "segmentation component",
            "channels": channels(args),
            "modality": "CT",
            "spacing_mm": list(segmentation.spacing_mm),
            "intensity": segmentation.input["intensity"],
            "array_order": "[k, j, i] box centred on the component, on the segmentation model's grid",
            **({"centre_zoom": args.centre_zoom} if args.centre_zoom > 1 else {}),
        },
        patch_size=PATCH,
        classes=[
            {"name": "not a nodule", "label_value": 0, "color": [0.5, 0.5, 0.5]},
            {"name": "nodule", "label_value": 1, "color": [0.95, 0.25, 0.15]},
        ],
        description=(
            f"Keeps or rejects {judged}, from a 32-voxel box around it"
            + (f" and the box's middle magnified {args.centre_zoom}x" if args.centre_zoom > 1 else "")
            + " (false-positive reduction: vessel pieces against nodules). Trained on synthetic chest CTs made by "
            "`deepdiag phantom`"
            + (
                f" and on {len(args.real_backgrounds)} real chest CTs with inserted nodules"
                if args.real_backgrounds
                else ""
            )
            + "; not validated on annotated patient nodules."
        ),
    )


def channels(args) -> int:
    """The box, and with --centre-zoom its magnified middle."""
    return 2 if args.centre_zoom > 1 else 1


def spot_search(args) -> SpotSearch:
    return SpotSearch(args.spot_min_blobness, args.spots_without_chest_wall)


def _search_suffix(search: SpotSearch) -> str:
    """Part of a cached spot file's name: the default search keeps the names of earlier caches."""
    if search == SpotSearch():
        return ""
    return f"-blobness{search.min_blobness:g}" + ("-without-chest-wall" if search.without_chest_wall else "")


def patches(args, examples, segmentation, spot_scorer, detector, device) -> NodulePatches:
    """Per case: truth nodules, random vessel points and, on the first --mined-cases, the model's
    mistakes (and with --detection-model the detector's candidates); with --spots, the bright
    spots on and off the nodules."""
    cache = Path(args.cache).parent / "candidate-filter"
    search = spot_search(args)
    parts = []
    for position, ((case_name, seed, index), example) in enumerate(zip(training_cases(args), examples)):
        mined = position < args.mined_cases
        name = f"{case_name}-patch{PATCH[0]}" + (f"-components-of-{segmentation.card.full_id}" if mined else "")
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 7)))
        parts.append(
            cached_patches(
                cache / f"{name}.npz",
                lambda: case_patches(
                    example,
                    tuple(PATCH),
                    segmentation.card.spacing_mm[::-1],
                    rng,
                    segmentation if mined else None,
                    device,
                ),
            )
        )
        if args.spots:
            scored = f"-scored-by-{spot_scorer.card.full_id}" if spot_scorer else ""
            parts.append(
                cached_patches(
                    cache / f"{name}-spots{_search_suffix(search)}{scored}.npz",
                    lambda: spot_patches(
                        example,
                        tuple(PATCH),
                        segmentation.card.spacing_mm[::-1],
                        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 8))),
                        spot_scorer,
                        device,
                        search,
                    ),
                )
            )
        if detector and mined:
            parts.append(candidate_patches(example, f"{case_name}-patch{PATCH[0]}", detector, device, cache))
        if position % 10 == 9:
            log(f"  {position + 1} cases: {sum(int((p.labels == 0).sum()) for p in parts)} negatives so far")
    parts += real_background_patches(args, segmentation, spot_scorer, detector, device, cache)
    return NodulePatches.concatenate(parts)


def candidate_patches(example, name: str, detector, device, cache: Path) -> NodulePatches:
    """The detector's candidates on one case (see detector_patches), cached by case and detector."""
    return cached_patches(
        cache / f"{name}-candidates-of-{detector.card.full_id}.npz",
        lambda: detector_patches(example, tuple(PATCH), detector.card.spacing_mm[::-1], detector, device),
    )


def real_background_patches(args, segmentation, spot_scorer, detector, device, cache: Path) -> list[NodulePatches]:
    """The same patches on each --real-backgrounds scan with nodules inserted, always mined: what
    the segmentation model marks on the real background away from the nodules is a negative."""
    parts = []
    search = spot_search(args)
    for background in args.real_backgrounds:
        inserted = real_insertions(args)
        examples = real_background_examples(
            background, args.real_cases, args.real_seed, SPACING, WINDOW, args.cache, inserted
        )
        for index, example in enumerate(examples):
            copy = real_example_name(background, args.real_seed, index, inserted)  # carries the shapes
            name = f"{copy}-patch{PATCH[0]}-components-of-{segmentation.card.full_id}"
            rng = np.random.default_rng(np.random.SeedSequence(args.real_seed, spawn_key=(index, 7)))
            parts.append(
                cached_patches(
                    cache / f"{name}.npz",
                    lambda: case_patches(
                        example, tuple(PATCH), segmentation.card.spacing_mm[::-1], rng, segmentation, device
                    ),
                )
            )
            if args.spots:
                scored = f"-scored-by-{spot_scorer.card.full_id}" if spot_scorer else ""
                parts.append(
                    cached_patches(
                        cache / f"{name}-spots{_search_suffix(search)}{scored}.npz",
                        lambda: spot_patches(
                            example,
                            tuple(PATCH),
                            segmentation.card.spacing_mm[::-1],
                            np.random.default_rng(np.random.SeedSequence(args.real_seed, spawn_key=(index, 8))),
                            spot_scorer,
                            device,
                            search,
                        ),
                    )
                )
            if detector:
                parts.append(candidate_patches(example, f"{copy}-patch{PATCH[0]}", detector, device, cache))
        log(f"  real background {Path(background).name}: {args.real_cases} cases with inserted nodules")
    return parts


def main() -> None:
    parser = common_parser(
        __doc__.splitlines()[0],
        data_seed=2000,
        nodules=[3, 8],
        train_cases=60,
        iterations=3000,
        batch=32,
        learning_rate=2e-3,
    )
    parser.add_argument(
        "--segmentation-model", required=True, help="the model whose false positives the filter learns to reject"
    )
    parser.add_argument(
        "--mined-cases", type=int, default=30, help="training phantoms the segmentation model is run on"
    )
    parser.add_argument(
        "--spots",
        action="store_true",
        help="add the bright spots of every phantom (on nodules: positives; elsewhere: negatives)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        nargs=4,
        default=[16, 32, 64, 128],
        help="feature channels of the ResNet's four stages (wider: more capacity, slower)",
    )
    parser.add_argument(
        "--centre-zoom",
        type=int,
        default=1,
        choices=[1, 2],
        help="2: the filter also sees the middle half of its box at twice the size (finer view of small nodules)",
    )
    parser.add_argument(
        "--spot-min-blobness",
        type=float,
        default=MIN_BLOBNESS,
        help="the spot search's least curvature across every direction (lower: fainter spots, ground glass)",
    )
    parser.add_argument(
        "--spots-without-chest-wall",
        action="store_true",
        help="search spots with everything outside the lungs set to the lungs' median (finds nodules on the pleura)",
    )
    parser.add_argument(
        "--spots-scored-by",
        help="an earlier filter (id@version): the false spots it scores highest become negatives first",
    )
    parser.add_argument(
        "--detection-model",
        help="a detector (id@version) whose candidates on the mined phantoms and the real backgrounds become "
        "examples too (on a nodule: positives; elsewhere: negatives): a filter for that detector's second stage",
    )
    add_real_background_options(parser, cases=3, seed=5000)
    parser.add_argument(
        "--init-from", help="start from this filter's weights (id@version; same network) instead of a new network"
    )
    parser.add_argument(
        "--small-nodule-share",
        type=float,
        help="the share of nodule draws that go to nodules under 6 mm (default: each drawn 3x as often as a larger "
        "one); with --small-nodule-cases, keeps large nodules as common in training as without them",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    device = pick_device(args.device)
    segmentation = load_model(find_model(args.segmentation_model, "segmentation", args.segmentation_model), device)
    if list(segmentation.card.spacing_mm) != SPACING or segmentation.card.input["intensity"] != WINDOW:
        raise SystemExit(
            "the training phantoms are prepared on the project's model grid; this segmentation model uses another"
        )
    detector = (
        load_model(find_model(args.detection_model, "detection", args.detection_model), device)
        if args.detection_model
        else None
    )
    if detector and list(detector.card.spacing_mm) != SPACING:
        raise SystemExit("the training phantoms are prepared on the project's model grid; this detector uses another")
    card = card_template(args, segmentation.card, detector.card if detector else None)
    if args.spots:
        card.input["spot_search"] = spot_search(args).as_card_entry()
    spot_scorer = (
        load_model(find_model(args.spots_scored_by, "candidate-classification", args.spots_scored_by), device)
        if args.spots_scored_by
        else None
    )
    data = patches(args, prepare_examples(args), segmentation, spot_scorer, detector, device)
    counts = {"nodules": int(data.labels.sum()), "not nodules": int((data.labels == 0).sum())}
    log(f"training on {counts}")
    torch.manual_seed(args.train_seed)
    network = initial_network(card, args.init_from)
    to_input = network_input(card)
    summary = train_classifier(
        network,
        data,
        PATCH,
        args.iterations,
        args.batch,
        args.learning_rate,
        device,
        args.train_seed,
        on_progress=lambda step, loss: log(f"  iteration {step}: loss {loss:.4f}"),
        small_nodule_share=args.small_nodule_share,
        network_input=to_input,
    )
    accuracy = float((centre_logits(network, data, PATCH, device, to_input).argmax(1).numpy() == data.labels).mean())
    card.training = {
        "data": data_description(args) + real_data_description(args),
        **({"initialized_from": args.init_from} if args.init_from else {}),
        "examples": counts,
        "positives": (
            f"every truth nodule at its centre, and {segmentation.card.full_id}'s nodule components on a nodule "
            f"(first {args.mined_cases} phantoms) at their own centres"
            + ("; the two strongest bright spots on each nodule" if args.spots else "")
            + (f"; {detector.card.full_id}'s candidates on a nodule, at their own centres" if detector else "")
        ),
        "negatives": (
            f"{segmentation.card.full_id}'s nodule components at least 4 voxels from every nodule on the first "
            f"{args.mined_cases} phantoms (no peak-probability rule, components of 8 mm3 and more), and 20 random "
            "dense lung voxels per phantom as far from the nodules"
            + (
                "; bright spots (spot search) at least 4 voxels from every nodule, 40 per phantom"
                + (f", the 20 that {spot_scorer.card.full_id} scores highest first" if spot_scorer else "")
                if args.spots
                else ""
            )
            + (
                f"; every candidate of {detector.card.full_id} (any score) touching the lungs and at least 4 voxels "
                f"from every nodule, on the first {args.mined_cases} phantoms and every real-background copy"
                if detector
                else ""
            )
        ),
        "data_seed": args.data_seed,
        "train_seed": args.train_seed,
        "iterations": args.iterations,
        "batch": args.batch,
        "sampling": "class-balanced; "
        + (
            f"{args.small_nodule_share:.0%} of the nodule draws are nodules under 6 mm"
            if args.small_nodule_share is not None
            else "nodules under 6 mm drawn 3x as often"
        ),
        "optimizer": f"AdamW, one-cycle, max lr {args.learning_rate}",
        "augmentation": "candidate up to 3 voxels off centre, flips, axial quarter turns, "
        "intensity scale/shift, noise (MONAI)"
        + (
            f"; then the box's middle magnified {args.centre_zoom}x as a second channel" if args.centre_zoom > 1 else ""
        ),
        "training_accuracy": round(accuracy, 4),
        "device": device_description(device),
        "training_seconds": summary["seconds"],
        "final_loss": summary["final_loss"],
        "software": f"deepdiag {__version__}, torch {torch.__version__}",
    }
    save_model(network, card, args.output)
    log(f"saved {args.output} in {time.perf_counter() - started:.0f} s; training accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
