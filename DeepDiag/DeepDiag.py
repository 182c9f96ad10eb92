"""DeepDiag hub module: engine set-up, volume information, the model table with import and the
device preference, classification of findings (with explanations), and the fine-tuning panel."""

import json
import logging
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from DeepDiagGUI import DEVICES, EngineModuleWidget, preferredDevice, setPreferredDevice
from DeepDiagLib import ClassificationLogic, ClassificationTask, EngineTask, FineTuningLogic, ModelLogic
from DeepDiagLib.dependencies import checkPythonVersion, installEnginePackages, missingEnginePackages


class DeepDiag(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepDiag")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "DeepDiag")]
        self.parent.dependencies = []
        self.parent.contributors = ["DeepDiag developers (DeepDiag)"]
        self.parent.helpText = _(
            "Deep-learning diagnosis for chest CT. This hub sets up the engine, describes volumes, manages "
            "models (import, device), classifies findings (nodule type, size, Lung-RADS category, saliency) "
            "and fine-tunes a model on your own labeled cases; "
            "DeepDiagSegment and DeepDiagDetect segment and detect lung nodules."
        )
        self.parent.acknowledgementText = _(
            "Uses PyTorch, MONAI and SimpleITK. Test data: LIDC-IDRI (CC BY 3.0) and TotalSegmentator (Apache-2.0)."
        )


@parameterNodeWrapper
class DeepDiagParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    findingsVolume: vtkMRMLScalarVolumeNode
    findingsMarkups: vtkMRMLMarkupsFiducialNode
    findingsSegmentation: vtkMRMLSegmentationNode
    explain: bool = False
    trainingVolume: vtkMRMLScalarVolumeNode
    trainingSegmentation: vtkMRMLSegmentationNode
    # Unbounded int/float fields would reset the spin boxes' ranges to +-2**31 / +-inf
    # (QSliderOrSpinBoxToIntConnector, QDoubleSpinBox...Connector; verified in
    # Base/Python/slicer/parameterNodeWrapper/guiConnectors.py): the ranges of DeepDiag.ui, stated here.
    epochs: Annotated[int, WithinRange(1, 500)] = 10
    learningRate: Annotated[float, WithinRange(0.000001, 0.1)] = 0.001
    newModelName: str = ""


class DeepDiagWidget(EngineModuleWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.missingPackages = []
        self.figuresTable = None

    def createLogic(self):
        return DeepDiagLogic()

    def setupConnections(self) -> None:
        self.ui.describeButton.connect("clicked(bool)", self.onDescribeButton)
        self.ui.installButton.connect("clicked(bool)", self.onInstallButton)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModelButton)
        self.ui.deviceSelector.addItems(list(DEVICES))
        self.ui.deviceSelector.currentText = preferredDevice()
        self.ui.deviceSelector.connect("currentTextChanged(QString)", setPreferredDevice)
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCaseButton)
        self.ui.removeCaseButton.connect("clicked(bool)", self.onRemoveCaseButton)
        self.ui.trainingFolderEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.fineTuneButton.connect("clicked(bool)", self.onFineTuneButton)
        self.ui.classifyButton.connect("clicked(bool)", self.onClassifyButton)
        self._updateDependencyStatus()
        self.refreshModels()

    def runButtons(self) -> list:
        return [self.ui.describeButton]

    def canRun(self) -> bool:
        return super().canRun() and not self.missingPackages

    def updateButtons(self, caller=None, event=None) -> None:
        super().updateButtons(caller, event)
        idle = not (self.runner and self.runner.busy) and not self.missingPackages
        hasCases = bool(self._trainingPairs() or self.ui.trainingFolderEdit.currentPath)
        self.ui.fineTuneButton.enabled = idle and hasCases and bool(self.ui.baseModelSelector.currentText)
        self.ui.importModelButton.enabled = idle
        p = self._parameterNode
        self.ui.addCaseButton.enabled = bool(p and p.trainingVolume and p.trainingSegmentation)
        hasFindings = bool(p and p.findingsVolume and (p.findingsMarkups or p.findingsSegmentation))
        self.ui.classifyButton.enabled = idle and hasFindings and bool(self.ui.classifierSelector.currentText)

    def refreshModels(self) -> None:
        rows = self.logic.models()
        table = self.ui.modelTable
        headers = [_("Model"), _("Task"), _("Source"), _("Trained on"), _("Key figures")]
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            figures = ", ".join(f"{k} {v}" for k, v in list(row.get("metrics", {}).items())[:4]) or row.get(
                "problem", ""
            )
            for column, text in enumerate([row["id"], row["task"], row["source"], row.get("trained_on", ""), figures]):
                item = qt.QTableWidgetItem(str(text))
                item.setToolTip(str(text))
                table.setItem(index, column, item)
        self.ui.baseModelSelector.clear()
        self.ui.baseModelSelector.addItems(self.logic.availableBaseModels())
        self.ui.classifierSelector.clear()
        self.ui.classifierSelector.addItems(self.logic.availableClassifiers())
        self.updateButtons()

    def onImportModelButton(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(),
            _("Import a model (folder: pick its model.json)"),
            "",
            _("Models (model.json *.zip *.ts *.pt);;All files (*)"),
        )
        if not path:
            return
        source = str(Path(path).parent) if Path(path).name == "model.json" else path
        with slicer.util.tryWithErrorDisplay(_("Importing the model failed."), waitCursor=True):
            self.runner.start(self.logic.modelImportTask(source), lambda task, result: self._afterImport(result))

    def _afterImport(self, result) -> None:
        self.refreshModels()
        slicer.util.infoDisplay(
            _("Imported {model}. Complete its card where it lists fields to complete.").format(model=result["imported"])
        )

    def _trainingPairs(self) -> list:
        # the wrapper's MRML node is its ``parameterNode`` (verified in
        # Base/Python/slicer/parameterNodeWrapper/wrapper.py, _initMethod)
        return self.logic.trainingPairs(self._parameterNode.parameterNode) if self._parameterNode else []

    def setParameterNode(self, parameterNode) -> None:
        super().setParameterNode(parameterNode)
        self._showTrainingPairs()

    def _showTrainingPairs(self) -> None:
        """The cases list shows the pairs kept on the parameter node (saved with the scene)."""
        self.ui.trainingCasesList.clear()
        for volumeNode, segmentationNode in self._trainingPairs():
            self.ui.trainingCasesList.addItem(f"{volumeNode.GetName()} + {segmentationNode.GetName()}")

    def onAddCaseButton(self) -> None:
        p = self._parameterNode
        self.logic.addTrainingPair(p.parameterNode, p.trainingVolume, p.trainingSegmentation)
        self._showTrainingPairs()
        self.updateButtons()

    def onRemoveCaseButton(self) -> None:
        self.logic.removeTrainingPair(self._parameterNode.parameterNode, self.ui.trainingCasesList.currentRow)
        self._showTrainingPairs()
        self.updateButtons()

    def onFineTuneButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start fine-tuning."), waitCursor=True):
            task = self.logic.fineTuningTask(
                self._trainingPairs(),
                self.ui.baseModelSelector.currentText,
                p.epochs,
                p.learningRate,
                newName=p.newModelName or None,
                device=preferredDevice(),
                folder=self.ui.trainingFolderEdit.currentPath or None,
            )
            self.figuresTable, chart = self.logic.trainingPlot()
            slicer.modules.plots.logic().ShowChartInLayout(chart)
            self.runner.start(task, lambda task, result: self._afterFineTuning(result), self._onTrainingEvent)

    def _onTrainingEvent(self, event) -> None:
        if event.get("event") == "epoch" and self.figuresTable is not None:
            self.logic.recordEpoch(self.figuresTable, event)

    def _afterFineTuning(self, result) -> None:
        self.refreshModels()
        message = _(
            "Saved {model} (best epoch {epoch}). Validation Dice (mean of lungs and nodules): {before} before, "
            "{after} after."
        )
        slicer.util.infoDisplay(
            message.format(
                model=result["model"],
                epoch=result["best_epoch"],
                before=result["before"]["mean_dice"],
                after=result["after"]["mean_dice"],
            )
        )

    def onClassifyButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not classify the findings."), waitCursor=True):
            task = ClassificationTask(
                p.findingsVolume,
                p.findingsMarkups,
                p.findingsSegmentation,
                self.ui.classifierSelector.currentText,
                preferredDevice(),
                p.explain,
            )
            nodes = (p.findingsVolume, p.findingsMarkups)
            self.runner.start(task, lambda task, result: self._afterClassification(result, *nodes))

    def _afterClassification(self, result, volumeNode, markupsNode) -> None:
        added = self.logic.addClassification(result, volumeNode, markupsNode)
        self.ui.classifiedTableView.setMRMLTableNode(added["table"])
        if "saliency" in added:
            self.logic.showSaliency(volumeNode, added["saliency"])
        warnings = added["table"].GetAttribute("DeepDiag.Warnings")
        if warnings:  # as DeepDiagSegment and DeepDiagDetect show theirs
            slicer.util.warningDisplay(warnings, windowTitle=_("Classification finished with warnings"))

    def _updateDependencyStatus(self) -> None:
        """Probe the engine's packages once (at set-up and after an install), not on every
        parameter change: finding six packages takes a noticeable moment."""
        self.missingPackages = missing = missingEnginePackages()
        try:
            checkPythonVersion()
        except RuntimeError as error:  # Slicer 5.6: the pinned torch does not exist for its Python
            self.ui.installButton.visible = False
            self.ui.dependencyLabel.text = str(error)
            self.updateButtons()
            return
        self.ui.installButton.visible = bool(missing)
        self.ui.dependencyLabel.text = (
            _("Engine ready.")
            if not missing
            else _("Missing Python packages: {packages}").format(packages=", ".join(missing))
        )
        self.updateButtons()

    def onInstallButton(self) -> None:
        missing = self.missingPackages
        question = _("DeepDiag will install these Python packages into Slicer (several GB for torch):\n{packages}")
        if not slicer.util.confirmOkCancelDisplay(question.format(packages="\n".join(missing))):
            return
        with slicer.util.tryWithErrorDisplay(_("Installing the engine's packages failed."), waitCursor=True):
            installEnginePackages(missing)
        self._updateDependencyStatus()

    def onDescribeButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not describe the volume."), waitCursor=True):
            task = self.logic.describeTask(self._parameterNode.inputVolume)
            self.runner.start(task, lambda task, result: self._showDescription(result))

    def _showDescription(self, result) -> None:
        self.ui.infoText.plainText = json.dumps(_description(result), indent=2)


