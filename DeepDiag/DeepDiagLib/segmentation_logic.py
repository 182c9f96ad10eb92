"""What "Segment lung nodules" does, on MRML nodes: DeepDiagSegment's Logic."""

from __future__ import annotations

from .engine_process import EngineError
from .engine_task import EngineTask
from .result_nodes import addSegmentationFromFile
from .scene_logic import SceneLogic


class SegmentationLogic(SceneLogic):
    """Segments the lungs and lung nodules of a volume node into a new segmentation node.

    ``DeepDiagSegmentLogic`` is this class with Slicer's scene; outside Slicer::

        segmentationNode = SegmentationLogic(scene).process(volumeNode)
    """

    def availableModels(self) -> list[str]:
        """Installed segmentation models (``id@version``); reads model cards only, never weights."""
        from deepdiag.models.registry import models_for_task

        return models_for_task("segmentation")

    def segmentationTask(self, volumeNode, modelId: str | None = None, device: str = "auto") -> EngineTask:
        """An engine task that segments the lungs and lung nodules of ``volumeNode``."""
        if volumeNode is None:
            raise ValueError("Select an input volume.")
        options = ["--device", device] + (["--model", modelId] if modelId else [])
        return EngineTask("segment", [volumeNode], options, writesFiles=True)

    def addSegmentation(self, result: dict, volumeNode):
        """A new segmentation node from the engine's result, named after the input, shown in 2D and 3D.

        Warnings of the engine (e.g. "this looks like an MR scan") are kept on the node as the
        attribute ``DeepDiag.Warnings`` so that the widget and scripts can show them.
        """
        output = result["outputs"][0]
        segmentationNode = addSegmentationFromFile(
            self.scene, output["segmentation"], volumeNode, name=f"{volumeNode.GetName()} segmentation"
        )
        segmentationNode.CreateClosedSurfaceRepresentation()
        segmentationNode.SetAttribute("DeepDiag.Model", result.get("model", ""))
        segmentationNode.SetAttribute("DeepDiag.Warnings", "\n".join(output.get("warnings", [])))
        return segmentationNode

    def process(
        self, volumeNode, modelId: str | None = None, device: str = "auto", onEvent=None, timeout: float | None = None
    ):
        """Blocking: segment ``volumeNode`` and return the new segmentation node (nothing added on failure)."""
        with self.segmentationTask(volumeNode, modelId, device) as task:
            result = task.run(onEvent=onEvent, timeout=timeout)
            if not result.get("outputs"):
                raise EngineError(result.get("failed", [{}])[0].get("error", "the engine produced no segmentation"))
            return self.addSegmentation(result, volumeNode)
