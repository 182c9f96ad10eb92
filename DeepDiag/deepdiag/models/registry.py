"""Where models are found: the built-in ones shipped in this package, then the user's folder.

Folders are named ``<id>@<version>``; a bare id means its newest version. Names starting
with a dot are work in progress (being written or removed) and never listed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import DeepDiagError
from .card import CARD_FILE, ModelCard

BUILTIN_MODELS = Path(__file__).resolve().parent / "builtin"


def user_models_dir() -> Path:
    return Path(os.environ.get("DEEPDIAG_MODELS", Path.home() / ".deepdiag" / "models"))


def model_folders() -> list[Path]:
    folders = []
    for root in (BUILTIN_MODELS, user_models_dir()):
        if root.is_dir():
            folders += sorted(
                p for p in root.iterdir() if (p / CARD_FILE).is_file() and "@" in p.name and not p.name.startswith(".")
            )
    return folders


def describe_models() -> list[dict]:
    """One row per installed model: id, task, where it lives, what it was trained on and measured."""
    rows = []
    for folder in model_folders():
        try:
            card = ModelCard.read(folder)
        except DeepDiagError as error:
            rows.append(
                {
                    "id": folder.name,
                    "task": "?",
                    "source": _source(folder),
                    "folder": str(folder),
                    "problem": str(error),
                }
            )
            continue
        rows.append(
            {
                "id": card.full_id,
                "task": card.task,
                "source": _source(folder),
                "folder": str(folder),
                "trained_on": card.training.get("data", card.extra.get("imported_from", "")),
                "metrics": {k: v for k, v in card.metrics.items() if isinstance(v, (int, float))},
            }
        )
    return rows


def _source(folder: Path) -> str:
    return "built-in" if folder.parent == BUILTIN_MODELS else "user"


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
        raise DeepDiagError(f"no {task + ' ' if task else ''}model {model!r} is installed (installed: {known})")
    return max(matches, key=lambda folder: split_id(folder.name)[1])


def split_id(full_id: str) -> tuple[str, int]:
    """``"lung-nodules-seg@2"`` → ``("lung-nodules-seg", 2)``; a version that is not a number counts as -1."""
    name, _, version = full_id.partition("@")
    return name, int(version) if version.isdigit() else -1


def install_folder(staged: Path) -> Path:
    """Copy a checked model folder into the user folder as ``<id>@<version>``, atomically;
    an id and version already installed (built-in or not) are refused, never overwritten."""
    card = ModelCard.read(staged)
    if any(folder.name == card.full_id for folder in model_folders()):
        newest = max(split_id(f.name)[1] for f in model_folders() if split_id(f.name)[0] == card.id)
        raise DeepDiagError(
            f"model {card.full_id} is already installed; import it as another version (e.g. --version {newest + 1})"
        )
    root = user_models_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = _inside(root, card.full_id)
    partial = Path(tempfile.mkdtemp(prefix=f".{card.full_id}.", dir=root))
    try:
        shutil.copytree(staged, partial, dirs_exist_ok=True)
        os.chmod(partial, 0o755)  # mkdtemp makes it private
        os.replace(partial, _inside(root, card.full_id))
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refused unless it resolves to a direct child of ``root`` (a second guard
    behind the card's id pattern, checked again right before the rename)."""
    target = (root / name).resolve()
    if target.parent != root.resolve():
        raise DeepDiagError(f"refused: the model {name!r} would be installed outside the models folder", root)
    return target


def remove_model(full_id: str) -> Path:
    """Delete a user model named exactly ``id@version``; built-in models cannot be removed."""
    if split_id(full_id)[1] < 0:
        raise DeepDiagError(f"name the exact version to remove (e.g. {full_id}@1)")
    folder = user_models_dir() / full_id
    if not (folder / CARD_FILE).is_file():
        builtin = (BUILTIN_MODELS / full_id / CARD_FILE).is_file()
        raise DeepDiagError(
            f"model {full_id} is built into DeepDiag and cannot be removed"
            if builtin
            else f"no user model {full_id} is installed",
            user_models_dir(),
        )
    doomed = folder.with_name(f".removing-{full_id}")
    os.replace(folder, doomed)  # disappears from listings at once, even if deleting is interrupted
    shutil.rmtree(doomed)
    return folder
