"""Refit a (reduced) model to reference predictions by weighted least squares."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from pbpk import InvalidInputError

from ._model import MBAMError, Model, _option

__all__ = ["FitError", "FitResult", "refit"]


class FitError(MBAMError, RuntimeError):
    """The least-squares refit did not converge."""


@dataclasses.dataclass(frozen=True, eq=False)
class FitResult:
    """Refit of ``model`` to target predictions.

    ``x``: fitted parameters (log-parameters where ``model.log_params``), ``theta``: their values;
    ``ssr``: sum of squared weighted residuals (chi-square at the model's sigma); ``max_abs_err``:
    largest unweighted prediction error; ``predictions``: the fitted predictions."""

    names: tuple[str, ...]
    x: np.ndarray
    theta: np.ndarray
    ssr: float
    max_abs_err: float
    predictions: np.ndarray
    n_evaluations: int


def refit(model: Model, x_init, target, *, xtol: float = 1e-12, ftol: float = 1e-14,
          max_nfev: int = 2000) -> FitResult:
    """Minimise sum(((predict(x) - target) / sigma)^2) from ``x_init`` (scipy trust-region,
    Jacobian by ``jax.jacfwd``). ``target`` are the full model's predictions (unweighted)."""
    x_init = np.asarray(model.check_x(x_init))
    try:
        target = np.ravel(np.asarray(target, dtype=float))
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"target must be an array of numbers (the full model's predictions), got {target!r}"
        ) from None
    bad = np.flatnonzero(~np.isfinite(target))
    if bad.size:
        raise InvalidInputError(
            f"target has non-finite value(s) at position(s) {bad[:10].tolist()}; give the "
            "reference predictions as finite numbers (drop or replace the missing ones)")
    for nm, val in (("xtol", xtol), ("ftol", ftol)):
        _option(nm, val)
    max_nfev = _option("max_nfev", max_nfev, integer=True, low=1, strict=False)
    sig = np.ravel(np.asarray(model.sigma, dtype=float))

    def res(x):
        return model.residuals(x) - jnp.asarray(target / sig)

    predict = jax.jit(model.predict)
    y_test = np.asarray(predict(jnp.asarray(x_init)))
    if y_test.size != target.size or sig.size not in (1, target.size):
        raise InvalidInputError(
            f"target has {target.size} values, the model predicts {y_test.size}")
    fun = jax.jit(res)
    jac = jax.jit(jax.jacfwd(res))
    r0 = np.asarray(fun(jnp.asarray(x_init)))
    if not np.all(np.isfinite(r0)):
        raise FitError("the model's predictions are not finite at the initial point")
    sol = scipy.optimize.least_squares(
        lambda x: np.asarray(fun(jnp.asarray(x))),
        x_init,
        jac=lambda x: np.asarray(jac(jnp.asarray(x))),
        method="trf", xtol=xtol, ftol=ftol, gtol=1e-15, max_nfev=max_nfev,
    )
    if sol.status <= 0 or not np.all(np.isfinite(sol.x)):
        raise FitError(f"refit failed: {sol.message}")
    pred = np.ravel(np.asarray(predict(jnp.asarray(sol.x))))
    theta = np.where(np.array(model.log_params), np.exp(sol.x), sol.x)
    return FitResult(model.names, sol.x, theta, float(np.sum(sol.fun**2)),
                     float(np.max(np.abs(pred - target))), pred, int(sol.nfev))
