"""What a cohort batch has finished: one record per scan in ``OUT/.deepdiag-batch/``, so that a
batch started again skips the scans whose outputs exist and whose input has not changed."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..files import atomic_output
from ..image_io import input_stem

LEDGER_FOLDER = ".deepdiag-batch"
_CHUNK = 1 << 20


def input_digest(path: str | Path) -> str:
    """SHA-256 of a scan: of the file, or of a DICOM folder's file names and contents."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


class Ledger:
    """The finished scans of one output folder."""

    def __init__(self, output_dir: str | Path):
        self.folder = Path(output_dir) / LEDGER_FOLDER

    def finished(self, path: str, digest: str) -> dict | None:
        """The record of ``path`` when its outputs are all there and its input is unchanged, else None."""
        record_file = self.folder / f"{input_stem(path)}.json"
        if not record_file.is_file():
            return None
        try:
            record = json.loads(record_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        unchanged = record.get("input") == str(path) and record.get("sha256") == digest
        outputs_there = all(Path(p).exists() for p in record.get("files", {}).values())
        return record if unchanged and outputs_there else None

    def record(self, path: str, digest: str, output: dict, header: dict) -> dict:
        """Note ``path`` as finished with ``output`` (its files and figures); returns the record."""
        record = {
            "input": str(path),
            "sha256": digest,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "header": header,
            "output": output,
            "files": {k: v for k, v in output.items() if isinstance(v, str) and k != "input" and Path(v).exists()},
        }
        with atomic_output(self.folder / f"{input_stem(path)}.json") as temporary:
            temporary.write_text(json.dumps(record, indent=2))
        return record
