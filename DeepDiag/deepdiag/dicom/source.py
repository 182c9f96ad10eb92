"""The DICOM series a volume was read from, slice for slice: what DICOM results reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import DeepDiagError
from ..geometry import Volume
from ..image_io import dicom_series_files

#: how far (mm) a slice's ImagePositionPatient may lie from where the volume puts that slice
_POSITION_TOLERANCE_MM = 0.01
#: what a SEG or SR takes from its source slices to reference them
_REFERENCED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "FrameOfReferenceUID")


@dataclass(frozen=True)
class SourceSeries:
    """The slices of a DICOM series in the volume's slice order (``slices[k]`` is slice k).

    The pixel data is not kept: the results only reference the slices.
    """

    folder: Path
    slices: tuple[Dataset, ...]

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.slices[0].FrameOfReferenceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.slices[0].SeriesInstanceUID)


def is_dicom_series(path: str | Path) -> bool:
    """Whether an input is a DICOM series folder (the only input DICOM results can reference)."""
    return Path(path).is_dir()


def read_source_series(folder: str | Path, volume: Volume) -> SourceSeries:
    """The slices ``volume`` was read from (by ``read_volume(folder)``), checked to lie where the
    volume puts them, so that results referencing them land on the same voxels.

    Raises:
        DeepDiagError: a slice cannot be read, lacks what results must reference, or lies elsewhere.
    """
    folder = Path(folder)
    slices = []
    for file in dicom_series_files(folder):
        try:
            slices.append(pydicom.dcmread(file, stop_before_pixels=True))
        except (InvalidDicomError, OSError) as error:
            raise DeepDiagError(f"cannot be read as DICOM ({error})", file) from None
    for attribute in _REFERENCED:
        for dataset in slices:
            if not str(dataset.get(attribute, "")).strip():
                raise DeepDiagError(
                    f"{Path(dataset.filename).name} has no {attribute} (an anonymizer may have emptied it); DICOM "
                    "results join the source's study and reference its slices by these UIDs",
                    folder,
                )
    _check_positions(folder, slices, volume)
    return SourceSeries(folder, tuple(slices))


def _check_positions(folder: Path, slices: list[Dataset], volume: Volume) -> None:
    if len(slices) != volume.size[2]:
        raise DeepDiagError(f"holds {len(slices)} slices, the volume read from it {volume.size[2]}", folder)
    expected = volume.ijk_to_lps(np.array([[0.0, 0.0, k] for k in range(len(slices))]))
    for k, (dataset, position) in enumerate(zip(slices, expected)):
        found = np.asarray(dataset.get("ImagePositionPatient", [np.nan] * 3), dtype=float)
        if not np.all(np.abs(found - position) <= _POSITION_TOLERANCE_MM):
            raise DeepDiagError(
                f"slice {k + 1} ({Path(dataset.filename).name}) lies at {found.round(3).tolist()} mm, "
                f"not where the volume read from the series puts it ({position.round(3).tolist()} mm)",
                folder,
            )
