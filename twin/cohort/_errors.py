"""Typed errors of ``twin.cohort`` and ``twin.trial``.

They subclass the ``pbpk`` error types, so ``except pbpk.PBPKError`` (or the built-in
``ValueError`` / ``RuntimeError``) still catches them.
"""

from __future__ import annotations

from pbpk._errors import InvalidInputError, PBPKError

__all__ = ["CohortConfigError", "CohortError", "EngineError", "ResumeError"]


class CohortError(PBPKError):
    """Base class of the errors raised only by ``twin.cohort`` and ``twin.trial``."""


class CohortConfigError(CohortError, InvalidInputError):
    """A population, arm, trial or run setting is missing, unknown or out of range."""


class ResumeError(CohortError, InvalidInputError):
    """An output folder cannot take the run: it holds a different run, a run where none was
    expected, or files that are not a run (or there is no run where one was expected)."""


class EngineError(CohortError, RuntimeError):
    """The execution engine (process pool or Dask cluster) could not run the chunks."""
