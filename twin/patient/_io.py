"""Reading images and masks with SimpleITK; geometry checks; activity units and decay.

Arrays are numpy in SimpleITK's index order ``(z, y, x)``; activity images are float32.
A :class:`Geometry` carries size (x, y, z), spacing (mm), origin (mm) and direction.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import pbpk
from pbpk._errors import UnitError
from twin.patient._errors import (
    CorruptFileError,
    EmptyMaskError,
    GeometryMismatchError,
    ImageDimensionError,
    ImageTooLargeError,
    LabelTableError,
    MissingInjectedActivityError,
    NegativeActivityError,
    NonFiniteVoxelError,
    OverlappingLabelsError,
    PatientParameterError,
    ScanTimeError,
    UnknownLabelError,
)

__all__ = [
    "ACTIVITY_UNITS",
    "DEFAULT_MAX_BYTES",
    "ActivityImage",
    "Geometry",
    "Masks",
    "decay_factor",
    "hours_between",
    "load_activity_image",
    "load_masks",
    "read_image",
    "resample_to",
]

_log = logging.getLogger(__name__)

#: Largest image (bytes as float32 in memory) read without ``max_bytes``: 2 GiB.
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Accepted activity units and their factor to Bq/mL (SUV is handled separately).
ACTIVITY_UNITS = {"Bq/mL": 1.0, "kBq/mL": 1e3, "MBq/mL": 1e6, "SUV": None}


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """Voxel grid: size (x, y, z), spacing (mm), origin (mm), direction (9 cosines)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(tuple(int(s) for s in image.GetSize()), tuple(float(s) for s in image.GetSpacing()),
                   tuple(float(s) for s in image.GetOrigin()),
                   tuple(float(s) for s in image.GetDirection()))

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy shape (z, y, x)."""
        return tuple(reversed(self.size))

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def differences(self, other: Geometry, tol_mm: float = 1e-3) -> list[str]:
        out = []
        if self.size != other.size:
            out.append(f"size {other.size} vs {self.size}")
        if not np.allclose(self.spacing, other.spacing, atol=tol_mm, rtol=0):
            out.append(f"spacing {other.spacing} vs {self.spacing} mm")
        if not np.allclose(self.origin, other.origin, atol=tol_mm, rtol=0):
            out.append(f"origin {other.origin} vs {self.origin} mm")
        if not np.allclose(self.direction, other.direction, atol=1e-4, rtol=0):
            out.append(f"direction {other.direction} vs {self.direction}")
        return out

    def to_image(self, array: np.ndarray) -> sitk.Image:
        array = np.asarray(array)
        if array.dtype == bool:  # SimpleITK has no boolean pixel type
            array = array.astype(np.uint8)
        img = sitk.GetImageFromArray(array, isVector=False)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def to_dict(self) -> dict:
        return {"size": list(self.size), "spacing_mm": list(self.spacing),
                "origin_mm": list(self.origin), "direction": list(self.direction)}


def check_same_grid(reference: Geometry, other: Geometry, what: str, tol_mm: float = 1e-3) -> None:
    """Raise :class:`GeometryMismatchError` if ``other`` is not on the reference grid."""
    diffs = reference.differences(other, tol_mm)
    if diffs:
        raise GeometryMismatchError(
            f"{what} is not on the PET grid ({'; '.join(diffs)}). Resample it explicitly "
            "(`twin plan --resample`, load_patient(..., resample=True) or twin.patient.resample_to) "
            "or export it on the PET grid."
        )


def resample_to(image: sitk.Image, reference: sitk.Image | Geometry, *, is_label: bool) -> sitk.Image:
    """Resample ``image`` onto the reference grid (nearest neighbour for labels, else linear)."""
    geo = reference if isinstance(reference, Geometry) else Geometry.of(reference)
    f = sitk.ResampleImageFilter()
    f.SetSize(geo.size)
    f.SetOutputSpacing(geo.spacing)
    f.SetOutputOrigin(geo.origin)
    f.SetOutputDirection(geo.direction)
    f.SetInterpolator(sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear)
    f.SetDefaultPixelValue(0 if is_label else float(np.min(sitk.GetArrayViewFromImage(image))))
    return f.Execute(image)


# ----------------------------------------------------------------------------- reading
def _series_files(path: Path) -> list[str]:
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(path))
    if not ids:
        raise CorruptFileError(f"folder {str(path)!r} holds no DICOM series; give a file or a DICOM folder.")
    if len(ids) > 1:
        _log.warning("folder %s holds %d DICOM series; reading the first (%s)", path, len(ids), ids[0])
    return list(reader.GetGDCMSeriesFileNames(str(path), ids[0]))


def _header(file: str) -> sitk.ImageFileReader:
    r = sitk.ImageFileReader()
    r.SetFileName(file)
    try:
        r.ReadImageInformation()
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise CorruptFileError(
            f"cannot read {file!r} as an image ({msg}); check that the file is a complete NIfTI, "
            "NRRD, MHA or DICOM file."
        ) from None
    return r


def _check_not_truncated(path: Path, h: sitk.ImageFileReader) -> None:
    """Uncompressed NIfTI/MHA/NRRD files shorter than their voxel data are corrupt (ITK pads them)."""
    name = path.name.lower()
    if not name.endswith((".nii", ".mha", ".nrrd")):
        return
    head = path.open("rb").read(4096)
    if name.endswith(".mha") and b"CompressedData = True" in head:
        return
    if name.endswith(".nrrd") and (b"encoding: gz" in head or b"encoding: bz" in head):
        return
    probe = sitk.Image([1] * h.GetDimension(), h.GetPixelID(), max(1, h.GetNumberOfComponents()))
    itemsize = sitk.GetArrayViewFromImage(probe).nbytes
    expected = int(np.prod(h.GetSize())) * itemsize
    if path.stat().st_size < expected:
        raise CorruptFileError(
            f"{str(path)!r} is truncated: {path.stat().st_size} bytes for {expected} bytes of voxel "
            "data; copy or export the file again."
        )


#: NIfTI datatype codes of float voxels: numpy dtype character.
_NIFTI_FLOAT = {16: "f4", 64: "f8"}


def _nifti_float_layout(path: Path):
    """(dtype, data offset, x-y-z size) of a single-file float NIfTI-1/-2 image, else None."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(544)
    if len(head) < 348:
        return None
    for order in "<>":
        n = struct.unpack(order + "i", head[:4])[0]
        if n == 348 and head[344:347] == b"n+1":
            dim = struct.unpack(order + "8h", head[40:56])
            code = struct.unpack(order + "h", head[70:72])[0]
            offset = int(struct.unpack(order + "f", head[108:112])[0])
            break
        if n == 540 and len(head) >= 544 and head[4:7] == b"n+2":
            code = struct.unpack(order + "h", head[12:14])[0]
            dim = struct.unpack(order + "8q", head[16:80])
            offset = struct.unpack(order + "q", head[168:176])[0]
            break
    else:
        return None  # not a single-file NIfTI (e.g. an .hdr/.img pair): nothing checked
    if code not in _NIFTI_FLOAT or not 1 <= dim[0] <= 7:
        return None
    size = tuple(max(1, int(d)) for d in dim[1:4])
    return np.dtype(order + _NIFTI_FLOAT[code]), max(int(offset), n + 4), size


