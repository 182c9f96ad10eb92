"""Write a volume as a DICOM CT series (one CT Image Storage file per slice) with its geometry.

For phantoms and tests that need a DICOM series (a PACS, DICOM SEG and SR outputs); SimpleITK's
DICOM writer leaves out modules a CT image must have (General Study, Frame of Reference, CT
Image), which validators and PACS refuse, so the datasets are built here with pydicom.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .. import __version__
from ..errors import DeepDiagError
from ..files import atomic_output
from ..geometry import Volume

_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class SeriesIdentity:
    """Who and what a written series belongs to; empty UIDs are generated."""

    patient_id: str
    patient_name: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    series_description: str = "DeepDiag phantom"
    series_number: int = 1


def write_ct_series(volume: Volume, folder: str | Path, identity: SeriesIdentity) -> list[Path]:
    """Write ``volume`` (HU) as ``folder/slice_0001.dcm`` ... ; returns the files in slice order.

    Voxel values are rounded to whole HU (int16, rescale slope 1, intercept 0), as scanners store them.
    """
    hu = np.round(volume.array)
    if hu.min() < _INT16.min or hu.max() > _INT16.max:
        raise DeepDiagError(f"values {hu.min():g}..{hu.max():g} do not fit a CT series (int16 HU)", folder)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shared = _series_dataset(volume, identity)
    paths = []
    for k in range(volume.size[2]):
        dataset = _slice_dataset(shared, volume, k, hu[k].astype(np.int16))
        path = folder / f"slice_{k + 1:04d}.dcm"
        with atomic_output(path) as temporary:
            dataset.save_as(temporary, enforce_file_format=True)
        paths.append(path)
    return paths


def _series_dataset(volume: Volume, identity: SeriesIdentity) -> Dataset:
    now = datetime.now()
    ds = Dataset()
    ds.PatientID, ds.PatientName = identity.patient_id, identity.patient_name or f"Phantom^{identity.patient_id}"
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID = identity.study_instance_uid or generate_uid()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.Modality, ds.SeriesInstanceUID = "CT", identity.series_instance_uid or generate_uid()
    ds.SeriesNumber, ds.SeriesDescription = identity.series_number, identity.series_description
    ds.BodyPartExamined, ds.PatientPosition = "CHEST", "HFS"
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid or generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer, ds.SoftwareVersions = "DeepDiag", __version__
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.PixelSpacing = [_ds(volume.spacing[1]), _ds(volume.spacing[0])]  # row spacing (j), then column (i)
    ds.SliceThickness = _ds(volume.spacing[2])
    ds.ImageOrientationPatient = [_ds(v) for v in (*volume.direction[:, 0], *volume.direction[:, 1])]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = volume.size[1], volume.size[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
    ds.KVP, ds.AcquisitionNumber = "120", 1
    return ds


def _slice_dataset(shared: Dataset, volume: Volume, k: int, pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.update(shared)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds(v) for v in volume.ijk_to_lps(np.array([0.0, 0.0, k]))]
    ds.SliceLocation = _ds(float(volume.ijk_to_lps(np.array([0.0, 0.0, k]))[2]))
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def _ds(value: float) -> str:
    """A decimal string (DS, at most 16 characters) that keeps the value to 1e-9 mm or better."""
    return f"{float(value):.10g}"[:16]
