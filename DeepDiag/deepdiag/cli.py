"""The ``deepdiag`` command line: one subcommand per task.

Every subcommand takes ``--progress text|json|none``. A problem with the input ends the
command with exit code 1 and one line ``deepdiag: error: FILE: problem``; a bug ends it
with exit code 3 and one line (set ``DEEPDIAG_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from . import __version__
from .errors import DeepDiagError
from .progress import PROGRESS_MODES, ProgressReporter

EXIT_OK, EXIT_INPUT_ERROR, EXIT_USAGE, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

Command = Callable[[argparse.Namespace, ProgressReporter], None]


def run_info(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .image_io import read_volume
    from .info import describe_volume

    reporter.progress("read", 0.0, f"reading {args.input}")
    volume = read_volume(args.input)
    reporter.progress("analyze", 0.6, "computing intensity statistics")
    description = {"input": args.input, **describe_volume(volume)}
    reporter.progress("done", 1.0)
    reporter.result(description)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepdiag", description="Deep-learning diagnosis on CT/MR volumes.")
    parser.add_argument("--version", action="version", version=f"deepdiag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = _add_command(commands, "info", run_info, "print geometry, intensities and modality guess of a volume as JSON")
    info.add_argument("input", help="image file (NRRD, NIfTI, MHA) or DICOM series folder")
    return parser


def _add_command(commands, name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.add_argument("--progress", choices=PROGRESS_MODES, default="text", help="how to report progress (default: text)")
    sub.set_defaults(run=run)
    return sub


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reporter = ProgressReporter(args.progress)
    try:
        args.run(args, reporter)
    except DeepDiagError as error:
        reporter.error(str(error), error.path)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        reporter.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: still one line, the traceback on request
        if os.environ.get("DEEPDIAG_DEBUG"):
            traceback.print_exc()
        reporter.error(f"internal error: {type(error).__name__}: {error} (set DEEPDIAG_DEBUG=1 for details)")
        return EXIT_INTERNAL_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
