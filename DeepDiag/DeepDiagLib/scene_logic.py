"""The base of DeepDiag's logic classes: the MRML scene they add their results to."""

from __future__ import annotations


class SceneLogic:
    """Holds the scene a logic works on: the one given, else Slicer's ``slicer.mrmlScene``.

    A module's Logic derives from ``ScriptedLoadableModuleLogic`` and from the bridge's logic
    classes; ``ScriptedLoadableModuleLogic.__init__`` calls ``super().__init__()`` without
    arguments (verified in Base/Python/slicer/ScriptedLoadableModule.py), so ``scene`` is optional.
    Tests and scripts outside Slicer pass their own scene.
    """

    def __init__(self, scene=None) -> None:
        super().__init__()
        self._scene = scene

    @property
    def scene(self):
        if self._scene is not None:
            return self._scene
        import slicer

        return slicer.mrmlScene
