"""One engine command on volume nodes: export the inputs, run, hand over outputs, clean up."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .engine_process import EngineProcess
from .volume_files import writeVolumeNode


class EngineTask:
    """Runs ``deepdiag COMMAND INPUT... [OPTIONS] [-o OUTDIR]`` on MRML volume nodes.

    Use it as a context manager: result files live in a temporary folder that is removed
    on exit (after the caller has loaded them into nodes), and a task still running on
    exit is cancelled. For example::

        with EngineTask("info", [volumeNode]) as task:
            result = task.run(onEvent=print)

    Args:
        command: the engine subcommand.
        volumeNodes: scalar volume nodes passed as inputs, in order.
        options: further engine arguments.
        writesFiles: add ``-o OUTDIR`` pointing to the task's output folder.
    """

    def __init__(
        self, command: str, volumeNodes: Sequence = (), options: Sequence[str] = (), writesFiles: bool = False
    ):
        self.command = command
        self.volumeNodes = list(volumeNodes)
        self.options = list(options)
        self.writesFiles = writesFiles
        self.workDir: Path | None = None
        self.process: EngineProcess | None = None

    @property
    def outputDir(self) -> Path:
        return self.workDir / "output"

    def start(self) -> None:
        """Export the inputs and start the engine; returns at once."""
        self.workDir = Path(tempfile.mkdtemp(prefix="deepdiag-", dir=_temporary_root()))
        arguments = [self.command, *self.exportInputs(), *self.options]
        if self.writesFiles:
            arguments += ["-o", str(self.outputDir)]
        self.process = EngineProcess(arguments)
        self.process.start()

    def exportInputs(self) -> list[str]:
        """Write the input nodes into the work folder; returns their engine arguments."""
        return [
            str(writeVolumeNode(node, self.workDir / f"input{index}.nrrd"))
            for index, node in enumerate(self.volumeNodes)
        ]

    def run(
        self, onEvent: Callable[[dict[str, Any]], None] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Start (if needed) and block until done; return the engine's result event."""
        if self.process is None:
            self.start()
        return self.process.wait(onEvent, timeout)

    def cancel(self) -> None:
        if self.process is not None:
            self.process.cancel()

    def cleanup(self) -> None:
        """Stop the engine if it still runs and delete every temporary file."""
        if self.process is not None and self.process.running:
            self.process.cancel()
        if self.workDir is not None:
            shutil.rmtree(self.workDir, ignore_errors=True)

    def __enter__(self) -> EngineTask:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cleanup()


def _temporary_root() -> str | None:
    """Slicer's temporary folder inside the application (user-configurable), else the system's."""
    import slicer

    app = getattr(slicer, "app", None)
    return getattr(app, "temporaryPath", None) if app is not None else None
