"""A one-page HTML report of a scan's findings, with a key image per finding: an axial crop
through the finding in a lung window, the measured nodule outlined, its size and type written
on it. The page refers to the PNGs beside it, so it opens in any browser and prints as one page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .files import atomic_output
from .findings_file import Finding
from .geometry import Volume
from .lung_rads import scan_category
from .preview import LUNG_WINDOW, NODULE_OUTLINE

KEY_IMAGE_FIELD_MM = 60.0
KEY_IMAGE_PIXELS = 256


def write_key_image(
    volume: Volume, finding: Finding, nodule: tuple[tuple[slice, ...], np.ndarray] | None, path: str | Path
) -> Path:
    """Axial crop through ``finding``, on the slice where its measured voxels (``nodule``: their
    ``[k, j, i]`` box on ``volume``'s grid and mask, or None) cover the most area."""
    i, j, k = np.round(volume.lps_to_ijk(np.asarray(finding.center_lps))).astype(int)
    outline = np.zeros(volume.array.shape[1:], dtype=bool)
    if nodule is not None and nodule[1].any():
        box, mask = nodule
        area = mask.sum(axis=(1, 2))
        k = box[0].start + int(np.argmax(area))
        outline[box[1], box[2]] = mask[int(np.argmax(area))]
    k = int(np.clip(k, 0, volume.array.shape[0] - 1))
    half_i, half_j = (int(KEY_IMAGE_FIELD_MM / 2 / s) for s in volume.spacing[:2])
    rows = slice(max(j - half_j, 0), min(j + half_j, volume.array.shape[1]))
    cols = slice(max(i - half_i, 0), min(i + half_i, volume.array.shape[2]))
    low, high = LUNG_WINDOW
    grey = (np.clip((volume.array[k, rows, cols].astype(np.float32) - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    region = outline[rows, cols]
    rgb[region & ~ndimage.binary_erosion(region)] = NODULE_OUTLINE
    height = KEY_IMAGE_PIXELS
    width = max(1, round(height * rgb.shape[1] * volume.spacing[0] / (rgb.shape[0] * volume.spacing[1])))
    image = Image.fromarray(rgb).resize((width, height), Image.NEAREST)
    ImageDraw.Draw(image).text((4, 4), _caption(finding), fill=(255, 255, 0))
    with atomic_output(path) as temporary:
        image.save(temporary, format="PNG")
    return Path(path)


def write_report(
    path: str | Path,
    source: str,
    findings: Sequence[Finding],
    key_images: dict[str, str],
    models: Sequence[str],
    warnings: Sequence[str] = (),
) -> Path:
    """The HTML page; ``key_images`` maps finding ids to PNG paths relative to the page. The run's
    ``warnings`` (not CT, hardly any lung, a sharp kernel smoothed) stand above the findings: the
    radiologist reads the page, not the command's output."""
    category = scan_category([f.details["lung_rads"] for f in findings if "lung_rads" in f.details])
    rows = (
        "\n".join(_row(f, key_images.get(f.id)) for f in findings) or '<tr><td colspan="8">No nodule found.</td></tr>'
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>DeepDiag report: {html.escape(Path(source).name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px}}
img{{width:192px}}.warnings{{border:2px solid #c60;padding:0 1em;margin-bottom:1em}}</style></head><body>
<h1>Lung nodule report</h1>
<p>Scan: {html.escape(str(source))}<br>Findings: {len(findings)};
Lung-RADS v2022 baseline category of the scan: <b>{category}</b>
 (most suspicious nodule)<br>Models: {html.escape(", ".join(models))}</p>
{_warnings_block(warnings)}
<table><tr><th>Finding</th><th>Key image</th><th>Type (probability)</th><th>Long / short axis mm</th>
<th>Mean diameter mm</th>
<th>Volume mm³</th><th>Mean HU</th><th>Lung-RADS</th></tr>
{rows}
</table>
<p>Research use only: models trained on synthetic CTs; a radiologist decides.</p>
</body></html>
"""
    with atomic_output(path) as temporary:
        temporary.write_text(page)
    return Path(path)


def _warnings_block(warnings: Sequence[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return f'<div class="warnings"><p><b>Read with care:</b></p><ul>{items}</ul></div>'


def _caption(finding: Finding) -> str:
    d = finding.details
    size = d.get("long_axis_mm", finding.diameter_mm)
    return f"{finding.id} {d.get('type', '?')} {size:.1f} mm LR {d.get('lung_rads', '?')}"


def _row(finding: Finding, image: str | None) -> str:
    d = finding.details
    probability = d.get("probabilities", {}).get(d.get("type"), float("nan"))
    picture = f'<img src="{html.escape(image)}" alt="{finding.id}">' if image else ""
    return (
        f"<tr><td>{finding.id}</td><td>{picture}</td><td>{d.get('type', '?')} ({probability:.2f})</td>"
        f"<td>{d.get('long_axis_mm', 0):.1f} / "
        f"{d.get('short_axis_mm', 0):.1f}</td><td>{d.get('mean_diameter_mm', 0):.1f}</td>"
        f"<td>{d.get('volume_mm3', 0):.0f}</td><td>{_number(d.get('mean_hu'))}</td>"
        f"<td>{d.get('lung_rads', '?')}</td></tr>"
    )


def _number(value) -> str:
    return "–" if value is None else f"{value:.0f}"
