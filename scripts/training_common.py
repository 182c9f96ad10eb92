"""What the training scripts share: their common options, the prepared phantoms, logging."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

SPACING = [1.0, 1.0, 1.25]
WINDOW = {"type": "window", "min_hu": -1000.0, "max_hu": 400.0}


def common_parser(description: str, **defaults) -> argparse.ArgumentParser:
    """Options every training script takes; ``defaults`` override the generic defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", required=True)
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--train-cases", type=int, default=40)
    parser.add_argument("--data-seed", type=int, default=1000)
    parser.add_argument("--nodules", type=int, nargs=2, default=[2, 6], help="fewest and most nodules per training case")
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


def prepare_examples(args) -> list:
    """The training phantoms on the model grid (from the cache when made before)."""
    from deepdiag.training.segmentation_data import make_example

    log(f"preparing {args.train_cases} training phantoms (seed {args.data_seed}, {args.nodules[0]}-{args.nodules[1]} nodules; cache {args.cache})")
    with get_context("spawn").Pool(args.workers) as pool:
        return pool.map(partial(make_example, args.data_seed, spacing=SPACING, window=WINDOW, nodules=args.nodules, cache=args.cache),
                        range(args.train_cases))


def data_description(args) -> str:
    return (f"{args.train_cases} synthetic chest CTs from `deepdiag phantom` (procedural anatomy), seed {args.data_seed}, "
            f"{args.nodules[0]}-{args.nodules[1]} nodules each, in-plane spacing 0.6-0.9 mm, slices 1-2.5 mm, noise 8-35 HU, blur 0.4-0.9 mm")


def device_description(device) -> str:
    import torch

    return f"{device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else platform.processor() or platform.machine()})"


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
