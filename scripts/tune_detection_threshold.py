"""Choose a detector's default score threshold on validation phantoms.

The threshold is chosen on a validation seed (default 8) that neither training (1000, 2000)
nor the held-out figures (7) use: the lowest score that keeps at most --max-false-positives
false positives per scan, so a reader sees few false alarms and as many nodules as that allows.

    python scripts/tune_detection_threshold.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-det@2 --record
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.evaluation.detection import operating_point, read_scans  # noqa: E402
from deepdiag.evaluation.held_out import evaluate_detection_on_phantoms  # noqa: E402
from deepdiag.models.store import load_model, record_in_card  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--max-false-positives", type=float, default=1.0, help="per scan, on the validation cases")
    parser.add_argument("--folder", help="keep the validation phantoms and findings here")
    parser.add_argument("--record", action="store_true", help="write the chosen threshold into the model's card")
    args = parser.parse_args()
    model = load_model(args.model)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="deepdiag-threshold-"))
    evaluate_detection_on_phantoms(model, pick_device("auto"), args.cases, args.seed, folder)
    scans = read_scans(folder / "truth", folder / "findings")
    rows = [operating_point(scans, threshold) for threshold in THRESHOLDS]
    print(f"{'min score':>9} {'FP/scan':>8} {'sens>=6':>8}")
    for row in rows:
        print(f"{row['min_score']:9.2f} {row['false_positives_per_scan']:8.2f} {row['sensitivity']:8.3f}")
    allowed = [r for r in rows if r["false_positives_per_scan"] <= args.max_false_positives] or rows[-1:]
    best = allowed[0]
    print(
        f"chosen: {best['min_score']} ({best['false_positives_per_scan']} false positives per scan, "
        f"{best['sensitivity']:.2f} of {best['nodules']} nodules >= 6 mm on the validation cases)"
    )
    if args.record:
        chosen_on = (
            f"{args.cases} default-grid validation phantoms, seed {args.seed}: the lowest score with at most "
            f"{args.max_false_positives:g} false positives per scan ({best['false_positives_per_scan']} there, "
            f"{best['sensitivity']:.2f} of {best['nodules']} nodules >= 6 mm found)"
        )
        record_in_card(
            args.model,
            postprocessing={
                **model.card.postprocessing,
                "default_min_score": best["min_score"],
                "default_min_score_chosen_on": chosen_on,
            },
        )


if __name__ == "__main__":
    main()
