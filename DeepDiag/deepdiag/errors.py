"""The one exception type the command line turns into a one-line message."""

from __future__ import annotations

from pathlib import Path


class DeepDiagError(Exception):
    """A problem the user can fix, named with the file it concerns.

    Args:
        problem: what is wrong, in words a user understands.
        path: the file or folder concerned, if any.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
