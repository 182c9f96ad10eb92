"""Atomic file output: a result appears whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DeepDiagError


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffixes, because writers such as SimpleITK pick
    the file format from the extension, and holds the writing process's id: a partial file of
    the same output left by a process that no longer runs (killed mid-write) is removed first,
    while another live run's partial file is left alone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    _remove_abandoned_partials(path.parent, stem, suffix)
    handle, temporary = tempfile.mkstemp(prefix=f".{stem}.{os.getpid()}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes private files; results are ordinary files
    try:
        yield temporary
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # SimpleITK reports a full disk as a RuntimeError
        if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error):
            raise DeepDiagError("no space left on device while writing this file", path) from None
        raise
    finally:
        temporary.unlink(missing_ok=True)


def check_output_folder(folder: str | Path) -> Path:
    """Check, before any scan is read, that results can be written into ``folder``: it is a folder
    or can be made one, and a file can be made in it (or in its nearest existing parent, so that
    a run that fails leaves no empty output folder behind)."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise DeepDiagError(
            "the output must be a folder, and this is a file"
            if existing == folder
            else f"cannot make this output folder: {existing} is a file",
            folder,
        )
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".deepdiag-write-check-"):
            pass
    except OSError as error:
        raise DeepDiagError(f"cannot write results into this folder ({error.strerror or error})", folder) from None
    return folder


def _remove_abandoned_partials(folder: Path, stem: str, suffix: str) -> None:
    for partial in folder.glob(f".{glob.escape(stem)}.*.partial{glob.escape(suffix)}"):
        writer = partial.name[len(stem) + 2 :].split(".", 1)[0]
        if writer.isdigit() and not _is_running(int(writer)):
            partial.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
