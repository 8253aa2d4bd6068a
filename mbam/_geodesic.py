"""Geodesics on the model manifold, in parameter space, with event-based stopping."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pbpk import InvalidInputError

from ._model import GeodesicError, Model, _option

__all__ = [
    "GeodesicResult",
    "geodesic_acceleration",
    "initial_velocity",
    "integrate_geodesic",
    "second_directional_derivative",
]

STOP_COLLAPSE = "eigenvalue_collapse"
STOP_FOLD = "fold"
STOP_RUNAWAY = "parameter_runaway"
STOP_LENGTH = "length_limit"
STOP_STEPS = "max_steps"
STOP_FAILURE = "numerical_failure"


def second_directional_derivative(model: Model, x, v) -> jax.Array:
    """A_vv(x) = d^2/ds^2 r(x + s v) at s = 0, by forward-over-forward differentiation."""
    x = model.check_x(x)
    v = jnp.asarray(v, dtype=jnp.float64)
    return _avv(model.residuals, x, v)


def _avv(r, x, v):
    def jv(y):
        return jax.jvp(r, (y,), (v,))[1]

    return jax.jvp(jv, (x,), (v,))[1]


def _accel_parts(r, x, v, normalise):
    """Acceleration -J^+ A_vv by the SVD of J, the singular values and |J v|."""
    J = jax.jacfwd(r)(x)
    avv = _avv(r, x, v)
    u, s, vt = jnp.linalg.svd(J, full_matrices=False)
    smax = jnp.max(s)
    cutoff = smax * 1e-15
    inv = jnp.where(s > cutoff, 1.0 / jnp.where(s > cutoff, s, 1.0), 0.0)
    a = -vt.T @ ((u.T @ avv) * inv)
    if normalise:
        a = a - (a @ v) * v / (v @ v)
    n = x.shape[0]
    s_full = jnp.zeros(n).at[: s.shape[0]].set(s)
    return a, s_full, jnp.linalg.norm(J @ v), vt, J


def _jacobian(model: Model, x) -> np.ndarray:
    """J at x, from the compiled geodesic right-hand side (one compilation per model serves the
    spectrum and the geodesic)."""
    e0 = jnp.zeros_like(x).at[0].set(1.0)
    return np.asarray(_compiled(model, True)(jnp.concatenate([x, e0]))[4])


@functools.lru_cache(maxsize=64)
def _compiled(model: Model, normalise: bool):
    """Jitted (x, v) -> ((v, a), singular values of J, |J v|, sloppiest vector, J); cached per
    Model object (Models hash by identity)."""
    r = model.residuals

    @jax.jit
    def rhs(y):
        n = y.shape[0] // 2
        x, v = y[:n], y[n:]
        a, s, speed, vt, J = _accel_parts(r, x, v, normalise)
        return jnp.concatenate([v, a]), s, speed, vt[-1], J

    return rhs


def geodesic_acceleration(model: Model, x, v, normalise: bool = True) -> np.ndarray:
    """Geodesic acceleration a = -(J^T J)^{-1} J^T A_vv, evaluated as a least-squares solve.

    With ``normalise`` the component along v is removed, so the parameter-space speed |v| is
    constant (same path, re-parameterised).
    """
    x = model.check_x(x)
    v = jnp.asarray(v, dtype=jnp.float64)
    dy, _, _, _, _ = _compiled(model, bool(normalise))(jnp.concatenate([x, v]))
    return np.asarray(dy[x.shape[0]:])


def initial_velocity(model: Model, x, i: int = 0, forward: bool = True) -> np.ndarray:
    """Unit initial velocity along the i-th sloppiest eigendirection of the Fisher metric.

    The sign is chosen so that v . a >= 0 (the direction most aligned with the un-normalised
    geodesic acceleration, the supplement's rule); ``forward=False`` returns the opposite.
    """
    x = model.check_x(x)
    n = x.shape[0]
    i = _option("i (which sloppiest direction, 0 = the sloppiest)", i, integer=True, strict=False,
                high=n - 1)
    J = _jacobian(model, x)
    _, _, vt = np.linalg.svd(J, full_matrices=True)
    v = vt[n - 1 - i]
    a = geodesic_acceleration(model, x, v, normalise=False)
    if not np.all(np.isfinite(a)):
        raise GeodesicError("the geodesic acceleration is not finite at the starting point")
    if v @ a < 0:
        v = -v
    return v if forward else -v


@dataclasses.dataclass(frozen=True, eq=False)
class GeodesicResult:
    """A geodesic path in parameter space.

    ``ts``: parameter-space arclength (the integration variable; |v| = 1 when normalised);
    ``taus``: data-space arclength; ``xs``, ``vs``: positions/velocities (K, N);
    ``eigenvalues``: Fisher eigenvalues (descending) at each point (K, N);
    ``sloppiest``: unit eigenvector of the smallest eigenvalue at each point (K, N), any sign;
    ``log_params``: which coordinates are log-parameters;
    ``stop_reason``: one of ``eigenvalue_collapse``, ``fold``, ``parameter_runaway``,
    ``length_limit``, ``max_steps``, ``numerical_failure``.
    """

    names: tuple[str, ...]
    ts: np.ndarray
    taus: np.ndarray
    xs: np.ndarray
    vs: np.ndarray
    eigenvalues: np.ndarray
    sloppiest: np.ndarray
    stop_reason: str
    log_params: tuple[bool, ...]

    @property
    def x0(self) -> np.ndarray:
        return self.xs[0]

    @property
    def x_end(self) -> np.ndarray:
        return self.xs[-1]

    @property
    def v_end(self) -> np.ndarray:
        return self.vs[-1]

    @property
    def ratios(self) -> np.ndarray:
        """lambda_min / lambda_max along the path."""
        return self.eigenvalues[:, -1] / self.eigenvalues[:, 0]


# Dormand-Prince 5(4) tableau
_C = np.array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1])
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_B5 = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0])
_B4 = np.array([5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])


def integrate_geodesic(
    model: Model,
    x0,
    v0,
    *,
    normalise: bool = True,
    rho: float = 1e-6,
    collapse_drop: float = 1e-2,
    fold_drop: float = 1e-2,
    fold_substeps: int = 40,
    max_dx: float = 10.0,
    max_length: float = 40.0,
    max_steps: int = 5000,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_step: float = 0.5,
) -> GeodesicResult:
    """Integrate the geodesic from (x0, v0) with an adaptive Dormand-Prince 5(4) scheme.

    Stops (events checked after each accepted step) when
    * ``lambda_min / lambda_max < rho`` and below ``collapse_drop`` times its starting value
      (relative eigenvalue collapse; the second condition keeps an ill-conditioned but
      constant metric, as in a linear model, from counting): ``eigenvalue_collapse``;
    * the ratio passed through a sampled local minimum that, refined with ``fold_substeps``
      fixed steps over the two adjacent steps, lies below ``fold_drop`` times its starting value
      (an interior fold line was crossed): ``fold`` -- the path ends at the refined minimum;
    * ``max |x - x0| > max_dx``: ``parameter_runaway``;
    * arclength ``> max_length``: ``length_limit``; ``max_steps`` accepted steps: ``max_steps``;
    * non-finite acceleration / step-size underflow: ``numerical_failure`` (last good point kept).
    """
    x0 = model.check_x(x0)
    v0 = np.asarray(v0, dtype=float)
    n = x0.shape[0]
    if v0.shape != (n,) or not np.all(np.isfinite(v0)) or np.linalg.norm(v0) == 0:
        raise InvalidInputError("v0 must be a finite, non-zero vector with one entry per parameter")
    for nm, val in (("rho", rho), ("rtol", rtol), ("atol", atol), ("max_step", max_step),
                    ("collapse_drop", collapse_drop), ("fold_drop", fold_drop)):
        _option(nm, val)
    for nm, val in (("max_dx", max_dx), ("max_length", max_length)):  # inf: no such limit
        _option(nm, val, finite=False)
    fold_substeps = _option("fold_substeps", fold_substeps, integer=True, low=1, strict=False)
    max_steps = _option("max_steps", max_steps, integer=True, low=1, strict=False)
    v0 = v0 / np.linalg.norm(v0)
    rhs_j = _compiled(model, bool(normalise))

    def rhs(y):
        dy, s, speed, u, _ = rhs_j(jnp.asarray(y[:-1]))
        return (np.concatenate([np.asarray(dy), [float(speed)]]), np.asarray(s), np.asarray(u))

    def step(y, f, h):
        """One Dormand-Prince step: y_new, f_new, singular values, sloppiest vector, error."""
        stages = [f]
        for i in range(1, 7):
            yi = y + h * sum(a * st for a, st in zip(_A[i], stages))
            fi, si, ui = rhs(yi)
            stages.append(fi)
        y_new = y + h * sum(b * st for b, st in zip(_B5, stages))
        err_vec = h * sum((b5 - b4) * st for b5, b4, st in zip(_B5, _B4, stages))
        ok = all(np.all(np.isfinite(a)) for a in (y_new, fi, si, ui))
        return y_new, fi, si, ui, err_vec, ok

    def ratio_of(s):
        return s[-1] ** 2 / s[0] ** 2 if s[0] > 0 else 0.0

    def refine(k):
        """Fine fixed steps over [t_{k-1}, t_{k+1}] around a sampled local minimum of the
        eigenvalue ratio; returns (ratio, t, y, eigenvalues, u) at the finest minimum."""
        y, t = ys[k - 1], ts[k - 1]
        f, _, _ = rhs(y)
        hh = (ts[k + 1] - t) / fold_substeps
        found = None
        for _ in range(fold_substeps):
            y, f, s, u, _, ok = step(y, f, hh)
            if not ok:
                break
            t += hh
            r = ratio_of(s)
            if found is None or r < found[0]:
                found = (r, t, y.copy(), s**2, u)
        return found

    y = np.concatenate([np.asarray(x0), v0, [0.0]])
    f, s, u = rhs(y)
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(s))):
        raise GeodesicError("the geodesic right-hand side is not finite at the starting point")
    t = 0.0
    ts, ys, eigs, us, rs = [t], [y.copy()], [s**2], [u], [ratio_of(s)]
    ratio0 = rs[0]
    h = min(max_step, 0.01)
    reason = STOP_STEPS
    k = 0
    while k < max_steps:
        y_new, f_new, s_new, u_new, err_vec, ok = step(y, f, h)
        if not ok:
            h *= 0.25
            if h < 1e-10:
                reason = STOP_FAILURE
                break
            continue
        scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
        err = np.sqrt(np.mean((err_vec / scale) ** 2))
        if err > 1.0:
            h *= max(0.2, 0.9 * err ** -0.2)
            if h < 1e-10:
                reason = STOP_FAILURE
                break
            continue
        # accepted
        t += h
        y, f, s = y_new, f_new, s_new
        k += 1
        ratio = ratio_of(s)
        ts.append(t)
        ys.append(y.copy())
        eigs.append(s**2)
        us.append(u_new)
        rs.append(ratio)
        h = min(max_step, h * min(5.0, 0.9 * err ** -0.2 if err > 0 else 5.0))
        if ratio < rho and ratio < collapse_drop * ratio0:
            reason = STOP_COLLAPSE
            break
        m = len(rs) - 2
        if m >= 1 and rs[m] < rs[m - 1] and rs[m] < ratio:
            # sampled local minimum of lambda_min/lambda_max: an interior fold line?
            found = refine(m)
            if found is not None and found[0] < fold_drop * ratio0:
                reason = STOP_FOLD
                del ts[m:], ys[m:], eigs[m:], us[m:], rs[m:]
                ts.append(found[1])
                ys.append(found[2])
                eigs.append(found[3])
                us.append(found[4])
                rs.append(found[0])
                break
        if np.max(np.abs(y[:n] - np.asarray(x0))) > max_dx:
            reason = STOP_RUNAWAY
            break
        if t >= max_length:
            reason = STOP_LENGTH
            break
    Y = np.array(ys)
    return GeodesicResult(
        names=model.names,
        ts=np.array(ts),
        taus=Y[:, -1],
        xs=Y[:, :n],
        vs=Y[:, n:2 * n],
        eigenvalues=np.array(eigs),
        sloppiest=np.array(us),
        stop_reason=reason,
        log_params=model.log_params,
    )
