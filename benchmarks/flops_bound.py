"""A lower bound for the segmentation U-Net on this machine: its floating-point work over the
lung box of each real full-thorax CT in shared data (and a default phantom), divided by the
machine's measured peak matrix-multiply throughput, in float32 and in bfloat16.

The network's work is counted by torch's FlopCounterMode on one window of the card's patch size
(a multiply-add counts 2); the sliding window runs ``windows`` of them (25 % overlap), and a
single pass over the lung box would need ``box voxels / window voxels`` of them. The peak is the
best of a few large matrix products, the most favourable work a CPU does.

Usage: python benchmarks/flops_bound.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))
from measure import benchmark_scans  # noqa: E402


def peak_matmul_flops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Floating-point operations per second of the best of ``repeats`` square matrix products."""
    a, b = torch.rand(size, size).to(dtype), torch.rand(size, size).to(dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _seconds(work) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def window_flops(network: torch.nn.Module, patch: tuple[int, int, int]) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, 1, *patch))
    return counter.get_total_flops()


def lung_boxes(card) -> dict[str, tuple[int, int, int]]:
    from deepdiag.image_io import read_volume
    from deepdiag.segmentation.model_grid import find_chest, to_model_grid

    boxes = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, path in benchmark_scans(Path(scratch)).items():
            crop = find_chest(to_model_grid(read_volume(path), card.spacing_mm)).crop
            boxes[name] = tuple(b - a for a, b in zip(crop.start, crop.stop))
    return boxes


def main() -> None:
    from deepdiag.models import find_model
    from deepdiag.models.store import load_model
    from deepdiag.segmentation.inference import window_count

    model = load_model(find_model(None, "segmentation", "lung-nodules-seg"), torch.device("cpu"))
    patch = tuple(model.card.patch_size)
    per_window = window_flops(model.network, patch)
    peaks = {"float32": peak_matmul_flops(torch.float32), "bfloat16": peak_matmul_flops(torch.bfloat16)}
    rows = {}
    for name, box in lung_boxes(model.card).items():
        windows = window_count(box, patch)
        single_pass = per_window * float(np.prod(box)) / float(np.prod(patch))
        rows[name] = {
            "lung_box_voxels": list(box),
            "windows": windows,
            "sliding_window_gflop": round(per_window * windows / 1e9, 1),
            "single_pass_gflop": round(single_pass / 1e9, 1),
        } | {
            f"bound_seconds_{kind}": {
                "sliding_window": round(per_window * windows / peak, 2),
                "single_pass": round(single_pass / peak, 2),
            }
            for kind, peak in peaks.items()
        }
    print(
        json.dumps(
            {
                "model": model.card.full_id,
                "torch_threads": torch.get_num_threads(),
                "gflop_per_window": round(per_window / 1e9, 2),
                "peak_gflops": {kind: round(peak / 1e9, 1) for kind, peak in peaks.items()},
                "scans": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
