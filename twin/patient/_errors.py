"""Typed errors of ``twin.patient``: each says what is wrong and how to fix it.

They subclass the ``pbpk`` error types, so ``except pbpk.InvalidInputError`` (or the
built-in ``ValueError`` / ``KeyError``) still catches them.
"""

from __future__ import annotations

from pbpk._errors import InvalidInputError, PBPKError, UnitError, UnknownNameError

__all__ = [
    "CorruptFileError", "EmptyMaskError", "GeometryMismatchError", "ImageDimensionError",
    "ImageTooLargeError", "LabRangeError", "LabUnitError", "LabelTableError",
    "MissingInjectedActivityError", "NegativeActivityError", "NonFiniteVoxelError",
    "OverlappingLabelsError", "PatientDataError", "PatientParameterError", "PhantomParameterError",
    "ScanTimeError",
    "UnknownLabelError", "UnknownSexError",
]


class PatientDataError(PBPKError):
    """Base class of the errors raised only by ``twin.patient``."""


class CorruptFileError(PatientDataError, InvalidInputError):
    """A file is missing, unreadable or not an image SimpleITK can read."""


class ImageTooLargeError(PatientDataError, InvalidInputError):
    """An image would need more memory than allowed; refused from its header, before loading."""


class ImageDimensionError(PatientDataError, InvalidInputError):
    """An image is not a 3-D scalar volume (e.g. a single 2-D slice, a 4-D series, or an RGB /
    vector / complex image with more than one component per voxel)."""


class NonFiniteVoxelError(PatientDataError, InvalidInputError):
    """An image holds NaN or infinite voxels."""


class NegativeActivityError(PatientDataError, InvalidInputError):
    """An activity image holds negative concentrations."""


class GeometryMismatchError(PatientDataError, InvalidInputError):
    """Two images that must share one grid (size, spacing, origin, direction) do not."""


class EmptyMaskError(PatientDataError, InvalidInputError):
    """A structure's mask has no voxel."""


class OverlappingLabelsError(PatientDataError, InvalidInputError):
    """Per-structure masks overlap: a voxel belongs to two structures."""


class LabelTableError(PatientDataError, InvalidInputError):
    """The label table does not match the label map (missing, extra or duplicate labels)."""


class UnknownLabelError(PatientDataError, UnknownNameError):
    """A structure name is not in the masks (the message lists the known names)."""


class MissingInjectedActivityError(PatientDataError, InvalidInputError):
    """SUV (or %IA) was asked for without the injected activity or body weight it needs."""


class ScanTimeError(PatientDataError, InvalidInputError):
    """A scan time is before the injection, or the times are inconsistent."""


class LabUnitError(PatientDataError, UnitError):
    """A lab value was given without a unit, or with a unit that is not accepted."""


class LabRangeError(PatientDataError, InvalidInputError):
    """A lab value or demographic is missing, not a number, outside its physiological range, or
    given twice with different values."""


class UnknownSexError(PatientDataError, InvalidInputError):
    """The sex code is not one of the accepted codes."""


class PatientParameterError(PatientDataError, InvalidInputError):
    """An argument of a ``twin.patient`` reader or uptake function is of the wrong kind or out of
    range (e.g. a negative or NaN ``fwhm_mm`` or structure volume, a bad ``spacing_mm``)."""


class PhantomParameterError(PatientDataError, InvalidInputError):
    """An argument of :func:`twin.patient.make_phantom` is of the wrong kind or out of range."""
