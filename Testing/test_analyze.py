"""deepdiag analyze: segment, detect and classify in one go, then a report that shows one key
image per finding."""

from __future__ import annotations

import html
import json
import re

import numpy as np
from conftest import run_cli
from PIL import Image

from deepdiag.report import write_report


def test_report_shows_one_key_image_per_finding(tmp_path, small_case):
    image = next((small_case / "images").iterdir())
    result = run_cli("analyze", str(image), "-o", str(tmp_path), "--progress", "json", timeout=600)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.splitlines()[-1])["outputs"][0]
    findings = json.loads(open(output["findings"]).read())["findings"]
    assert findings, "the shipped detector finds the small case's 10-18 mm nodules"
    assert all("type" in f and "lung_rads" in f for f in findings)
    page = open(output["report"]).read()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(findings)
    for finding, source in zip(findings, sources):
        assert finding["id"] in source
        picture = np.asarray(Image.open(tmp_path / source).convert("RGB"))
        assert picture.shape[0] >= 128 and picture.std() > 10  # a real crop, not a blank tile
        assert (np.all(picture == [255, 60, 40], axis=-1)).any(), "the measured nodule is outlined"
    assert f"category of the scan: <b>{output['lung_rads']}</b>" in page
    assert output["segmentation"].endswith(".seg.nrrd")
    assert all(html.escape(w) in page for w in output["warnings"]), "the report shows the run's warnings"


def test_the_report_puts_the_runs_warnings_above_the_findings_and_none_when_there_are_none(tmp_path):
    warning = "the scan is noisier than lung-nodules-det@5 was trained on (36 HU in its air) <smoothed>"
    page = write_report(tmp_path / "warned.report.html", "scan.nrrd", [], {}, ["m@1"], [warning]).read_text()
    assert html.escape(warning) in page and "<smoothed>" not in page, "shown, escaped"
    assert page.index("Read with care") < page.index("<table>")
    quiet = write_report(tmp_path / "quiet.report.html", "scan.nrrd", [], {}, ["m@1"]).read_text()
    assert "Read with care" not in quiet
