"""Load engine result files into new MRML nodes, or add nothing at all.

Each loader reads into a node that is not yet in the scene; only a complete read is
added, so a bad or missing file never leaves a half-made node behind.
"""

from __future__ import annotations

from pathlib import Path

import slicer


def addSegmentationFromFile(scene, path: str | Path, referenceVolumeNode=None, name: str | None = None):
    """Add a new segmentation node read from a ``.seg.nrrd`` file, shown over ``referenceVolumeNode``."""
    segmentationNode = _addNodeFromFile(
        scene, slicer.vtkMRMLSegmentationNode(), slicer.vtkMRMLSegmentationStorageNode(), path, name
    )
    if referenceVolumeNode is not None:
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
        segmentationNode.SetNodeReferenceID("referenceImageGeometryRef", referenceVolumeNode.GetID())
    return segmentationNode


def addFiducialsFromFile(scene, path: str | Path, referenceVolumeNode=None, name: str | None = None):
    """Add a new fiducial markups node read from a ``.mrk.json`` file.

    The scene needs the Markups logic (``vtkSlicerMarkupsLogic().SetMRMLScene(scene)``),
    which Slicer sets up itself and tests do in their fixture.
    """
    markupsNode = _addNodeFromFile(
        scene, slicer.vtkMRMLMarkupsFiducialNode(), slicer.vtkMRMLMarkupsJsonStorageNode(), path, name
    )
    if referenceVolumeNode is not None:
        markupsNode.SetNodeReferenceID("referenceVolume", referenceVolumeNode.GetID())
    return markupsNode


def addVolumeFromFile(scene, path: str | Path, name: str | None = None):
    """Add a new scalar volume node read from an image file (a saliency or probability map)."""
    return _addNodeFromFile(
        scene, slicer.vtkMRMLScalarVolumeNode(), slicer.vtkMRMLVolumeArchetypeStorageNode(), path, name
    )


def _addNodeFromFile(scene, node, storageNode, path: str | Path, name: str | None):
    path = Path(path)
    if not path.is_file():
        raise OSError(f"{path}: the engine did not produce this file.")
    storageNode.SetFileName(str(path))
    if not storageNode.ReadData(node):
        raise OSError(f"{path}: Slicer could not read this file.")
    node.SetName(scene.GenerateUniqueName(name or path.name.split(".")[0]))
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    return node
