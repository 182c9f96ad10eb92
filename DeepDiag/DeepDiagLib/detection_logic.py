"""What "Detect nodules" does, on MRML nodes: the body of DeepDiagDetect's Logic."""

from __future__ import annotations

import json

import vtk

from .engine_task import EngineTask
from .result_nodes import add_fiducials_from_file

TABLE_COLUMNS = ("Finding", "R (mm)", "A (mm)", "S (mm)", "Diameter (mm)", "Score")


def default_min_score(modelId: str | None = None) -> float:
    """The score threshold the card of ``modelId`` (default: the newest detector) recommends; reads the card only."""
    from deepdiag.detection import DEFAULT_MODEL
    from deepdiag.models.card import ModelCard
    from deepdiag.models.registry import find_model

    return ModelCard.read(find_model(modelId, "detection", DEFAULT_MODEL)).default_min_score


def available_detection_models() -> list[str]:
    """Installed detection models (``id@version``); reads model cards only, never weights."""
    from deepdiag.models.registry import models_for_task

    return models_for_task("detection")


def detection_task(
    volumeNode, modelId: str | None = None, device: str = "auto", minScore: float | None = None
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


def add_detection_result(scene, result: dict, volumeNode):
    """A new fiducial node (one control point per finding, N1 = best score) and a table node of
    the findings, row n = control point n, both named after the input."""
    output = result["outputs"][0]
    findings = json.loads(open(output["findings"]).read())["findings"]
    table = _findings_table(scene, findings, f"{volumeNode.GetName()} findings table")
    try:
        markupsNode = add_fiducials_from_file(
            scene, output["markups"], volumeNode, name=f"{volumeNode.GetName()} findings"
        )
    except Exception:
        scene.RemoveNode(table)
        raise
    for node in (markupsNode, table):
        node.SetAttribute("DeepDiag.Model", result.get("model", ""))
        node.SetAttribute("DeepDiag.Warnings", "\n".join(output.get("warnings", [])))
    table.SetNodeReferenceID("findings", markupsNode.GetID())
    return markupsNode, table


def detect_volume_node(
    scene,
    volumeNode,
    modelId: str | None = None,
    device: str = "auto",
    minScore: float | None = None,
    onEvent=None,
    timeout: float | None = None,
):
    """Blocking: detect nodules in ``volumeNode``; returns (markups node, table node); nothing added on failure."""
    with detection_task(volumeNode, modelId, device, minScore) as task:
        result = task.run(onEvent=onEvent, timeout=timeout)
        if not result.get("outputs"):
            from .engine_process import EngineError

            raise EngineError(result.get("failed", [{}])[0].get("error", "the engine produced no findings"))
        return add_detection_result(scene, result, volumeNode)


def _findings_table(scene, findings: list[dict], name: str):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    columns = [vtk.vtkStringArray()] + [vtk.vtkDoubleArray() for _ in TABLE_COLUMNS[1:]]
    for column, title in zip(columns, TABLE_COLUMNS):
        column.SetName(title)
        table.AddColumn(column)
    data = table.GetTable()
    for finding in findings:
        row = data.InsertNextBlankRow()
        values = [finding["id"], *finding["center_ras"], finding["diameter_mm"], finding["score"]]
        for column, value in enumerate(values):
            data.SetValue(row, column, vtk.vtkVariant(value))
    table.Modified()
    return table
