"""Where models are found: the built-in ones shipped in this package, then the user's folder.

Folders are named ``<id>@<version>``; a bare id means its newest version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DeepDiagError
from .card import CARD_FILE

BUILTIN_MODELS = Path(__file__).resolve().parent / "builtin"


def user_models_dir() -> Path:
    return Path(os.environ.get("DEEPDIAG_MODELS", Path.home() / ".deepdiag" / "models"))


def model_folders() -> list[Path]:
    folders = []
    for root in (BUILTIN_MODELS, user_models_dir()):
        if root.is_dir():
            folders += sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file() and "@" in p.name)
    return folders


def models_for_task(task: str) -> list[str]:
    """Ids (``id@version``) of the installed models for a task, newest first within an id."""
    found = []
    for folder in model_folders():
        try:
            if json.loads((folder / CARD_FILE).read_text()).get("task") == task:
                found.append(folder.name)
        except (OSError, ValueError):
            continue  # a broken card is reported when that model is used, not while listing
    return sorted(found, key=lambda name: (split_id(name)[0], -split_id(name)[1]))


def find_model(model: str | None, task: str, default: str) -> Path:
    """Folder of ``model`` (a path, ``id@version`` or ``id``), or of ``default`` when None."""
    model = model or default
    if Path(model).is_dir():
        return Path(model)
    name, _, version = model.partition("@")
    matches = [f for f in model_folders() if split_id(f.name)[0] == name and (not version or f.name == model)]
    if not matches:
        known = ", ".join(f.name for f in model_folders()) or "none"
        raise DeepDiagError(f"no {task} model {model!r} is installed (installed: {known})")
    return max(matches, key=lambda folder: split_id(folder.name)[1])


def split_id(full_id: str) -> tuple[str, int]:
    """``"lung-nodules-seg@2"`` → ``("lung-nodules-seg", 2)``; a version that is not a number counts as -1."""
    name, _, version = full_id.partition("@")
    return name, int(version) if version.isdigit() else -1
