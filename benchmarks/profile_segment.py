"""Where the seconds of `deepdiag segment` go, stage by stage, on the real full-thorax CTs of
shared data and a default phantom: the profile behind docs/performance.md.

Each stage of ``segment_volume`` is timed in place (its functions wrapped here, the engine
unchanged), in one process after the model is loaded; start-up, reading and writing are timed
around it. Figures are seconds on this machine: compare stages within one run, not across machines.

Usage: python benchmarks/profile_segment.py [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

started = time.perf_counter()
import torch  # noqa: E402
from measure import benchmark_scans  # noqa: E402

from deepdiag.devices import pick_device  # noqa: E402
from deepdiag.image_io import input_stem, read_volume  # noqa: E402
from deepdiag.models import find_model  # noqa: E402
from deepdiag.models.store import load_model  # noqa: E402
from deepdiag.segmentation import model_grid, pipeline  # noqa: E402
from deepdiag.segmentation.candidate_filter import CandidateFilter  # noqa: E402
from deepdiag.segmentation_file import write_segmentation  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - started

#: the stages of segment_volume, in its order: (where the function is looked up, its name, label)
STAGES = [
    (model_grid, "to_model_grid", "resample to the model grid"),
    (model_grid, "find_chest", "body, lungs and lung box"),
    (pipeline, "predict_probabilities", "U-Net (sliding window)"),
    (pipeline, "keep_inside_chest", "keep inside the chest"),
    (pipeline, "keep_plausible_nodules", "component rules"),
    (CandidateFilter, "keep_nodules", "candidate filter on components"),
    (CandidateFilter, "add_spot_nodules", "spot search and its filter"),
    (pipeline, "back_to_input", "back to the input grid"),
    (pipeline, "keep_nodules_on_output_grid", "rules on the output grid"),
]


def timed_stages(seconds: dict[str, float]) -> None:
    """Wrap every stage function once, so that its time adds to ``seconds[label]`` (cleared per scan)."""
    for owner, name, label in STAGES:
        original = getattr(owner, name)

        def wrapper(*args, _original=original, _label=label, **kwargs):
            began = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_label] += time.perf_counter() - began

        setattr(owner, name, wrapper)


@contextmanager
def stage(seconds: dict[str, float], label: str):
    began = time.perf_counter()
    yield
    seconds[label] += time.perf_counter() - began


def profile(path: Path, model, device, output: Path, seconds: dict[str, float]) -> dict:
    with stage(seconds, "read"):
        volume = read_volume(path)
    with stage(seconds, "segment_volume, all stages"):
        result = pipeline.segment_volume(volume, model, device)
    with stage(seconds, "write .seg.nrrd"):
        write_segmentation(output / f"{input_stem(path)}.seg.nrrd", result.labels, model.card.segment_classes())
    return {"size": list(volume.size), "spacing_mm": [round(s, 3) for s in volume.spacing]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    began = time.perf_counter()
    model = load_model(find_model(None, "segmentation", "lung-nodules-seg"), device)
    load_seconds = time.perf_counter() - began
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        scans = benchmark_scans(scratch / "phantom")
        seconds: dict[str, float] = defaultdict(float)
        timed_stages(seconds)
        for name, path in scans.items():
            print(f"profiling {name}", file=sys.stderr, flush=True)  # a minute or so each on 2 cores
            seconds.clear()
            shape = profile(path, model, device, scratch, seconds)
            staged = sum(seconds[label] for _, _, label in STAGES)
            seconds["rest of segment_volume (normalizing, argmaxes, copies)"] = (
                seconds["segment_volume, all stages"] - staged
            )
            rows[name] = shape | {label: round(value, 2) for label, value in seconds.items()}
    print(
        json.dumps(
            {
                "model": model.card.full_id,
                "device": str(device),
                "torch_threads": torch.get_num_threads(),
                "import_seconds": round(IMPORT_SECONDS, 2),
                "model_load_seconds": round(load_seconds, 2),
                "scans": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
