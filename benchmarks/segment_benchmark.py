"""Wall time and peak memory of `deepdiag segment` on a default-size chest CT, against a plain
MONAI reference pipeline (LoadImage → Spacing → ScaleIntensityRange → sliding_window_inference
→ inverse) running the same weights on the same case.

Usage: python benchmarks/segment_benchmark.py [--device cpu|cuda] [--repeats N]
Targets on 2 CPU cores: deepdiag under 30 s and 4 GB, at least 2x faster than the reference.
Each run is a fresh process, so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))
from measure import cli_code, dice, measured  # noqa: E402


def reference_code(image: Path, model_folder: Path, output: Path, device: str) -> str:
    return f"""
import torch, numpy as np, SimpleITK as sitk
from monai.transforms import (
    Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd,
)
from monai.inferers import sliding_window_inference
from deepdiag.models.store import load_model
model = load_model({str(model_folder)!r}, {device!r})
card = model.card
window = card.input["intensity"]
pre = Compose([
    LoadImaged("image"), EnsureChannelFirstd("image"), Orientationd("image", axcodes="LPS"),
    Spacingd("image", pixdim=card.spacing_mm, mode="bilinear"),
    ScaleIntensityRanged("image", a_min=window["min_hu"], a_max=window["max_hu"], b_min=0.0, b_max=1.0, clip=True),
])
data = pre({{"image": {str(image)!r}}})
# MONAI arrays are (x, y, z); the model was trained on slices-first (z, y, x) arrays, as its card says
image = data["image"].as_tensor()[None].permute(0, 1, 4, 3, 2).contiguous().to({device!r})
with torch.inference_mode():
    logits = sliding_window_inference(image, tuple(card.patch_size), 4, model.network, overlap=0.25, mode="gaussian")
data["pred"] = torch.softmax(logits[0].float(), 0).permute(0, 3, 2, 1).cpu()
from monai.data import MetaTensor
data["pred"] = MetaTensor(data["pred"], meta=data["image"].meta, applied_operations=data["image"].applied_operations)
data = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False)(data)
labels = torch.argmax(data["pred"], 0).numpy().astype(np.uint8)
np.save({str(output)!r}, labels)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", help="model folder (default: the built-in lung-nodules-seg)")
    args = parser.parse_args()
    from deepdiag.image_io import write_volume
    from deepdiag.models import find_model
    from deepdiag.phantom import PhantomConfig, generate_case
    from deepdiag.segmentation_file import read_segmentation

    model_folder = find_model(args.model, "segmentation", "lung-nodules-seg")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        case = generate_case(PhantomConfig(), seed=99, index=0)
        image = write_volume(case.ct, folder / "case.nii.gz")
        print(
            f"case: {case.ct.size} voxels at {case.ct.spacing} mm; model {model_folder.name}; device {args.device}; "
            f"{len(os.sched_getaffinity(0))} CPU cores"
        )
        ours = [
            measured(
                cli_code(
                    "segment", str(image), "-o", str(folder / "out"), "--device", args.device, "--progress", "none"
                )
            )
            for _ in range(args.repeats)
        ]
        theirs = [
            measured(reference_code(image, model_folder, folder / "reference.npy", args.device))
            for _ in range(args.repeats)
        ]
        labels, _ = read_segmentation(folder / "out" / "case.seg.nrrd")
        reference = np.load(folder / "reference.npy")
        reference = np.transpose(reference, (2, 1, 0)) if reference.shape != labels.array.shape else reference
        agreement = {
            name: dice(labels.array == value, reference == value) for name, value in (("lungs", 1), ("nodules", 2))
        }
        outside = _outside_body(case.ct.array)
        against_truth = {
            name: {
                "lungs_dice": dice(pred > 0, case.labels.array > 0),
                "nodules_dice": dice(pred == 2, case.labels.array == 2),
                "lung_voxels_outside_the_body": round(float((pred[outside] == 1).sum() / max((pred == 1).sum(), 1)), 4),
            }
            for name, pred in (("deepdiag", labels.array), ("reference", reference))
        }
    best_ours, best_theirs = min(t for t, _ in ours), min(t for t, _ in theirs)
    print(
        f"deepdiag segment        : {best_ours:6.1f} s (best of {args.repeats}), peak {max(m for _, m in ours):.2f} GB"
    )
    print(
        f"plain MONAI reference   : {best_theirs:6.1f} s (best of {args.repeats}), peak "
        f"{max(m for _, m in theirs):.2f} GB"
    )
    print(f"speed-up                : {best_theirs / best_ours:.1f}x")
    print(f"agreement (Dice) of the two outputs: {json.dumps(agreement)}")
    print(f"each against the truth: {json.dumps(against_truth)}")


def _outside_body(ct: np.ndarray) -> np.ndarray:
    """Air connected to the sides of the scan: what surrounds the patient, never lung. (Not the
    first and last slice: the lungs and trachea reach those.)"""
    from scipy import ndimage

    components, _ = ndimage.label(ct < -500)
    edge = np.unique(np.concatenate([components[:, [0, -1]].ravel(), components[:, :, [0, -1]].ravel()]))
    return np.isin(components, edge[edge > 0])


if __name__ == "__main__":
    main()
