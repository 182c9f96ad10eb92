"""Measure a segmentation, detection or classification model on held-out phantoms.

``--record`` writes the figures into its card, keeping its other figures; with ``--small-nodules``
they go under ``metrics.phantoms_small_nodules_seed<seed>``, beside the default set's.

Seed 7 is the held-out seed of the shipped models: training (1000, 2000) and the tuning of
post-processing (8) never see it. Segmentation: Dice, per-nodule sensitivity, false positives;
detection: FROC the LUNA16 way; classification: type accuracy, Lung-RADS agreement and
long-axis error on the nodules the newest segmentation model finds (and at the truth centres).

    python scripts/evaluate_model.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-seg@2 --record
    python scripts/evaluate_model.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-seg@10 \\
        --seed 71 --small-nodules
    python scripts/evaluate_model.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-det@1 --record
    python scripts/evaluate_model.py --model DeepDiag/deepdiag/models/builtin/nodule-type-cls@2 --cases 16 --record
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

from training_common import SMALL_NODULE_CASES, SMALL_NODULE_MM, SMALL_NODULES_TEXT  # noqa: E402

from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.evaluation.held_out import (  # noqa: E402
    evaluate_classification_on_phantoms,
    evaluate_detection_on_phantoms,
    evaluate_on_phantoms,
)  # noqa: E402
from deepdiag.models import find_model  # noqa: E402
from deepdiag.models.store import load_model, record_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--small-nodules",
        action="store_true",
        help=f"segmentation: phantoms with {SMALL_NODULES_TEXT}, for a sensitivity to small nodules that rests on "
        "dozens",
    )
    parser.add_argument("--folder", help="keep the phantoms and predictions here")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--record", action="store_true", help="write the figures into the model's card")
    args = parser.parse_args()
    device = pick_device(args.device)
    model = load_model(args.model, device)
    if args.small_nodules and model.card.task != "segmentation":
        parser.error(f"--small-nodules is for segmentation models; {model.card.full_id} is a {model.card.task} model")
    folder = args.folder or tempfile.mkdtemp(prefix="deepdiag-eval-")
    if model.card.task == "classification":
        segmentation = load_model(find_model(None, "segmentation", "lung-nodules-seg"), device)
        figures = evaluate_classification_on_phantoms(model, segmentation, device, args.cases, args.seed, folder)
    elif model.card.task == "detection":
        figures = evaluate_detection_on_phantoms(model, device, args.cases, args.seed, folder)
    else:
        crowded = {"nodules": SMALL_NODULE_CASES, "diameter_mm": SMALL_NODULE_MM} if args.small_nodules else {}
        figures = evaluate_on_phantoms(model, device, args.cases, args.seed, folder, **crowded)
    per_case = figures.pop("per_case", None)
    print(json.dumps({"per_case": per_case, **figures}, indent=1))
    if args.record:  # the crowded small-nodule set is recorded beside the default figures, not over them
        entries = {f"phantoms_small_nodules_seed{args.seed}": figures} if args.small_nodules else figures
        record_metrics(args.model, **entries)


if __name__ == "__main__":
    main()
