"""DeepDiagSegment: one click from a chest CT to lungs and lung nodules as a segmentation."""

from typing import Annotated

import numpy as np
import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from DeepDiagGUI import DEVICES, ModelModuleWidget
from DeepDiagLib import SegmentationLogic


class DeepDiagSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepDiag Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "DeepDiag")]
        self.parent.dependencies = ["DeepDiag"]
        self.parent.contributors = ["DeepDiag developers (DeepDiag)"]
        self.parent.helpText = _("Segments the lungs and lung nodules of a chest CT with a U-Net.")
        self.parent.acknowledgementText = _("Uses PyTorch and MONAI.")


@parameterNodeWrapper
class DeepDiagSegmentParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    # all the hub may hand on: Choice raises ValueError on any other value (verified in
    # Base/Python/slicer/parameterNodeWrapper/validators.py)
    device: Annotated[str, Choice(list(DEVICES))] = "auto"


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
            task = self.logic.segmentationTask(
                volumeNode, self._parameterNode.modelId or None, self._parameterNode.device
            )
            self.runner.start(
                task, lambda task, result: self._showResult(self.logic.addSegmentation(result, volumeNode))
            )

    def _showResult(self, segmentationNode) -> None:
        warnings = segmentationNode.GetAttribute("DeepDiag.Warnings")
        if warnings:
            slicer.util.warningDisplay(warnings, windowTitle=_("Segmentation finished with warnings"))


class DeepDiagSegmentLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    """Console use: ``slicer.util.getModuleLogic("DeepDiagSegment").process(volumeNode)``.

    The work is ``DeepDiagLib.SegmentationLogic``'s (availableModels, segmentationTask,
    addSegmentation, process) on Slicer's scene; the test suite runs it on a real MRML scene
    outside Slicer.
    """

    def getParameterNode(self):
        return DeepDiagSegmentParameterNode(super().getParameterNode())


class DeepDiagSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segmentSampleChest()

    def test_segmentSampleChest(self):
        """Segments the engine's sample chest CT: two named segments, lungs of a plausible size, a nodule."""
        from DeepDiagLib import sampleChestVolumeNode

        volumeNode = sampleChestVolumeNode(slicer.mrmlScene)
        self.delayDisplay("Segmenting the sample chest CT")
        segmentationNode = DeepDiagSegmentLogic().process(volumeNode)
        segmentation = segmentationNode.GetSegmentation()
        for name in ("Lungs", "Lung nodules"):
            self.assertTrue(segmentation.GetSegmentIdBySegmentName(name), f"no segment named {name}")
        labels = slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentationNode, segmentation.GetSegmentIdBySegmentName("Lungs"), volumeNode
        )
        self.assertGreater(
            labels.sum() * float(np.prod(volumeNode.GetSpacing())) / 1e6, 1.0, "less than a litre of lung"
        )
        nodules = slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentationNode, segmentation.GetSegmentIdBySegmentName("Lung nodules"), volumeNode
        )
        self.assertGreater(int(nodules.sum()), 0, "the sample's nodules were not found")
        self.delayDisplay("Test passed")
