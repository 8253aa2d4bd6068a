"""The model protocol: a differentiable map from log-parameters to weighted predictions."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pbpk import InvalidInputError, PBPKError
from pbpk._numbers import real_or_none

__all__ = ["GeodesicError", "MBAMError", "Model", "relative_sigma"]


class MBAMError(PBPKError):
    """Base class of errors raised by :mod:`mbam`."""


class GeodesicError(MBAMError, RuntimeError):
    """The geodesic could not be integrated (non-finite metric or acceleration at the start)."""


_real = real_or_none


def _integer(value) -> int | None:
    """``value`` as an int if it is an integer (Python or NumPy; not a bool), else ``None``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _option(name: str, value, *, integer: bool = False, low: float = 0.0, strict: bool = True,
            high: float | None = None, finite: bool = True):
    """Check one numeric option where it enters and return it (an ``int`` with ``integer``, else
    a ``float``): a real number (not a bool or a string), finite unless ``finite=False`` (then
    +infinity passes, NaN never), ``> low`` (``>= low`` with ``strict=False``) and, with
    ``high``, ``<= high``. Raises :class:`pbpk.InvalidInputError` that says what is accepted."""
    if integer:
        what = f"an integer {'>' if strict else '>='} {low:g}"
    else:
        what = (f"a {'finite ' if finite else ''}number {'>' if strict else '>='} {low:g}")
    if high is not None:
        what += f" and <= {high:g}"
    v = _integer(value) if integer else _real(value)
    ok = v is not None and not math.isnan(v) and (math.isfinite(v) or (not finite and v > 0))
    ok = ok and (v > low if strict else v >= low) and (high is None or v <= high)
    if not ok:
        raise InvalidInputError(f"{name} = {value!r} must be {what}.")
    return v


def _sequence(value, what: str, example: str) -> tuple:
    """``value`` as a tuple if it is a sequence (list, tuple, array), not one string or a mapping;
    a string would otherwise be split into its characters."""
    if isinstance(value, (str, bytes)):
        raise InvalidInputError(
            f"{what} must be a sequence such as {example}, not the single string {value!r}."
        )
    if isinstance(value, Mapping) or not hasattr(value, "__iter__"):
        raise InvalidInputError(f"{what} must be a sequence such as {example}, got {value!r}.")
    return tuple(value)


def _names(value, what: str) -> tuple[str, ...]:
    """Parameter names: a sequence of non-empty strings."""
    names = _sequence(value, what, "['k1', 'k2']")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise InvalidInputError(f"{what} must be non-empty strings, got {', '.join(map(repr, bad))}.")
    return tuple(str(n) for n in names)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A model as MBAM sees it.

    ``predict(x)`` maps the parameter vector ``x`` (log-parameters, ``x = log(theta)``, for
    positive parameters; a coordinate may be linear where the parameter can be negative) to the
    predictions on a fixed observation design, shape ``(M,)``. ``sigma`` (scalar or ``(M,)``) is
    the fixed noise scale; ``residuals(x) = predict(x) / sigma`` are the weighted predictions
    whose Jacobian defines the Fisher metric. ``predict`` must be differentiable by forward-mode
    JAX (for ODE models use ``diffrax.ForwardMode()`` or ``DirectAdjoint()`` as the adjoint).
    ``log_params[i]`` says whether coordinate ``i`` is a log-parameter (used for reporting
    limits as theta -> 0 / infinity).
    """

    predict: Callable[[jax.Array], jax.Array]
    names: tuple[str, ...]
    sigma: float | np.ndarray = 1.0
    log_params: tuple[bool, ...] | None = None

    def __post_init__(self):
        if not callable(self.predict):
            raise InvalidInputError("Model.predict must be a callable x -> predictions")
        names = _names(self.names, "Model parameter names")
        if len(names) == 0:
            raise InvalidInputError("Model needs at least one parameter name")
        if len(set(names)) != len(names):
            raise InvalidInputError(f"Model parameter names must be unique, got {names}")
        object.__setattr__(self, "names", names)
        sigma = np.asarray(self.sigma)
        if sigma.dtype == bool or not (np.issubdtype(sigma.dtype, np.integer)
                                       or np.issubdtype(sigma.dtype, np.floating)):
            raise InvalidInputError(
                f"Model.sigma must be a number or an array of numbers (noise scale of each "
                f"prediction), got {self.sigma!r}")
        sigma = sigma.astype(float)
        if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
            raise InvalidInputError("Model.sigma must be finite and > 0")
        object.__setattr__(self, "sigma", sigma if sigma.ndim else float(sigma))
        lp = self.log_params
        if lp is None:
            lp = (True,) * len(names)
        else:
            lp = _sequence(lp, "Model.log_params", "[True, False] (one flag per parameter)")
            # items of a jax or numpy array are 0-d arrays: take their value first
            lp = tuple(b.item() if getattr(b, "shape", None) == () and hasattr(b, "item") else b for b in lp)
            bad = [b for b in lp if not (isinstance(b, (bool, np.bool_)) or _integer(b) in (0, 1))]
            if bad:
                raise InvalidInputError(
                    f"Model.log_params must be True/False flags (one per parameter), got "
                    f"{', '.join(map(repr, bad))}")
            lp = tuple(bool(b) for b in lp)
        if len(lp) != len(names):
            raise InvalidInputError("Model.log_params must have one entry per parameter name")
        object.__setattr__(self, "log_params", lp)

    @property
    def n_params(self) -> int:
        return len(self.names)

    def residuals(self, x) -> jax.Array:
        """Weighted predictions r(x) = predict(x) / sigma, shape (M,).

        Raises :class:`pbpk.InvalidInputError` when an array ``sigma`` does not have one value
        per prediction (the shapes are static, so this is checked when the model is traced).
        """
        pred = jnp.asarray(self.predict(x))
        sigma = jnp.asarray(self.sigma)
        if sigma.size != 1 and sigma.size != pred.size:
            raise InvalidInputError(
                f"Model.sigma has shape {tuple(np.shape(self.sigma))} but predict(x) returns shape "
                f"{tuple(pred.shape)}; give one sigma per prediction ({pred.size} values) or a "
                "scalar.")
        return jnp.ravel(pred) / jnp.ravel(sigma)

    def check_x(self, x) -> jax.Array:
        """Validate a parameter vector and return it as a float64 array."""
        x = jnp.asarray(x, dtype=jnp.float64)
        if x.shape != (self.n_params,):
            raise InvalidInputError(
                f"parameter vector has shape {x.shape}, expected ({self.n_params},) for {self.names}"
            )
        if not bool(jnp.all(jnp.isfinite(x))):
            raise InvalidInputError("parameter vector must be finite (log-parameters: log(theta))")
        return x

    @classmethod
    def from_theta(
        cls,
        predict_theta: Callable[[jax.Array], jax.Array],
        names: Sequence[str],
        sigma: float | np.ndarray = 1.0,
    ) -> Model:
        """Wrap a function of positive parameters theta as a function of x = log(theta)."""
        return cls(lambda x: predict_theta(jnp.exp(x)), _names(names, "Model parameter names"), sigma)


def relative_sigma(y_ref, rel: float = 0.1, floor: float = 0.1) -> np.ndarray:
    """Noise scale sigma_m = sqrt((rel*y_m)^2 + floor^2) from reference predictions (PRL convention)."""
    y = np.asarray(y_ref, dtype=float)
    if rel < 0 or floor < 0 or (rel == 0 and floor == 0):
        raise InvalidInputError("relative_sigma needs rel >= 0, floor >= 0, not both 0")
    return np.sqrt((rel * y) ** 2 + floor**2)
