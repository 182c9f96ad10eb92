"""DeepDiagSegment: one click from a chest CT to lungs and lung nodules as a segmentation."""

from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest

from DeepDiagGUI import ModelModuleWidget
from DeepDiagLib import EngineTask, add_segmentation_from_file


class DeepDiagSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepDiag Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "DeepDiag")]
        self.parent.dependencies = ["DeepDiag"]
        self.parent.contributors = ["DeepDiag team"]
        self.parent.helpText = _("Segments the lungs and lung nodules of a chest CT with a U-Net.")
        self.parent.acknowledgementText = _("Uses PyTorch and MONAI.")


@parameterNodeWrapper
class DeepDiagSegmentParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"


class DeepDiagSegmentWidget(ModelModuleWidget):
    noModelMessage = _("No nodule segmentation model is installed yet.")

    def createLogic(self):
        return DeepDiagSegmentLogic()

    def setupConnections(self) -> None:
        super().setupConnections()
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)

    def runButtons(self) -> list:
        return [self.ui.segmentButton]

    def onSegmentButton(self) -> None:
        volumeNode = self._parameterNode.inputVolume
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed."), waitCursor=True):
            task = self.logic.segmentationTask(volumeNode, self._parameterNode.modelId or None, self._parameterNode.device)
            self.runner.start(task, lambda task, result: self.logic.addSegmentation(result, volumeNode))


class DeepDiagSegmentLogic(ScriptedLoadableModuleLogic):
    """Console use: ``slicer.util.getModuleLogic("DeepDiagSegment").process(volumeNode)``."""

    def getParameterNode(self):
        return DeepDiagSegmentParameterNode(super().getParameterNode())

    def availableModels(self) -> list:
        """Segmentation model ids the engine can run (the model registry arrives with the first model)."""
        return []

    def segmentationTask(self, volumeNode, modelId=None, device="auto") -> EngineTask:
        if volumeNode is None:
            raise ValueError(_("Select an input volume."))
        options = ["--device", device] + (["--model", modelId] if modelId else [])
        return EngineTask("segment", [volumeNode], options, writesFiles=True)

    def addSegmentation(self, result: dict, volumeNode):
        """A new segmentation node from the engine's result, shown in 2D and 3D over the input."""
        segmentationNode = add_segmentation_from_file(
            slicer.mrmlScene, result["outputs"][0]["segmentation"], volumeNode, name=f"{volumeNode.GetName()} nodules"
        )
        segmentationNode.CreateClosedSurfaceRepresentation()
        return segmentationNode

    def process(self, volumeNode, modelId=None, device="auto"):
        """Blocking: segment ``volumeNode`` and return the new segmentation node."""
        with self.segmentationTask(volumeNode, modelId, device) as task:
            return self.addSegmentation(task.run(), volumeNode)


class DeepDiagSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_noModelMeansNoRun()

    def test_noModelMeansNoRun(self):
        """Until a model is installed the module offers nothing to run and adds no node."""
        logic = DeepDiagSegmentLogic()
        self.assertEqual(logic.availableModels(), [])
        self.assertRaises(ValueError, logic.segmentationTask, None)
