"""The segmentation U-Net on the CPU: PyTorch (float32, and bfloat16 as shipped) against ONNX
Runtime and OpenVINO, on windows of a real chest CT, side by side in one process.

Issue #23 asks whether another CPU back end beats PyTorch here by 1.3x or more; below that,
PyTorch stays the only one. The other back ends are not requirements of the extension: install
them for this script only (``pip install onnx onnxruntime openvino``); one that is missing is skipped
and said so.

Usage: python benchmarks/cpu_backends.py [--model lung-nodules-seg] [--scan CT] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))
from deepdiag.image_io import read_volume  # noqa: E402
from deepdiag.models import find_model  # noqa: E402
from deepdiag.models.store import load_model  # noqa: E402
from deepdiag.precision import reduced_precision  # noqa: E402
from deepdiag.segmentation.inference import WINDOWS_PER_BATCH  # noqa: E402
from deepdiag.segmentation.model_grid import chest_on_model_grid, normalize  # noqa: E402

SCAN = ROOT.parent / "shared" / "data" / "real" / "chest_ct" / "thorax_4dct_phase00" / "ct.nii.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lung-nodules-seg")
    parser.add_argument("--scan", type=Path, default=SCAN)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cpu = torch.device("cpu")
    model = load_model(find_model(None, "segmentation", args.model), cpu)
    batch = windows_of(args.scan, model)
    print(
        f"{model.card.full_id}: {batch.shape[0]} windows of {tuple(batch.shape[2:])} voxels from {args.scan.name}; "
        f"{torch.get_num_threads()} torch threads, {cpu_cores()} CPU cores"
    )
    reference = torch_run(model.network, batch, reduced=False)
    results = {"PyTorch float32": timed(lambda: torch_run(model.network, batch, reduced=False), args.repeats)}
    results["PyTorch, reduced precision (shipped)"] = timed(
        lambda: torch_run(model.network, batch, reduced=True), args.repeats
    )
    others, setup = other_back_ends(model.network, batch, args.repeats)
    print_ratios({**results, **others}, setup, reference)


def other_back_ends(network, batch: np.ndarray, repeats: int) -> tuple[dict, dict]:
    """Timings and logits of the installed back ends, and the seconds each took to load the
    exported network (what every process pays before its first window)."""
    results, setup = {}, {}
    if importlib.util.find_spec("onnx") is None:
        print("ONNX Runtime and OpenVINO: skipped, the export needs the onnx package (pip install onnx)")
        return results, setup
    with tempfile.TemporaryDirectory() as folder:
        exported = Path(folder) / "unet.onnx"
        torch.onnx.export(
            network, torch.from_numpy(batch), exported, input_names=["image"], output_names=["logits"],
            opset_version=17, dynamo=False,
        )  # fmt: skip
        for name, make in (
            ("ONNX Runtime float32", onnx_runtime),
            ("OpenVINO, its default precision", lambda path: openvino(path, None)),
            ("OpenVINO float32", lambda path: openvino(path, "f32")),
        ):
            start = time.perf_counter()
            run = make(exported)
            if run is None:
                print(f"{name}: not installed, skipped")
                continue
            setup[name] = time.perf_counter() - start
            results[name] = timed(lambda: run(batch), repeats)
    return results, setup


def print_ratios(results: dict, setup: dict, reference: np.ndarray) -> None:
    base = results["PyTorch, reduced precision (shipped)"][0]
    for name, (seconds, logits) in results.items():
        start_up = f", {setup[name]:.2f} s to load" if name in setup else ""
        print(
            f"{name:38s} {seconds:6.2f} s per batch, {base / seconds:4.2f}x the shipped path{start_up}; "
            f"{agreement(logits, reference)}"
        )


def cpu_cores() -> int:
    """The cores this process may use (Linux), or the machine's (macOS and Windows have no affinity)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def windows_of(scan: Path, model) -> np.ndarray:
    """``WINDOWS_PER_BATCH`` windows along the middle of the scan's lung box, as the sliding window cuts them."""
    model_volume, chest = chest_on_model_grid(read_volume(scan), model.card.spacing_mm)
    image = normalize(model_volume.array[chest.crop.slices], model.card.input["intensity"])
    size = np.array(model.card.patch_size)
    starts = [
        np.clip((np.array(image.shape) - size) * fraction, 0, None).astype(int)
        for fraction in np.linspace(0.2, 0.8, WINDOWS_PER_BATCH)
    ]
    return np.stack([image[tuple(slice(s, s + n) for s, n in zip(start, size))][None] for start in starts])


def torch_run(network, batch: np.ndarray, reduced: bool) -> np.ndarray:
    with torch.inference_mode():
        tensor = torch.from_numpy(batch)
        if reduced:
            with reduced_precision(torch.device("cpu")):
                return network(tensor).float().numpy()
        return network(tensor).numpy()


def onnx_runtime(path: Path):
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"image": batch})[0]


def openvino(path: Path, precision: str | None):
    if importlib.util.find_spec("openvino") is None:
        return None
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": torch.get_num_threads()}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    return lambda batch: compiled(batch)[0]


def timed(run, repeats: int) -> tuple[float, np.ndarray]:
    """The best of ``repeats`` runs after a first, warming one, and the logits."""
    logits = run()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best, logits


def agreement(logits: np.ndarray, reference: np.ndarray) -> str:
    """How far the class probabilities and the most likely classes are from PyTorch float32's."""
    probabilities, expected = softmax(logits, axis=1), softmax(reference, axis=1)
    same = float((probabilities.argmax(axis=1) == expected.argmax(axis=1)).mean())
    nodules = expected.argmax(axis=1) == 2
    return (
        f"probabilities within {np.abs(probabilities - expected).max():.4f}, classes the same on {same:.5f} of the "
        f"voxels, nodule voxels {int((probabilities.argmax(axis=1) == 2).sum())} against {int(nodules.sum())}"
    )


if __name__ == "__main__":
    main()
