"""Findings of a detector: ``<stem>.findings.json``, ``<stem>.findings.csv`` and the fiducials
``<stem>.mrk.json`` Slicer loads, all written atomically from one list."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .files import atomic_output
from .markups_file import ControlPoint, write_fiducials

_LPS_TO_RAS = (-1.0, -1.0, 1.0)


@dataclass(frozen=True)
class Finding:
    id: str  # N1, N2, ... by decreasing score
    center_lps: tuple[float, float, float]
    diameter_mm: float
    score: float
    #: what classification adds: type, probabilities, measurements, Lung-RADS category
    details: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def center_ras(self) -> tuple[float, float, float]:
        return tuple(c * f for c, f in zip(self.center_lps, _LPS_TO_RAS))


def numbered(centers_diameters_scores: Sequence[tuple[Sequence[float], float, float]]) -> list[Finding]:
    """Findings named N1, N2, ... in order of decreasing score."""
    ordered = sorted(centers_diameters_scores, key=lambda item: -item[2])
    return [
        Finding(f"N{n}", tuple(round(float(c), 3) for c in center), round(float(diameter), 2), round(float(score), 4))
        for n, (center, diameter, score) in enumerate(ordered, start=1)
    ]


def write_findings(
    folder: str | Path, stem: str, findings: Sequence[Finding], model: str, source: str
) -> dict[str, str]:
    """Write the three files for one input; returns their paths by kind."""
    folder = Path(folder)
    rows = [
        {
            "id": f.id,
            "center_lps": list(f.center_lps),
            "center_ras": list(f.center_ras),
            "diameter_mm": f.diameter_mm,
            "score": f.score,
            "model": model,
            **f.details,
        }
        for f in findings
    ]
    paths = {
        "findings": folder / f"{stem}.findings.json",
        "table": folder / f"{stem}.findings.csv",
        "markups": folder / f"{stem}.mrk.json",
    }
    with atomic_output(paths["findings"]) as temporary:
        temporary.write_text(json.dumps({"input": source, "model": model, "findings": rows}, indent=2))
    with atomic_output(paths["table"]) as temporary:
        temporary.write_text(_csv(rows))
    points = [ControlPoint(f.id, f.center_lps, _description(f)) for f in findings]
    write_fiducials(paths["markups"], points, name=f"{stem} findings")
    return {kind: str(path) for kind, path in paths.items()}


def read_findings(path: str | Path) -> list[Finding]:
    document = json.loads(Path(path).read_text())
    return [
        Finding(
            row["id"],
            tuple(row["center_lps"]),
            float(row["diameter_mm"]),
            float(row["score"]),
            {k: v for k, v in row.items() if k not in _DETECTION_KEYS},
        )
        for row in document["findings"]
    ]


_DETECTION_KEYS = ("id", "center_lps", "center_ras", "diameter_mm", "score", "model")


def _description(finding: Finding) -> str:
    text = f"score {finding.score:.2f}, diameter {finding.diameter_mm:.1f} mm"
    if "type" in finding.details:
        text += f", {finding.details['type']}, Lung-RADS {finding.details.get('lung_rads', '?')}"
    return text


def _csv(rows: list[dict]) -> str:
    """One line per finding; classification details (probabilities flattened) as extra columns."""
    flat = [
        {k: v for k, v in row.items() if k not in ("center_lps", "center_ras", "probabilities")}
        | {f"lps_{a}": c for a, c in zip("xyz", row["center_lps"])}
        | {f"ras_{a}": c for a, c in zip("xyz", row["center_ras"])}
        | {f"p_{name}": p for name, p in row.get("probabilities", {}).items()}
        for row in rows
    ]
    columns = ["id", "lps_x", "lps_y", "lps_z", "ras_x", "ras_y", "ras_z", "diameter_mm", "score", "model"]
    present = {k for row in flat for k in row} - set(columns)
    columns += [k for k in _DETAIL_ORDER if k in present] + sorted(present - set(_DETAIL_ORDER))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


_DETAIL_ORDER = [
    "type",
    "lung_rads",
    "long_axis_mm",
    "short_axis_mm",
    "mean_diameter_mm",
    "solid_mean_diameter_mm",
    "volume_mm3",
    "mean_hu",
]


__all__ = ["Finding", "numbered", "read_findings", "write_findings"]