def _check_nifti_finite(path: Path, what: str) -> None:
    """Refuse NaN/Inf voxels in a float NIfTI file.

    SimpleITK (ITK 5.4 NiftiImageIO) reads NaN and infinite NIfTI voxels as 0, so they cannot be
    seen in the loaded image (fixed upstream, ITK PR #6683); the raw float data are scanned here
    in chunks instead.
    """
    layout = _nifti_float_layout(path)
    if layout is None:
        return
    dtype, offset, size = layout
    chunk = (64 * 2**20 // dtype.itemsize) * dtype.itemsize
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    n_bad, first, start = 0, None, 0
    with opener(path, "rb") as fh:
        fh.seek(offset)
        while True:
            buf = fh.read(chunk)
            buf = buf[: len(buf) - len(buf) % dtype.itemsize]
            if not buf:
                break
            bad = ~np.isfinite(np.frombuffer(buf, dtype=dtype))
            if bad.any():
                n_bad += int(bad.sum())
                if first is None:
                    first = start + int(np.argmax(bad))
            start += len(buf) // dtype.itemsize
    if n_bad:
        nx, ny, nz = size
        where = ""
        if first < nx * ny * nz:
            where = f" (first at index (z, y, x) {(first // (nx * ny), first // nx % ny, first % nx)})"
        raise NonFiniteVoxelError(
            f"{what} {str(path)!r} holds {n_bad} NaN/infinite voxel(s){where}; SimpleITK would read "
            "them as 0. Fix the reconstruction or replace them (e.g. numpy.nan_to_num) before "
            "loading."
        )


def read_image(path, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "image") -> sitk.Image:
    """Read a 3-D image (NIfTI, NRRD, MHA, ... or a DICOM series folder).

    The header is read first: an image that would need more than ``max_bytes`` as float32 is
    refused before its voxels are loaded. NaN/infinite voxels of a float NIfTI file (``.nii``,
    ``.nii.gz``) raise :class:`NonFiniteVoxelError` (SimpleITK itself would read them as 0).
    """
    path = Path(path)
    if not path.exists():
        raise CorruptFileError(f"{what} file {str(path)!r} does not exist.")
    if path.is_dir():
        files = _series_files(path)
        h = _header(files[0])
        size = list(h.GetSize())
        if len(size) == 3 and size[2] == 1:
            size[2] = len(files)
        elif len(size) == 2:
            size.append(len(files))
    else:
        files = [str(path)]
        h = _header(files[0])
        size = list(h.GetSize())
    if len(files) == 1:
        _check_not_truncated(path, h)
    n_bytes = int(np.prod(size)) * 4 * max(1, h.GetNumberOfComponents())
    if n_bytes > max_bytes:
        raise ImageTooLargeError(
            f"{what} {str(path)!r} has {int(np.prod(size))} voxels ({n_bytes / 2**20:.0f} MiB as float32),"
            f" more than max_bytes = {max_bytes / 2**20:.0f} MiB; crop or downsample it first, or raise "
            "max_bytes if the machine has the memory."
        )
    try:
        if len(files) > 1:
            r = sitk.ImageSeriesReader()
            r.SetFileNames(files)
            img = r.Execute()
        else:
            img = sitk.ReadImage(files[0])
    except RuntimeError as exc:
        raise CorruptFileError(f"cannot read the voxels of {what} {str(path)!r} ({str(exc).strip()[-200:]}); "
                               "the file looks truncated or corrupt.") from None
    _check_scalar(img, f"{what} {str(path)!r}")
    if len(files) == 1 and path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_finite(path, what)
    if img.GetDimension() != 3 or min(img.GetSize()) < 2:
        raise ImageDimensionError(
            f"{what} {str(path)!r} has size {img.GetSize()}; a 3-D scalar volume with at least 2 voxels "
            "along each axis is needed (give the whole series, not one slice or frame)."
        )
    return img


#: SimpleITK pixel types with two values per voxel (real and imaginary part).
_COMPLEX_PIXEL_IDS = frozenset({sitk.sitkComplexFloat32, sitk.sitkComplexFloat64})


def _check_scalar(img: sitk.Image, what: str) -> None:
    """Refuse vector / RGB / complex images: activity, CT and labels have one value per voxel."""
    n = img.GetNumberOfComponentsPerPixel()
    if n != 1 or img.GetPixelID() in _COMPLEX_PIXEL_IDS:
        kind = f"{n} components per voxel" if n != 1 else "complex voxels"
        raise ImageDimensionError(
            f"{what} has {kind} ({img.GetPixelIDTypeAsString()}); the image must be scalar, one "
            "component per voxel. Export the activity, CT or label volume itself (not an RGB "
            "screenshot, a vector field or a fused overlay), or pick one channel first, e.g. "
            "sitk.VectorIndexSelectionCast(image, 0)."
        )


def _as_sitk(image, what: str, max_bytes: int, reference: Geometry | None = None) -> sitk.Image:
    """A path, SimpleITK image or numpy (z, y, x) array as a 3-D scalar SimpleITK image.

    Boolean arrays (e.g. ``mask > 0``) become uint8 (SimpleITK has no boolean pixel type).
    A numpy array carries no geometry: with a ``reference`` grid (the PET's) it takes that grid's
    spacing, origin and direction, and must have its shape (it is never resampled: it is a
    voxel-for-voxel copy of the grid it was made on); without one it gets SimpleITK's default
    geometry (1 mm voxels, origin 0).
    """
    if isinstance(image, sitk.Image):
        _check_scalar(image, what)
        if image.GetDimension() != 3 or min(image.GetSize()) < 2:
            raise ImageDimensionError(f"{what} has size {image.GetSize()}; a 3-D volume is needed.")
        return image
    if isinstance(image, np.ndarray):
        if image.ndim == 4 and image.shape[-1] in (2, 3, 4):
            raise ImageDimensionError(
                f"{what} has shape {image.shape}, i.e. {image.shape[-1]} components per voxel (RGB or "
                "vector); the image must be scalar, one component per voxel: give a (z, y, x) array, "
                "e.g. one channel image[..., 0]."
            )
        if image.ndim != 3 or min(image.shape) < 2:
            raise ImageDimensionError(f"{what} has shape {image.shape}; a 3-D (z, y, x) array is needed.")
        if np.iscomplexobj(image):
            raise ImageDimensionError(
                f"{what} has complex voxels ({image.dtype}); the image must be scalar, one real "
                "component per voxel: give the real-valued volume (e.g. numpy.abs or .real)."
            )
        if reference is not None:
            if tuple(image.shape) != tuple(reference.shape):
                raise GeometryMismatchError(
                    f"{what} is a numpy array of shape (z, y, x) {tuple(image.shape)}, but the PET grid "
                    f"has shape {tuple(reference.shape)}. A numpy array carries no spacing or origin, so "
                    "it is taken voxel for voxel on the PET grid and cannot be resampled. Give an array "
                    "made on the PET grid, or pass an image file or a SimpleITK image that carries its "
                    "own spacing and origin (then resample=True resamples it)."
                )
            return reference.to_image(image)
        if image.dtype == bool:  # e.g. a `mask > 0` array; SimpleITK has no boolean pixel type
            image = image.astype(np.uint8)
        return sitk.GetImageFromArray(image, isVector=False)
    return read_image(image, max_bytes=max_bytes, what=what)


# ----------------------------------------------------------------------------- time and decay
def decay_factor(elapsed_h, half_life_h: float):
    """Fraction of activity left after ``elapsed_h``: exp(-ln2 t / T1/2)."""
    return np.exp(-math.log(2.0) * np.asarray(elapsed_h, dtype=float) / float(half_life_h))


def _as_datetime(value, name: str) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ScanTimeError(f"{name} = {value!r} is not a date-time; use ISO format, e.g. "
                            "'2026-01-31T09:30:00'.") from None


def hours_between(injection_time, scan_time) -> float:
    """Hours from injection to scan (datetimes or ISO strings); error if the scan is earlier."""
    t0 = _as_datetime(injection_time, "injection_time")
    t1 = _as_datetime(scan_time, "scan_time")
    if (t0.tzinfo is None) != (t1.tzinfo is None):
        raise ScanTimeError("give both injection_time and scan_time with a time zone, or both without.")
    h = (t1 - t0).total_seconds() / 3600.0
    if h < 0:
        raise ScanTimeError(
            f"scan_time {t1.isoformat()} is {-h:.3g} h before injection_time {t0.isoformat()}; check "
            "the dates (and time zones) of both."
        )
    return h


# ----------------------------------------------------------------------------- activity images
@dataclass(frozen=True, eq=False)
class ActivityImage:
    """A PET/SPECT frame as activity concentration at scan time (Bq/mL, float32, not decay-corrected).

    Attributes: ``bq_per_ml`` (z, y, x) float32; ``geometry``; ``nuclide`` (pbpk name);
    ``hours_after_injection``; ``injected_activity_mbq`` and ``weight_kg`` (optional, for SUV
    and %IA).
    """

    bq_per_ml: np.ndarray = field(repr=False)
    geometry: Geometry
    nuclide: str
    hours_after_injection: float
    injected_activity_mbq: float | None = None
    weight_kg: float | None = None

    @property
    def half_life_h(self) -> float:
        return float(pbpk.get_nuclide(self.nuclide).half_life_h)

    @property
    def decay_factor(self) -> float:
        """Fraction of the injected nuclide left at scan time."""
        return float(decay_factor(self.hours_after_injection, self.half_life_h))

    def decay_corrected_bq_per_ml(self) -> np.ndarray:
        """Concentration decay-corrected to the injection time (float32)."""
        return (self.bq_per_ml / np.float32(self.decay_factor)).astype(np.float32)

    def suv(self) -> np.ndarray:
        """SUV (body weight): decay-corrected concentration / (injected activity / weight)."""
        if self.injected_activity_mbq is None or self.weight_kg is None:
            raise MissingInjectedActivityError(
                "SUV needs the injected activity and the body weight; give injected_activity_mbq "
                "and weight_kg when loading the image."
            )
        scale = self.injected_activity_mbq * 1e6 / (self.weight_kg * 1000.0)  # Bq per g (= per mL)
        return (self.decay_corrected_bq_per_ml() / np.float32(scale)).astype(np.float32)

    def to_sitk(self) -> sitk.Image:
        return self.geometry.to_image(self.bq_per_ml)


def _check_activity(arr: np.ndarray, what: str, allow_negative: bool) -> np.ndarray:
    finite = np.isfinite(arr)
    if not finite.all():
        n = int((~finite).sum())
        raise NonFiniteVoxelError(
            f"{what} has {n} NaN/infinite voxel(s) (first at index (z, y, x) "
            f"{tuple(int(i) for i in np.argwhere(~finite)[0])}); fix the reconstruction or replace "
            "them (e.g. numpy.nan_to_num) before loading."
        )
    neg = arr < 0
    if neg.any():
        if not allow_negative:
            raise NegativeActivityError(
                f"{what} has {int(neg.sum())} negative voxel(s) (min {float(arr.min()):.4g}); activity "
                "concentrations cannot be negative. Check the unit/scaling, or pass "
                "allow_negative=True to clip them to 0."
            )
        _log.warning("%s: %d negative voxels clipped to 0", what, int(neg.sum()))
        arr = np.clip(arr, 0, None)
    return arr


def _positive_number(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        x = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and x > 0


def _hours(value) -> float:
    """``hours_after_injection`` as a float >= 0, or :class:`ScanTimeError` saying what is wrong."""
    hint = "give the time from injection to scan in hours (a number >= 0, e.g. 1.0)."
    if isinstance(value, (bool, np.bool_)):
        raise ScanTimeError(f"hours_after_injection = {value!r} is a boolean, not a time; {hint}")
    try:
        h = float(value)
    except (TypeError, ValueError):
        raise ScanTimeError(f"hours_after_injection = {value!r} is not a number; {hint}") from None
    if not math.isfinite(h):
        raise ScanTimeError(f"hours_after_injection = {value!r} is not a finite number; {hint}")
    if h < 0:
        raise ScanTimeError(f"hours_after_injection = {value!r}: the scan cannot be before the "
                            f"injection; {hint}")
    return h


def _grid_triple(name: str, value, *, spacing: bool) -> tuple[float, float, float]:
    hint = ("the voxel size in mm, one number or (x, y, z), e.g. 4.0 or (4.0, 4.0, 3.0)" if spacing
            else "the position of the first voxel in mm, (x, y, z), e.g. (-300.0, -300.0, 0.0)")
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise PatientParameterError(f"{name} = {value!r}; give {hint}.")
    try:
        vals = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PatientParameterError(f"{name} = {value!r} is not numeric; give {hint}.") from None
    if spacing and vals.ndim == 0:
        vals = np.repeat(vals, 3)
    if vals.shape != (3,) or not np.all(np.isfinite(vals)) or (spacing and not np.all(vals > 0)):
        raise PatientParameterError(f"{name} = {value!r}; give {hint}"
                                    f"{' (finite, > 0)' if spacing else ' (finite)'}.")
    return tuple(float(v) for v in vals)


def _array_geometry(img: sitk.Image, spacing_mm, origin_mm) -> sitk.Image:
    """Give an image made from a numpy array its spacing and origin (warn if no spacing)."""
    if spacing_mm is None:
        warnings.warn(
            "the activity image is a numpy array without spacing_mm: 1 mm voxels are assumed, so "
            "volumes, activities (MBq) and %IA are those of 1 mm3 voxels. Pass spacing_mm=(x, y, z) "
            "in mm (and origin_mm), or load the image file / a SimpleITK image, which carry their "
            "geometry.", UserWarning, stacklevel=3)
    else:
        img.SetSpacing(_grid_triple("spacing_mm", spacing_mm, spacing=True))
    if origin_mm is not None:
        img.SetOrigin(_grid_triple("origin_mm", origin_mm, spacing=False))
    return img


def load_activity_image(
    image,
    *,
    nuclide: str,
    unit: str = "Bq/mL",
    hours_after_injection: float | None = None,
    injection_time=None,
    scan_time=None,
    injected_activity_mbq: float | None = None,
    weight_kg: float | None = None,
    decay_corrected: bool = False,
    allow_negative: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    spacing_mm=None,
    origin_mm=None,
) -> ActivityImage:
    """Load a PET/SPECT frame and convert it to Bq/mL at scan time.

    ``image``: a path (file or DICOM folder), a SimpleITK image or a (z, y, x) array. ``unit``:
    ``"Bq/mL"``, ``"kBq/mL"``, ``"MBq/mL"`` or ``"SUV"`` (body weight SUV of the decay-corrected
    concentration; needs ``injected_activity_mbq`` and ``weight_kg``). The time is
    ``hours_after_injection`` or ``injection_time`` and ``scan_time`` (datetime / ISO string).

    ``decay_corrected``: leave it False (default) when the stored values are the activity at the
    scan time: DICOM PET with DecayCorrection = START (decay-corrected to the acquisition start,
    i.e. the scan time, as most scanners store them) or NONE; give the acquisition start as the
    scan time. Set it True only when the values are decay-corrected to the injection time
    (DecayCorrection = ADMIN); they are then converted back to activity at scan time.

    ``spacing_mm`` and ``origin_mm``: the voxel size and the position of the first voxel, in the
    (x, y, z) order of SimpleITK (the array itself is (z, y, x)), for a numpy array only (files
    and SimpleITK images carry their own). ``spacing_mm`` is one number (isotropic) or three; an
    array without it is read with 1 mm voxels, with a warning: volumes, MBq and %IA all scale
    with the voxel volume.

    NaN or infinite voxels raise :class:`NonFiniteVoxelError`. SimpleITK (ITK 5.4) reads NaN/Inf
    voxels of NIfTI files as 0 (fixed upstream in ITK PR #6683); float NIfTI files (``.nii``,
    ``.nii.gz``) are therefore scanned for them separately. Other formats keep NaN as NaN.
    """
    if unit not in ACTIVITY_UNITS:
        raise UnitError(f"unit = {unit!r} is not accepted; use one of {', '.join(ACTIVITY_UNITS)}.")
    half_life_h = float(pbpk.get_nuclide(nuclide).half_life_h)
    if hours_after_injection is None:
        if injection_time is None or scan_time is None:
            raise ScanTimeError("give hours_after_injection, or both injection_time and scan_time.")
        hours_after_injection = hours_between(injection_time, scan_time)
    else:
        if scan_time is not None:  # an injection time alone cannot contradict the hours
            raise ScanTimeError(
                "give the scan time once: either hours_after_injection, or injection_time and "
                "scan_time, not both (they could disagree).")
        hours_after_injection = _hours(hours_after_injection)
    for name, v in (("injected_activity_mbq", injected_activity_mbq), ("weight_kg", weight_kg)):
        if v is not None and not _positive_number(v):
            raise MissingInjectedActivityError(f"{name} = {v!r} must be a positive number.")
    if unit == "SUV" and (injected_activity_mbq is None or weight_kg is None):
        missing = [n for n, v in (("injected_activity_mbq", injected_activity_mbq),
                                  ("weight_kg", weight_kg)) if v is None]
        raise MissingInjectedActivityError(
            f"the image is in SUV but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "missing; the injected activity (MBq) and the body weight (kg) are both needed to "
            "convert SUV to Bq/mL: give them as injected_activity_mbq=... and weight_kg=..."
        )
    img = _as_sitk(image, "activity image", max_bytes)
    if isinstance(image, np.ndarray):
        img = _array_geometry(img, spacing_mm, origin_mm)
    elif spacing_mm is not None or origin_mm is not None:
        raise PatientParameterError(
            f"spacing_mm/origin_mm are for a numpy array only; this {type(image).__name__} carries its "
            f"own geometry (spacing {img.GetSpacing()} mm, origin {img.GetOrigin()} mm). Drop them, or "
            "change the image's geometry with SimpleITK (image.SetSpacing / SetOrigin) first."
        )
    what = "activity image" if not isinstance(image, (str, Path)) else f"activity image {str(image)!r}"
    arr = sitk.GetArrayFromImage(img).astype(np.float32, copy=False)
    arr = _check_activity(arr, what, allow_negative)
    decay = float(decay_factor(hours_after_injection, half_life_h))
    if unit == "SUV":
        arr = arr * np.float32(injected_activity_mbq * 1e6 / (weight_kg * 1000.0))
        arr = arr * np.float32(decay)  # SUV is of the decay-corrected concentration
    else:
        arr = arr * np.float32(ACTIVITY_UNITS[unit])
        if decay_corrected:
            arr = arr * np.float32(decay)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    arr.setflags(write=False)
    return ActivityImage(arr, Geometry.of(img), pbpk.get_nuclide(nuclide).name, hours_after_injection,
                         None if injected_activity_mbq is None else float(injected_activity_mbq),
                         None if weight_kg is None else float(weight_kg))


# ----------------------------------------------------------------------------- masks
def _read_label_table(table) -> dict[int, str]:
    if isinstance(table, Mapping):
        items = list(table.items())
    else:
        path = Path(table)
        if not path.is_file():
            raise LabelTableError(f"label table {str(path)!r} does not exist; give a dict or a CSV/JSON file.")
        try:
            if path.suffix.lower() == ".json":
                items = list(json.loads(path.read_text(encoding="utf-8")).items())
            else:
                with open(path, newline="", encoding="utf-8-sig") as fh:
                    rows = list(csv.DictReader(fh))
                items = [(r["label"], r["name"]) for r in rows]
        except (KeyError, ValueError, OSError, AttributeError) as exc:
            raise LabelTableError(f"cannot read label table {str(path)!r} ({exc}); use a JSON object "
                                  "{label: name} or a CSV with columns label,name.") from None
    out: dict[int, str] = {}
    for k, v in items:
        try:
            lab = int(k)
        except (TypeError, ValueError):
            raise LabelTableError(f"label {k!r} in the label table is not an integer.") from None
        if lab <= 0:
            raise LabelTableError(f"label {lab} for {v!r}: labels must be positive integers (0 is background).")
        if lab in out:
            raise LabelTableError(f"label {lab} appears twice in the label table.")
        out[lab] = str(v).strip()
    names = list(out.values())
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LabelTableError(f"structure name(s) {', '.join(dup)} appear twice in the label table.")
    if not out:
        raise LabelTableError("the label table is empty.")
    return out


@dataclass(frozen=True, eq=False)
class Masks:
    """Structures as one label map (int16, (z, y, x)) and a table label -> name."""

    labels: np.ndarray = field(repr=False)
    label_table: Mapping[int, str]
    geometry: Geometry

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.label_table.values())

    def label_of(self, name: str) -> int:
        for k, v in self.label_table.items():
            if v == name:
                return k
        raise UnknownLabelError(f"structure {name!r} is not in the masks; known: {', '.join(self.names)}.")

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of one structure."""
        return self.labels == self.label_of(name)

    def volume_ml(self, name: str) -> float:
        return float(self.mask(name).sum()) * self.geometry.voxel_volume_ml

    def to_sitk(self) -> sitk.Image:
        return self.geometry.to_image(self.labels)


def _validated(labels: np.ndarray, table: dict[int, str], geometry: Geometry, what: str) -> Masks:
    present = set(np.unique(labels).tolist()) - {0}
    extra = sorted(present - set(table))
    if extra:
        raise LabelTableError(
            f"{what} holds label(s) {extra} that are not in the label table ({sorted(table)}); add "
            "them to the table or check that the table belongs to this label map."
        )
    missing = sorted(set(table) - present)
    if missing:
        raise EmptyMaskError(
            f"structure(s) {', '.join(f'{table[m]!r} (label {m})' for m in missing)} have no voxel in "
            f"{what}; remove them from the label table or fix the segmentation."
        )
    labels = np.ascontiguousarray(labels, dtype=np.int16)
    labels.setflags(write=False)
    return Masks(labels, dict(table), geometry)


def load_masks(source, label_table=None, *, reference: Geometry | sitk.Image | None = None,
               resample: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
               _record: list | None = None) -> Masks:
    """Load masks: a label map (path/image/array) with a label table, or {name: mask file}.

    With ``reference`` (the PET grid) the masks must be on that grid; ``resample=True``
    resamples them onto it by nearest neighbour instead (logged). A numpy array (label map or
    mask) carries no geometry: with ``reference`` it is taken voxel for voxel on the PET grid and
    must have the PET's (z, y, x) shape (otherwise :class:`GeometryMismatchError`; it is never
    resampled); without ``reference`` it gets 1 mm voxels at origin 0. Masks on another grid
    must come as an image file or a SimpleITK image carrying their spacing and origin.
    """
    ref = Geometry.of(reference) if isinstance(reference, sitk.Image) else reference

    def on_grid(img: sitk.Image, what: str) -> sitk.Image:
        if ref is None:
            return img
        diffs = ref.differences(Geometry.of(img))
        if diffs and resample:
            _log.info("%s resampled to the PET grid (nearest neighbour): %s", what, "; ".join(diffs))
            if _record is not None:
                _record.append(f"{what} (nearest neighbour)")
            return resample_to(img, ref, is_label=True)
        if diffs:
            check_same_grid(ref, Geometry.of(img), what)
        return img

    if isinstance(source, Mapping) and label_table is None:
        if not source:
            raise LabelTableError("no structure given; pass {name: mask file}.")
        labels = None
        table: dict[int, str] = {}
        geo0 = None
        for i, (name, src) in enumerate(source.items(), start=1):
            what = f"mask {name!r}"
            img = on_grid(_as_sitk(src, what, max_bytes, ref), what)
            geo = Geometry.of(img)
            if geo0 is None:
                geo0 = geo
                labels = np.zeros(geo.shape, dtype=np.int16)
            else:
                check_same_grid(geo0, geo, what)
            m = sitk.GetArrayViewFromImage(img) > 0
            if not m.any():
                raise EmptyMaskError(f"{what} has no voxel > 0; fix the segmentation or drop the structure.")
            overlap = m & (labels > 0)
            if overlap.any():
                other = table[int(labels[overlap][0])]
                raise OverlappingLabelsError(
                    f"{what} overlaps {other!r} in {int(overlap.sum())} voxel(s); each voxel must belong "
                    "to one structure: fix the segmentation (e.g. subtract one mask from the other)."
                )
            labels[m] = i
            table[i] = str(name)
        return _validated(labels, table, geo0, "the masks")
    if label_table is None:
        raise LabelTableError("a label map needs its label table ({label: name} dict, CSV or JSON).")
    table = _read_label_table(label_table)
    img = on_grid(_as_sitk(source, "label map", max_bytes, ref), "label map")
    arr = sitk.GetArrayFromImage(img)
    if np.issubdtype(arr.dtype, np.floating) and (
            not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise LabelTableError("the label map holds non-integer values; give an integer label image.")
    if arr.min() < 0 or arr.max() > np.iinfo(np.int16).max:
        raise LabelTableError("the label map holds labels outside 0-32767; labels are 0 (background) "
                              "or positive integers up to 32767.")
    return _validated(arr.astype(np.int16), table, Geometry.of(img), "the label map")
