"""A simple MBAM reduction loop for generic models: apply the identified limit numerically as a
log-linear reparameterisation, refit to the full model's predictions, repeat within a chi-square
tolerance."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pbpk import InvalidInputError

from ._limits import KIND_FOLD, KIND_LIMIT, BoundarySearch, LimitReport, find_boundaries
from ._model import MBAMError, Model, _option
from ._refit import FitError, FitResult, refit

__all__ = ["LimitReparameterisation", "ReductionResult", "ReductionStep", "apply_limit", "reduce"]


@dataclasses.dataclass(frozen=True, eq=False)
class LimitReparameterisation:
    """x_old = solve([P; d^T], [phi; c]): the new coordinates are phi = P x_old (finite old
    parameters, unchanged, log or linear as before; retained combinations log prod theta^w;
    merged parameters the mean of their coordinates: the log of their geometric mean for two
    log-parameters, their mean for two linear ones); the eliminated direction d (unit) is held at
    c (the limit: pushed ``push`` log units past the geodesic's end, or 0 for a fold, where
    x_i = x_j)."""

    old_names: tuple[str, ...]
    new_names: tuple[str, ...]
    P: np.ndarray
    d: np.ndarray
    c: float
    description: str

    def new_from_old(self, x_old) -> np.ndarray:
        return self.P @ np.asarray(x_old, dtype=float)

    def old_from_new(self, phi):
        """Differentiable map phi -> x_old (jax arrays in, jax array out)."""
        A = jnp.asarray(np.vstack([self.P, self.d[None, :]]))
        rhs = jnp.concatenate([jnp.asarray(phi, dtype=jnp.float64), jnp.array([self.c])])
        return jnp.linalg.solve(A, rhs)


def apply_limit(model: Model, limit: LimitReport, x_end, *, push: float = 10.0
                ) -> tuple[Model, LimitReparameterisation]:
    """Build the reduced model for an identified limit (numerical limit: the eliminated
    direction is fixed far out, ``push`` log units (finite, > 0) past ``x_end``, so the model's
    own code evaluates the limit; for a fold the two parameters are set equal).

    The reduced model keeps each surviving coordinate's ``log_params`` flag; a retained
    combination is a log-parameter, a merged pair is what its two coordinates were. Only
    log-parameters can run to a limit or form a combination, and a fold merges two
    log-parameters or two linear coordinates (:class:`pbpk.InvalidInputError` otherwise)."""
    push = _option("push (log units past the geodesic's end)", push)
    n = model.n_params
    x_end = np.asarray(x_end, dtype=float)
    if x_end.shape != (n,) or not np.all(np.isfinite(x_end)):
        raise InvalidInputError(
            f"x_end must be {n} finite coordinates (the geodesic's end, e.g. "
            f"boundary.geodesic.x_end), got {x_end.tolist()}")
    names, lp = model.names, model.log_params
    rows, new_names, new_lp = [], [], []
    if limit.kind == KIND_FOLD:
        (fold,) = limit.folds[:1]
        i, j = fold.indices
        if lp[i] != lp[j]:
            log_name, lin_name = (names[i], names[j]) if lp[i] else (names[j], names[i])
            raise InvalidInputError(
                f"the fold merges the log-parameter {log_name} with the linear coordinate "
                f"{lin_name}: setting log({log_name}) = {lin_name} is no merge of two parameters, "
                "so apply_limit cannot express it; give the reparameterisation by hand or make "
                "both coordinates log (or both linear) in Model.log_params")
        for k in range(n):
            if k not in (i, j):
                rows.append(np.eye(n)[k])
                new_names.append(names[k])
                new_lp.append(lp[k])
        w = np.zeros(n)
        w[[i, j]] = 0.5
        rows.append(w)
        new_names.append(f"{names[i]}={names[j]}")
        new_lp.append(lp[i])
        d = np.zeros(n)
        d[i], d[j] = 1 / np.sqrt(2), -1 / np.sqrt(2)
        c = 0.0
    elif limit.kind == KIND_LIMIT:
        S = {p.index for p in limit.limits}
        used = S | {k for c in limit.combinations for k in c.indices}
        linear = [names[k] for k in sorted(used) if not lp[k]]
        if linear:
            what = "is a linear coordinate" if len(linear) == 1 else "are linear coordinates"
            raise InvalidInputError(
                f"apply_limit handles limits and combinations of log-parameters only; "
                f"{', '.join(linear)} {what} (Model.log_params False): give the "
                "reparameterisation by hand")
        for k in range(n):
            if k not in S:
                rows.append(np.eye(n)[k])
                new_names.append(names[k])
                new_lp.append(lp[k])
        for comb in limit.combinations:
            w = np.zeros(n)
            w[list(comb.indices)] = comb.exponents
            rows.append(w)
            new_names.append(comb.expression())
            new_lp.append(True)  # log prod theta^w
        P = np.array(rows).reshape(len(rows), n)
        # eliminated direction: the null space of P, signed along the final velocity
        _, _, vt = np.linalg.svd(P if len(rows) else np.zeros((1, n)), full_matrices=True)
        d = vt[-1]
        if d @ limit.velocity < 0:
            d = -d
        if len(rows) != n - 1:
            raise MBAMError(f"limit leaves {len(rows)} parameters for {n} (expected {n - 1}); "
                            "give the reparameterisation by hand")
        c = float(d @ x_end) + push
    else:
        raise InvalidInputError("no boundary to apply (limit.kind == 'none')")
    P = np.array(rows).reshape(len(rows), n)
    rep = LimitReparameterisation(names, tuple(new_names), P, d, c, limit.description)

    def predict(phi):
        return model.predict(rep.old_from_new(phi))

    reduced = Model(predict, tuple(new_names), model.sigma, tuple(new_lp))
    return reduced, rep


@dataclasses.dataclass(frozen=True, eq=False)
class ReductionStep:
    """One accepted (or, last, rejected) reduction: the boundary search, the chosen direction,
    the reparameterisation (map old -> new parameters), the refit and its chi-square."""

    iteration: int
    direction: str
    limit: LimitReport
    reparameterisation: LimitReparameterisation
    fit: FitResult
    n_params: int
    chi2: float
    accepted: bool


@dataclasses.dataclass(frozen=True, eq=False)
class ReductionResult:
    """Final reduced model, its fitted coordinates (log-parameters where
    ``model.log_params``) and the history of steps."""

    model: Model
    x: np.ndarray
    history: tuple[ReductionStep, ...]
    stop_reason: str

    @property
    def n_params(self) -> int:
        return self.model.n_params

    def full_parameters(self, phi=None) -> np.ndarray:
        """Map reduced coordinates (default: the fitted ones) to the original model's."""
        x = jnp.asarray(self.x if phi is None else phi, dtype=jnp.float64)
        for step in reversed([s for s in self.history if s.accepted]):
            x = step.reparameterisation.old_from_new(x)
        return np.asarray(x)


