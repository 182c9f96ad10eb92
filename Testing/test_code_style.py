"""The code reads one way: ruff's lint rules and formatting as pyproject.toml configures them (line length 120,
sorted imports), for the engine, the Slicer modules, the tests, scripts and benchmarks."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*arguments: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -r requirements-dev.txt"
    return subprocess.run([ruff, *arguments], cwd=ROOT, capture_output=True, text=True)


def test_lint_rules_hold_everywhere():
    result = _ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted():
    result = _ruff("format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr
