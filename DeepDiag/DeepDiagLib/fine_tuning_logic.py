"""What "Start fine-tuning" does, on MRML nodes: the body of the DeepDiag hub's fine-tuning panel.

Training pairs are volume nodes with segmentation nodes whose segments carry the model's class
names ("Lungs", "Lung nodules", as DeepDiagSegment writes them); each segmentation is exported
as a label map on its volume's grid with the model's label values. Nothing in the scene changes
except the plot of the training curves. The pairs the user collects are node references of the
module's parameter node, so they are saved with the scene and gone after Close Scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import slicer
import vtk

from .engine_task import EngineTask
from .scene_logic import SceneLogic
from .volume_files import writeVolumeNode

PLOT_COLUMNS = ("epoch", "loss", "val_nodule_dice", "val_lungs_dice")


def modelClassNames(modelId: str) -> list[str]:
    """Class names of a registry model, in label-value order; reads the card only."""
    from deepdiag.models.card import ModelCard
    from deepdiag.models.registry import find_model

    card = ModelCard.read(find_model(modelId, "segmentation", modelId))
    return [c["name"] for c in sorted(card.classes, key=lambda c: int(c["label_value"]))]


class FineTuningTask(EngineTask):
    """``deepdiag train`` on (volume node, segmentation node) pairs from the scene."""

    def __init__(self, pairs: Sequence, baseModel: str, options: Sequence[str] = (), filePairs: Sequence = ()):
        if not pairs and not filePairs:
            raise ValueError(
                "Add at least one training case (a volume and its segmentation, or a folder of labeled cases)."
            )
        self.pairs, self.filePairs = list(pairs), [(str(image), str(labels)) for image, labels in filePairs]
        self.classNames = modelClassNames(baseModel)
        for volumeNode, segmentationNode in self.pairs:
            _segmentIds(segmentationNode, self.classNames)  # refuse a bad pair before starting anything
        super().__init__("train", [], ["--base", baseModel, *options])

    def exportInputs(self) -> list[str]:
        images, labels = [], []
        for index, (volumeNode, segmentationNode) in enumerate(self.pairs):
            images.append(str(writeVolumeNode(volumeNode, self.workDir / f"case{index}.nrrd")))
            labels.append(
                str(
                    writeLabels(
                        segmentationNode, volumeNode, self.classNames, self.workDir / f"case{index}.labels.nrrd"
                    )
                )
            )
        images += [image for image, _ in self.filePairs]
        labels += [label for _, label in self.filePairs]
        return ["--images", *images, "--labels", *labels]


def writeLabels(segmentationNode, volumeNode, classNames: Sequence[str], path: Path) -> Path:
    """Export the segments named as the model's classes to a label map file on the volume's
    grid: the i-th class gets label value i + 1, later classes win where segments overlap."""
    ids = vtk.vtkStringArray()
    for segmentId in _segmentIds(segmentationNode, classNames):
        ids.InsertNextValue(segmentId)
    scene = segmentationNode.GetScene()
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    labelmapNode = scene.AddNewNodeByClass(
        "vtkMRMLLabelMapVolumeNode", "DeepDiag training labels"
    )  # the export needs it in a scene
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, ids, labelmapNode, volumeNode
        ):
            raise ValueError(
                f"could not export segmentation '{segmentationNode.GetName()}' on the grid of '{volumeNode.GetName()}'."
            )
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        if not storage.WriteData(labelmapNode):
            raise OSError(f"could not write the labels of '{segmentationNode.GetName()}' to {path}.")
    finally:  # the label map and the display nodes the export made: the user's scene ends as it began
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node.GetID() not in before:
                scene.RemoveNode(node)
    return path


def _segmentIds(segmentationNode, classNames: Sequence[str]) -> list[str]:
    if segmentationNode is None:
        raise ValueError("Each training case needs a segmentation.")
    segmentation = segmentationNode.GetSegmentation()
    byName = {
        segmentation.GetNthSegment(i).GetName().lower(): segmentation.GetNthSegmentID(i)
        for i in range(segmentation.GetNumberOfSegments())
    }
    missing = [name for name in classNames if name.lower() not in byName]
    if missing:
        raise ValueError(
            f"segmentation '{segmentationNode.GetName()}' needs segments named {', '.join(repr(n) for n in missing)} "
            "(the model's classes)."
        )
    return [byName[name.lower()] for name in classNames]


#: one node reference role per training pair: [volume node, segmentation node]
_PAIR_ROLE = "DeepDiag.TrainingPair"


class FineTuningLogic(SceneLogic):
    """Fine-tunes a segmentation model on the user's labeled cases and plots the training curves."""

    def availableBaseModels(self) -> list[str]:
        """Installed segmentation models a fine-tuning can start from; reads model cards only."""
        from deepdiag.models.registry import models_for_task

        return models_for_task("segmentation")

    @staticmethod
    def trainingPairs(parameterNode) -> list[tuple]:
        """The (volume node, segmentation node) pairs kept on ``parameterNode``, in the order added;
        a pair one of whose nodes was deleted is left out."""
        return [pair for _, pair in _pairsByRole(parameterNode)]

    @staticmethod
    def addTrainingPair(parameterNode, volumeNode, segmentationNode) -> bool:
        """Keep a pair on ``parameterNode`` (saved with the scene); False if it is there already."""
        if (volumeNode, segmentationNode) in FineTuningLogic.trainingPairs(parameterNode):
            return False
        roles = _pairRoles(parameterNode)
        role = f"{_PAIR_ROLE}{int(roles[-1][len(_PAIR_ROLE) :]) + 1 if roles else 0}"
        parameterNode.AddNodeReferenceID(role, volumeNode.GetID())
        parameterNode.AddNodeReferenceID(role, segmentationNode.GetID())
        return True

    @staticmethod
    def removeTrainingPair(parameterNode, index: int) -> None:
        """Forget the ``index``-th pair of ``trainingPairs`` (the nodes stay in the scene)."""
        complete = _pairsByRole(parameterNode)  # the same list trainingPairs gives, so the index means the same pair
        if 0 <= index < len(complete):
            parameterNode.RemoveNodeReferenceIDs(complete[index][0])

    def fineTuningTask(
        self,
        pairs: Sequence,
        baseModel: str,
        epochs: int = 10,
        learningRate: float = 1e-3,
        stepsPerEpoch: int = 40,
        newName: str | None = None,
        device: str = "auto",
        folder: str | None = None,
    ) -> FineTuningTask:
        """An engine task that fine-tunes ``baseModel`` on scene pairs and/or a folder of images/ + labels/."""
        options = ["--epochs", str(epochs), "--lr", str(learningRate), "--steps-per-epoch", str(stepsPerEpoch)]
        options += ["--device", device] + (["--name", newName] if newName else [])
        return FineTuningTask(pairs, baseModel, options, self.folderPairs(folder) if folder else ())

    @staticmethod
    def folderPairs(folder: str) -> list:
        """(image, labels) files of a folder laid out as images/NAME + labels/NAME."""
        from deepdiag.training.case_folders import labeled_pairs

        return labeled_pairs(folder)

    def trainingPlot(self, name: str = "DeepDiag fine-tuning"):
        """A table of epoch figures and a chart of loss and validation Dice over epochs."""
        table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} figures")
        for column in PLOT_COLUMNS:
            array = table.AddColumn(vtk.vtkDoubleArray())
            array.SetName(column)
        chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} chart")
        chart.SetXAxisTitle("epoch")
        chart.SetYAxisTitle("loss / Dice")
        for column, color in zip(PLOT_COLUMNS[1:], ((0.9, 0.4, 0.1), (0.85, 0.2, 0.2), (0.6, 0.5, 0.4))):
            series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", column)
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName("epoch")
            series.SetYColumnName(column)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetColor(*color)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        return table, chart

    @staticmethod
    def recordEpoch(table, event: dict) -> None:
        """Append one ``epoch`` event of the engine to the figures table (the chart follows)."""
        data = table.GetTable()
        row = data.InsertNextBlankRow()
        for column, name in enumerate(PLOT_COLUMNS):
            data.SetValue(row, column, float(event.get(name, float("nan"))))
        data.Modified()
        table.Modified()

    def fineTune(
        self,
        pairs: Sequence,
        baseModel: str,
        epochs: int = 10,
        learningRate: float = 1e-3,
        stepsPerEpoch: int = 40,
        newName: str | None = None,
        device: str = "auto",
        folder: str | None = None,
        onEvent=None,
        timeout: float | None = None,
    ):
        """Blocking: fine-tune ``baseModel`` on scene pairs (and a folder of cases); returns the engine's
        result (new model id and figures) and the figures table it filled epoch by epoch."""
        task = self.fineTuningTask(pairs, baseModel, epochs, learningRate, stepsPerEpoch, newName, device, folder)
        table, _ = self.trainingPlot()

        def onEngineEvent(event: dict) -> None:
            if event.get("event") == "epoch":
                self.recordEpoch(table, event)
            if onEvent:
                onEvent(event)

        with task:
            return task.run(onEvent=onEngineEvent, timeout=timeout), table


def _pairsByRole(parameterNode) -> list[tuple[str, tuple]]:
    """(role, (volume node, segmentation node)) of each complete pair, in the order added."""
    pairs = []
    for role in _pairRoles(parameterNode):
        if parameterNode.GetNumberOfNodeReferences(role) == 2:
            volumeNode, segmentationNode = (parameterNode.GetNthNodeReference(role, n) for n in (0, 1))
            if volumeNode is not None and segmentationNode is not None:
                pairs.append((role, (volumeNode, segmentationNode)))
    return pairs


def _pairRoles(parameterNode) -> list[str]:
    roles = (parameterNode.GetNthNodeReferenceRole(n) for n in range(parameterNode.GetNumberOfNodeReferenceRoles()))
    return sorted(
        (r for r in roles if r.startswith(_PAIR_ROLE) and r[len(_PAIR_ROLE) :].isdigit()),
        key=lambda r: int(r[len(_PAIR_ROLE) :]),
    )
