"""Findings of a detector: ``<stem>.findings.json``, ``<stem>.findings.csv`` and the fiducials
``<stem>.mrk.json`` Slicer loads, all written atomically from one list."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
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

    @property
    def center_ras(self) -> tuple[float, float, float]:
        return tuple(c * f for c, f in zip(self.center_lps, _LPS_TO_RAS))


def numbered(centers_diameters_scores: Sequence[tuple[Sequence[float], float, float]]) -> list[Finding]:
    """Findings named N1, N2, ... in order of decreasing score."""
    ordered = sorted(centers_diameters_scores, key=lambda item: -item[2])
    return [Finding(f"N{n}", tuple(round(float(c), 3) for c in center), round(float(diameter), 2), round(float(score), 4))
            for n, (center, diameter, score) in enumerate(ordered, start=1)]


def write_findings(folder: str | Path, stem: str, findings: Sequence[Finding], model: str, source: str) -> dict[str, str]:
    """Write the three files for one input; returns their paths by kind."""
    folder = Path(folder)
    rows = [{"id": f.id, "center_lps": list(f.center_lps), "center_ras": list(f.center_ras), "diameter_mm": f.diameter_mm,
             "score": f.score, "model": model} for f in findings]
    paths = {"findings": folder / f"{stem}.findings.json", "table": folder / f"{stem}.findings.csv", "markups": folder / f"{stem}.mrk.json"}
    with atomic_output(paths["findings"]) as temporary:
        temporary.write_text(json.dumps({"input": source, "model": model, "findings": rows}, indent=2))
    with atomic_output(paths["table"]) as temporary:
        temporary.write_text(_csv(rows))
    points = [ControlPoint(f.id, f.center_lps, f"score {f.score:.2f}, diameter {f.diameter_mm:.1f} mm") for f in findings]
    write_fiducials(paths["markups"], points, name=f"{stem} findings")
    return {kind: str(path) for kind, path in paths.items()}


def read_findings(path: str | Path) -> list[Finding]:
    document = json.loads(Path(path).read_text())
    return [Finding(row["id"], tuple(row["center_lps"]), float(row["diameter_mm"]), float(row["score"])) for row in document["findings"]]


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "lps_x", "lps_y", "lps_z", "ras_x", "ras_y", "ras_z", "diameter_mm", "score", "model"])
    for row in rows:
        writer.writerow([row["id"], *row["center_lps"], *row["center_ras"], row["diameter_mm"], row["score"], row["model"]])
    return out.getvalue()


__all__ = ["Finding", "numbered", "read_findings", "write_findings"]
