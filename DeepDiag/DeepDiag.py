"""DeepDiag hub module: engine set-up and volume information (models, classification and
fine-tuning join it as they ship)."""

import json
import logging

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest

from DeepDiagGUI import EngineModuleWidget
from DeepDiagLib import EngineTask
from DeepDiagLib.dependencies import install_engine_packages, missing_engine_packages


class DeepDiag(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepDiag")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "DeepDiag")]
        self.parent.dependencies = []
        self.parent.contributors = ["DeepDiag team"]
        self.parent.helpText = _(
            "Deep-learning diagnosis for chest CT. This hub sets up the engine and describes volumes; "
            "DeepDiagSegment and DeepDiagDetect segment and detect lung nodules."
        )
        self.parent.acknowledgementText = _(
            "Uses PyTorch, MONAI and SimpleITK. Test data: LIDC-IDRI (CC BY 3.0) and TotalSegmentator (Apache-2.0)."
        )


@parameterNodeWrapper
class DeepDiagParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode


class DeepDiagWidget(EngineModuleWidget):
    def createLogic(self):
        return DeepDiagLogic()

    def setupConnections(self) -> None:
        self.ui.describeButton.connect("clicked(bool)", self.onDescribeButton)
        self.ui.installButton.connect("clicked(bool)", self.onInstallButton)
        self._updateDependencyStatus()

    def runButtons(self) -> list:
        return [self.ui.describeButton]

    def canRun(self) -> bool:
        return super().canRun() and not missing_engine_packages()

    def _updateDependencyStatus(self) -> None:
        missing = missing_engine_packages()
        self.ui.installButton.visible = bool(missing)
        self.ui.dependencyLabel.text = (
            _("Engine ready.") if not missing else _("Missing Python packages: {packages}").format(packages=", ".join(missing))
        )
        self.updateButtons()

    def onInstallButton(self) -> None:
        missing = missing_engine_packages()
        question = _("DeepDiag will install these Python packages into Slicer (several GB for torch):\n{packages}")
        if not slicer.util.confirmOkCancelDisplay(question.format(packages="\n".join(missing))):
            return
        with slicer.util.tryWithErrorDisplay(_("Installing the engine's packages failed."), waitCursor=True):
            install_engine_packages(missing)
        self._updateDependencyStatus()

    def onDescribeButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not describe the volume."), waitCursor=True):
            task = self.logic.describeTask(self._parameterNode.inputVolume)
            self.runner.start(task, lambda task, result: self._showDescription(result))

    def _showDescription(self, result) -> None:
        self.ui.infoText.plainText = json.dumps(_description(result), indent=2)


class DeepDiagLogic(ScriptedLoadableModuleLogic):
    """Console use: ``slicer.util.getModuleLogic("DeepDiag").describeVolume(volumeNode)``."""

    def getParameterNode(self):
        return DeepDiagParameterNode(super().getParameterNode())

    def describeTask(self, volumeNode) -> EngineTask:
        """An engine task that describes the volume (size, spacing, orientation, intensities, modality)."""
        if volumeNode is None:
            raise ValueError(_("Select an input volume."))
        return EngineTask("info", [volumeNode])

    def describeVolume(self, volumeNode) -> dict:
        """Blocking: the engine's description of the volume as a dictionary."""
        with self.describeTask(volumeNode) as task:
            result = task.run(onEvent=lambda event: logging.info(event.get("message", "")))
        return _description(result)


def _description(result: dict) -> dict:
    """The engine's result without protocol fields (and without the temporary input path)."""
    return {key: value for key, value in result.items() if key not in ("event", "input")}


class DeepDiagTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: describes the CTChest sample volume and checks the scene is unchanged."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_describeVolume()

    def test_describeVolume(self):
        import SampleData

        volumeNode = SampleData.downloadSample("CTChest")
        self.delayDisplay("Describing the sample CT")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        description = DeepDiagLogic().describeVolume(volumeNode)
        self.assertEqual(description["size"], list(volumeNode.GetImageData().GetDimensions()))
        self.assertEqual(description["modality_guess"], "CT")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Test passed")
