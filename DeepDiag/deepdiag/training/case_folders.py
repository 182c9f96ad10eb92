"""Labeled cases on disk: ``images/NAME`` with ``labels/NAME``, as ``deepdiag phantom`` writes them.
Light on purpose (no torch), so the Slicer process can list a folder's cases."""

from __future__ import annotations

from pathlib import Path

from ..errors import DeepDiagError


def labeled_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Every image of ``folder/images`` with the label file of the same name in ``folder/labels``."""
    folder = Path(folder)
    images = (
        sorted(p for p in (folder / "images").glob("*") if p.is_file() and not p.name.startswith("."))
        if (folder / "images").is_dir()
        else []
    )
    if not images:
        raise DeepDiagError("holds no images/ folder with image files (expected images/NAME and labels/NAME)", folder)
    unlabeled = [p.name for p in images if not (folder / "labels" / p.name).is_file()]
    if unlabeled:
        raise DeepDiagError(
            f"has images without a label file of the same name in labels/: {', '.join(unlabeled[:3])}", folder
        )
    return [(image, folder / "labels" / image.name) for image in images]
