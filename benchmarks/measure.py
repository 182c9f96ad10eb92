"""Wall time and peak memory of a piece of Python run in a fresh process (its peak is its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "DeepDiag"


def measured(code: str, engine: Path = ENGINE) -> tuple[float, float]:
    """Run Python ``code`` in a new process that imports deepdiag from ``engine`` (another
    checkout's DeepDiag folder, for an earlier release); return its wall seconds and peak memory in GB."""
    report = (
        "print('MEASURED', time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)"
    )
    wrapper = f"import resource, time\nstart = time.perf_counter()\n{code}\n{report}"
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", wrapper],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(engine)},
        check=True,
    ).stdout
    line = next(text for text in output.splitlines() if text.startswith("MEASURED"))
    return time.perf_counter() - started, float(line.split()[2])


def cli_code(*arguments: str) -> str:
    """Python code that runs ``deepdiag ARGUMENTS``, as the command line would."""
    return f"from deepdiag.cli import main\nmain({list(arguments)!r})"
