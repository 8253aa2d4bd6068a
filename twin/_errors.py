"""Typed errors of the twin API (scenarios, design, report, CLI).

They subclass the ``pbpk`` error types, so ``except pbpk.PBPKError`` catches everything the
framework raises, and ``TwinInputError`` is also a ``ValueError`` (via ``InvalidInputError``).
"""

from __future__ import annotations

from pbpk._errors import InvalidInputError, PBPKError

__all__ = ["InfeasibleError", "TwinError", "TwinInputError"]


class TwinError(PBPKError):
    """Base class of the errors raised by the twin API."""


class TwinInputError(TwinError, InvalidInputError):
    """A patient, schedule, scenario or report argument is missing, out of range or inconsistent."""


class InfeasibleError(TwinError):
    """No activity in the searched range satisfies the organ-at-risk constraints."""
