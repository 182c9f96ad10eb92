"""DeepDiagDetect: a fiducial on each lung nodule, and a findings table."""

from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest

from DeepDiagGUI import ModelModuleWidget
from DeepDiagLib import EngineTask, add_fiducials_from_file


class DeepDiagDetect(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepDiag Detect")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "DeepDiag")]
        self.parent.dependencies = ["DeepDiag"]
        self.parent.contributors = ["DeepDiag team"]
        self.parent.helpText = _("Detects lung nodules with Faster R-CNN and marks each with a fiducial.")
        self.parent.acknowledgementText = _("Uses PyTorch and torchvision.")


@parameterNodeWrapper
class DeepDiagDetectParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    minScore: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


class DeepDiagDetectWidget(ModelModuleWidget):
    noModelMessage = _("No nodule detection model is installed yet.")

    def createLogic(self):
        return DeepDiagDetectLogic()

    def setupConnections(self) -> None:
        super().setupConnections()
        self.ui.detectButton.connect("clicked(bool)", self.onDetectButton)

    def runButtons(self) -> list:
        return [self.ui.detectButton]

    def onDetectButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Detection failed."), waitCursor=True):
            task = self.logic.detectionTask(p.inputVolume, p.modelId or None, p.device, p.minScore)
            self.runner.start(task, lambda task, result: self.logic.addFindings(result, p.inputVolume))


class DeepDiagDetectLogic(ScriptedLoadableModuleLogic):
    """Console use: ``slicer.util.getModuleLogic("DeepDiagDetect").process(volumeNode)``."""

    def getParameterNode(self):
        return DeepDiagDetectParameterNode(super().getParameterNode())

    def availableModels(self) -> list:
        """Detection model ids the engine can run (the model registry arrives with the first model)."""
        return []

    def detectionTask(self, volumeNode, modelId=None, device="auto", minScore=0.5) -> EngineTask:
        if volumeNode is None:
            raise ValueError(_("Select an input volume."))
        options = ["--device", device, "--min-score", str(minScore)] + (["--model", modelId] if modelId else [])
        return EngineTask("detect", [volumeNode], options, writesFiles=True)

    def addFindings(self, result: dict, volumeNode):
        """A new fiducial node with one control point per finding, referenced to the input."""
        return add_fiducials_from_file(
            slicer.mrmlScene, result["outputs"][0]["markups"], volumeNode, name=f"{volumeNode.GetName()} findings"
        )

    def process(self, volumeNode, modelId=None, device="auto", minScore=0.5):
        """Blocking: detect nodules in ``volumeNode`` and return the new fiducial node."""
        with self.detectionTask(volumeNode, modelId, device, minScore) as task:
            return self.addFindings(task.run(), volumeNode)


class DeepDiagDetectTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_noModelMeansNoRun()

    def test_noModelMeansNoRun(self):
        """Until a model is installed the module offers nothing to run and adds no node."""
        logic = DeepDiagDetectLogic()
        self.assertEqual(logic.availableModels(), [])
        self.assertRaises(ValueError, logic.detectionTask, None)
