"""Qt helpers shared by the DeepDiag module widgets (the bridge itself never imports Qt)."""

from .module_widget import EngineModuleWidget, ModelModuleWidget, preferred_device, set_preferred_device
from .task_runner import EngineTaskRunner

__all__ = ["EngineModuleWidget", "EngineTaskRunner", "ModelModuleWidget", "preferred_device", "set_preferred_device"]
