"""Slicer's ``.mrk.json`` markups format, for findings as fiducial control points."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import atomic_output

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)


@dataclass(frozen=True)
class ControlPoint:
    """One finding: a labelled point in LPS millimetres."""

    label: str
    position_lps: tuple[float, float, float]
    description: str = ""


def write_fiducials(path: str | Path, points: Sequence[ControlPoint], name: str = "Findings") -> Path:
    """Write points as a Slicer fiducial markups file (coordinate system LPS), atomically."""
    document = {
        "@schema": MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "name": name,
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "locked": True,
                "labelFormat": "%N-%d",
                "controlPoints": [_control_point(index, point) for index, point in enumerate(points, 1)],
            }
        ],
    }
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(document, indent=2))
    return path


def read_fiducials(path: str | Path) -> list[ControlPoint]:
    """Read control points back, converted to LPS whatever the file's coordinate system."""
    markups = json.loads(Path(path).read_text())["markups"][0]
    flip = np.array([-1.0, -1.0, 1.0]) if markups.get("coordinateSystem", "LPS") == "RAS" else np.ones(3)
    return [
        ControlPoint(
            p.get("label", ""), tuple(float(v) for v in np.asarray(p["position"]) * flip), p.get("description", "")
        )
        for p in markups.get("controlPoints", [])
    ]


def _control_point(index: int, point: ControlPoint) -> dict:
    return {
        "id": str(index),
        "label": point.label,
        "description": point.description,
        "position": [float(v) for v in point.position_lps],
        "positionStatus": "defined",
        "locked": True,
        "visibility": True,
    }
