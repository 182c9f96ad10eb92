"""Reading and writing volumes with SimpleITK, keeping the geometry exact.

Supported inputs: NRRD, NIfTI, MHA/MHD (any format SimpleITK reads) and folders holding a
DICOM series. Every failure becomes a ``DeepDiagError`` that names the file.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

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
#: a NIfTI's two voxel sizes (pixdim, and the lengths of the sform's axes) may differ by this share:
#: float32 rounding and writers' own rounding stay far below it, two different grids far above
_NIFTI_SPACING_TOLERANCE = 0.01
_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".hdr.gz")
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WINDOW = 16 + zlib.MAX_WBITS  # zlib's setting for a gzip stream
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
    _check_exists(path)
    image = _read_dicom_series(path) if path.is_dir() else _read_image_file(path)
    volume = volume_from_image(image)
    _check_finite(volume.array, path)
    return volume


def volume_header(path: str | Path) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Size and spacing of a volume without reading its voxels (for a DICOM folder, from its first
    and last slice)."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return _dicom_series_header(path)
    reader = _image_information(path)
    _check_file_header(path, reader)
    return tuple(reader.GetSize())[:3], tuple(reader.GetSpacing())[:3]


def _check_exists(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise DeepDiagError("is a symbolic link to nothing (its target is missing, or the links form a loop)", path)
    if not path.exists():
        raise DeepDiagError("no such file or folder", path)


def _dicom_series_header(folder: Path) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """A DICOM slice reads as a 3D image of one slice: the series' size is its rows and columns by
    the number of slices, and its slice spacing the distance from the first slice to the last
    (GDCM sorts the files by position) over the gaps between them."""
    files = dicom_series_files(folder)
    first, last = _image_information(Path(files[0])), _image_information(Path(files[-1]))
    columns, rows = first.GetSize()[:2]
    _check_shape(folder, 3, (columns, rows, len(files)), first.GetNumberOfComponents())
    gap = np.linalg.norm(np.subtract(last.GetOrigin(), first.GetOrigin())) / (len(files) - 1)
    return (columns, rows, len(files)), (*first.GetSpacing()[:2], float(gap) or first.GetSpacing()[2])


def _image_information(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _native_messages_hidden():
            reader.ReadImageInformation()
    except RuntimeError:
        raise DeepDiagError("not a readable image (unknown format or corrupt header)", path) from None
    return reader


@contextlib.contextmanager
def _native_messages_hidden() -> Iterator[None]:
    """Keep the C++ readers' own lines off stderr while they read (MetaIO prints "data not read
    completely" straight to std::cerr, past ITK's warning switch): the DeepDiagError that follows
    says it in one line that names the file."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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
    _check_file_header(path, reader)
    _check_nifti_data(path)
    try:
        with _native_messages_hidden():
            return reader.Execute()
    except RuntimeError:
        raise DeepDiagError(
            "the image header is readable but its voxel data is not (truncated or corrupt file)", path
        ) from None


