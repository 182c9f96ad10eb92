"""Check, and inside Slicer install, the Python packages the engine needs.

The packages come from the engine's own list, ``deepdiag/requirements.txt``, which pip reads
too (``requirements.txt``, ``pyproject.toml``): one list for every installer. DeepDiag supports
Slicer 5.8 and later (Python 3.12); Slicer 5.6 ships Python 3.9, for which the pinned torch
release does not exist, so the installer refuses there instead of failing half way.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from .engine_process import ENGINE_PARENT

REQUIREMENTS_FILE = ENGINE_PARENT / "deepdiag" / "requirements.txt"
#: the oldest Python the pinned torch release is built for
MIN_PYTHON = (3, 10)
#: distribution name -> import name, where they differ
_IMPORT_NAMES = {"pillow": "PIL", "simpleitk": "SimpleITK"}


def engineRequirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """The pip requirements of the engine, in the order of its list."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def importName(requirement: str) -> str:
    name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
    return _IMPORT_NAMES.get(name.lower(), name)


def missingEnginePackages() -> list[str]:
    """pip requirements of the engine that this Python cannot import."""
    return [r for r in engineRequirements() if importlib.util.find_spec(importName(r)) is None]


def checkPythonVersion(version: tuple[int, ...] = sys.version_info[:2]) -> None:
    """Refuse a Python the engine's pinned packages are not built for (Slicer 5.6's 3.9)."""
    if tuple(version) < MIN_PYTHON:
        raise RuntimeError(
            f"DeepDiag needs Slicer 5.8 or later: this Slicer's Python is {version[0]}.{version[1]}, and the engine's "
            f"{pinnedRequirement('torch')} is built for Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} and later."
        )


def pinnedRequirement(package: str) -> str:
    """The engine's requirement for ``package`` (e.g. ``torch==2.14.1``)."""
    return next(r for r in engineRequirements() if importName(r) == package)


def installEnginePackages(requirements: list[str]) -> None:
    """Install into Slicer's Python: torch and torchvision through the PyTorch Utils extension
    when present (it picks the CUDA build that fits the machine), the rest with pip."""
    import slicer

    checkPythonVersion()
    others = [r for r in requirements if importName(r) not in ("torch", "torchvision")]
    if len(others) < len(requirements):
        try:
            import PyTorchUtils

            # installTorch(askConfirmation, forceComputationBackend, torchVersionRequirement,
            # torchvisionVersionRequirement): verified in SlicerPyTorch's PyTorchUtils/PyTorchUtils.py
            PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False,
                torchVersionRequirement=pinnedRequirement("torch")[len("torch") :],
                torchvisionVersionRequirement=pinnedRequirement("torchvision")[len("torchvision") :],
            )
        except ImportError:
            others[:0] = [pinnedRequirement("torch"), pinnedRequirement("torchvision")]
    if others:
        slicer.util.pip_install(others)
