"""Train the shipped lung / lung-nodule segmentation model, evaluate it, save it with its card.

Everything is seeded: the training phantoms (--data-seed), the training run (--train-seed)
and the held-out evaluation phantoms (--eval-seed, never used for training). Defaults take
about an hour on 2 CPU cores; on a GPU, raise --iterations and --batch. Prepared training
cases are kept in --cache, so a second run skips the ten minutes of making them.

The shipped versions (see docs/models/lung-nodules-seg.md for the exact commands):

    python scripts/train_segmentation_model.py --version 2 --init-from lung-nodules-seg@1 \
        --data-seed 2000 --nodules 3 8 --iterations 2000 --learning-rate 1e-3 \
        --output DeepDiag/deepdiag/models/builtin/lung-nodules-seg@2
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import monai  # noqa: E402
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
    prepare_real_examples,
    real_data_description,
)

from deepdiag import __version__  # noqa: E402
from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.evaluation.held_out import evaluate_on_phantoms  # noqa: E402
from deepdiag.models import ModelCard  # noqa: E402
from deepdiag.models.registry import find_model  # noqa: E402
from deepdiag.models.store import LoadedModel, save_model  # noqa: E402
from deepdiag.terminology import LUNG_NODULES, LUNGS  # noqa: E402
from deepdiag.training.segmentation import Recipe, train  # noqa: E402


def card_template(args) -> ModelCard:
    classes = [
        {
            "name": c.name,
            "label_value": c.label_value,
            "color": list(c.color),
            "category": c.category.encode(),
            "type": c.type.encode(),
            "region": c.region.encode() if c.region.value else "",
        }
        for c in (LUNGS, LUNG_NODULES)
    ]
    return ModelCard(
        id="lung-nodules-seg",
        version=args.version,
        task="segmentation",
        network={
            "name": "UNet",
            "parameters": {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 3,
                "channels": [16, 32, 64, 128, 128],
                "strides": [2, 2, 2, 2],
                "num_res_units": 2,
            },
        },
        input={
            "channels": 1,
            "modality": "CT",
            "spacing_mm": SPACING,
            "intensity": WINDOW,
            "array_order": "kji (axial slices first), LPS",
        },
        patch_size=list(args.patch),
        classes=classes,
        postprocessing={"min_nodule_volume_mm3": 8.0, "nodules_must_border_lung": True},
        description=(
            "Segments both lungs and lung nodules (solid, part-solid, ground-glass, 3-30 mm) on chest CT. "
            + training_world(args)
            + " Not validated on annotated patient nodules: fine-tune on your own labeled cases before clinical "
            "research use."
        ),
    )


def training_world(args) -> str:
    shapes = "real LIDC-IDRI nodule outlines among the shapes" if "lidc" in args.shapes else "procedural nodule shapes"
    if not args.real_backgrounds:
        return f"Trained on synthetic chest CTs made by `deepdiag phantom` (procedural anatomy, {shapes})."
    return (
        f"Trained on synthetic chest CTs made by `deepdiag phantom` and on {len(args.real_backgrounds)} real chest "
        f"CTs with synthetic nodules inserted ({shapes})."
    )


def main() -> None:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=[96, 96, 96],
        help="inference patch (sliding window), recorded in the card",
    )
    parser.add_argument(
        "--train-patch",
        type=int,
        nargs=3,
        help="training patch, when smaller than --patch (faster steps, more of them)",
    )
    parser.add_argument(
        "--init-from", help="start from this model's weights (id@version or folder) instead of random ones"
    )
    parser.add_argument(
        "--nodule-share", type=float, default=Recipe.nodule_share, help="share of patches centred near a nodule"
    )
    parser.add_argument(
        "--small-nodule-boost",
        type=float,
        default=Recipe.small_nodule_boost,
        help="draw nodules under 6 mm this many times as often as larger ones",
    )
    parser.add_argument(
        "--per-patch-dice", action="store_true", help="one Dice per patch instead of one over the batch"
    )
    parser.add_argument(
        "--nodule-weight", type=float, default=Recipe.nodule_weight, help="weight of the nodule class in the loss"
    )
    parser.add_argument(
        "--postprocessing-from",
        help="keep this model's post-processing (id@version: its rules and candidate filter) instead of the plain "
        "minimum volume; for a network fine-tuned from it, whose rules were tuned before",
    )
    add_real_background_options(parser, cases=6, seed=5200)
    args = parser.parse_args()
    recipe = Recipe(
        nodule_share=args.nodule_share,
        small_nodule_boost=args.small_nodule_boost,
        per_patch_dice=args.per_patch_dice,
        nodule_weight=args.nodule_weight,
    )
    started = time.perf_counter()
    device = pick_device(args.device)
    card = card_template(args)
    if args.postprocessing_from:
        source = find_model(args.postprocessing_from, "segmentation", args.postprocessing_from)
        card.postprocessing = dict(ModelCard.read(source).postprocessing)

    examples = prepare_examples(args) + prepare_real_examples(args)[0]
    network = initial_network(card, args.init_from)
    train_patch = tuple(args.train_patch or args.patch)
    log(f"training {args.iterations} iterations, batch {args.batch}, patch {list(train_patch)} on {device}")
    summary = train(
        network,
        examples,
        train_patch,
        args.iterations,
        args.batch,
        device,
        args.train_seed,
        args.learning_rate,
        on_progress=lambda step, loss: log(f"  iteration {step}: loss {loss:.4f}"),
        recipe=recipe,
    )
    card.training = {
        "data": data_description(args) + real_data_description(args),
        "initialized_from": args.init_from or "random (seeded)",
        "patch_sampling": (
            f"{recipe.nodule_share:.0%} of the patches around a nodule (nodule drawn first, nodules under 6 mm "
            f"{recipe.small_nodule_boost:g} times as often, then one of its voxels), the rest anywhere in the lung crop"
        ),
        "data_seed": args.data_seed,
        "train_seed": args.train_seed,
        "iterations": args.iterations,
        "batch": args.batch,
        "training_patch": list(train_patch),
        "loss": (
            f"DiceCELoss (MONAI), Dice {'per patch' if recipe.per_patch_dice else 'over the batch'}, "
            f"nodule class weight {recipe.nodule_weight:g}"
        ),
        "recipe": asdict(recipe),
        "optimizer": f"AdamW, one-cycle, max lr {args.learning_rate}",
        "augmentation": "flips, intensity scale/shift, contrast, Gaussian noise (MONAI)",
        "device": device_description(device),
        "training_seconds": summary["seconds"],
        "final_loss": summary["final_loss"],
        "software": f"deepdiag {__version__}, torch {torch.__version__}, monai {monai.__version__}",
    }
    if args.eval_cases:
        card.metrics = evaluate(network, card, device, args)
    save_model(network, card, args.output)
    log(f"saved {args.output} in {time.perf_counter() - started:.0f} s; metrics: {card.metrics}")


def evaluate(network, card, device, args) -> dict:
    folder = Path(args.eval_dir) if args.eval_dir else Path(tempfile.mkdtemp(prefix="deepdiag-eval-"))
    log(f"evaluating on {args.eval_cases} held-out phantoms (seed {args.eval_seed}, default grid) in {folder}")
    figures = evaluate_on_phantoms(
        LoadedModel(card, network.to(device).eval(), folder),
        device,
        args.eval_cases,
        args.eval_seed,
        folder,
        args.workers,
    )
    figures.pop("per_case")
    return figures


if __name__ == "__main__":
    main()
