"""Qt helpers shared by the DeepDiag module widgets (the bridge itself never imports Qt)."""

from .device_preference import DEVICES, preferredDevice, setPreferredDevice
from .module_widget import EngineModuleWidget, ModelModuleWidget
from .task_runner import EngineTaskRunner

__all__ = [
    "DEVICES",
    "EngineModuleWidget",
    "EngineTaskRunner",
    "ModelModuleWidget",
    "preferredDevice",
    "setPreferredDevice",
]
