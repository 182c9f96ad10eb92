"""Fine-tuning adapts the shipped nodule model to another scanner (a small version of issue 6's
acceptance; `benchmarks/fine_tune_benchmark.py` runs the full one on default-size cases).

Four coarse phantoms from a "scanner" with more noise, more blur and another HU calibration: three
to fine-tune on, one held out. The held-out case is segmented with the base and with the
fine-tuned model; the fine-tuned model must leave far fewer false nodules and keep the lungs, and
the shipped model's files must be unchanged. The lungs used to be the larger gain (Dice 0.27 to
0.75): the base marked the air around this scanner's patients as lung. Since the engine keeps the
lungs inside the body, the base finds them already (0.991 before, 0.992 after with
lung-nodules-seg@11), and the false nodules are what fine-tuning removes (6 to 0 per scan with
lung-nodules-seg@11; 1 to 0 with lung-nodules-seg@13, whose second candidate filter already drops
most of them). These 45 steps are too few to lift the nodule Dice itself (0.54 before, 0.13
after); the benchmark's 480 steps do (0.57 to 0.73 on five default-size cases, with an earlier
base model).
"""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import PROJECT_ROOT, run_cli

SHIFTED_SCANNER = ["--noise", "40", "--blur", "1.1", "--hu-scale", "0.85", "--hu-offset", "90"]
CASES = [
    "--size",
    "200",
    "200",
    "100",
    "--spacing",
    "1.75",
    "1.75",
    "3.75",
    "--nodules",
    "3",
    "4",
    "--diameter",
    "8",
    "20",
]
MIN_LUNGS_DICE = 0.95  # measured 0.991 before and 0.992 after
BUILTIN = PROJECT_ROOT / "DeepDiag" / "deepdiag" / "models" / "builtin"


@pytest.fixture(scope="module")
def shifted_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shifted")
    made = run_cli(
        "phantom",
        "-o",
        str(folder / "train"),
        "--cases",
        "3",
        "--seed",
        "41",
        "--progress",
        "none",
        *SHIFTED_SCANNER,
        *CASES,
    )
    assert made.returncode == 0, made.stderr
    made = run_cli(
        "phantom",
        "-o",
        str(folder / "test"),
        "--cases",
        "1",
        "--seed",
        "42",
        "--progress",
        "none",
        *SHIFTED_SCANNER,
        *CASES,
    )
    assert made.returncode == 0, made.stderr
    return folder


def _figures(model: str, folder, name: str, env: dict) -> dict:
    image = next((folder / "test" / "images").iterdir())
    segmented = run_cli(
        "segment",
        str(image),
        "-o",
        str(folder / name),
        "--model",
        model,
        "--device",
        "cpu",
        "--progress",
        "none",
        env=env,
    )
    assert segmented.returncode == 0, segmented.stderr
    evaluated = run_cli(
        "evaluate", "segmentation", "--truth", str(folder / "test"), "--pred", str(folder / name), "--progress", "none"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    return json.loads(evaluated.stdout)


def _hashes() -> dict:
    return {
        str(p.relative_to(BUILTIN)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(BUILTIN.rglob("*"))
        if p.is_file()
    }


def test_fine_tuning_on_another_scanner_improves_the_held_out_case(shifted_cases, tmp_path):
    env = {"DEEPDIAG_MODELS": str(tmp_path / "models")}
    shipped = _hashes()
    images = sorted((shifted_cases / "train" / "images").iterdir())
    labels = [shifted_cases / "train" / "labels" / p.name for p in images]
    before = _figures(
        "lung-nodules-seg", shifted_cases, "base", env
    )  # before training: afterwards the bare id means the new model
    trained = run_cli(
        "train",
        "--base",
        "lung-nodules-seg",
        "--images",
        *map(str, images),
        "--labels",
        *map(str, labels),
        "--epochs",
        "3",
        "--steps-per-epoch",
        "15",
        "--lr",
        "1e-3",
        "--progress",
        "none",
        env=env,
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr
    new_model = json.loads(trained.stdout)["model"]
    after = _figures(new_model, shifted_cases, "tuned", env)
    figures = f"before {before}, after {after}"
    assert after["lungs_dice"] >= MIN_LUNGS_DICE and before["lungs_dice"] >= MIN_LUNGS_DICE, figures
    assert before["false_positives_per_scan"] >= 1, figures  # the shift confuses the base model
    assert after["false_positives_per_scan"] <= before["false_positives_per_scan"] / 2, figures
    assert _hashes() == shipped
