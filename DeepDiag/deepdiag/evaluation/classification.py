"""Nodule type, Lung-RADS category and size of classified findings against phantom truth.

Each truth nodule is matched to the nearest unused finding whose centre lies within its radius
(half its equivalent diameter), as detection is scored; type accuracy, category agreement and
diameter errors are computed over the matched nodules, and the share matched is reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DeepDiagError
from ..lung_rads import NODULE_TYPES
from .detection import hits, read_cases


def evaluate_classification_folder(truth_dir: str | Path, pred_dir: str | Path) -> dict:
    cases = read_cases(truth_dir, pred_dir)
    pairs, nodules = [], 0
    for truth_file, truths, findings_file, findings in cases:
        if truths and "lung_rads" not in truths[0]:
            raise DeepDiagError(
                "truth has no Lung-RADS category: regenerate the phantoms with this deepdiag version", truth_file
            )
        if findings and "type" not in findings[0].details:
            raise DeepDiagError("findings are not classified (run deepdiag classify first)", findings_file)
        nodules += len(truths)
        pairs += _match(truths, findings)
    return {"cases": len(cases), "nodules": nodules, **_figures(pairs, nodules)}


def _match(truths: list[dict], findings: list) -> list[tuple[dict, dict]]:
    """Each truth nodule with the nearest unused finding that hits it."""
    used, pairs = set(), []
    for truth in truths:
        inside = [
            (np.linalg.norm(np.subtract(f.center_lps, truth["center_lps"])), n)
            for n, f in enumerate(findings)
            if n not in used and hits(f.center_lps, truth["center_lps"], truth["equivalent_diameter_mm"])
        ]
        if inside:
            _, n = min(inside)
            used.add(n)
            pairs.append((truth, findings[n].details))
    return pairs


def _figures(pairs: list[tuple[dict, dict]], nodules: int) -> dict:
    if not pairs:
        return {"matched": 0, "matched_share": 0.0}
    truth_types = [t["type"] for t, _ in pairs]
    predicted = [p["type"] for _, p in pairs]
    large = [(t, p) for t, p in pairs if t["equivalent_diameter_mm"] >= 6.0]
    errors = [abs(p["long_axis_mm"] - t["long_axis_diameter_mm"]) for t, p in large]
    return {
        "matched": len(pairs),
        "matched_share": round(len(pairs) / nodules, 4),
        "type_accuracy": _share(a == b for a, b in zip(truth_types, predicted)),
        "type_accuracy_by_truth": {
            name: _share(p == name for t, p in zip(truth_types, predicted) if t == name) for name in NODULE_TYPES
        },
        "confusion": {
            name: {
                other: sum(t == name and p == other for t, p in zip(truth_types, predicted)) for other in NODULE_TYPES
            }
            for name in NODULE_TYPES
        },
        "lung_rads_agreement": _share(t["lung_rads"] == p["lung_rads"] for t, p in pairs),
        "long_axis_abs_error_mm_median_ge6mm": round(float(np.median(errors)), 3) if errors else None,
        "nodules_ge6mm": len(large),
        "mean_confidence": round(float(np.mean([max(p["probabilities"].values()) for _, p in pairs])), 4),
        "expected_calibration_error": _calibration_error(pairs),
    }


def _calibration_error(pairs: list[tuple[dict, dict]]) -> float | None:
    names = list(pairs[0][1]["probabilities"])
    if set(names) != set(NODULE_TYPES):
        return None
    probabilities = np.array([[p["probabilities"][name] for name in names] for _, p in pairs])
    return expected_calibration_error(probabilities, np.array([names.index(t["type"]) for t, _ in pairs]))


def _share(flags) -> float | None:
    flags = list(flags)
    return round(sum(flags) / len(flags), 4) if flags else None


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by count."""
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(
                float((predicted[inside] == labels[inside]).mean()) - float(confidence[inside].mean())
            )
    return round(float(error), 4)
