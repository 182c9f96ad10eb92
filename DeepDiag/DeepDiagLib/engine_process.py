"""Run one ``deepdiag`` command as a child process and stream its JSON-lines events.

A reader thread puts each stdout line on a queue; the caller drains it with ``poll()``
(from a Qt timer in a widget, so no Qt call happens off the main thread) or blocks in
``wait()`` (console, batch, tests). ``cancel()`` kills the whole process tree.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Folder that holds the ``deepdiag`` package, beside this bridge package.
ENGINE_PARENT = Path(__file__).resolve().parents[1]
_STDERR_LINES_KEPT = 20


class EngineError(RuntimeError):
    """The engine command failed or was cancelled; the message is the engine's own one-line error."""

    def __init__(self, message: str, returncode: int | None = None, cancelled: bool = False) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.cancelled = cancelled


def engineCommand(arguments: Sequence[str]) -> list[str]:
    """Full command line that runs ``deepdiag ARGUMENTS`` in a Python that has the engine's dependencies.

    Inside Slicer that is ``PythonSlicer`` (Slicer's own interpreter as a plain program);
    elsewhere the interpreter running this code.
    """
    python = shutil.which("PythonSlicer") if _inSlicerApp() else None
    return [python or sys.executable, "-m", "deepdiag", *arguments]


def _inSlicerApp() -> bool:
    slicer = sys.modules.get("slicer")
    return slicer is not None and hasattr(slicer, "app")


class EngineProcess:
    """One running engine command.

    Args:
        arguments: the ``deepdiag`` arguments, e.g. ``["info", "scan.nrrd"]``; ``--progress json`` is added.
        env: extra environment variables for the child.
    """

    def __init__(self, arguments: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.arguments = [*arguments, "--progress", "json"]
        self._extraEnv = dict(env or {})
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderrTail: deque[str] = deque(maxlen=_STDERR_LINES_KEPT)
        self._process: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self.cancelled = False
        self.result: dict[str, Any] | None = None
        self.errorMessage: str | None = None

    def start(self) -> None:
        environment = {**os.environ, **self._extraEnv}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE_PARENT), environment.get("PYTHONPATH")]))
        environment["PYTHONUNBUFFERED"] = "1"
        self._process = subprocess.Popen(
            engineCommand(self.arguments),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=environment,
            text=True,
            bufsize=1,
            **_newProcessGroup(),
        )
        self._threads = [
            threading.Thread(target=self._readStdout, daemon=True),
            threading.Thread(target=self._readStderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def poll(self) -> list[dict[str, Any]]:
        """Events that arrived since the last call; never blocks."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(
        self, onEvent: Callable[[dict[str, Any]], None] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Block until the command ends, passing each event to ``onEvent``; return its result event.

        Raises:
            EngineError: the command failed, was cancelled or timed out.
        """
        if self._process is None:
            self.start()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise EngineError(f"the engine did not finish within {timeout} s and was stopped", cancelled=True) from None
        for thread in self._threads:
            thread.join()
        for event in self.poll():
            if onEvent:
                onEvent(event)
        return self.outcome()

    def outcome(self) -> dict[str, Any]:
        """The result event of a finished command, or the error that ended it."""
        returncode = self._process.returncode if self._process else None
        if self.cancelled:
            raise EngineError("cancelled", returncode, cancelled=True)
        if returncode != 0 or self.result is None:
            message = self.errorMessage or "\n".join(self._stderrTail) or f"the engine exited with code {returncode}"
            raise EngineError(message, returncode)
        return self.result

    def cancel(self) -> None:
        """Stop the command and every process it started."""
        self.cancelled = True
        if self._process is None or self._process.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self._process.pid)], capture_output=True, check=False)
        else:
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def _readStdout(self) -> None:
        for line in self._process.stdout:
            event = _parseEvent(line)
            if event is None:
                continue
            if event.get("event") == "result":
                self.result = event
            elif event.get("event") == "error":
                self.errorMessage = event.get("message")
            self._events.put(event)

    def _readStderr(self) -> None:
        for line in self._process.stderr:
            if line.strip():
                self._stderrTail.append(line.rstrip())


def _parseEvent(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return {"event": "log", "message": line}
    return event if isinstance(event, dict) else {"event": "log", "message": line}


def _newProcessGroup() -> dict[str, Any]:
    """Start the child as the leader of its own group, so that cancel reaches its children too;
    on Windows also without a console window, as Slicer's ``launchConsoleProcess`` starts its
    processes (STARTUPINFO with STARTF_USESHOWWINDOW and SW_HIDE; verified in Base/Python/slicer/util.py)."""
    if os.name == "nt":
        startup = subprocess.STARTUPINFO()
        startup.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        startup.wShowWindow = 0  # SW_HIDE
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP, "startupinfo": startup}
    return {"start_new_session": True}
