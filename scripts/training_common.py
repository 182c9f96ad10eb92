"""What the training scripts share: their common options, the prepared phantoms, logging."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

from deepdiag.phantom.config import NODULE_SHAPES, PROCEDURAL_SHAPES  # noqa: E402

SPACING = [1.0, 1.0, 1.25]
WINDOW = {"type": "window", "min_hu": -1000.0, "max_hu": 400.0}
# The extra phantoms of --small-nodule-cases: nodules under 6 mm are the hardest to find and
# only about a third of the nodules of an ordinary phantom, so these carry many of them.
SMALL_NODULE_CASES = (4, 10)
SMALL_NODULE_MM = (3.0, 6.0)
SMALL_NODULES_TEXT = (
    f"{SMALL_NODULE_CASES[0]}-{SMALL_NODULE_CASES[1]} nodules of {SMALL_NODULE_MM[0]:g}-{SMALL_NODULE_MM[1]:g} mm each"
)


def common_parser(description: str, **defaults) -> argparse.ArgumentParser:
    """Options every training script takes; ``defaults`` override the generic defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", required=True)
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--train-cases", type=int, default=40)
    parser.add_argument("--data-seed", type=int, default=1000)
    parser.add_argument(
        "--nodules", type=int, nargs=2, default=[2, 6], help="fewest and most nodules per training case"
    )
    parser.add_argument(
        "--small-nodule-cases",
        type=int,
        default=0,
        help=f"this many more training phantoms (seed --data-seed + 1) with {SMALL_NODULES_TEXT}",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=list(PROCEDURAL_SHAPES),
        choices=NODULE_SHAPES,
        help="nodule shapes of the training phantoms (lidc: real LIDC-IDRI outlines)",
    )
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--eval-cases", type=int, default=10)
    parser.add_argument("--eval-seed", type=int, default=7)
    parser.add_argument("--eval-dir", help="keep the held-out cases and predictions here")
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "training"), help="folder for prepared training cases")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 16)))
    parser.set_defaults(**defaults)
    return parser


def add_real_background_options(parser: argparse.ArgumentParser, cases: int, seed: int) -> None:
    """--real-backgrounds, --real-cases and --real-seed: synthetic nodules inserted into real CTs."""
    parser.add_argument(
        "--real-backgrounds",
        nargs="*",
        default=[],
        help="real CTs to insert nodules into for training (their own vessels and walls become hard negatives); "
        "keep one real scan out",
    )
    parser.add_argument(
        "--real-cases", type=int, default=cases, help="copies of each real background, each with its own nodules"
    )
    parser.add_argument(
        "--real-seed", type=int, default=seed, help="seed of the nodules inserted into the real backgrounds"
    )


@dataclass(frozen=True)
class PhantomSet:
    """Training phantoms of one seed, all made with the same nodule options."""

    seed: int
    cases: int
    nodules: tuple[int, int]
    diameter_mm: tuple[float, float]
    shapes: tuple[str, ...] = PROCEDURAL_SHAPES

    def names(self) -> list[str]:
        from deepdiag.training.segmentation_data import example_name

        return [
            example_name(self.seed, index, self.nodules, self.diameter_mm, self.shapes) for index in range(self.cases)
        ]

    def description(self) -> str:
        return (
            f"{self.cases} synthetic chest CTs from `deepdiag phantom` (procedural anatomy), seed {self.seed}, "
            f"{self.nodules[0]}-{self.nodules[1]} nodules of {self.diameter_mm[0]:g}-{self.diameter_mm[1]:g} mm each, "
            f"shapes {', '.join(self.shapes)}"
        )


def phantom_sets(args) -> list[PhantomSet]:
    """The training phantoms the options name: --train-cases, then --small-nodule-cases."""
    from deepdiag.training.segmentation_data import DEFAULT_DIAMETER_MM

    shapes = tuple(args.shapes)
    sets = [PhantomSet(args.data_seed, args.train_cases, tuple(args.nodules), DEFAULT_DIAMETER_MM, shapes)]
    if args.small_nodule_cases:
        sets.append(
            PhantomSet(args.data_seed + 1, args.small_nodule_cases, SMALL_NODULE_CASES, SMALL_NODULE_MM, shapes)
        )
    return sets


def training_cases(args) -> list[tuple[str, int, int]]:
    """(cache name, seed, index) of every training phantom, in the order prepare_examples returns them."""
    return [
        (name, phantoms.seed, index) for phantoms in phantom_sets(args) for index, name in enumerate(phantoms.names())
    ]


def prepare_examples(args) -> list:
    """The training phantoms on the model grid (from the cache when made before)."""
    from deepdiag.training.segmentation_data import make_example

    examples = []
    for phantoms in phantom_sets(args):
        log(f"preparing {phantoms.description()} (cache {args.cache})")
        with get_context("spawn").Pool(args.workers) as pool:
            examples += pool.map(
                partial(
                    make_example,
                    phantoms.seed,
                    spacing=SPACING,
                    window=WINDOW,
                    nodules=phantoms.nodules,
                    cache=args.cache,
                    diameter_mm=phantoms.diameter_mm,
                    shapes=phantoms.shapes,
                ),
                range(phantoms.cases),
            )
    return examples


def real_insertions(args):
    """The nodules inserted into each --real-backgrounds copy: TRAINING_INSERTIONS in the --shapes."""
    from dataclasses import replace

    from deepdiag.training.real_backgrounds import TRAINING_INSERTIONS

    return replace(TRAINING_INSERTIONS, shapes=tuple(args.shapes))


def prepare_real_examples(args) -> tuple[list, list[str]]:
    """The --real-cases copies of each --real-backgrounds scan on the model grid, and their cache names."""
    from deepdiag.training.real_backgrounds import real_background_examples, real_example_name

    examples, names, config = [], [], real_insertions(args)
    for background in args.real_backgrounds:
        log(f"real background {background}: {args.real_cases} copies with inserted nodules (seed {args.real_seed})")
        examples += real_background_examples(
            background, args.real_cases, args.real_seed, SPACING, WINDOW, args.cache, config
        )
        names += [real_example_name(background, args.real_seed, index, config) for index in range(args.real_cases)]
    return examples, names


def real_data_description(args) -> str:
    config = real_insertions(args)
    return "".join(
        f"; real background {Path(b).parent.name}/{Path(b).name}, {args.real_cases} copies with "
        f"{config.nodules[0]}-{config.nodules[1]} inserted nodules of {config.diameter_mm[0]:g}-"
        f"{config.diameter_mm[1]:g} mm each, shapes {', '.join(config.shapes)} (seed {args.real_seed})"
        for b in args.real_backgrounds
    )


def data_description(args) -> str:
    return "; ".join(phantoms.description() for phantoms in phantom_sets(args)) + (
        "; in-plane spacing 0.6-0.9 mm, slices 1-2.5 mm, noise 8-35 HU, blur 0.4-0.9 mm"
    )


def device_description(device) -> str:
    import torch

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or platform.machine()
    return f"{device} ({name})"


def initial_network(card, init_from: str | None):
    """A new seeded network for ``card``, or the weights of ``init_from`` (id@version or folder),
    which must have the same network and task."""
    from deepdiag.models.networks import build_network
    from deepdiag.models.registry import find_model
    from deepdiag.models.store import load_model

    if not init_from:
        return build_network(card)
    base = load_model(find_model(init_from, card.task, init_from))
    if base.card.network != card.network:
        raise SystemExit(f"--init-from {init_from}: its network differs from the one this script trains")
    log(f"starting from {base.card.full_id}")
    return base.network.float()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
