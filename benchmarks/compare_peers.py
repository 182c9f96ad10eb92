"""`deepdiag segment` side by side with what a user would pick instead, on the same scans, in one
run: a default phantom and the real full-thorax CTs of shared data.

- **deepdiag**: ``deepdiag segment`` as a user runs it (lungs and nodules, candidate filter).
- **deepdiag REV** (``--baseline REV``): the same command from a git worktree of an earlier
  commit or tag, with the nodule Dice and component counts of the two outputs.
- **plain MONAI**: LoadImage, Orientation, Spacing, ScaleIntensityRange, sliding-window inference
  and the inverse transform, with the same weights (``segment_benchmark.py``'s pipeline).
- **lungmask R231**: lungmask's own pipeline (PyPI ``lungmask``, ``make benchmark-peers`` installs
  it) with its R231 architecture and *random* weights, since its weights cannot be downloaded
  here; its cost does not depend on the weights (its connected-component step may: say so when
  quoting it).

Every run is a fresh process (its peak resident memory is its own), one after the other, after
one warm-up import of each engine. The
ratios are measured in one run on one machine; absolute seconds do not carry to another machine.

With ``--tasks detect analyze`` (and ``--baseline``) it also times ``deepdiag detect`` and
``deepdiag analyze`` against the release, with how far their findings moved.

Usage: python benchmarks/compare_peers.py [--baseline REV] [--peers monai lungmask] [--scans NAME ...]
       [--tasks segment detect analyze]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))
from measure import ENGINE, benchmark_scans, cli_code, dice, measured  # noqa: E402
from segment_benchmark import reference_code  # noqa: E402

TASKS = ("segment", "detect", "analyze")


def lungmask_code(image: Path, weights: Path, output: Path) -> str:
    return f"""
import numpy as np, SimpleITK as sitk
from lungmask import LMInferer
inferer = LMInferer(modelpath={str(weights)!r}, force_cpu=True, tqdm_disable=True)
np.save({str(output)!r}, inferer.apply(sitk.ReadImage({str(image)!r})))
"""


def random_r231_weights(path: Path) -> Path:
    """lungmask's R231 network (as lungmask.mask.get_model builds it) with seeded random weights."""
    import torch
    from lungmask.resunet import UNet

    torch.manual_seed(0)
    network = UNet(n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False)
    torch.save(network.state_dict(), path)
    return path


