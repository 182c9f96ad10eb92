"""DeepDiag's Slicer bridge: MRML nodes in, engine subprocess, MRML nodes out.

Imports MRML-level ``slicer`` only (never qt or ctk), so every line runs and is tested
with the ``slicer-core`` wheel outside the Slicer application.
"""

from .engine_process import EngineError, EngineProcess, engine_command
from .engine_task import EngineTask
from .result_nodes import add_fiducials_from_file, add_segmentation_from_file
from .sample_data import sampleChestVolumeNode
from .volume_files import write_volume_node

__all__ = [
    "EngineError",
    "EngineProcess",
    "EngineTask",
    "add_fiducials_from_file",
    "add_segmentation_from_file",
    "engine_command",
    "sampleChestVolumeNode",
    "write_volume_node",
]