class DeepDiagLogic(ScriptedLoadableModuleLogic, ClassificationLogic, FineTuningLogic, ModelLogic):
    """Console use::

        logic = slicer.util.getModuleLogic("DeepDiag")
        logic.describeVolume(volumeNode)
        logic.models()                                    # the model table as dictionaries
        result, figures = logic.fineTune([(volumeNode, segmentationNode)], "lung-nodules-seg", epochs=5)
        nodes = logic.classifyFindings(volumeNode, markupsNode=findingsNode, explain=True)  # {"table", "saliency", ...}

    Classification, fine-tuning and the model table are the bridge's ``ClassificationLogic``,
    ``FineTuningLogic`` and ``ModelLogic`` on Slicer's scene; describing a volume is this module's own.
    """

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
    """Runs inside Slicer: describes the engine's sample chest CT and checks the scene is unchanged."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_describeVolume()

    def test_describeVolume(self):
        from DeepDiagLib import sampleChestVolumeNode

        volumeNode = sampleChestVolumeNode(slicer.mrmlScene)
        self.delayDisplay("Describing the sample CT")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        description = DeepDiagLogic().describeVolume(volumeNode)
        self.assertEqual(description["size"], list(volumeNode.GetImageData().GetDimensions()))
        self.assertEqual(description["modality_guess"], "CT")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Test passed")