def baseline_engine(revision: str, folder: Path) -> Path:
    """A git worktree of ``revision`` (removed at the end by :func:`remove_worktree`); its engine folder."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(folder), revision], check=True
    )
    return folder / "DeepDiag"


def remove_worktree(folder: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=False)


def agreement(ours: Path, theirs: Path) -> dict:
    """Nodule Dice and nodule component counts of two .seg.nrrd outputs of the same scan."""
    from scipy import ndimage

    from deepdiag.segmentation_file import read_segmentation

    a, b = (read_segmentation(path)[0].array for path in (ours, theirs))
    nodules_a, nodules_b = a == 2, b == 2
    return {
        "nodule_dice": dice(nodules_a, nodules_b),
        "nodule_components": [int(ndimage.label(m, structure=np.ones((3, 3, 3)))[1]) for m in (nodules_a, nodules_b)],
        "lung_dice": dice(a >= 1, b >= 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git commit or tag of the release to compare with (a worktree)")
    parser.add_argument("--peers", nargs="*", default=["monai", "lungmask"], choices=["monai", "lungmask"])
    parser.add_argument("--scans", nargs="*", help="scan names to run (default: all)")
    parser.add_argument(
        "--tasks", nargs="*", default=["segment"], choices=TASKS, help="commands to time (peers: segment only)"
    )
    args = parser.parse_args()
    from deepdiag.models import find_model

    model_folder = find_model(None, "segmentation", "lung-nodules-seg")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        scans = {
            name: path
            for name, path in benchmark_scans(scratch / "phantom").items()
            if not args.scans or name in args.scans
        }
        old_engine = baseline_engine(args.baseline, scratch / "baseline") if args.baseline else None
        weights = random_r231_weights(scratch / "r231-random.pth") if "lungmask" in args.peers else None
        # the first process to import torch and MONAI reads them from disk: warm both engines up
        # first, so that the first scan's first run is not charged for it
        for engine in filter(None, [ENGINE, old_engine]):
            measured("import deepdiag.segmentation.batch, deepdiag.detection.batch", engine)
        try:
            rows = {
                name: run_all(name, path, scratch, model_folder, old_engine, weights, args)
                for name, path in scans.items()
            }
        finally:
            if old_engine:
                remove_worktree(old_engine.parent)
    print(json.dumps({"model": model_folder.name, "cpu_cores": len(os.sched_getaffinity(0)), "scans": rows}, indent=1))


def run_all(name: str, image: Path, scratch: Path, model_folder: Path, old_engine, weights, args) -> dict:
    out = scratch / "out" / name.split()[0]
    row = run_segment(name, image, out, model_folder, old_engine, weights, args) if "segment" in args.tasks else {}
    for task in (t for t in ("detect", "analyze") if t in args.tasks):
        row |= run_findings_task(task, name, image, out, old_engine, args.baseline)
    return row


def run_segment(name: str, image: Path, out: Path, model_folder: Path, old_engine, weights, args) -> dict:
    print(f"{name}: deepdiag", file=sys.stderr, flush=True)
    segment = ["segment", str(image), "--device", "cpu", "--progress", "none", "-o"]
    row = {"deepdiag": measured(cli_code(*segment, str(out / "new")))}
    stem = next((out / "new").glob("*.seg.nrrd"))
    if old_engine:
        print(f"{name}: deepdiag {args.baseline}", file=sys.stderr, flush=True)
        row[f"deepdiag {args.baseline}"] = measured(cli_code(*segment, str(out / "old")), old_engine)
        row["agreement with the baseline"] = agreement(stem, out / "old" / stem.name)
    if "monai" in args.peers:
        print(f"{name}: plain MONAI", file=sys.stderr, flush=True)
        row["plain MONAI"] = measured(reference_code(image, model_folder, out / "monai.npy", "cpu"))
    if weights:
        print(f"{name}: lungmask R231 (random weights)", file=sys.stderr, flush=True)
        row["lungmask R231 (random weights)"] = measured(lungmask_code(image, weights, out / "lungmask.npy"))
    return _with_ratios(row, "deepdiag")


def run_findings_task(task: str, name: str, image: Path, out: Path, old_engine, baseline: str | None) -> dict:
    """``deepdiag detect`` or ``analyze`` now and (with a baseline) in the release, and how far
    the findings moved: their counts and the largest distance from one to the nearest other."""
    command = [task, str(image), "--device", "cpu", "--progress", "none", "-o"]
    print(f"{name}: deepdiag {task}", file=sys.stderr, flush=True)
    row = {f"deepdiag {task}": measured(cli_code(*command, str(out / f"new-{task}")))}
    if old_engine:
        print(f"{name}: deepdiag {task} {baseline}", file=sys.stderr, flush=True)
        row[f"deepdiag {task} {baseline}"] = measured(cli_code(*command, str(out / f"old-{task}")), old_engine)
        row[f"{task} findings against the baseline"] = findings_agreement(out / f"new-{task}", out / f"old-{task}")
    return _with_ratios(row, f"deepdiag {task}")


def findings_agreement(ours: Path, theirs: Path) -> dict:
    def centres(folder: Path) -> np.ndarray:
        document = json.loads(next(folder.glob("*.findings.json")).read_text())
        return np.array([f["center_lps"] for f in document["findings"]], dtype=float).reshape(-1, 3)

    a, b = centres(ours), centres(theirs)
    moved = max((float(np.min(np.linalg.norm(b - c, axis=1))) for c in a), default=0.0) if len(b) else None
    return {"findings": [len(a), len(b)], "largest_move_mm": None if moved is None else round(moved, 2)}


def _with_ratios(row: dict, ours_key: str) -> dict:
    ours = row[ours_key][0]
    return {
        key: (value if isinstance(value, dict) else {"seconds": round(value[0], 1), "peak_gb": round(value[1], 2)})
        for key, value in row.items()
    } | {
        f"{key} / {ours_key}": round(value[0] / ours, 2)
        for key, value in row.items()
        if key != ours_key and isinstance(value, tuple)
    }


if __name__ == "__main__":
    main()
