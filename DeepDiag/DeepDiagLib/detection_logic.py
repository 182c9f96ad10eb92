"""What "Detect nodules" does, on MRML nodes: DeepDiagDetect's Logic."""

from __future__ import annotations

import json

from .engine_process import EngineError
from .engine_task import EngineTask
from .findings_table import findingsTableNode
from .result_nodes import addFiducialsFromFile
from .scene_logic import SceneLogic


class DetectionLogic(SceneLogic):
    """Finds lung nodules in a volume node: a new fiducial node and a findings table node.

    ``DeepDiagDetectLogic`` is this class with Slicer's scene; outside Slicer::

        markupsNode, tableNode = DetectionLogic(scene).process(volumeNode)
    """

    def availableModels(self) -> list[str]:
        """Installed detection models (``id@version``); reads model cards only, never weights."""
        from deepdiag.models.registry import models_for_task

        return models_for_task("detection")

    def defaultMinScore(self, modelId: str | None = None) -> float:
        """The score threshold the card of ``modelId`` (default: the newest detector) recommends."""
        from deepdiag.detection import DEFAULT_MODEL
        from deepdiag.models.card import ModelCard
        from deepdiag.models.registry import find_model

        return ModelCard.read(find_model(modelId, "detection", DEFAULT_MODEL)).default_min_score

    def detectionTask(
        self, volumeNode, modelId: str | None = None, device: str = "auto", minScore: float | None = None
    ) -> EngineTask:
        """An engine task that finds the lung nodules of ``volumeNode``."""
        if volumeNode is None:
            raise ValueError("Select an input volume.")
        options = (
            ["--device", device]
            + (["--min-score", str(minScore)] if minScore is not None else [])
            + (["--model", modelId] if modelId else [])
        )
        return EngineTask("detect", [volumeNode], options, writesFiles=True)

    def addFindings(self, result: dict, volumeNode):
        """A new fiducial node (one control point per finding, N1 = best score) and a table node of
        the findings, row n = control point n, both named after the input; both or neither are added."""
        output = result["outputs"][0]
        findings = json.loads(open(output["findings"]).read())["findings"]
        table = findingsTableNode(self.scene, findings, f"{volumeNode.GetName()} findings table")
        try:
            markupsNode = addFiducialsFromFile(
                self.scene, output["markups"], volumeNode, name=f"{volumeNode.GetName()} findings"
            )
        except Exception:
            self.scene.RemoveNode(table)
            raise
        for node in (markupsNode, table):
            node.SetAttribute("DeepDiag.Model", result.get("model", ""))
            node.SetAttribute("DeepDiag.Warnings", "\n".join(output.get("warnings", [])))
        table.SetNodeReferenceID("findings", markupsNode.GetID())
        return markupsNode, table

    def process(
        self,
        volumeNode,
        modelId: str | None = None,
        device: str = "auto",
        minScore: float | None = None,
        onEvent=None,
        timeout: float | None = None,
    ):
        """Blocking: detect nodules in ``volumeNode``; returns (markups node, table node); nothing added on failure."""
        with self.detectionTask(volumeNode, modelId, device, minScore) as task:
            result = task.run(onEvent=onEvent, timeout=timeout)
            if not result.get("outputs"):
                raise EngineError(result.get("failed", [{}])[0].get("error", "the engine produced no findings"))
            return self.addFindings(result, volumeNode)
