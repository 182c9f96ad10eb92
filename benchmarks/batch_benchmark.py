"""Scans per hour of `deepdiag batch` (Ray) with 1 and 2 workers, and what Ray adds per scan over a
plain loop (`deepdiag segment A B C ...`: one process, the model loaded once), in one run.

Usage: python benchmarks/batch_benchmark.py [--scans N] [--task segment|detect|analyze]
The scans are phantoms of 160x160x100 voxels (2.2 x 2.2 x 3.75 mm), so that the run takes minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "DeepDiag")}
SMALL = ["--size", "160", "160", "100", "--spacing", "2.2", "2.2", "3.75", "--nodules", "2", "3"]


def deepdiag(*arguments: str) -> float:
    """Wall seconds of one ``deepdiag`` command in a fresh process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deepdiag", *arguments, "--progress", "none"], env=ENV, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--task", default="segment", choices=("segment", "detect", "analyze"))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        deepdiag("phantom", "-o", str(folder / "cohort"), "--cases", str(args.scans), "--seed", "77", *SMALL)
        scans = sorted(str(p) for p in (folder / "cohort" / "images").iterdir())
        plain = deepdiag(args.task, *scans, "-o", str(folder / "plain"))
        ray = {
            workers: deepdiag(
                "batch",
                str(folder / "cohort" / "images"),
                "-o",
                str(folder / f"ray{workers}"),
                "--task",
                args.task,
                "--workers",
                str(workers),
            )  # fmt: skip
            for workers in (1, 2)
        }
        # the same batch again: every scan is done, so this is Ray's start and stop and the input hashes
        fixed = deepdiag("batch", str(folder / "cohort" / "images"), "-o", str(folder / "ray1"), "--task", args.task,
                         "--workers", "1")  # fmt: skip
    print(f"{args.scans} phantoms (160x160x100), task {args.task}, {cores} CPU cores, {time.strftime('%Y-%m-%d')}")
    print(f"{'run':34} {'seconds':>8} {'scans/hour':>11}")
    for name, seconds in [("plain loop (deepdiag " + args.task + ")", plain)] + [
        (f"deepdiag batch, Ray, {w} worker{'s' * (w > 1)}", s) for w, s in ray.items()
    ]:
        print(f"{name:34} {seconds:8.1f} {3600 * args.scans / seconds:11.0f}")
    print(f"Ray's overhead over the plain loop, 1 worker: {ray[1] - plain:+.1f} s in all")
    print(f"  the same batch again, nothing left to do (start, stop, hashes): {fixed:.1f} s")
    print(f"  beyond that fixed part: {(ray[1] - plain - fixed) / args.scans:+.1f} s per scan")
    print(f"2 workers / 1 worker: {ray[1] / ray[2]:.2f}x the throughput")


if __name__ == "__main__":
    main()
