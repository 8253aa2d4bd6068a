"""Typed errors of ``twin.lesions``: each says what is wrong and how to fix it.

They subclass the ``twin.patient`` (and so the ``pbpk``) error types. Bad images and masks
raise the ``twin.patient`` errors directly (``MissingInjectedActivityError`` when SUV cannot be
computed, ``GeometryMismatchError`` for masks on another grid, ``UnknownLabelError`` for a
structure that is not in the masks, ``OverlappingLabelsError`` when tumour masks would cover
an organ).
"""

from __future__ import annotations

from pbpk._errors import InvalidInputError
from twin.patient._errors import PatientDataError

__all__ = ["LesionError", "LesionParameterError", "NoLesionError"]


class LesionError(PatientDataError):
    """Base class of the errors raised only by ``twin.lesions``."""


class LesionParameterError(LesionError, InvalidInputError):
    """A segmentation or compartment parameter is of the wrong kind or out of range."""


class NoLesionError(LesionError, InvalidInputError):
    """Tumour compartments were asked for, but the segmentation found no lesion."""