def _check_file_header(path: Path, reader: sitk.ImageFileReader) -> None:
    """Every check an image file's header allows, before any voxel is read."""
    _check_shape(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
    _check_geometry(path, reader.GetSpacing(), reader.GetDirection())
    header = _nifti_header(path)
    if header is not None:
        _check_nifti_voxel_sizes(path, header)


class _NiftiHeader(NamedTuple):
    pixdim: np.ndarray  # pixdim[1:4]
    sform_code: int
    sform: np.ndarray  # the 3x3 of srow_x, srow_y, srow_z
    data_file: Path  # the file itself, or the .img beside a .hdr
    data_end: int  # vox_offset + the bytes of the voxels the header declares


def _check_nifti_voxel_sizes(path: Path, header: _NiftiHeader) -> None:
    """Refuse a NIfTI whose header gives two voxel sizes: pixdim (ITK's spacing, and the scale of the
    qform, so a qform never disagrees with it) and the lengths of the sform's axes. ITK reads such a
    file with pixdim and the qform and drops the sform with a warning only (ITK's warnings are
    hidden), so one of the two geometries is silently wrong. A zero pixdim, which ITK reads as 1 mm,
    is refused too."""
    pixdim = header.pixdim
    if header.sform_code > 0:
        sform_sizes = np.linalg.norm(header.sform, axis=0)
        if not np.all(np.abs(sform_sizes - pixdim) <= _NIFTI_SPACING_TOLERANCE * np.abs(pixdim)):
            raise DeepDiagError(
                f"its header gives two voxel sizes, pixdim {_mm(pixdim)} mm and sform {_mm(sform_sizes)} mm; "
                "refusing rather than guessing which is right",
                path,
            )
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        raise DeepDiagError(
            f"has a voxel spacing that is not positive (pixdim {', '.join(f'{s:g}' for s in pixdim)} mm)", path
        )


def _check_nifti_data(path: Path) -> None:
    """Refuse a NIfTI whose voxel data ends before the header's size: ITK reads it with the missing
    voxels as 0 (its warning is hidden), a scan with a black end that looks whole."""
    header = _nifti_header(path)
    if header is None or not header.data_file.is_file():
        return
    found = _stored_bytes(header.data_file, header.data_end)
    if found < header.data_end:
        where = "" if header.data_file == path else f" in {header.data_file.name}"
        raise DeepDiagError(
            f"the image header is readable but its voxel data{where} ends early ({found:,} of "
            f"{header.data_end:,} bytes; a truncated file)",
            path,
        )


def _stored_bytes(path: Path, needed: int) -> int:
    """How many bytes ``path`` holds, unpacked if gzipped, counted up to ``needed``. A whole gzip
    file states its unpacked size in its last 4 bytes; only when that differs (a cut stream, or a
    file of several gzip members) is it unpacked and counted."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        if file.read(2) != _GZIP_MAGIC or size < 4:
            return size
        file.seek(-4, 2)
        if struct.unpack("<I", file.read(4))[0] == needed % 2**32:
            return needed
    count, unpack, pending = 0, zlib.decompressobj(_GZIP_WINDOW), b""
    try:
        with open(path, "rb") as file:
            while count < needed:
                pending = pending or file.read(1 << 20)
                if not pending:
                    break
                count += len(unpack.decompress(pending, 1 << 24))  # bounded: a bomb never unpacks at once
                if unpack.eof:  # the next gzip member, if any
                    pending, unpack = unpack.unused_data, zlib.decompressobj(_GZIP_WINDOW)
                else:
                    pending = unpack.unconsumed_tail
    except zlib.error:  # corrupt from here on: what came before counts
        pass
    return count


def _nifti_header(path: Path) -> _NiftiHeader | None:
    """The fields of a NIfTI-1 or NIfTI-2 header (.nii, .nii.gz, .hdr) that DeepDiag checks, read
    at the standard's offsets in either byte order; None for any other file."""
    name = path.name.lower()
    if not name.endswith(_NIFTI_SUFFIXES):
        return None
    try:
        with open(path, "rb") as file:
            packed = file.read(2) == _GZIP_MAGIC
        with gzip.open(path) if packed else open(path, "rb") as file:
            raw = file.read(540)
    except (OSError, EOFError, zlib.error):  # ITK read it, Python cannot: ITK has the last word on it
        return None
    for order in "<>":
        if len(raw) >= 348 and struct.unpack_from(f"{order}i", raw)[0] == 348 and raw[344:347] in (b"n+1", b"ni1"):
            dim = struct.unpack_from(f"{order}8h", raw, 40)
            bitpix = struct.unpack_from(f"{order}h", raw, 72)[0]
            vox_offset = struct.unpack_from(f"{order}f", raw, 108)[0]
            pixdim = struct.unpack_from(f"{order}8f", raw, 76)
            sform_code = struct.unpack_from(f"{order}h", raw, 254)[0]
            sform = struct.unpack_from(f"{order}12f", raw, 280)
            pair = raw[345:346] == b"i"
            break
        if len(raw) >= 540 and struct.unpack_from(f"{order}i", raw)[0] == 540 and raw[4:7] in (b"n+2", b"ni2"):
            dim = struct.unpack_from(f"{order}8q", raw, 16)
            bitpix = struct.unpack_from(f"{order}h", raw, 14)[0]
            vox_offset = struct.unpack_from(f"{order}q", raw, 168)[0]
            pixdim = struct.unpack_from(f"{order}8d", raw, 104)
            sform_code = struct.unpack_from(f"{order}i", raw, 348)[0]
            sform = struct.unpack_from(f"{order}12d", raw, 400)
            pair = raw[5:6] == b"i"
            break
    else:
        return None
    voxels = int(np.prod([max(int(n), 1) for n in dim[1 : min(max(dim[0], 1), 7) + 1]]))
    data_file = path
    if pair:  # the voxels lie in the .img (or .img.gz) beside the .hdr
        stem = path.name[: -len(".hdr.gz")] if name.endswith(".hdr.gz") else path.name[: -len(".hdr")]
        images = [path.with_name(stem + suffix) for suffix in (".img", ".img.gz")]
        data_file = next((image for image in images if image.is_file()), images[0])
    return _NiftiHeader(
        np.array(pixdim[1:4], dtype=float),
        int(sform_code),
        np.array(sform, dtype=float).reshape(3, 4)[:, :3],
        data_file,
        int(vox_offset) + voxels * max(int(bitpix), 0) // 8,
    )


def _mm(sizes) -> str:
    """Voxel sizes as a reader writes them: 1.0 x 0.9766 x 2.5."""
    return " x ".join(_decimal(s) for s in sizes)


def _decimal(value: float) -> str:
    text = f"{float(value):.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _read_dicom_series(folder: Path) -> sitk.Image:
    files = dicom_series_files(folder)
    _check_slice_positions(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with _native_messages_hidden():
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


def dicom_series_files(folder: Path) -> tuple[str, ...]:
    """Files of the folder's DICOM series with the most slices (the one a viewer would show first),
    in the order ITK reads them: slice k of the volume is file k."""
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
