"""Wall time and peak memory of `deepdiag detect` on a default-size chest CT (512x512x300).

Usage: python benchmarks/detect_benchmark.py [--device cpu|cuda] [--repeats N] [--model ID]
Target on 2 CPU cores: under 60 s and under 4 GB. Each run is a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))
from measure import cli_code, measured  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="lung-nodules-det")
    args = parser.parse_args()
    from deepdiag.image_io import write_volume
    from deepdiag.phantom import PhantomConfig, generate_case

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        case = generate_case(PhantomConfig(), seed=99, index=0)
        image = write_volume(case.ct, folder / "case.nrrd")
        print(
            f"case: {case.ct.size} voxels at {case.ct.spacing} mm, {len(case.truth['nodules'])} nodules; model "
            f"{args.model}; "
            f"device {args.device}; {len(os.sched_getaffinity(0))} CPU cores"
        )
        runs = [
            measured(
                cli_code(
                    "detect",
                    str(image),
                    "-o",
                    str(folder / "out"),
                    "--model",
                    args.model,
                    "--device",
                    args.device,
                    "--progress",
                    "none",
                )
            )
            for _ in range(args.repeats)
        ]
        findings = json.loads((folder / "out" / "case.findings.json").read_text())["findings"]
    print(
        f"deepdiag detect: {min(t for t, _ in runs):6.1f} s (best of {args.repeats}), peak "
        f"{max(m for _, m in runs):.2f} GB, "
        f"{len(findings)} findings at the default score threshold"
    )


if __name__ == "__main__":
    main()
