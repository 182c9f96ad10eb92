"""Train the shipped lung / lung-nodule segmentation model, evaluate it, save it with its card.

Everything is seeded: the training phantoms (--data-seed), the training run (--train-seed)
and the held-out evaluation phantoms (--eval-seed, never used for training). Defaults take
about an hour on 2 CPU cores; on a GPU, raise --iterations and --batch.

    python scripts/train_segmentation_model.py --output DeepDiag/deepdiag/models/builtin/lung-nodules-seg@1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

import monai  # noqa: E402
import torch  # noqa: E402

from deepdiag import __version__  # noqa: E402
from deepdiag.evaluation.segmentation import evaluate_folder  # noqa: E402
from deepdiag.models import ModelCard  # noqa: E402
from deepdiag.models.store import LoadedModel, save_model  # noqa: E402
from deepdiag.models.networks import build_network  # noqa: E402
from deepdiag.phantom import PhantomConfig, generate_case, write_case  # noqa: E402
from deepdiag.segmentation import segment_volume  # noqa: E402
from deepdiag.segmentation.inference import pick_device  # noqa: E402
from deepdiag.segmentation_file import write_segmentation  # noqa: E402
from deepdiag.terminology import LUNG_NODULES, LUNGS  # noqa: E402
from deepdiag.training.segmentation import train  # noqa: E402
from deepdiag.training.segmentation_data import make_example  # noqa: E402

SPACING = [1.0, 1.0, 1.25]
WINDOW = {"type": "window", "min_hu": -1000.0, "max_hu": 400.0}


def card_template(args) -> ModelCard:
    classes = [
        {"name": c.name, "label_value": c.label_value, "color": list(c.color), "category": c.category.encode(),
         "type": c.type.encode(), "region": c.region.encode() if c.region.value else ""}
        for c in (LUNGS, LUNG_NODULES)
    ]
    return ModelCard(
        id="lung-nodules-seg",
        version=args.version,
        task="segmentation",
        network={"name": "UNet", "parameters": {"spatial_dims": 3, "in_channels": 1, "out_channels": 3,
                 "channels": [16, 32, 64, 128, 128], "strides": [2, 2, 2, 2], "num_res_units": 2}},
        input={"channels": 1, "modality": "CT", "spacing_mm": SPACING, "intensity": WINDOW, "array_order": "kji (axial slices first), LPS"},
        patch_size=list(args.patch),
        classes=classes,
        postprocessing={"min_nodule_volume_mm3": 8.0, "nodules_must_border_lung": True},
        description=(
            "Segments both lungs and lung nodules (solid, part-solid, ground-glass, 3-30 mm) on chest CT. "
            "Trained only on synthetic chest CTs made by `deepdiag phantom` (procedural anatomy); "
            "not validated on patient scans: fine-tune on your own labeled cases before clinical research use."
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--train-cases", type=int, default=40)
    parser.add_argument("--data-seed", type=int, default=1000)
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", type=int, nargs=3, default=[96, 96, 96])
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--eval-cases", type=int, default=10)
    parser.add_argument("--eval-seed", type=int, default=7)
    parser.add_argument("--eval-dir", help="keep the held-out cases and predictions here")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 16)))
    args = parser.parse_args()
    started = time.perf_counter()
    device = pick_device(args.device)
    card = card_template(args)

    log(f"generating {args.train_cases} training phantoms (seed {args.data_seed}) with {args.workers} workers")
    with get_context("spawn").Pool(args.workers) as pool:
        examples = pool.map(partial(make_example, args.data_seed, spacing=SPACING, window=WINDOW), range(args.train_cases))
    log(f"training {args.iterations} iterations, batch {args.batch}, patch {args.patch} on {device}")
    network = build_network(card)
    summary = train(network, examples, tuple(args.patch), args.iterations, args.batch, device, args.train_seed, args.learning_rate,
                    on_progress=lambda step, loss: log(f"  iteration {step}: loss {loss:.4f}"))
    card.training = {
        "data": f"{args.train_cases} synthetic chest CTs from `deepdiag phantom` (procedural anatomy), seed {args.data_seed}, "
                "2-6 nodules each, in-plane spacing 0.6-0.9 mm, slices 1-2.5 mm, noise 8-35 HU, blur 0.4-0.9 mm",
        "data_seed": args.data_seed, "train_seed": args.train_seed, "iterations": args.iterations, "batch": args.batch,
        "loss": "DiceCELoss (MONAI)", "optimizer": f"AdamW, one-cycle, max lr {args.learning_rate}",
        "augmentation": "flips, intensity scale/shift, contrast, Gaussian noise (MONAI)",
        "device": f"{device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else platform.processor() or platform.machine()})",
        "training_seconds": summary["seconds"], "final_loss": summary["final_loss"],
        "software": f"deepdiag {__version__}, torch {torch.__version__}, monai {monai.__version__}",
    }
    if args.eval_cases:
        card.metrics = evaluate(network, card, device, args)
    save_model(network, card, args.output)
    log(f"saved {args.output} in {time.perf_counter() - started:.0f} s; metrics: {card.metrics}")


def evaluate(network, card, device, args) -> dict:
    folder = Path(args.eval_dir) if args.eval_dir else Path(tempfile.mkdtemp(prefix="deepdiag-eval-"))
    log(f"generating {args.eval_cases} held-out phantoms (seed {args.eval_seed}, default grid) in {folder}")
    with get_context("spawn").Pool(args.workers) as pool:
        pool.map(partial(_held_out_case, args.eval_seed, str(folder / "truth")), range(args.eval_cases))
    model = LoadedModel(card, network.to(device).eval(), folder)
    from deepdiag.image_io import read_volume

    for image in sorted((folder / "truth" / "images").glob("*.nrrd")):
        result = segment_volume(read_volume(image), model, device)
        write_segmentation(folder / "pred" / f"{image.name[:-5]}.seg.nrrd", result.labels, card.segment_classes())
    figures = evaluate_folder(folder / "truth", folder / "pred")
    figures.pop("per_case")
    figures["held_out"] = f"{args.eval_cases} default-grid phantoms (512x512x300, 0.7x0.7x1.25 mm), seed {args.eval_seed}"
    return figures


def _held_out_case(seed: int, folder: str, index: int) -> None:
    write_case(generate_case(PhantomConfig(), seed, index), folder)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    main()
