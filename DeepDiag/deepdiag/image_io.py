"""Reading and writing volumes with SimpleITK, keeping the geometry exact.

Supported inputs: NRRD, NIfTI, MHA/MHD (any format SimpleITK reads) and folders holding a
DICOM series. Every failure becomes a ``DeepDiagError`` that names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import DeepDiagError
from .files import atomic_output
from .geometry import Volume

#: Extensions the writers accept (MHD is left out: its two files cannot be replaced atomically).
WRITABLE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")
#: slices whose gap differs more than this share from the series' usual gap make it uneven
_SLICE_GAP_TOLERANCE = 0.1
#: the image filters (Gaussian smoothing, resampling) need this many voxels along every axis
MIN_VOXELS_PER_AXIS = 4
_IMAGE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd", ".dcm", ".nhdr")

# ITK prints its own warnings on stderr (e.g. "No Series were found"); every problem they
# point at becomes a DeepDiagError that names the file, so they would only repeat it in C++ terms.
sitk.ProcessObject_SetGlobalWarningDisplay(False)


def read_volume(path: str | Path) -> Volume:
    """Read a 3D scalar volume from an image file or a DICOM series folder.

    Raises:
        DeepDiagError: the path is missing, unreadable, not 3D or not scalar.
    """
    path = Path(path)
    if not path.exists():
        raise DeepDiagError("no such file or folder", path)
    image = _read_dicom_series(path) if path.is_dir() else _read_image_file(path)
    volume = volume_from_image(image)
    _check_finite(volume.array, path)
    return volume


def volume_header(path: str | Path) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Size and spacing of a volume without reading its voxels (for a DICOM folder, from its first
    and last slice)."""
    path = Path(path)
    if not path.exists():
        raise DeepDiagError("no such file or folder", path)
    if path.is_dir():
        return _dicom_series_header(path)
    reader = _image_information(path)
    _check_shape(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
    return tuple(reader.GetSize())[:3], tuple(reader.GetSpacing())[:3]


def _dicom_series_header(folder: Path) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """A DICOM slice reads as a 3D image of one slice: the series' size is its rows and columns by
    the number of slices, and its slice spacing the distance from the first slice to the last
    (GDCM sorts the files by position) over the gaps between them."""
    files = _largest_series(folder)
    first, last = _image_information(Path(files[0])), _image_information(Path(files[-1]))
    columns, rows = first.GetSize()[:2]
    _check_shape(folder, 3, (columns, rows, len(files)), first.GetNumberOfComponents())
    gap = np.linalg.norm(np.subtract(last.GetOrigin(), first.GetOrigin())) / (len(files) - 1)
    return (columns, rows, len(files)), (*first.GetSpacing()[:2], float(gap) or first.GetSpacing()[2])


def _image_information(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise DeepDiagError("not a readable image (unknown format or corrupt header)", path) from None
    return reader


def write_volume(volume: Volume, path: str | Path, compress: bool = True) -> Path:
    """Write ``volume`` to ``path`` (NRRD, NIfTI or MHA by extension), atomically."""
    path = Path(path)
    if not path.name.lower().endswith(WRITABLE_SUFFIXES):
        raise DeepDiagError(f"cannot write this format; use one of {', '.join(WRITABLE_SUFFIXES)}", path)
    with atomic_output(path) as temporary:
        sitk.WriteImage(image_from_volume(volume), str(temporary), compress)
    return path


def volume_from_image(image: sitk.Image) -> Volume:
    """Wrap a SimpleITK image as a Volume (copies the voxels)."""
    return Volume(
        array=sitk.GetArrayFromImage(image),
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=np.array(image.GetDirection()).reshape(3, 3),
    )


def image_from_volume(volume: Volume) -> sitk.Image:
    """Make a SimpleITK image with the volume's voxels and exact geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image


def input_stem(path: str | Path) -> str:
    """Name for outputs made from an input: the file name without image extensions, or the folder name."""
    path = Path(path)
    name = path.name
    if path.is_dir():
        return name
    lowered = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_image_file(path: Path) -> sitk.Image:
    reader = _image_information(path)
    _check_shape(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
    _check_geometry(path, reader.GetSpacing(), reader.GetDirection())
    try:
        return reader.Execute()
    except RuntimeError:
        raise DeepDiagError(
            "the image header is readable but its voxel data is not (truncated or corrupt file)", path
        ) from None


def _read_dicom_series(folder: Path) -> sitk.Image:
    files = _largest_series(folder)
    _check_slice_positions(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise DeepDiagError("the DICOM series could not be read (missing or inconsistent slices)", folder) from None
    _check_shape(folder, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
    _check_geometry(folder, image.GetSpacing(), image.GetDirection())
    return image


def _check_slice_positions(folder: Path, files: tuple[str, ...]) -> None:
    """Refuse a series with a duplicate, missing or unevenly spaced slice, naming the slice: ITK
    would read it with one average spacing, a geometry that is wrong without a word."""
    if len(files) < 3:
        return
    origins = np.array([_image_information(Path(f)).GetOrigin() for f in files], dtype=float)
    axis = origins[-1] - origins[0]
    heights = origins @ (axis / (np.linalg.norm(axis) or 1.0))
    order = np.argsort(heights, kind="stable")
    gaps = np.diff(heights[order])
    typical = float(np.median(gaps))
    for position, gap in enumerate(gaps, start=1):
        this, before = Path(files[order[position]]).name, Path(files[order[position - 1]]).name
        if gap < 1e-3:
            raise DeepDiagError(
                f"the DICOM series is not evenly sliced: {this} repeats the position of {before}", folder
            )
        if abs(gap - typical) > _SLICE_GAP_TOLERANCE * typical:
            raise DeepDiagError(
                f"the DICOM series is not evenly sliced: {this} lies {gap:.2f} mm from {before} where the other "
                f"slices lie {typical:.2f} mm apart (a slice is missing or out of place)",
                folder,
            )


def _check_geometry(path: Path, spacing, direction) -> None:
    """Refuse a geometry the outputs could not keep exactly: a spacing that is not positive, and
    axes that are not at right angles (sheared) or that coincide."""
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise DeepDiagError(
            f"has a voxel spacing that is not positive ({', '.join(f'{s:g}' for s in spacing)} mm)", path
        )
    axes = np.asarray(direction, dtype=float).reshape(3, 3)
    if abs(np.linalg.det(axes)) < 1e-6:
        raise DeepDiagError("has image axes that coincide (its direction matrix is singular)", path)
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-4):
        raise DeepDiagError(
            "has sheared image axes (its direction matrix is not orthogonal); DeepDiag needs axes at right "
            "angles, as CT scanners write them (resample it first, e.g. with Slicer's Resample Scalar Volume)",
            path,
        )


def _check_finite(array: np.ndarray, path: Path) -> None:
    if np.issubdtype(array.dtype, np.floating):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise DeepDiagError(
                f"has {bad} voxels that are not numbers (NaN or infinite); no scanner writes those", path
            )


def _largest_series(folder: Path) -> tuple[str, ...]:
    """Files of the folder's DICOM series with the most slices (the one a viewer would show first)."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise DeepDiagError("the folder holds no DICOM series", folder)
    return max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids), key=len)


def _check_shape(path: Path, dimension: int, size: tuple[int, ...], components: int) -> None:
    if dimension != 3:
        raise DeepDiagError(f"is a {dimension}D image; DeepDiag needs a 3D volume", path)
    if min(size) < 2:
        raise DeepDiagError(f"is a single slice ({'x'.join(map(str, size))} voxels); DeepDiag needs a 3D volume", path)
    if min(size) < MIN_VOXELS_PER_AXIS:
        raise DeepDiagError(
            f"is too thin ({'x'.join(map(str, size))} voxels); DeepDiag needs at least "
            f"{MIN_VOXELS_PER_AXIS} voxels along each axis",
            path,
        )
    if components != 1:
        raise DeepDiagError(f"has {components} values per voxel; DeepDiag needs a scalar (grey-value) volume", path)
