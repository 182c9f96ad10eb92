"""Segmentation figures against truth laid out as ``deepdiag phantom`` writes it.

- Nodule Dice over nodules ≥ 6 mm: pooled over all scans; voxels of smaller truth nodules,
  and predicted components that touch only those, are left out of the count.
- Per-nodule sensitivity: a truth nodule is found if any predicted nodule voxel overlaps it;
  reported for ≥ 6 mm and 3–6 mm (equivalent diameter), and for each nodule type apart
  (``found_by_type``: "found/inserted" per type and size): solid, part-solid and ground-glass
  nodules fail for different reasons.
- False positives: predicted nodule components (26-connected) that overlap no truth nodule,
  averaged per scan; each case also lists their centres (``false_positive_centres_lps``).
  Components that reach into a ``known_lesions`` sphere of the truth (real findings of a real
  background scan, not part of the inserted truth) are left out.
- Lungs Dice: truth lungs including nodules against predicted lungs including nodules, mean over scans.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DeepDiagError
from ..image_io import read_volume
from ..segmentation_file import read_segmentation
from .detection import read_truth

LARGE_MM = 6.0
SMALL_MM = 3.0
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def evaluate_folder(truth_dir: str | Path, pred_dir: str | Path) -> dict:
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    truth_files = sorted((truth_dir / "truth").glob("*.json"))
    if not truth_files:
        raise DeepDiagError("holds no truth/*.json (expected the layout that deepdiag phantom writes)", truth_dir)
    cases = [_evaluate_case(truth_dir, pred_dir, path.stem) for path in truth_files]
    return {"cases": len(cases), **_pool(cases), "per_case": cases}


def _evaluate_case(truth_dir: Path, pred_dir: Path, name: str) -> dict:
    prediction_path = pred_dir / f"{name}.seg.nrrd"
    if not prediction_path.is_file():
        raise DeepDiagError(f"no prediction for case {name} (expected {prediction_path.name})", pred_dir)
    truth = read_truth(truth_dir / "truth" / f"{name}.json")
    labels = read_volume(truth_dir / "labels" / f"{name}.nrrd")
    instances = read_volume(truth_dir / "instances" / f"{name}.nrrd").array
    prediction, segments = read_segmentation(prediction_path)
    off_grid = _grid_difference(prediction, labels)
    if off_grid:
        raise DeepDiagError(
            f"the prediction for {name} is not on the truth's grid ({off_grid}); voxels of two grids cannot be "
            "compared one by one",
            prediction_path,
        )
    unknown = _unknown_label_values(prediction, segments)
    if unknown:
        raise DeepDiagError(
            f"the prediction for {name} holds label values {unknown[:5]} that none of its segments has "
            "(a label map without segments may hold 0, 1 lungs and 2 nodules)",
            prediction_path,
        )
    nodule_value = _label_value(segments, "Lung nodules", 2)
    predicted_nodules = prediction.array == nodule_value
    predicted_lungs = prediction.array > 0

    sizes = {n["id"]: n["equivalent_diameter_mm"] for n in truth["nodules"]}
    types = {n["id"]: n.get("type", "unknown") for n in truth["nodules"]}
    small_ids = [i for i, d in sizes.items() if d < LARGE_MM]
    large = np.isin(instances, [i for i, d in sizes.items() if d >= LARGE_MM])
    components, count = ndimage.label(predicted_nodules, structure=_CONNECTIVITY)
    touched = set(np.unique(components[instances > 0])) - {0}
    known = set(np.unique(components[_known_lesion_mask(labels, truth)])) - {0} - touched
    touching_large = set(np.unique(components[large])) - {0}
    only_small = [c for c in touched if c not in touching_large]
    ignored = ndimage.binary_dilation(np.isin(instances, small_ids)) | np.isin(components, only_small)
    counted = predicted_nodules & ~ignored
    found = {i: bool(predicted_nodules[instances == i].any()) for i in sizes}
    false = [c for c in range(1, count + 1) if c not in touched and c not in known]
    truth_lungs = labels.array > 0
    return {
        "case": name,
        "intersection_large": int((counted & large).sum()),
        "predicted_large": int(counted.sum()),
        "truth_large": int(large.sum()),
        "found_large": sum(found[i] for i, d in sizes.items() if d >= LARGE_MM),
        "nodules_large": sum(d >= LARGE_MM for d in sizes.values()),
        "found_small": sum(found[i] for i, d in sizes.items() if SMALL_MM <= d < LARGE_MM),
        "nodules_small": sum(SMALL_MM <= d < LARGE_MM for d in sizes.values()),
        "nodules_by_type": _nodules_by_type(found, sizes, types),
        "false_positive_components": len(false),
        # ndimage, not segmentation.postprocess.component_centres: importing the segmentation
        # package loads torch, which `deepdiag evaluate segmentation` does without
        "false_positive_centres_lps": [
            [round(float(x), 1) for x in prediction.ijk_to_lps(np.asarray(c)[::-1])]
            for c in (ndimage.center_of_mass(predicted_nodules, components, false) if false else [])
        ],
        "lungs_dice": _dice(predicted_lungs, truth_lungs),
    }


def _nodules_by_type(found: dict, sizes: dict, types: dict) -> dict:
    """``{type: {"ge6mm": [found, nodules], "3to6mm": [...]}}`` over the nodules of one case."""
    counts: dict = {}
    for i, diameter in sizes.items():
        if diameter < SMALL_MM:
            continue
        size = "ge6mm" if diameter >= LARGE_MM else "3to6mm"
        tally = counts.setdefault(types[i], {"ge6mm": [0, 0], "3to6mm": [0, 0]})[size]
        tally[0] += found[i]
        tally[1] += 1
    return counts


def _known_lesion_mask(grid, truth: dict) -> np.ndarray:
    """Voxels of ``grid`` inside the spheres of the truth's ``known_lesions``."""
    mask = np.zeros(grid.array.shape, dtype=bool)
    for lesion in truth.get("known_lesions", []):
        centre = grid.lps_to_ijk(np.asarray(lesion["center_lps"], dtype=float)[None])[0]
        reach = lesion["diameter_mm"] / 2 / np.asarray(grid.spacing)
        low = np.clip(np.floor(centre - reach).astype(int), 0, np.array(grid.size) - 1)
        high = np.clip(np.ceil(centre + reach).astype(int), 0, np.array(grid.size) - 1)
        i, j, k = np.meshgrid(*(np.arange(a, b + 1) for a, b in zip(low, high)), indexing="ij")
        ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
        inside = np.linalg.norm(grid.ijk_to_lps(ijk) - lesion["center_lps"], axis=1) <= lesion["diameter_mm"] / 2
        mask[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]] = True
    return mask


