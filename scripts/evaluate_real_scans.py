"""Measure the shipped segmentation and detection models on real chest CTs, apart from phantoms.

1. The untouched real full-thorax CTs in shared data: how many nodule components and findings
   each model marks, which lie on a known real lesion, with a PNG of each (--output, not committed).
2. The held-out real background (thorax_4dct_phase00, kept out of every training) with nodules of
   3-30 mm of all three types inserted: sensitivity by size and false positives per scan, and
   how many of them lie at the same place on every copy, a structure of the background itself
   (segmentation), FROC and findings per scan at the default score (detection), type accuracy at
   the inserted nodules' centres (classification). ``--shapes lidc`` inserts real LIDC-IDRI
   outlines instead of the procedural shapes the models were trained on (another seed, another
   set, recorded apart). ``--kernel sharp`` shows each copy as a sharp (lung) reconstruction kernel
   would (the shared scans are soft-kernel reconstructions), recorded apart again.

    python scripts/evaluate_real_scans.py --output output/real-scans --record
    python scripts/evaluate_real_scans.py --segmentation-model lung-nodules-seg@10 --cases 4 --seed 6001
    python scripts/evaluate_real_scans.py --shapes lidc --seed 6002 --skip-untouched --record
    python scripts/evaluate_real_scans.py --kernel sharp --skip-untouched --record
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.evaluation.real_scans import (  # noqa: E402
    INSERTED,
    INSERTED_LIDC,
    SHARP_KERNEL,
    evaluate_inserted,
    marks_on_untouched_scan,
    write_inserted_cases,
)
from deepdiag.models import find_model  # noqa: E402
from deepdiag.models.card import ModelCard  # noqa: E402
from deepdiag.models.store import load_model, record_metrics  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real" / "chest_ct"
UNTOUCHED = [REAL / "thorax_4dct_phase00" / "ct.nii.gz", REAL / "covid_ricord_419639" / "ct.nii.gz"]
HELD_OUT_BACKGROUND = REAL / "thorax_4dct_phase00" / "ct.nii.gz"
#: what a card records of an inserted set beside its figures
_SET_DESCRIPTION = ("background", "cases", "seed", "shapes", "kernel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmentation-model", default=None, help="id@version (default: the newest built-in)")
    parser.add_argument("--detection-model", default=None, help="id@version (default: the newest built-in)")
    parser.add_argument("--classification-model", default=None, help="id@version (default: the newest built-in)")
    parser.add_argument(
        "--cases", type=int, default=4, help="inserted copies of the held-out background (about 10 nodules each)"
    )
    parser.add_argument("--seed", type=int, default=6001, help="seed of the inserted nodules")
    parser.add_argument(
        "--output", default=str(ROOT / "output" / "real-scans"), help="PNGs, inserted cases and predictions"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-inserted", action="store_true", help="only the untouched scans")
    parser.add_argument("--skip-untouched", action="store_true", help="only the inserted cases")
    parser.add_argument(
        "--shapes", choices=("procedural", "lidc"), default="procedural", help="shapes of the inserted nodules"
    )
    parser.add_argument(
        "--kernel", choices=("as-scanned", "sharp"), default="as-scanned", help="the inserted copies' kernel"
    )
    parser.add_argument("--record", action="store_true", help="write the figures into the cards' metrics.real_scans")
    args = parser.parse_args()
    device = pick_device(args.device)
    segmentation = load_model(find_model(args.segmentation_model, "segmentation", "lung-nodules-seg"), device)
    detection = load_model(find_model(args.detection_model, "detection", "lung-nodules-det"), device)
    classification = load_model(find_model(args.classification_model, "classification", "nodule-type-cls"), device)
    output = Path(args.output)
    figures = {"models": [segmentation.card.full_id, detection.card.full_id, classification.card.full_id]}
    if not args.skip_untouched:
        figures["untouched"] = [
            marks_on_untouched_scan(_local_copy(scan, output), segmentation, detection, device, output)
            for scan in UNTOUCHED
        ]
    if not args.skip_inserted:
        lidc, sharp = args.shapes == "lidc", args.kernel == "sharp"
        folder = output / f"inserted{'-lidc' if lidc else ''}{'-sharp' if sharp else ''}-s{args.seed}"
        truth = folder / "truth"
        if len(list((truth / "truth").glob("*.json"))) < args.cases:
            config = INSERTED_LIDC if lidc else INSERTED
            write_inserted_cases(
                _local_copy(HELD_OUT_BACKGROUND, output),
                args.cases,
                args.seed,
                folder,
                config,
                SHARP_KERNEL if sharp else None,
            )
        key = ("inserted_lidc_shapes" if lidc else "inserted") + ("_sharp_kernel" if sharp else "")
        figures[key] = {
            "background": HELD_OUT_BACKGROUND.parent.name,
            "cases": args.cases,
            "seed": args.seed,
            "shapes": args.shapes,
            "kernel": SHARP_KERNEL if sharp else "as scanned",
            **evaluate_inserted(truth, segmentation, detection, device, folder, classification),
        }
    print(json.dumps(figures, indent=1))
    if args.record:
        record_real_figures(figures, segmentation, detection, classification)


def record_real_figures(figures: dict, segmentation, detection, classification) -> None:
    """metrics.real_scans of the three cards: the real-scan figures, apart from the phantom ones;
    a run that measured only some of them keeps the others."""
    data = (
        f"../{REAL.relative_to(ROOT.parent)}: {', '.join(s.parent.name for s in UNTOUCHED)} untouched; "
        f"{HELD_OUT_BACKGROUND.parent.name} (kept out of training) with inserted nodules, its known lesions left out. "
        "covid_ricord_419639 was a training background of the candidate filters: its marks are no held-out figure"
    )
    inserted_sets = {
        "inserted": "inserted_held_out_background",
        "inserted_lidc_shapes": "inserted_lidc_shapes_held_out_background",
        "inserted_sharp_kernel": "inserted_sharp_kernel_held_out_background",
        "inserted_lidc_shapes_sharp_kernel": "inserted_lidc_shapes_sharp_kernel_held_out_background",
    }
    for model, task in (
        (segmentation, "segmentation"),
        (detection, "detection"),
        (classification, "classification_at_truth_centres"),
    ):
        real = {**ModelCard.read(model.folder).metrics.get("real_scans", {}), "data": data}
        if "untouched" in figures and task != "classification_at_truth_centres":
            real["untouched"] = [_untouched_figures(u, task) for u in figures["untouched"]]
        for key, name in inserted_sets.items():
            if key in figures:
                inserted = figures[key]
                real[name] = {k: inserted[k] for k in _SET_DESCRIPTION} | inserted[task]
        record_metrics(model.folder, real_scans=real)


def _untouched_figures(untouched: dict, task: str) -> dict:
    marks = "segmentation_components" if task == "segmentation" else "detector_findings"
    found = "known_lesions_found_by_" + ("segmentation" if task == "segmentation" else "detector")
    return {
        "scan": untouched["scan"],
        marks: untouched[marks],
        f"{marks}_on_known_lesions": untouched[f"{marks}_on_known_lesions"],
        found: untouched[found],
        "seconds": untouched["seconds"],
    }


def _local_copy(scan: Path, output: Path) -> Path:
    """The shared scans are all named ct.nii.gz: a link named after the scan's folder names the outputs."""
    link = output / "scans" / f"{scan.parent.name}.nii.gz"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(scan.resolve())
    return link


if __name__ == "__main__":
    main()
