"""The model table and model import, for the DeepDiag hub."""

from __future__ import annotations

from .engine_task import EngineTask
from .scene_logic import SceneLogic


class ModelLogic(SceneLogic):
    """The installed models, and importing one into the user's model folder."""

    def models(self) -> list[dict]:
        """One row per installed model (id, task, source, trained on, key figures); reads cards only."""
        from deepdiag.models.registry import describe_models

        return describe_models()

    def modelImportTask(self, source: str, modelId: str | None = None, version: int | None = None) -> EngineTask:
        """An engine task that imports a model folder, MONAI bundle, zip or TorchScript file."""
        options = (
            ["import", str(source)]
            + (["--id", modelId] if modelId else [])
            + (["--version", str(version)] if version else [])
        )
        return EngineTask("models", [], options)