def _pool(cases: list[dict]) -> dict:
    def total(key: str) -> int:
        return sum(c[key] for c in cases)

    denominator = total("predicted_large") + total("truth_large")
    return {
        "nodule_dice_ge6mm": round(2 * total("intersection_large") / denominator, 4) if denominator else None,
        "sensitivity_ge6mm": _ratio(total("found_large"), total("nodules_large")),
        "sensitivity_3to6mm": _ratio(total("found_small"), total("nodules_small")),
        "nodules_ge6mm": total("nodules_large"),
        "nodules_3to6mm": total("nodules_small"),
        "false_positives_per_scan": round(total("false_positive_components") / len(cases), 3),
        "lungs_dice": round(float(np.mean([c["lungs_dice"] for c in cases])), 4),
        "found_by_type": _pooled_by_type(cases),
    }


def _pooled_by_type(cases: list[dict]) -> dict:
    """``{type: {"ge6mm": "found/nodules", ...}}`` over all cases, as a reader would tally them."""
    pooled: dict = {}
    for case in cases:
        for nodule_type, sizes in case["nodules_by_type"].items():
            for size, (found, nodules) in sizes.items():
                tally = pooled.setdefault(nodule_type, {}).setdefault(size, [0, 0])
                tally[0] += found
                tally[1] += nodules
    return {
        nodule_type: {size: f"{found}/{nodules}" for size, (found, nodules) in sorted(sizes.items()) if nodules}
        for nodule_type, sizes in sorted(pooled.items())
    }


def _ratio(found: int, total: int) -> float | None:
    return round(found / total, 4) if total else None


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    denominator = int(a.sum()) + int(b.sum())
    return round(2 * int((a & b).sum()) / denominator, 4) if denominator else 1.0


def _grid_difference(prediction, truth) -> str:
    """How the prediction's grid differs from the truth's, or "" when it lies on it (to far less
    than a voxel: 0.1 % of the spacing, 1 % of a voxel of the origin, 1e-4 of the axes' cosines)."""
    if prediction.array.shape != truth.array.shape:
        return f"{'x'.join(map(str, prediction.size))} voxels, the truth {'x'.join(map(str, truth.size))}"
    if not np.allclose(prediction.spacing, truth.spacing, rtol=1e-3, atol=0):
        return f"spacing {_mm(prediction.spacing)} mm, the truth {_mm(truth.spacing)} mm"
    shift = float(np.linalg.norm(np.subtract(prediction.origin, truth.origin)))
    if shift > 0.01 * min(truth.spacing):
        return f"its origin lies {shift:.3g} mm from the truth's"
    if not np.allclose(prediction.direction, truth.direction, rtol=0, atol=1e-4):
        return "its image axes point in other directions"
    return ""


def _mm(values) -> str:
    return " x ".join(f"{v:g}" for v in values)


def _unknown_label_values(prediction, segments: list[dict]) -> list[int]:
    """Label values of the prediction that none of its segments has (0, 1 and 2 without segments)."""
    if any("LabelValue" not in segment for segment in segments):
        return []  # a segment of unstated value: nothing to hold the values to
    known = {0, *(int(s["LabelValue"]) for s in segments)} if segments else {0, 1, 2}
    return sorted(set(np.unique(prediction.array).tolist()) - known)


def _label_value(segments: list[dict], name: str, default: int) -> int:
    for segment in segments:
        if segment.get("Name") == name:
            return int(segment.get("LabelValue", default))
    return default
