"""Time and peak memory of `deepdiag phantom` for default-size cases (512×512×300).

Usage: python benchmarks/phantom_benchmark.py [--cases N] [--anatomy DIR]
Each case runs in a fresh process so its peak resident memory is its own.
Targets (2 CPU cores): under 30 s and under 3 GB per default-size case.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_case(output: Path, seed: int, extra: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "deepdiag",
            "phantom",
            "-o",
            str(output),
            "--seed",
            str(seed),
            "--progress",
            "none",
            *extra,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env={"PYTHONPATH": str(ROOT / "DeepDiag"), "PATH": "/usr/bin:/bin"},
    )
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # Linux reports KiB
    return seconds, peak_gb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--anatomy", help="also pass --anatomy DIR")
    args = parser.parse_args()
    extra = ["--anatomy", args.anatomy] if args.anatomy else []
    print(
        f"deepdiag phantom, default grid 512x512x300 @ 0.7x0.7x1.25 mm, {platform.processor() or platform.machine()}, "
        f"{len(__import__('os').sched_getaffinity(0))} CPU cores"
    )
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.cases):
            seconds, peak_gb = run_case(Path(folder) / str(seed), seed, extra)
            print(f"case seed={seed}: {seconds:6.1f} s   peak memory (largest process so far) {peak_gb:4.2f} GB")


if __name__ == "__main__":
    main()
