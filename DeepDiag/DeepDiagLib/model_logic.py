"""The model table and model import, for the DeepDiag hub."""

from __future__ import annotations

from .engine_task import EngineTask


def model_rows() -> list[dict]:
    """One row per installed model (id, task, source, trained on, key figures); reads cards only."""
    from deepdiag.models.registry import describe_models

    return describe_models()


def model_import_task(source: str, modelId: str | None = None, version: int | None = None) -> EngineTask:
    """An engine task that imports a model folder, MONAI bundle, zip or TorchScript file into the user folder."""
    options = (
        ["import", str(source)]
        + (["--id", modelId] if modelId else [])
        + (["--version", str(version)] if version else [])
    )
    return EngineTask("models", [], options)
