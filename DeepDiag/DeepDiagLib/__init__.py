"""DeepDiag's Slicer bridge: MRML nodes in, engine subprocess, MRML nodes out.

Imports MRML-level ``slicer`` only (never qt or ctk), so every line runs and is tested
with the ``slicer-core`` wheel outside the Slicer application. Each module's Logic is one of
the logic classes here (``SegmentationLogic``, ``DetectionLogic``; the hub's is
``ClassificationLogic``, ``FineTuningLogic`` and ``ModelLogic`` together) with Slicer's scene.
"""

from .classification_logic import ClassificationLogic, ClassificationTask
from .detection_logic import DetectionLogic
from .engine_process import EngineError, EngineProcess, engineCommand
from .engine_task import EngineTask
from .findings_table import findingsTableNode
from .fine_tuning_logic import FineTuningLogic, FineTuningTask
from .model_logic import ModelLogic
from .result_nodes import addFiducialsFromFile, addSegmentationFromFile, addVolumeFromFile
from .sample_data import sampleChestVolumeNode
from .scene_logic import SceneLogic
from .segmentation_logic import SegmentationLogic
from .volume_files import writeVolumeNode

__all__ = [
    "ClassificationLogic",
    "ClassificationTask",
    "DetectionLogic",
    "EngineError",
    "EngineProcess",
    "EngineTask",
    "FineTuningLogic",
    "FineTuningTask",
    "ModelLogic",
    "SceneLogic",
    "SegmentationLogic",
    "addFiducialsFromFile",
    "addSegmentationFromFile",
    "addVolumeFromFile",
    "engineCommand",
    "findingsTableNode",
    "sampleChestVolumeNode",
    "writeVolumeNode",
]
