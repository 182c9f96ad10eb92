"""The widget life cycle every DeepDiag module shares (Slicer's scripted-module template)."""

from __future__ import annotations

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from .device_preference import devicePreferenceToAdopt, preferredDevice
from .task_runner import EngineTaskRunner


class EngineModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads ``Resources/UI/<Module>.ui``, binds it to the logic's parameter node, runs engine tasks.

    The ``.ui`` must hold ``progressBar``, ``statusLabel`` and ``cancelButton``. Subclasses make
    their logic in ``createLogic``, connect their buttons in ``setupConnections``, list the
    buttons that start a run in ``runButtons`` and say in ``canRun`` whether the parameters allow one.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.runner = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.createLogic()
        # the runner cancels a run when the scene closes, so that nothing is added to the next scene
        self.runner = EngineTaskRunner(
            self.ui.progressBar, self.ui.statusLabel, self.ui.cancelButton, self._onBusyChanged, slicer.mrmlScene
        )
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.setupConnections()
        self.initializeParameterNode()

    def createLogic(self):
        raise NotImplementedError

    def setupConnections(self) -> None:
        """Connect the module's own buttons."""

    def canRun(self) -> bool:
        """Whether the current parameters allow the module's main action."""
        return bool(self._parameterNode and self._parameterNode.inputVolume)

    def updateButtons(self, caller=None, event=None) -> None:
        """Enable the buttons listed by ``runButtons`` when a run is possible and none is going."""
        enabled = self.canRun() and not (self.runner and self.runner.busy)
        for button in self.runButtons():
            button.enabled = enabled

    def runButtons(self) -> list:
        return []

    def cleanup(self) -> None:
        self.removeObservers()
        if self.runner is not None:
            self.runner.close()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    def _onBusyChanged(self, busy: bool) -> None:
        self.updateButtons()


class ModelModuleWidget(EngineModuleWidget):
    """A module whose main action runs a model: the ``.ui`` also holds ``modelSelector``, filled
    from ``logic.availableModels()`` each time the module is entered (so fine-tuned models
    appear); nothing can run while no model is installed. A new parameter node starts on the
    device chosen in the DeepDiag hub.

    The model choice is bound to the parameter node's ``modelId`` here, not through the ``.ui``:
    Slicer's QComboBox connector needs a fixed ``Choice`` list and refills the combo box from it
    (QComboBoxToStringableConnector, verified in Base/Python/slicer/parameterNodeWrapper/guiConnectors.py),
    while the installed models change as the user imports and fine-tunes.
    """

    noModelMessage = ""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._models = []

    def setupConnections(self) -> None:
        self.ui.modelSelector.connect("currentTextChanged(QString)", self.onModelSelected)
        self.refreshModels()

    def enter(self) -> None:
        self.refreshModels()
        super().enter()

    def refreshModels(self) -> None:
        """Fill the model list once per entry; ``canRun`` reads this list, not the model cards."""
        self._models = list(self.logic.availableModels())
        wanted = (self._parameterNode.modelId if self._parameterNode else "") or self.ui.modelSelector.currentText
        wasBlocked = self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.clear()
        self.ui.modelSelector.addItems(self._models)
        if wanted in self._models:
            self.ui.modelSelector.currentText = wanted
        self.ui.modelSelector.blockSignals(wasBlocked)
        if not self._models:
            self.ui.statusLabel.text = self.noModelMessage
        self.onModelSelected(self.ui.modelSelector.currentText)

    def onModelSelected(self, modelId: str) -> None:
        if not self._parameterNode or self._parameterNode.modelId == modelId:
            return
        self._parameterNode.modelId = modelId
        self.onModelChanged(modelId)

    def onModelChanged(self, modelId: str) -> None:
        """Called when the parameter node gets another model; subclasses adapt to it."""

    def setParameterNode(self, parameterNode) -> None:
        super().setParameterNode(parameterNode)
        if parameterNode and parameterNode.modelId in self._models:
            self.ui.modelSelector.currentText = parameterNode.modelId
        elif parameterNode:
            self.onModelSelected(self.ui.modelSelector.currentText)

    def initializeParameterNode(self) -> None:
        """Each time the module is shown, a device preference changed in the hub since this
        parameter node last saw it becomes its device; a device the user picked in this module
        stays until the preference changes again."""
        super().initializeParameterNode()
        device = devicePreferenceToAdopt(self._parameterNode.parameterNode, preferredDevice())
        if device:
            self._parameterNode.device = device

    def canRun(self) -> bool:
        return super().canRun() and bool(self._models)
