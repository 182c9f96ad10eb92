"""Hand a volume node to the engine as a file, without touching the node."""

from __future__ import annotations

from pathlib import Path

import slicer


def writeVolumeNode(volumeNode, path: str | Path) -> Path:
    """Write a scalar volume node to an NRRD file with its IJK-to-RAS geometry.

    A storage node of our own, never added to the scene, does the writing, so the user's
    node keeps its storage node, file name and modified state.

    Raises:
        ValueError: the node has no image data, or is under a transform the engine would not see.
    """
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise ValueError("the input volume node holds no image data.")
    if volumeNode.GetParentTransformNode() is not None:
        raise ValueError(
            f"volume '{volumeNode.GetName()}' is under a transform; harden the transform first "
            "(Data module: right-click, Harden transform) so results line up with what you see."
        )
    path = Path(path)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)  # the file lives seconds; compressing it would cost more than it saves
    if not storage.WriteData(volumeNode):
        raise OSError(f"could not write volume '{volumeNode.GetName()}' to {path}.")
    return path
