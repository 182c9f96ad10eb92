"""Check, and inside Slicer install, the Python packages the engine needs."""

from __future__ import annotations

import importlib.util

#: import name → pip requirement. torch is pinned: the shipped weights are validated with it.
ENGINE_REQUIREMENTS = {
    "torch": "torch==2.14.1",
    "monai": "monai>=1.5",
    "SimpleITK": "SimpleITK>=2.3",
    "safetensors": "safetensors>=0.4",
    "scipy": "scipy",
    "h5py": "h5py",
}


def missing_engine_packages() -> list[str]:
    """pip requirements of the engine that this Python cannot import."""
    return [requirement for name, requirement in ENGINE_REQUIREMENTS.items() if importlib.util.find_spec(name) is None]


def install_engine_packages(requirements: list[str]) -> None:
    """Install into Slicer's Python: torch through the PyTorch Utils extension when present, the rest with pip."""
    import slicer

    others = [r for r in requirements if not r.startswith("torch")]
    if len(others) < len(requirements):
        try:
            import PyTorchUtils

            PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement="==2.14.1")
        except ImportError:
            others.insert(0, ENGINE_REQUIREMENTS["torch"])
    if others:
        slicer.util.pip_install(others)
