"""deepdiag analyze: segment, detect and classify in one go, then a report that shows one key
image per finding."""

from __future__ import annotations

import json
import re

import numpy as np
from conftest import run_cli
from PIL import Image


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
