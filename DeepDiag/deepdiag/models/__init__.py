"""Models: a folder with ``model.json`` (the card) and ``weights.safetensors``.

``card`` and ``registry`` are light (no torch), so the Slicer process can list models;
``store`` loads weights and is imported only where a model runs.
"""

from .card import ModelCard
from .registry import find_model, model_folders

__all__ = ["ModelCard", "find_model", "model_folders"]
