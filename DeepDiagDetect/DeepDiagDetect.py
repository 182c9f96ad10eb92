"""DeepDiagDetect: a fiducial on each lung nodule, and a findings table."""

from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from DeepDiagGUI import DEVICES, ModelModuleWidget
from DeepDiagLib import DetectionLogic


class DeepDiagDetect(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepDiag Detect")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "DeepDiag")]
        self.parent.dependencies = ["DeepDiag"]
        self.parent.contributors = ["DeepDiag developers (DeepDiag)"]
        self.parent.helpText = _("Detects lung nodules with Faster R-CNN and marks each with a fiducial.")
        self.parent.acknowledgementText = _("Uses PyTorch and torchvision.")


@parameterNodeWrapper
class DeepDiagDetectParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    # all the hub may hand on: Choice raises ValueError on any other value (verified in
    # Base/Python/slicer/parameterNodeWrapper/validators.py)
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    minScore: Annotated[float, WithinRange(0.0, 1.0)] = 0.8  # replaced by the chosen model's card default


class DeepDiagDetectWidget(ModelModuleWidget):
    noModelMessage = _("No nodule detection model is installed yet.")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.markupsNode = None

    def createLogic(self):
        return DeepDiagDetectLogic()

    def setupConnections(self) -> None:
        super().setupConnections()
        self.ui.detectButton.connect("clicked(bool)", self.onDetectButton)
        self.ui.findingsTableView.connect("selectionChanged()", self.onFindingSelected)

    def runButtons(self) -> list:
        return [self.ui.detectButton]

    def onModelChanged(self, modelId: str) -> None:
        """Each detector brings the score threshold chosen on its validation cases."""
        if modelId and self._parameterNode:
            self._parameterNode.minScore = self.logic.defaultMinScore(modelId)

    def onDetectButton(self) -> None:
        p = self._parameterNode
        volumeNode = p.inputVolume
        with slicer.util.tryWithErrorDisplay(_("Detection failed."), waitCursor=True):
            task = self.logic.detectionTask(volumeNode, p.modelId or None, p.device, p.minScore)
            self.runner.start(task, lambda task, result: self._showResult(*self.logic.addFindings(result, volumeNode)))

    def _showResult(self, markupsNode, tableNode) -> None:
        self.markupsNode = markupsNode
        self.ui.findingsTableView.setMRMLTableNode(tableNode)
        warnings = markupsNode.GetAttribute("DeepDiag.Warnings")
        if warnings:
            slicer.util.warningDisplay(warnings, windowTitle=_("Detection finished with warnings"))

    def onFindingSelected(self) -> None:
        row = self.selectedFindingRow()
        if self.markupsNode is not None and row is not None:
            slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(self.markupsNode.GetID(), row, True)

    def selectedFindingRow(self):
        """The MRML table row of the first selected cell, or None.

        qMRMLTableView has no row counterpart of ``selectedMRMLTableColumnIndices``: a view index
        is mapped through the view's sort proxy to the table model, which gives the MRML row
        (``sortFilterProxyModel``, ``tableModel``, ``mrmlTableRowIndex``; verified in
        Libs/MRML/Widgets/qMRMLTableView.h and qMRMLTableModel.h).
        """
        view = self.ui.findingsTableView
        indexes = view.selectionModel().selectedIndexes() if view.selectionModel() else []
        if not indexes:
            return None
        sourceIndex = view.sortFilterProxyModel().mapToSource(indexes[0])
        return view.tableModel().mrmlTableRowIndex(sourceIndex)


class DeepDiagDetectLogic(ScriptedLoadableModuleLogic, DetectionLogic):
    """Console use: ``markupsNode, tableNode = slicer.util.getModuleLogic("DeepDiagDetect").process(volumeNode)``.

    The work is ``DeepDiagLib.DetectionLogic``'s (availableModels, defaultMinScore, detectionTask,
    addFindings, process) on Slicer's scene; the test suite runs it on a real MRML scene outside Slicer.
    """

    def getParameterNode(self):
        return DeepDiagDetectParameterNode(super().getParameterNode())


class DeepDiagDetectTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_detectSampleChest()

    def test_detectSampleChest(self):
        """Detects on the engine's sample chest CT: a fiducial per table row, N1 scoring best, a finding on a nodule."""
        from DeepDiagLib import sampleChestVolumeNode

        volumeNode = sampleChestVolumeNode(slicer.mrmlScene)
        self.delayDisplay("Detecting nodules in the sample chest CT")
        markupsNode, tableNode = DeepDiagDetectLogic().process(volumeNode)
        self.assertGreater(markupsNode.GetNumberOfControlPoints(), 0, "no finding on a CT with two nodules of 10-18 mm")
        self.assertEqual(tableNode.GetNumberOfRows(), markupsNode.GetNumberOfControlPoints())
        self.assertEqual(markupsNode.GetNthControlPointLabel(0), "N1")
        self.delayDisplay("Test passed")