def reduce(model: Model, x0, *, chi2_tol: float = 1.0, max_iter: int = 10, min_params: int = 1,
           push: float = 10.0, **geodesic_kwargs) -> ReductionResult:
    """Iterate: both geodesics from the sloppiest direction, apply each limit found, refit the
    reduced model to the *full* model's predictions at ``x0`` (weighted least squares at the
    model's sigma) and keep the direction with the smaller chi-square; stop when that exceeds
    ``chi2_tol``, no boundary is found, or ``min_params`` is reached.

    ``max_iter``: an integer >= 0; ``min_params``: an integer >= 1; ``push``: log units (a
    finite number > 0) each limit is taken past the geodesic's end (:func:`apply_limit`)."""
    _option("chi2_tol", chi2_tol, finite=False)
    max_iter = _option("max_iter", max_iter, integer=True, strict=False)
    min_params = _option("min_params", min_params, integer=True, low=1, strict=False)
    push = _option("push (log units past the geodesic's end)", push)
    x0 = np.asarray(model.check_x(x0))
    target = np.asarray(jax.jit(model.predict)(jnp.asarray(x0)))
    if not np.all(np.isfinite(target)):
        raise InvalidInputError("the model's predictions at x0 are not finite; start where the "
                                "model can be evaluated")
    current, x = model, x0
    history: list[ReductionStep] = []
    stop = "max_iter"
    for it in range(max_iter):
        if current.n_params <= min_params:
            stop = "min_params"
            break
        bs: BoundarySearch = find_boundaries(current, x, **geodesic_kwargs)
        candidates = []
        for b in bs:
            if b.limit.kind not in (KIND_FOLD, KIND_LIMIT):
                continue
            try:
                reduced, rep = apply_limit(current, b.limit, b.geodesic.x_end, push=push)
                phi0 = rep.new_from_old(b.geodesic.x_end)
                fit = refit(reduced, phi0, target)
            except (MBAMError, FitError, InvalidInputError):
                continue
            candidates.append((fit.ssr, b, reduced, rep, fit))
        if not candidates:
            stop = "no_boundary"
            break
        ssr, b, reduced, rep, fit = min(candidates, key=lambda c: c[0])
        ok = ssr <= chi2_tol
        history.append(ReductionStep(it, b.direction, b.limit, rep, fit, reduced.n_params,
                                     ssr, ok))
        if not ok:
            stop = "chi2_tolerance"
            break
        current, x = reduced, fit.x
    return ReductionResult(current, np.asarray(x), tuple(history), stop)
