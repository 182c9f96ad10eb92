"""What the benchmarks share: the scans they run on, wall time and peak memory of a piece of Python
run in a fresh process (its peak is its own), and the Dice of two masks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "DeepDiag"
REAL_CHEST_CTS = ROOT.parent / "shared" / "data" / "real" / "chest_ct"
DEFAULT_PHANTOM = "default phantom (seed 4)"


def benchmark_scans(folder: Path) -> dict[str, Path]:
    """The default phantom of seed 4 (written into ``folder``) and the real full-thorax CTs of
    shared data that are present, by name. The phantom is NIfTI: MONAI's LoadImage reads .nrrd
    only with itk installed."""
    sys.path.insert(0, str(ENGINE))
    from deepdiag.image_io import write_volume
    from deepdiag.phantom import PhantomConfig, generate_case

    folder.mkdir(parents=True, exist_ok=True)
    phantom = write_volume(generate_case(PhantomConfig(), seed=4, index=0).ct, folder / "phantom_s4_000.nii.gz")
    real = {name: REAL_CHEST_CTS / name / "ct.nii.gz" for name in ("thorax_4dct_phase00", "covid_ricord_419639")}
    return {DEFAULT_PHANTOM: phantom} | {name: path for name, path in real.items() if path.is_file()}


def dice(a, b) -> float:
    """Dice of two boolean masks (1 when both are empty), to 4 decimals."""
    total = int(a.sum()) + int(b.sum())
    return round(2 * int((a & b).sum()) / total, 4) if total else 1.0


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
