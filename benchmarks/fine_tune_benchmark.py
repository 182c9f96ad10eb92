"""Fine-tuning on a shifted imaging domain: does `deepdiag train` adapt the shipped model, and how fast?

Makes 10 default-grid phantoms from another "scanner" (more noise, more blur, other HU
calibration), fine-tunes the newest lung-nodules-seg on 5 of them and compares nodule Dice
(>= 6 mm) of the base and the fine-tuned model on the other 5. The fine-tuned model goes to a
temporary model folder; the base model's files are checked to be byte-identical afterwards.

Usage: python benchmarks/fine_tune_benchmark.py [--epochs 12] [--steps-per-epoch 40]
Target on 2 CPU cores: Dice +0.10 or more, fine-tuning within 15 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

SHIFTED_SCANNER = {"noise_hu": 40.0, "blur_mm": 1.1, "hu_scale": 0.85, "hu_offset": 90.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=300, help="phantom seed of the shifted-domain cases")
    parser.add_argument("--folder", help="keep cases, predictions and the new model here")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="deepdiag-finetune-"))
    os.environ["DEEPDIAG_MODELS"] = str(folder / "models")  # never the user's own model folder

    from deepdiag.devices import pick_device
    from deepdiag.models.registry import find_model
    from deepdiag.training.fine_tune import FineTuneOptions, fine_tune

    device = pick_device("auto")
    base_folder = find_model(None, "segmentation", "lung-nodules-seg")
    base_hashes = _hashes(base_folder)
    print(f"base model {base_folder.name}; shifted scanner {SHIFTED_SCANNER}; cases in {folder}", flush=True)
    with get_context("spawn").Pool(2) as pool:
        pool.map(partial(_write_case, args.seed, folder), range(10))
    images = sorted((folder / "train" / "images").glob("*.nrrd"))
    labels = [folder / "train" / "labels" / p.name for p in images]

    started = time.perf_counter()
    summary = fine_tune(
        base_folder.name,
        [str(p) for p in images],
        [str(p) for p in labels],
        FineTuneOptions(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, learning_rate=args.lr),
        device,
        on_epoch=lambda r: print(f"  epoch {r.epoch}: loss {r.loss:.4f}, validation {r.validation}", flush=True),
    )
    minutes = (time.perf_counter() - started) / 60
    before = _nodule_dice(base_folder, folder / "test", folder / "pred-base", device)
    after = _nodule_dice(Path(summary["folder"]), folder / "test", folder / "pred-tuned", device)
    print(
        json.dumps(
            {
                "fine_tuning_minutes": round(minutes, 1),
                "saved": summary["model"],
                "best_epoch": summary["best_epoch"],
                "held_out_nodule_dice_ge6mm": {
                    "base": before["nodule_dice_ge6mm"],
                    "fine_tuned": after["nodule_dice_ge6mm"],
                },
                "held_out_sensitivity_ge6mm": {
                    "base": before["sensitivity_ge6mm"],
                    "fine_tuned": after["sensitivity_ge6mm"],
                },
                "held_out_false_positives_per_scan": {
                    "base": before["false_positives_per_scan"],
                    "fine_tuned": after["false_positives_per_scan"],
                },
                "held_out_lungs_dice": {"base": before["lungs_dice"], "fine_tuned": after["lungs_dice"]},
                "base_model_files_unchanged": _hashes(base_folder) == base_hashes,
            },
            indent=1,
        )
    )


def _write_case(seed: int, folder: Path, index: int) -> None:
    from deepdiag.phantom import PhantomConfig, generate_case, write_case

    part = folder / ("train" if index < 5 else "test")
    if (part / "truth" / f"phantom_s{seed}_{index:03d}.json").is_file():  # kept from an earlier run in --folder
        return
    case = generate_case(PhantomConfig(nodules=(2, 5), **SHIFTED_SCANNER), seed, index)
    write_case(case, part)


def _nodule_dice(model_folder: Path, cases: Path, predictions: Path, device) -> dict:
    from deepdiag.evaluation.segmentation import evaluate_folder
    from deepdiag.image_io import read_volume
    from deepdiag.models.store import load_model
    from deepdiag.segmentation import segment_volume
    from deepdiag.segmentation_file import write_segmentation

    model = load_model(model_folder, device)
    for image in sorted((cases / "images").glob("*.nrrd")):
        result = segment_volume(read_volume(image), model, device)
        write_segmentation(predictions / f"{image.name[:-5]}.seg.nrrd", result.labels, model.card.segment_classes())
    return evaluate_folder(cases, predictions)


def _hashes(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


if __name__ == "__main__":
    main()
