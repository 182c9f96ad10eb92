"""Nodule measurements and the Lung-RADS v2022 baseline categories they feed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SMALL_CASE, run_cli

from deepdiag.lung_rads import baseline_category, scan_category
from deepdiag.measurements import measure


def _ellipsoid(shape_kji, spacing, semi_axes_mm, angle_rad=0.0):
    """Mask of an ellipsoid centred in the grid, turned in the axial plane by ``angle``."""
    k, j, i = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape_kji, spacing[::-1])], indexing="ij")
    x = i * np.cos(angle_rad) + j * np.sin(angle_rad)
    y = -i * np.sin(angle_rad) + j * np.cos(angle_rad)
    a, b, c = semi_axes_mm
    return (x / a) ** 2 + (y / b) ** 2 + (k / c) ** 2 <= 1


@pytest.mark.parametrize("angle", [0.0, 0.5])
def test_axes_volume_and_solid_component_of_a_known_ellipsoid(angle):
    spacing = (0.5, 0.5, 0.5)
    nodule = _ellipsoid((40, 60, 60), spacing, (9.0, 4.5, 5.0), angle)
    core = _ellipsoid((40, 60, 60), spacing, (3.0, 3.0, 3.0))
    hu = np.where(core, 20.0, np.where(nodule, -600.0, -850.0))
    measured = measure(nodule, hu, spacing)
    assert measured.long_axis_mm == pytest.approx(18.0, abs=0.8)
    assert measured.short_axis_mm == pytest.approx(9.0, abs=0.8)
    assert measured.mean_diameter_mm == pytest.approx(13.5, abs=0.8)
    assert measured.volume_mm3 == pytest.approx(4 / 3 * np.pi * 9 * 4.5 * 5, rel=0.05)
    assert measured.solid_mean_diameter_mm == pytest.approx(6.0, abs=0.8)
    expected_hu = (20.0 * core.sum() - 600.0 * (nodule & ~core).sum()) / nodule.sum()
    assert measured.mean_hu == pytest.approx(expected_hu)


@pytest.mark.parametrize(
    "nodule_type, size, solid, category",
    [
        ("solid", 5.9, 5.9, "2"),
        ("solid", 6.0, 6.0, "3"),
        ("solid", 7.9, 7.9, "3"),
        ("solid", 8.0, 8.0, "4A"),
        ("solid", 14.9, 14.9, "4A"),
        ("solid", 15.0, 15.0, "4B"),
        ("part-solid", 5.9, 4.0, "2"),
        ("part-solid", 12.0, 5.9, "3"),
        ("part-solid", 12.0, 6.0, "4A"),
        ("part-solid", 12.0, 8.0, "4B"),
        ("ground-glass", 29.9, 0.0, "2"),
        ("ground-glass", 30.0, 0.0, "3"),
    ],
)
def test_lung_rads_v2022_baseline_table(nodule_type, size, solid, category):
    assert baseline_category(nodule_type, size, solid) == category


def test_a_scan_takes_its_most_suspicious_category_and_no_nodule_is_category_1():
    assert scan_category(["2", "4A", "3"]) == "4A"
    assert scan_category(["4B", "4A"]) == "4B"
    assert scan_category([]) == "1"


def test_phantom_truth_carries_consistent_measurements_and_categories(tmp_path):
    result = run_cli(
        "phantom",
        "-o",
        str(tmp_path),
        "--seed",
        "11",
        "--progress",
        "none",
        *SMALL_CASE[:8],
        "--nodules",
        "6",
        "6",
        "--diameter",
        "4",
        "25",
    )
    assert result.returncode == 0, result.stderr
    nodules = json.loads(next((tmp_path / "truth").iterdir()).read_text())["nodules"]
    for n in nodules:
        assert n["short_axis_diameter_mm"] <= n["long_axis_diameter_mm"]
        assert n["mean_diameter_mm"] == pytest.approx(
            (n["long_axis_diameter_mm"] + n["short_axis_diameter_mm"]) / 2, abs=0.051
        )
        solid = n["solid_component_mean_diameter_mm"]
        assert (solid == 0) if n["type"] == "ground-glass" else (0 < solid <= n["mean_diameter_mm"] + 1e-9)
        assert n["lung_rads"] == baseline_category(n["type"], n["mean_diameter_mm"], solid)
