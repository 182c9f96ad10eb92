"""What "Classify findings" and "Explain" do, on MRML nodes: the body of the hub's findings panel.

The findings come from a fiducial node (one finding per control point, as DeepDiagDetect makes
them) and/or a segmentation node (its ``Lung nodules`` segment: each connected part is a finding,
and what fiducial findings are measured on). Results are new nodes: a table of findings with
type, probabilities, diameters, volume and Lung-RADS category, fiducials when the findings came
from a segmentation alone, and a saliency volume for Explain. The user's nodes are not changed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import slicer

from .engine_task import EngineTask
from .findings_table import findingsTableNode
from .fine_tuning_logic import writeLabels
from .result_nodes import addFiducialsFromFile, addVolumeFromFile
from .scene_logic import SceneLogic
from .volume_files import writeVolumeNode

NODULE_SEGMENT = "Lung nodules"
_NUMBER_AFTER = {"diameter_mm": re.compile(r"diameter ([0-9.]+) mm"), "score": re.compile(r"score ([0-9.]+)")}


class ClassificationTask(EngineTask):
    """``deepdiag classify`` on a volume node with a fiducial node and/or a segmentation node."""

    def __init__(
        self,
        volumeNode,
        markupsNode=None,
        segmentationNode=None,
        modelId: str | None = None,
        device: str = "auto",
        explain: bool = False,
    ):
        if volumeNode is None:
            raise ValueError("Select an input volume.")
        if markupsNode is None and segmentationNode is None:
            raise ValueError(
                "Select the findings: a fiducial node, a segmentation node with a 'Lung nodules' segment, or both."
            )
        if markupsNode is not None and markupsNode.GetNumberOfControlPoints() == 0:
            raise ValueError(f"fiducial node '{markupsNode.GetName()}' has no control points to classify.")
        self.markupsNode, self.segmentationNode = markupsNode, segmentationNode
        options = ["--device", device] + (["--model", modelId] if modelId else []) + (["--explain"] if explain else [])
        super().__init__("classify", [volumeNode], options, writesFiles=True)

    def exportInputs(self) -> list[str]:
        volumeNode = self.volumeNodes[0]
        arguments = [str(writeVolumeNode(volumeNode, self.workDir / "input0.nrrd"))]
        if self.markupsNode is not None:
            arguments += ["--findings", str(writeFindingsFile(self.markupsNode, self.workDir / "input0.findings.json"))]
        if self.segmentationNode is not None:
            labels = writeLabels(
                self.segmentationNode, volumeNode, [NODULE_SEGMENT], self.workDir / "input0.nodules.nrrd"
            )
            arguments += ["--segmentation", str(labels)]
        return arguments


class ClassificationLogic(SceneLogic):
    """Classifies findings (type, size, Lung-RADS category) and explains them with a saliency map."""

    def availableClassifiers(self) -> list[str]:
        """Installed classification models (``id@version``); reads model cards only."""
        from deepdiag.models.registry import models_for_task

        return models_for_task("classification")

    def addClassification(self, result: dict, volumeNode, markupsNode=None) -> dict:
        """New nodes for a classify result: ``table``, ``markups`` (when the findings came from a
        segmentation alone) and ``saliency`` (when explained). All or none are added."""
        findings = json.loads(Path(result["findings"]).read_text())["findings"]
        added = {"table": findingsTableNode(self.scene, findings, f"{volumeNode.GetName()} classified findings")}
        try:
            if markupsNode is None:
                added["markups"] = addFiducialsFromFile(
                    self.scene, result["markups"], volumeNode, name=f"{volumeNode.GetName()} findings"
                )
            if result.get("saliency"):
                added["saliency"] = addVolumeFromFile(
                    self.scene, result["saliency"], name=f"{volumeNode.GetName()} saliency"
                )
        except Exception:
            for node in added.values():
                self.scene.RemoveNode(node)
            raise
        markups = added.get("markups", markupsNode)
        if markups is not None:
            added["table"].SetNodeReferenceID("findings", markups.GetID())
        added["table"].SetAttribute("DeepDiag.Model", result.get("model", ""))
        added["table"].SetAttribute("DeepDiag.LungRADS", result.get("lung_rads", ""))
        added["table"].SetAttribute("DeepDiag.Warnings", "\n".join(result.get("warnings", [])))
        return added

    def classifyFindings(
        self,
        volumeNode,
        markupsNode=None,
        segmentationNode=None,
        modelId: str | None = None,
        device: str = "auto",
        explain: bool = False,
        onEvent=None,
        timeout: float | None = None,
    ) -> dict:
        """Blocking: classify the findings; returns the new nodes by role (see ``addClassification``)."""
        with ClassificationTask(volumeNode, markupsNode, segmentationNode, modelId, device, explain) as task:
            result = task.run(onEvent=onEvent, timeout=timeout)
            return self.addClassification(result, volumeNode, markupsNode)

    def showSaliency(self, volumeNode, saliencyNode, opacity: float = 0.4) -> None:
        """Show the saliency as a colored overlay over the CT in the slice views (Slicer only)."""
        colorNode = self.scene.GetFirstNodeByName("ColdToHotRainbow")
        display = saliencyNode.GetDisplayNode()
        if colorNode is not None and display is not None:
            display.SetAndObserveColorNodeID(colorNode.GetID())
            display.SetAutoWindowLevel(False)
            display.SetWindowLevelMinMax(0.0, 1.0)
        slicer.util.setSliceViewerLayers(background=volumeNode, foreground=saliencyNode, foregroundOpacity=opacity)


def writeFindingsFile(markupsNode, path: Path) -> Path:
    """The control points as a findings file (LPS); diameter and score are read back from the
    descriptions DeepDiagDetect writes, else 10 mm and 1."""
    findings = []
    for index in range(markupsNode.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, ras)
        description = markupsNode.GetNthControlPointDescription(index)
        numbers = {
            key: float(m.group(1)) for key, pattern in _NUMBER_AFTER.items() if (m := pattern.search(description))
        }
        findings.append(
            {
                "id": markupsNode.GetNthControlPointLabel(index) or f"F{index + 1}",
                "center_lps": [-ras[0], -ras[1], ras[2]],
                "diameter_mm": numbers.get("diameter_mm", 10.0),
                "score": numbers.get("score", 1.0),
            }
        )
    path.write_text(json.dumps({"input": markupsNode.GetName(), "findings": findings}))
    return path
