"""Conventional TIA baselines: exponential TAC fits and single-time-point methods.

These reproduce today's clinical workflow so that the twin's predictions can be compared with
it.

Multi-time-point fits
---------------------
Models (``t`` in h, every rate at least the physical decay constant ``lambda_p``: a tracer
cannot leave an organ more slowly than it decays):

=================  ==================================================================  ======
name               activity ``A(t)``                                                   params
=================  ==================================================================  ======
``mono``           ``a1 exp(-k1 t)``                                                   2
``mono_uptake``    ``a1 (exp(-k1 t) - exp(-ku t))``, ``ku > k1``                        3
``bi``             ``a1 exp(-k1 t) + a2 exp(-k2 t)``, ``k2 > k1``                       4
``bi_uptake``      ``a1 exp(-k1 t) + a2 exp(-k2 t) - (a1 + a2) exp(-ku t)``             5
``tri``            ``a1 exp(-k1 t) + a2 exp(-k2 t) + a3 exp(-k3 t)``                    6
=================  ==================================================================  ======

Amplitudes are positive; rates are ``k1 = lambda_p + exp(theta_1)`` and each further rate adds
a positive increment, so the ordering and the physical-decay floor hold by construction.
Fits minimise weighted least squares (relative residuals by default, i.e. a constant
coefficient of variation) with scipy's Levenberg-Marquardt from several starting points.
Models are ranked by the Akaike information criterion, ``AIC = n ln(RSS / n) + 2 p``, by
default with its small-sample correction ``AICc = AIC + 2 p (p + 1) / (n - p - 1)`` (models
need ``n > p + 1``; with plain AIC ``n > p``). With the four to seven time points of clinical
schedules plain AIC tends to pick the model with the most parameters (with 3 % noise on a
bi-exponential curve sampled at 7 points it chose the 6-parameter model and overestimated the
TIA by 40 %); pass ``criterion="aic"`` for the uncorrected criterion. The RSS is floored at
``n * 1e-20`` (relative residuals of 1e-10) so that exact fits of noise-free data tie and the
penalty picks the simplest. The TIA is the analytic integral to infinity,
``sum_i a_i / k_i``. A fit whose curve at ``t = 0`` exceeds ``max_extrapolation`` (default 10)
times the largest measurement is rejected: before the first time point nothing constrains a
fast component, and a bi-exponential through four noisy points can otherwise put a TIA of
1e78 MBq h there.

Single time point
-----------------
* Hänscheid et al., J Nucl Med 2018 (doi 10.2967/jnumed.117.193706):
  ``TIA = A(t) * 2 t / ln 2``; exact for a mono-exponential curve at ``t = T_eff`` (and at
  ``2 T_eff``).
* Madsen et al., Med Phys 2018 (doi 10.1002/mp.12886): with a population effective half-life,
  ``TIA = A(t) * exp(lambda_eff t) / lambda_eff``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize

from pbpk._errors import InvalidInputError
from pbpk._nuclides import get_nuclide
from twin.dose._errors import FitError

__all__ = [
    "TAC_MODELS",
    "TACFit",
    "fit_tac",
    "tia_hanscheid",
    "tia_madsen",
]

TAC_MODELS: tuple[str, ...] = ("mono", "mono_uptake", "bi", "bi_uptake", "tri")
_N_PARAMS = {"mono": 2, "mono_uptake": 3, "bi": 4, "bi_uptake": 5, "tri": 6}
_N_AMPS = {"mono": 1, "mono_uptake": 1, "bi": 2, "bi_uptake": 2, "tri": 3}
_RSS_FLOOR_PER_POINT = 1e-20
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class TACFit:
    """One fitted time-activity curve.

    Attributes
    ----------
    model : str
        One of :data:`TAC_MODELS`.
    coefficients_mbq : tuple of float
        ``c_i`` of ``A(t) = sum_i c_i exp(-k_i t)`` (an uptake term has a negative ``c``).
    rates_per_h : tuple of float
        ``k_i``, 1/h (all >= the physical decay constant).
    tia_mbq_h : float
        ``sum_i c_i / k_i``: the time-integrated activity from 0 to infinity, MBq·h.
    rss : float
        Weighted residual sum of squares.
    aic : float
        Akaike information criterion (``criterion``: AICc or AIC; lower is better).
    n_points, n_params : int
    candidates : tuple of (model, aic, tia_mbq_h)
        Every model tried, when the model was selected by the criterion.
    criterion : str
        ``"aicc"`` or ``"aic"``.
    """

    model: str
    coefficients_mbq: tuple[float, ...]
    rates_per_h: tuple[float, ...]
    tia_mbq_h: float
    rss: float
    aic: float
    n_points: int
    n_params: int
    candidates: tuple[tuple[str, float, float], ...] = field(default=(), repr=False)
    criterion: str = "aicc"

    def activity_mbq(self, times_h) -> np.ndarray:
        """Fitted activity at the given times, MBq."""
        t = np.asarray(times_h, dtype=np.float64)
        c = np.asarray(self.coefficients_mbq)
        k = np.asarray(self.rates_per_h)
        return np.sum(c[:, None] * np.exp(-k[:, None] * t.ravel()[None, :]), axis=0).reshape(
            t.shape
        )

    def tia_between_mbq_h(self, t0_h: float, t1_h: float = math.inf) -> float:
        """Analytic TIA between two times, MBq·h."""
        c = np.asarray(self.coefficients_mbq)
        k = np.asarray(self.rates_per_h)
        end = 0.0 if math.isinf(t1_h) else np.exp(-k * t1_h)
        return float(np.sum(c / k * (np.exp(-k * t0_h) - end)))

    @property
    def terminal_half_life_h(self) -> float:
        """Half-life of the slowest positive component (effective half-life of the tail), h."""
        slow = min(k for c, k in zip(self.coefficients_mbq, self.rates_per_h) if c > 0)
        return _LN2 / slow


def _unpack(model: str, theta: np.ndarray, lam_p: float):
    """Map unconstrained parameters to (coefficients, rates)."""
    e = np.exp(theta)
    if model == "mono":
        return np.array([e[0]]), np.array([lam_p + e[1]])
    if model == "mono_uptake":
        k1 = lam_p + e[1]
        return np.array([e[0], -e[0]]), np.array([k1, k1 + e[2]])
    if model == "bi":
        k1 = lam_p + e[2]
        return np.array([e[0], e[1]]), np.array([k1, k1 + e[3]])
    if model == "bi_uptake":
        k1 = lam_p + e[2]
        k2 = k1 + e[3]
        return np.array([e[0], e[1], -(e[0] + e[1])]), np.array([k1, k2, k2 + e[4]])
    if model == "tri":
        k1 = lam_p + e[3]
        k2 = k1 + e[4]
        return np.array([e[0], e[1], e[2]]), np.array([k1, k2, k2 + e[5]])
    raise InvalidInputError(f"unknown TAC model {model!r}; models: {list(TAC_MODELS)}")


def _model_values(model, theta, t, lam_p):
    c, k = _unpack(model, theta, lam_p)
    return np.sum(c[:, None] * np.exp(-k[:, None] * t[None, :]), axis=0)


def _log_increment(value: float) -> float:
    return math.log(max(value, 1e-12))


def _starts(model: str, t: np.ndarray, y: np.ndarray, lam_p: float) -> list[np.ndarray]:
    """Starting points: rates from a log-linear tail fit and a grid around it."""
    span = max(t[-1] - t[0], 1e-6)
    peak = float(np.max(y))
    tail = y > 0
    if np.count_nonzero(tail[-2:]) == 2 and t[-1] > t[-2]:
        k_tail = max((math.log(y[-2]) - math.log(y[-1])) / (t[-1] - t[-2]), lam_p * 1.01)
    else:
        k_tail = lam_p * 2.0
    slow = [k_tail, lam_p + 0.3 * (k_tail - lam_p) + 1e-4, 2.0 * k_tail]
    fast = [10.0 / span, 1.0 / span * 3.0, 30.0 / span, 1.0, 5.0]
    starts = []
    for k1 in slow:
        inc1 = _log_increment(k1 - lam_p)
        a_tail = max(peak * math.exp(k1 * t[len(t) // 2]) * 0.5, 1e-9)
        for kf in fast:
            kf = max(kf, k1 * 1.5)
            if model == "mono":
                starts.append(np.array([math.log(max(y[0] * math.exp(k1 * t[0]), 1e-9)), inc1]))
            elif model == "mono_uptake":
                starts.append(np.array([math.log(a_tail * 2), inc1, _log_increment(kf - k1)]))
            elif model == "bi":
                starts.append(
                    np.array([math.log(peak), math.log(a_tail), inc1, _log_increment(kf - k1)])
                )
            elif model == "bi_uptake":
                starts.append(
                    np.array(
                        [
                            math.log(a_tail),
                            math.log(peak),
                            inc1,
                            _log_increment(kf - k1),
                            _log_increment(5 * kf),
                        ]
                    )
                )
            else:
                starts.append(
                    np.array(
                        [
                            math.log(peak),
                            math.log(peak * 0.5),
                            math.log(a_tail),
                            inc1,
                            _log_increment(kf - k1),
                            _log_increment(5 * kf),
                        ]
                    )
                )
    unique = []
    for s in starts:
        if not any(np.allclose(s, u) for u in unique):
            unique.append(s)
    return unique


def _fit_one(model, t, y, sigma, lam_p) -> tuple[np.ndarray, float] | None:
    def residuals(theta):
        with np.errstate(over="ignore", invalid="ignore"):
            r = (_model_values(model, theta, t, lam_p) - y) / sigma
        return np.where(np.isfinite(r), r, 1e10)

    def solve(start, tol, max_nfev):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = scipy.optimize.least_squares(
                    residuals,
                    start,
                    method="lm",
                    xtol=tol,
                    ftol=tol,
                    gtol=tol,
                    max_nfev=max_nfev,
                )
        except (ValueError, FloatingPointError):
            return None
        rss = float(np.sum(res.fun**2))
        if not (np.isfinite(rss) and np.all(np.isfinite(res.x))):
            return None
        return res.x, rss

    # coarse pass from every start, then polish the two best to full precision
    coarse = [r for r in (solve(s0, 1e-10, 300) for s0 in _starts(model, t, y, lam_p)) if r]
    if not coarse:
        return None
    coarse.sort(key=lambda r: r[1])
    polished = [solve(x, 1e-15, 3000) for x, _ in coarse[:2]]
    candidates = [r for r in polished if r] + coarse[:1]
    return min(candidates, key=lambda r: r[1])


def fit_tac(
    times_h: Sequence[float],
    activity_mbq: Sequence[float],
    *,
    nuclide: str = "Lu-177",
    model: str = "auto",
    models: Sequence[str] = TAC_MODELS,
    sigma_mbq: Sequence[float] | None = None,
    weighting: str = "relative",
    criterion: str = "aicc",
    max_extrapolation: float = 10.0,
) -> TACFit:
    """Fit a time-activity curve and integrate it analytically to infinity.

    Parameters
    ----------
    times_h, activity_mbq : sequences
        Measured activities (MBq) at times after administration (h), at least two points.
    nuclide : str
        Sets the physical-decay floor of the clearance rates.
    model : str
        ``"auto"``: fit every model of ``models`` that the number of points allows and keep
        the lowest criterion; or one model name of :data:`TAC_MODELS`.
    sigma_mbq : sequence, optional
        Standard deviation of each point; overrides ``weighting``.
    weighting : "relative" (default) or "absolute"
        Residuals divided by the measured value (constant CV) or unweighted.
    criterion : "aicc" (default) or "aic"
        Model-selection criterion (see the module docstring). AICc needs more points than
        parameters + 1; with fewer (2 or 3 time points) ``"auto"`` compares by AIC among the
        models it can fit, and the fit's ``criterion`` says so.
    max_extrapolation : float
        A fit whose curve extrapolated back to ``t = 0`` exceeds this multiple of the largest
        measured activity is rejected (default 10). Before the first time point a fast
        component is not constrained by the data: with as many parameters as points (a
        bi-exponential through four points) noise can give it an enormous amplitude and rate
        whose integral dominates the TIA (seen: 1e78 MBq h for a lesion). ``math.inf`` keeps
        every fit.

    Raises
    ------
    InvalidInputError
        Fewer than two points, negative or non-finite values, unsorted or repeated times.
    FitError
        No model could be fitted, or every fit failed the ``max_extrapolation`` check (the
        message says which).
    """
    t = np.asarray(times_h, dtype=np.float64)
    y = np.asarray(activity_mbq, dtype=np.float64)
    if t.ndim != 1 or y.shape != t.shape:
        raise InvalidInputError("times_h and activity_mbq must be 1-D sequences of equal length")
    if t.size < 2:
        raise InvalidInputError("a TAC fit needs at least two time points")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(y))):
        raise InvalidInputError("times and activities must be finite")
    if np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise InvalidInputError("times_h must be non-negative and strictly increasing")
    if np.any(y < 0) or not np.any(y > 0):
        raise InvalidInputError("activities must be non-negative with at least one positive")
    lam_p = get_nuclide(nuclide).decay_constant_per_h
    if sigma_mbq is not None:
        sigma = np.asarray(sigma_mbq, dtype=np.float64)
        if sigma.shape != t.shape or np.any(~(sigma > 0)):
            raise InvalidInputError("sigma_mbq must be positive, one value per point")
    elif weighting == "relative":
        if np.any(y <= 0):
            raise InvalidInputError(
                "relative weighting needs positive activities; use weighting='absolute' or "
                "give sigma_mbq"
            )
        sigma = y.copy()
    elif weighting == "absolute":
        sigma = np.ones_like(y)
    else:
        raise InvalidInputError(f"weighting must be 'relative' or 'absolute', got {weighting!r}")
    if criterion not in ("aic", "aicc"):
        raise InvalidInputError(f"criterion must be 'aicc' or 'aic', got {criterion!r}")
    if not (max_extrapolation > 1.0):
        raise InvalidInputError(
            f"max_extrapolation must be > 1 (a multiple of the largest measured activity), "
            f"got {max_extrapolation!r}"
        )
    extra = 1 if criterion == "aicc" else 0
    if model == "auto":
        names = [m for m in models if _N_PARAMS.get(m, 99) + extra < t.size]
        unknown = [m for m in models if m not in _N_PARAMS]
        if unknown:
            raise InvalidInputError(f"unknown TAC models {unknown}; models: {list(TAC_MODELS)}")
        if not names and criterion == "aicc":
            # AICc needs n > p + 1 points: with 2 or 3 points (e.g. day 1, 4, 7 SPECT) compare
            # by AIC among the models with fewer parameters than points, else fit exactly
            names = ([m for m in models if _N_PARAMS[m] < t.size]
                     or [m for m in models if _N_PARAMS[m] == t.size])
            criterion = "aic"
        if not names:
            raise FitError(f"no model of {list(models)} can be fitted to {t.size} points (each needs "
                           "at least as many points as it has parameters: mono 2, mono_uptake 3, bi 4)")
    else:
        if model not in _N_PARAMS:
            raise InvalidInputError(f"unknown TAC model {model!r}; models: {list(TAC_MODELS)}")
        if _N_PARAMS[model] > t.size:
            raise FitError(
                f"model {model!r} has {_N_PARAMS[model]} parameters but only {t.size} points"
            )
        names = [model]
    fits = []
    rejected = []
    n = t.size
    y_max = float(np.max(y))
    for name in names:
        result = _fit_one(name, t, y, sigma, lam_p)
        if result is None:
            continue
        theta, rss = result
        c, k = _unpack(name, theta, lam_p)
        a0 = float(np.sum(c))  # the curve at t = 0 (zero for the uptake models)
        if not (np.isfinite(a0) and a0 <= max_extrapolation * y_max):
            rejected.append(f"{name} (A(0) = {a0:.3g} MBq)")
            continue
        p = _N_PARAMS[name]
        aic = n * math.log(max(rss, n * _RSS_FLOOR_PER_POINT) / n) + 2 * p
        if criterion == "aicc":
            aic = aic + (2.0 * p * (p + 1) / (n - p - 1) if n > p + 1 else math.inf)
        fits.append(
            TACFit(
                model=name,
                coefficients_mbq=tuple(float(v) for v in c),
                rates_per_h=tuple(float(v) for v in k),
                tia_mbq_h=float(np.sum(c / k)),
                rss=rss,
                aic=aic,
                n_points=n,
                n_params=p,
                criterion=criterion,
            )
        )
    if not fits:
        if rejected:
            raise FitError(
                f"every fit of {n} points extrapolates to an implausible activity at t = 0, "
                f"more than {max_extrapolation:g} x the largest measurement ({y_max:.3g} MBq): "
                f"{', '.join(rejected)}. The data do not constrain the early phase; fit a model "
                "with an uptake phase (model='mono_uptake' or 'bi_uptake'), add an earlier time "
                "point, or raise max_extrapolation."
            )
        raise FitError(f"no TAC model could be fitted to {n} points (models {names})")
    best = min(fits, key=lambda f: (round(f.aic, 9), f.n_params))
    if model == "auto":
        cands = tuple((f.model, f.aic, f.tia_mbq_h) for f in fits)
        best = TACFit(**{**best.__dict__, "candidates": cands})
    return best


def _check_stp(activity_mbq, time_h):
    a = np.asarray(activity_mbq, dtype=np.float64)
    t = np.asarray(time_h, dtype=np.float64)
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise InvalidInputError("activity_mbq must be finite and non-negative")
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise InvalidInputError("time_h must be positive (h after administration)")
    return a, t


def tia_hanscheid(activity_mbq, time_h):
    """Hänscheid single-time-point TIA: ``A(t) * 2 t / ln 2``, MBq·h."""
    a, t = _check_stp(activity_mbq, time_h)
    out = a * 2.0 * t / _LN2
    return float(out) if out.ndim == 0 else out


def tia_madsen(activity_mbq, time_h, population_effective_half_life_h):
    """Madsen single-time-point TIA: ``A(t) exp(lambda_eff t) / lambda_eff``, MBq·h.

    ``population_effective_half_life_h`` is the population mean effective half-life of the
    organ (e.g. from earlier patients or the literature); it must come from the same agent.
    """
    a, t = _check_stp(activity_mbq, time_h)
    teff = np.asarray(population_effective_half_life_h, dtype=np.float64)
    if np.any(~np.isfinite(teff)) or np.any(teff <= 0):
        raise InvalidInputError("population_effective_half_life_h must be positive")
    lam = _LN2 / teff
    out = a * np.exp(lam * t) / lam
    return float(out) if out.ndim == 0 else out
