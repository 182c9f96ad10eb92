"""FROC of nodule findings against phantom truth, the LUNA16 way.

A finding hits a truth nodule when its centre lies within the nodule's radius (half its
equivalent diameter) of the nodule's centre; a nodule counts once, with its best-scoring hit;
a finding that hits no nodule is a false positive, one that hits only nodules outside the size
class being scored (or under 3 mm, as LUNA16's irrelevant findings) counts as neither.
Sensitivity is read at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan; CPM is their mean.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DeepDiagError
from ..findings_file import read_findings

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SIZE_CLASSES = {"all": (3.0, np.inf), "ge6mm": (6.0, np.inf), "3to6mm": (3.0, 6.0)}


def evaluate_detection_folder(truth_dir: str | Path, pred_dir: str | Path) -> dict:
    scans = read_scans(truth_dir, pred_dir)
    return {"cases": len(scans), **{name: froc(scans, *limits) for name, limits in SIZE_CLASSES.items()}}


def operating_point(scans: list, min_score: float, smallest_mm: float = 6.0) -> dict:
    """What a reader sees at one score threshold: false positives per scan and the share of
    nodules of at least ``smallest_mm`` found."""
    found, nodules, false_positives = 0, 0, 0
    for truths, findings in scans:
        kept = [f.center_lps for f in findings if f.score >= min_score]
        false_positives += sum(not any(hits(c, *truth) for truth in truths) for c in kept)
        counted = [any(hits(c, *truth) for c in kept) for truth in truths if truth[1] >= smallest_mm]
        found, nodules = found + sum(counted), nodules + len(counted)
    return {
        "min_score": min_score,
        "false_positives_per_scan": round(false_positives / len(scans), 3),
        "sensitivity": round(found / max(nodules, 1), 4),
        "nodules": nodules,
    }


def hits(point_lps, center_lps, diameter_mm: float) -> bool:
    """Whether a finding at ``point_lps`` hits a nodule: inside its radius, as LUNA16 counts."""
    return float(np.linalg.norm(np.subtract(point_lps, center_lps))) <= diameter_mm / 2


def read_cases(truth_dir: str | Path, pred_dir: str | Path) -> list[tuple[Path, list[dict], Path, list]]:
    """Per case of ``truth_dir`` (as deepdiag phantom writes it): its truth file and nodules, and
    the findings file of the same name in ``pred_dir`` and its findings."""
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    truth_files = sorted((truth_dir / "truth").glob("*.json"))
    if not truth_files:
        raise DeepDiagError("holds no truth/*.json (expected the layout that deepdiag phantom writes)", truth_dir)
    cases = []
    for path in truth_files:
        prediction = pred_dir / f"{path.stem}.findings.json"
        if not prediction.is_file():
            raise DeepDiagError(f"no findings for case {path.stem} (expected {prediction.name})", pred_dir)
        truth = read_truth(path)
        findings = [f for f in _read_predicted_findings(prediction) if not in_known_lesion(f.center_lps, truth)]
        cases.append((path, truth["nodules"], prediction, findings))
    return cases


def read_truth(path: Path) -> dict:
    """A truth file as deepdiag phantom writes it (a ``nodules`` list, known lesions)."""
    try:
        truth = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DeepDiagError(
            f"not a truth file as deepdiag phantom writes ({type(error).__name__}: {error})", path
        ) from None
    if not isinstance(truth, dict) or not isinstance(truth.get("nodules"), list):
        raise DeepDiagError("not a truth file as deepdiag phantom writes (it has no list of nodules)", path)
    return truth


def _read_predicted_findings(path: Path) -> list:
    try:
        return read_findings(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DeepDiagError(
            f"not a findings file as deepdiag detect writes ({type(error).__name__}: {error})", path
        ) from None


def in_known_lesion(point_lps, truth: dict) -> bool:
    """Whether a point lies in one of the truth's ``known_lesions``: real findings of a real
    background scan that are not the inserted truth (a mass, an opacity). Marks there count
    neither as found nor as false positives, as LUNA16 leaves its excluded annotations out."""
    return any(
        hits(point_lps, lesion["center_lps"], lesion["diameter_mm"]) for lesion in truth.get("known_lesions", [])
    )


def read_scans(truth_dir: str | Path, pred_dir: str | Path) -> list:
    """Per case: the truth nodules ``(centre LPS, equivalent diameter)`` and the findings."""
    return [
        ([(np.array(n["center_lps"]), n["equivalent_diameter_mm"]) for n in nodules], findings)
        for _, nodules, _, findings in read_cases(truth_dir, pred_dir)
    ]


def froc(scans: list, smallest_mm: float, largest_mm: float) -> dict:
    """Sensitivity at each FP rate and the CPM, for truth nodules of ``[smallest, largest)`` mm."""
    hit_scores, false_positive_scores, nodules = [], [], 0
    for truths, findings in scans:
        best = {}
        for finding in findings:
            hit = [i for i, truth in enumerate(truths) if hits(finding.center_lps, *truth)]
            counted = [i for i in hit if smallest_mm <= truths[i][1] < largest_mm]
            for i in counted:
                best[i] = max(best.get(i, -np.inf), finding.score)
            if not hit:
                false_positive_scores.append(finding.score)
        nodules += sum(smallest_mm <= diameter < largest_mm for _, diameter in truths)
        hit_scores += list(best.values())
    sensitivities = [
        _sensitivity_at(rate * len(scans), hit_scores, false_positive_scores, nodules) for rate in FP_RATES
    ]
    return {
        "nodules": nodules,
        "sensitivity_at_fp_per_scan": {str(rate): s for rate, s in zip(FP_RATES, sensitivities)},
        "cpm": round(float(np.mean(sensitivities)), 4) if nodules else None,
        "max_sensitivity": round(len(hit_scores) / nodules, 4) if nodules else None,
        "false_positives_per_scan_at_any_score": round(len(false_positive_scores) / len(scans), 3),
    }


def _sensitivity_at(
    allowed_false_positives: float, hit_scores: list, false_positive_scores: list, nodules: int
) -> float | None:
    """Best sensitivity over score thresholds that keep at most ``allowed`` false positives in all."""
    if not nodules:
        return None
    false_positives = np.sort(np.asarray(false_positive_scores))[::-1]
    hits = np.asarray(hit_scores)
    # keeping the n best false positives means a threshold just above the (n+1)-th best one
    allowed = int(np.floor(allowed_false_positives))
    threshold = false_positives[allowed] if allowed < len(false_positives) else -np.inf
    return round(float((hits > threshold).sum() / nodules), 4)
