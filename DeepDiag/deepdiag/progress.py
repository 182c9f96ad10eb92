"""The progress protocol every long command speaks (``--progress json``).

In JSON mode each line on stdout is one event object:

- ``{"event": "progress", "stage": "read", "fraction": 0.25, "message": "..."}``
- ``{"event": "epoch", "epoch": 3, "epochs": 10, "loss": 0.41, ...}``: figures of one training epoch
- ``{"event": "result", ...}``: what the command produced (paths, figures)
- ``{"event": "error", "message": "...", "path": "..."}``: a failure the user can act on

``fraction`` is the share of the whole command done, in [0, 1]. In text mode progress goes
to stderr as readable lines and results go to stdout as indented JSON; ``none`` prints results only.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

PROGRESS_MODES = ("text", "json", "none")


class ProgressReporter:
    """Writes progress, results and errors in the chosen mode."""

    def __init__(self, mode: str = "text", stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress mode must be one of {PROGRESS_MODES}, got {mode!r}.")
        self.mode = mode
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self.mode == "json":
            self._emit({"event": "progress", "stage": stage, "fraction": round(fraction, 4), "message": message})
        elif self.mode == "text":
            print(f"[{stage}] {fraction:4.0%} {message}".rstrip(), file=self._stderr, flush=True)

    def epoch(self, epoch: int, epochs: int, **figures: float) -> None:
        """Figures of one finished training epoch (loss, validation Dice), for live plots."""
        if self.mode == "json":
            self._emit({"event": "epoch", "epoch": epoch, "epochs": epochs, **figures})
        elif self.mode == "text":
            values = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
            print(f"[epoch {epoch}/{epochs}] {values}", file=self._stderr, flush=True)

    def result(self, payload: dict[str, Any]) -> None:
        if self.mode == "json":
            self._emit({"event": "result", **payload})
        else:
            print(json.dumps(payload, indent=2), file=self._stdout, flush=True)

    def error(self, message: str, path: str | None = None) -> None:
        """Report a failure: always one line on stderr, plus an event in JSON mode."""
        if self.mode == "json":
            self._emit({"event": "error", "message": message, "path": path})
        print(f"deepdiag: error: {message}", file=self._stderr, flush=True)

    def _emit(self, event: dict[str, Any]) -> None:
        print(json.dumps(event), file=self._stdout, flush=True)
