"""Drive an EngineTask from a widget: progress bar, status line, cancel, no frozen GUI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qt
import slicer

from DeepDiagLib import EngineError, EngineTask

_POLL_INTERVAL_MS = 100


class EngineTaskRunner:
    """Runs one EngineTask at a time for a module widget.

    The task's events are drained by a QTimer on the main thread, so widgets are only ever
    touched from there. ``onSuccess(task, result)`` runs before the task's temporary files
    are removed, so it can load the result files into nodes.

    Given the ``scene``, a run still going when the scene starts to close is stopped there and
    then and its results are dropped: they belong to the scene that is going away.
    """

    def __init__(
        self, progressBar, statusLabel, cancelButton, onBusyChanged: Callable[[bool], None], scene=None
    ) -> None:
        self.progressBar = progressBar
        self.statusLabel = statusLabel
        self.cancelButton = cancelButton
        self.onBusyChanged = onBusyChanged
        self.task: EngineTask | None = None
        self._onSuccess: Callable[[EngineTask, dict[str, Any]], None] | None = None
        self._onEvent: Callable[[dict[str, Any]], None] | None = None
        self._timer = qt.QTimer()
        self._timer.setInterval(_POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)
        self.cancelButton.connect("clicked()", self.cancel)
        self.progressBar.visible = False
        self.cancelButton.visible = False
        self._scene = scene
        self._sceneObservation = (
            scene.AddObserver(scene.StartCloseEvent, self._onSceneStartClose) if scene is not None else None
        )

    @property
    def busy(self) -> bool:
        return self.task is not None

    def start(
        self,
        task: EngineTask,
        onSuccess: Callable[[EngineTask, dict[str, Any]], None],
        onEvent: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Start ``task``; ``onEvent`` sees every engine event (e.g. training epochs) as it comes."""
        self.task, self._onSuccess, self._onEvent = task, onSuccess, onEvent
        self._setBusy(True)
        self._show(0.0, "Starting…")
        try:
            task.start()
        except Exception:
            self._finish()
            raise
        self._timer.start()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        """Stop any run and stop watching the scene (the widget is going away)."""
        self._dropRun("Cancelled.")
        if self._sceneObservation is not None:
            self._scene.RemoveObserver(self._sceneObservation)
            self._sceneObservation = None

    def _onSceneStartClose(self, caller=None, event=None) -> None:
        self._dropRun("Cancelled: the scene was closed.")

    def _dropRun(self, message: str) -> None:
        if self.task is None:
            return
        self._timer.stop()
        self._show(0.0, message)
        self._finish()  # cleanup kills the engine and deletes its files: nothing is loaded

    def _poll(self) -> None:
        for event in self.task.process.poll():
            self._handleEvent(event)
        if self.task.process.running:
            return
        self._timer.stop()
        task = self.task
        try:
            # the events the reader thread queued after this poll (the last progress, the last
            # training epoch) come with the wait: pass them on as well
            result = task.process.wait(onEvent=self._handleEvent)
            self._onSuccess(task, result)
            self._show(1.0, "Done.")
        except EngineError as error:
            self._show(0.0, "Cancelled." if error.cancelled else "Failed.")
            if not error.cancelled:
                slicer.util.errorDisplay(str(error))
        except Exception as error:
            self._show(0.0, "Failed.")
            slicer.util.errorDisplay(f"Could not load the results: {error}")
        finally:
            self._finish()

    def _handleEvent(self, event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            self._show(event["fraction"], event.get("message") or event.get("stage", ""))
        if self._onEvent:
            self._onEvent(event)

    def _finish(self) -> None:
        if self.task is not None:
            self.task.cleanup()
        self.task = None
        self._setBusy(False)

    def _show(self, fraction: float, message: str) -> None:
        self.progressBar.value = int(round(100 * fraction))
        self.statusLabel.text = message

    def _setBusy(self, busy: bool) -> None:
        self.progressBar.visible = busy
        self.cancelButton.visible = busy
        self.onBusyChanged(busy)
