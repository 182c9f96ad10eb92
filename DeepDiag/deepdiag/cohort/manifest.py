"""What a cohort batch runs on: a folder, a glob, or a CSV of paths, read into a list of scans (or
a PACS query, whose series ``deepdiag.pacs`` lists)."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

from ..errors import DeepDiagError
from ..image_io import WRITABLE_SUFFIXES

#: files a folder manifest takes as scans (besides the DICOM series folders in it)
_SCAN_SUFFIXES = (*WRITABLE_SUFFIXES, ".mhd", ".nhdr")
#: the CSV column that holds the scans (else the first column)
PATH_COLUMN = "path"


def is_pacs_query(manifest: str) -> bool:
    """Whether the manifest is a DICOMweb query URL (``http://pacs/dicom-web?PatientID=123``)."""
    return manifest.startswith(("http://", "https://"))


def read_manifest(manifest: str) -> list[str]:
    """The scans of a manifest, in order, each once.

    - a folder: its image files and the DICOM series folders in it (folders holding ``.dcm`` files);
    - a glob (``scans/*.nrrd``): the paths it matches, sorted;
    - a ``.csv``: the ``path`` column (else the first), relative paths taken from the CSV's folder.

    Raises:
        DeepDiagError: the manifest is missing, malformed or names no scan.
    """
    if any(c in manifest for c in "*?["):
        scans = sorted(glob.glob(manifest, recursive=True))
    elif manifest.lower().endswith(".csv"):
        scans = _csv_scans(Path(manifest))
    elif Path(manifest).is_dir():
        scans = _folder_scans(Path(manifest))
    else:
        raise DeepDiagError("is not a folder, a glob or a .csv of scan paths", manifest)
    if not scans:
        raise DeepDiagError("names no scan", manifest)
    return list(dict.fromkeys(scans))


def _folder_scans(folder: Path) -> list[str]:
    scans = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and any(f.suffix.lower() == ".dcm" for f in entry.iterdir()):
            scans.append(str(entry))
        elif entry.is_file() and entry.name.lower().endswith(_SCAN_SUFFIXES):
            scans.append(str(entry))
    return scans


def _csv_scans(path: Path) -> list[str]:
    if not path.is_file():
        raise DeepDiagError("no such file", path)
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise DeepDiagError("is an empty CSV", path)
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index(PATH_COLUMN) if PATH_COLUMN in header else 0
    body = rows[1:] if PATH_COLUMN in header else rows
    scans = [row[column].strip() for row in body if len(row) > column and row[column].strip()]
    return [str(Path(s) if Path(s).is_absolute() else path.parent / s) for s in scans]
