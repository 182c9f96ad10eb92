"""Train the shipped nodule detector (Faster R-CNN, 2.5D), evaluate it (FROC), save it with its card.

Everything is seeded: the training phantoms (--data-seed; the same prepared cases as the
segmentation model's, read from --cache when there), the training run (--train-seed) and the
held-out phantoms (--eval-seed, never used for training). No pretrained weights exist offline,
so the detector is trained from scratch.

    python scripts/train_detection_model.py --output DeepDiag/deepdiag/models/builtin/lung-nodules-det@1
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch  # noqa: E402
import torchvision  # noqa: E402
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
    prepare_real_examples,
    real_data_description,
    training_cases,
)

from deepdiag import __version__  # noqa: E402
from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.evaluation.held_out import evaluate_detection_on_phantoms  # noqa: E402
from deepdiag.models import ModelCard  # noqa: E402
from deepdiag.models.registry import find_model  # noqa: E402
from deepdiag.models.store import LoadedModel, load_model, save_model  # noqa: E402
from deepdiag.training.detection import train_detector  # noqa: E402
from deepdiag.training.hard_negatives import MIN_SCORE as HARD_NEGATIVE_MIN_SCORE  # noqa: E402
from deepdiag.training.hard_negatives import cached_hard_negatives


def card_template(args) -> ModelCard:
    return ModelCard(
        id="lung-nodules-det",
        version=args.version,
        task="detection",
        network={
            "name": "FasterRCNN",
            "parameters": {
                "backbone": "torchvision resnet18 up to layer2 (stride 8), from scratch",
                "image_size": args.patch,
                "anchor_sizes": [4, 8, 16, 32, 64],
                "slice_score_threshold": 0.05,
            },
        },
        input={
            "channels": 3,
            "modality": "CT",
            "spacing_mm": SPACING,
            "intensity": WINDOW,
            "array_order": "axial slices k-1, k, k+1 as channels (2.5D), LPS",
        },
        patch_size=[args.patch, args.patch],
        classes=[
            {
                "name": "Lung nodule",
                "label_value": 1,
                "color": [0.95, 0.25, 0.15],
                "category": "SCT^49755003^Morphologically Altered Structure",
                "type": "SCT^27925004^Nodule",
                "region": "SCT^39607008^Lung",
            }
        ],
        postprocessing={
            "merge": (
                "boxes on slices at most 2 apart with centres within half a box side form one finding; 3D NMS by radius"
            ),
            "default_min_score": 0.5,
        },
        description=(
            "Finds lung nodules (3-30 mm) on chest CT: Faster R-CNN on axial slices with their neighbours as channels, "
            "boxes merged into 3D findings. Trained only on synthetic chest CTs made by `deepdiag phantom`; not "
            "validated "
            "on patient scans."
        ),
    )


def main() -> None:
    parser = common_parser(
        __doc__.splitlines()[0], data_seed=2000, nodules=[3, 8], iterations=2500, batch=4, learning_rate=1e-3
    )
    parser.add_argument("--patch", type=int, default=256, help="side of the square training patches in pixels")
    parser.add_argument(
        "--small-nodule-boost",
        type=float,
        default=1.0,
        help="draw nodules under 6 mm this many times as often as larger ones",
    )
    parser.add_argument(
        "--init-from", help="start from this detector's weights (id@version or folder) instead of random ones"
    )
    parser.add_argument(
        "--hard-negatives-from",
        help="detector (id@version or folder) whose false positives on the training cases to train on",
    )
    parser.add_argument(
        "--hard-negative-share", type=float, default=0.25, help="share of patches around those false positives"
    )
    add_real_background_options(parser, cases=4, seed=5000)
    args = parser.parse_args()
    started = time.perf_counter()
    device = pick_device(args.device)
    card = card_template(args)
    examples, names = prepare_examples(args), [name for name, _, _ in training_cases(args)]
    real_examples, real_names = prepare_real_examples(args)
    examples, names = examples + real_examples, names + real_names
    hard_negatives = mined_false_positives(args, examples, names, device) if args.hard_negatives_from else None
    torch.manual_seed(args.train_seed)
    network = initial_network(card, args.init_from)
    log(f"training {args.iterations} iterations, batch {args.batch}, patch {args.patch} on {device}")
    summary = train_detector(
        network,
        examples,
        args.patch,
        args.iterations,
        args.batch,
        device,
        args.train_seed,
        args.learning_rate,
        on_progress=lambda step, losses: log(f"  iteration {step}: {losses}"),
        small_nodule_boost=args.small_nodule_boost,
        hard_negatives=hard_negatives,
        hard_negative_share=args.hard_negative_share if hard_negatives else 0.0,
    )
    card.training = {
        "data": data_description(args) + real_data_description(args),
        "data_seed": args.data_seed,
        "train_seed": args.train_seed,
        "iterations": args.iterations,
        "batch": args.batch,
        "patch_sampling": sampling_description(args, hard_negatives),
        "optimizer": f"AdamW, one-cycle, max lr {args.learning_rate}",
        "augmentation": "left-right flips, intensity scale/shift",
        "initialized_from": args.init_from or "random (seeded); no pretrained backbone",
        "device": device_description(device),
        "training_seconds": summary["seconds"],
        "final_losses": summary["final_losses"],
        "software": f"deepdiag {__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}",
    }
    if args.eval_cases:
        folder = Path(args.eval_dir) if args.eval_dir else Path(tempfile.mkdtemp(prefix="deepdiag-eval-"))
        log(f"evaluating on {args.eval_cases} held-out phantoms (seed {args.eval_seed}) in {folder}")
        card.metrics = evaluate_detection_on_phantoms(
            LoadedModel(card, network, folder), device, args.eval_cases, args.eval_seed, folder
        )
    save_model(network, card, args.output)
    log(f"saved {args.output} in {time.perf_counter() - started:.0f} s; metrics: {card.metrics}")


def mined_false_positives(args, examples, names, device) -> list:
    miner = load_model(find_model(args.hard_negatives_from, "detection", args.hard_negatives_from))
    log(f"mining the false positives of {miner.card.full_id} on the training cases (cached in {args.cache})")
    mined = cached_hard_negatives(
        miner.network.float(),
        miner.card.full_id,
        examples,
        names,
        args.cache,
        device,
        on_case=lambda done, total: (
            log(f"  mined {done} of {total} cases") if done % 10 == 0 or done == total else None
        ),
    )
    log(f"  {sum(len(m) for m in mined)} false-positive slice boxes on {len(mined)} cases")
    return mined


def sampling_description(args, hard_negatives) -> str:
    negatives = (
        f"{args.hard_negative_share:.0%} around false positives of {args.hard_negatives_from} (score >= "
        f"{HARD_NEGATIVE_MIN_SCORE:g}) on the training cases, "
        if hard_negatives
        else ""
    )
    return (
        f"70% of the patches around a nodule (nodule drawn first, nodules under 6 mm {args.small_nodule_boost:g} "
        "times as often, "
        f"then one of its voxels), {negatives}the rest anywhere in the lung crop"
    )


if __name__ == "__main__":
    main()
