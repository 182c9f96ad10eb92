"""Atomic file output: a result appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffixes, because writers such as SimpleITK pick
    the file format from the extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    handle, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes private files; results are ordinary files
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
