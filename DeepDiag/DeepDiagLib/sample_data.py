"""A small synthetic chest CT with known lung nodules, made by the engine: the modules'
self-tests run on it inside Slicer without downloading anything."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .engine_process import EngineProcess

#: one coarse case with two nodules of 10-18 mm: a few seconds to make, segment or detect
SAMPLE_PHANTOM = [
    "--cases",
    "1",
    "--seed",
    "5",
    "--size",
    "160",
    "160",
    "100",
    "--spacing",
    "2.2",
    "2.2",
    "3.75",
    "--nodules",
    "2",
    "2",
    "--diameter",
    "10",
    "18",
]


def sampleChestVolumeNode(scene, folder: str | Path | None = None, timeout: float = 600):
    """A new scalar volume node "DeepDiag sample chest" holding the sample phantom's CT; the
    phantom's files (with its truth) are written to ``folder`` (a new temporary folder by default)."""
    import slicer

    folder = Path(folder or tempfile.mkdtemp(prefix="deepdiag-sample-"))
    EngineProcess(["phantom", "-o", str(folder), *SAMPLE_PHANTOM]).wait(timeout=timeout)
    image = next((folder / "images").glob("*.nrrd"))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(image))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "DeepDiag sample chest")
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise RuntimeError(f"could not load the sample CT {image}")
    return node
