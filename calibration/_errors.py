"""Typed errors and warnings of the ``calibration`` package.

Errors subclass the ``pbpk`` error types (and through them ``ValueError``/``RuntimeError``),
so one ``except pbpk.PBPKError`` catches everything the framework raises.
"""

from __future__ import annotations

from pbpk._errors import InvalidInputError, PBPKError, UnknownNameError

__all__ = [
    "CalibrationError",
    "CalibrationWarning",
    "ChainProcessError",
    "ConvergenceWarning",
    "ObservationError",
    "PriorError",
    "SolverFailureWarning",
    "UnknownParameterError",
]


class CalibrationError(PBPKError):
    """Base class of every error raised by ``calibration``."""


class ChainProcessError(CalibrationError):
    """NUTS chains run in worker processes (``chain_method="processes"``) failed: a worker
    crashed or raised (the message carries its traceback), or the problem could not be sent to it."""


class ObservationError(CalibrationError, InvalidInputError):
    """An observation (region, time, value, unit, noise) is missing, out of range or inconsistent."""


class PriorError(CalibrationError, InvalidInputError):
    """A prior distribution is ill-defined (non-positive median or CV, unknown parameter ...)."""


class UnknownParameterError(CalibrationError, UnknownNameError):
    """A prior names a parameter the model does not have; the message lists the known names."""


class CalibrationWarning(UserWarning):
    """Base class of the warnings issued by ``calibration``."""


class ConvergenceWarning(CalibrationWarning):
    """Diagnostics failed: R-hat too high, ESS too low, divergences, optimiser not converged."""


class SolverFailureWarning(CalibrationWarning):
    """Some simulations failed (solver status != 0); they were given zero posterior density."""
