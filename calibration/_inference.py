"""Inference: one entry point, :func:`calibrate`, for MAP, Laplace (optionally corrected by
importance sampling), SVI and NUTS.

Parameterisation: every calibrated parameter ``p_k`` has a log-normal prior with log-median
``mu_k`` and log-sd ``sigma_k``; inference runs in the standardised log space
``z_k = (log p_k - mu_k) / sigma_k`` (prior ``N(0, 1)``), which gives NUTS and the optimisers a
well-scaled, unconstrained problem. Samples are reported as ``log p`` and ``p``.

Likelihood: ``log y_i ~ N(log m_i, s_i^2)`` with ``s_i^2`` from the observation's noise model
(see :mod:`calibration._observations`); ``m_i`` is the simulated activity (MBq) or %IA of the
observed region at the observed time. The simulation window ends at the last observation time.
A failed solve (``status != 0``) gives log-density ``-inf``: NUTS treats it as a divergence,
the optimisers step back, and failed draws are counted and flagged, never returned as NaN.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import pbpk
from calibration._errors import (
    CalibrationError,
    CalibrationWarning,
    ChainProcessError,
    ConvergenceWarning,
    ObservationError,
    SolverFailureWarning,
)
from calibration._observations import Observations
from calibration._priors import Prior, check_level
from pbpk._errors import InvalidInputError
from pbpk._numbers import real_or_none

__all__ = ["CHAIN_METHODS", "LIKELIHOOD_SIMULATE_OPTIONS", "METHODS", "LogPosterior", "Posterior", "Prediction", "calibrate", "log_posterior"]

log = logging.getLogger(__name__)

METHODS = ("map", "laplace", "laplace_is", "svi", "nuts")
_TINY = 1e-300
_LOG2PI = math.log(2.0 * math.pi)

#: Solver tolerances inside the likelihood unless ``simulate_options`` says otherwise. At
#: rtol 1e-4 the observed activities are within ~1e-3 relative of a tight (rtol 1e-9) solve,
#: two orders below a 10 % PET noise; the log posterior then differs by < 0.01 and the MAP by
#: < 1e-3 in log space (``tests/calibration/test_calibration_speed.py``,
#: ``benchmarks/bench_calibration.py``). It needs ~2.5x fewer solver steps than rtol 1e-6.
LIKELIHOOD_SIMULATE_OPTIONS = MappingProxyType({"rtol": 1e-4, "atol": 1e-8})


# ============================================================================ the problem
class _Problem:
    """Observation design + prior + model: pure JAX functions of z with the data as arguments."""

    def __init__(self, model, schedule, observations: Observations, prior: Prior, simulate_options):
        if not isinstance(observations, Observations):
            raise ObservationError(
                f"observations must be a calibration.Observations, got {type(observations).__name__}; "
                "build one with Observations.from_uptake or Observations.from_records.")
        if not isinstance(prior, Prior):
            raise InvalidInputError(f"prior must be a calibration.Prior, got {type(prior).__name__}.")
        self.model, self.obs, self.prior = model, observations, prior
        self.names = prior.names
        self.opts = {**LIKELIHOOD_SIMULATE_OPTIONS, **dict(simulate_options or {})}
        bad_opts = set(self.opts) - {"rtol", "atol", "max_steps", "solver"}
        if bad_opts:
            raise InvalidInputError(f"simulate_options {', '.join(sorted(bad_opts))} are not allowed; use "
                                    "rtol, atol, max_steps, solver.")
        for name in ("rtol", "atol"):
            x = real_or_none(self.opts[name])
            if x is None or not math.isfinite(x) or x <= 0:
                raise InvalidInputError(f"simulate_options[{name!r}] = {self.opts[name]!r} must be a finite "
                                        "number > 0 (e.g. rtol 1e-4, atol 1e-8).")
        self.is_pbpk = isinstance(model, pbpk.PBPKModel)
        if self.is_pbpk:
            prior.check_model(model)
            if observations.agent is not None and observations.agent != model.ligand:
                raise ObservationError(
                    f"the observations are of {observations.agent!r} but the model's ligand is "
                    f"{model.ligand!r}; calibrate the model of the imaging agent (e.g. "
                    f"pbpk.psma_model({observations.agent!r}, ...)) and predict the therapy agent with "
                    "pbpk.theranostic_pair.")
            unknown = sorted(set(observations.region) - set(model.regions))
            if unknown:
                raise ObservationError(f"observed region(s) {', '.join(unknown)} are not in model "
                                       f"{model.name!r}; its regions: {', '.join(model.regions)}.")
            unpredicted = sorted({r for r in observations.region if not model.predicts(r)})
            if unpredicted:
                raise ObservationError(
                    f"observed region(s) {', '.join(unpredicted)} are not predicted by model {model.name!r} "
                    f"(a reduced model predicts the regions of its reduction design only: "
                    f"{', '.join(model.predicted_regions)}); fitting them would fit activity the reduction "
                    "did not keep. Drop those observations, calibrate the full model, or reduce with "
                    "those regions in the design (mbam.ReductionDesign(regions=...)).")
            self.schedule = pbpk._simulate._as_schedule(schedule)
            _check_times(observations, self.schedule)
            self.times = observations.times_h
            if self.times[-1] <= 0:
                raise ObservationError("the last observation time must be > 0 h.")
            self.t_idx = np.searchsorted(self.times, observations.time_h)
            self.r_idx = np.array([model.regions.index(r) for r in observations.region])
            self.pct = np.array([u == "%IA" for u in observations.unit])
            self.key = ("pbpk", model, self.schedule, tuple(self.times.tolist()), tuple(self.t_idx.tolist()),
                        tuple(self.r_idx.tolist()), tuple(self.pct.tolist()), self.names,
                        tuple(sorted(self.opts.items())))
        elif callable(model):
            self.schedule = schedule
            self.key = ("callable", model, self.names, len(observations))
        else:
            raise InvalidInputError(
                f"model must be a pbpk.PBPKModel or a callable params -> predictions, got {type(model).__name__}.")
        self.data = (
            jnp.asarray(prior.log_loc), jnp.asarray(prior.log_scale),
            jnp.asarray(np.log(observations.value)), jnp.asarray(observations.log_sd_fixed() ** 2),
            jnp.asarray(observations.floor),
        )
        self.fns = _functions(self)

    # traced
    def predict(self, logp):
        params = {n: jnp.exp(logp[i]) for i, n in enumerate(self.names)}
        if self.is_pbpk:
            r = pbpk.simulate(self.model, self.schedule, self.times, params, mode="forward", check=False,
                              **self.opts)
            act = r.activity_mbq[self.t_idx, self.r_idx]
            if self.pct.any():
                pct = r.percent_injected(decay_corrected=True)[self.t_idx, self.r_idx]
                act = jnp.where(jnp.asarray(self.pct), pct, act)
            return act, r.status
        out = self.model(params)
        if isinstance(out, tuple):
            pred, status = out
        else:
            pred, status = out, jnp.zeros((), jnp.int32)
        pred = jnp.reshape(jnp.asarray(pred, dtype=float), (-1,))
        if pred.shape[0] != len(self.obs):
            raise CalibrationError(f"the model returned {pred.shape[0]} predictions for {len(self.obs)} "
                                   "observations; return one prediction per observation, in order.")
        return pred, status


def early_observations(observations: Observations, schedule) -> tuple[float, list[str]]:
    """The time of the schedule's first administration carrying activity and the observations
    at or before it (``"kidney at 0 h"``): their prediction is 0 (a cold, unlabelled pre-dose
    injects no activity), which has no log-normal likelihood."""
    hot = [a.time_h for a in schedule.administrations if a.activity_mbq > 0]
    t0 = min(hot) if hot else min(a.time_h for a in schedule.administrations)
    return t0, [f"{r} at {t:g} h" for r, t in zip(observations.region, observations.time_h.tolist()) if t <= t0]


def _check_times(observations: Observations, schedule) -> None:
    """Refuse observations at or before the schedule's first administration: their prediction
    is 0 (nothing injected yet), which has no log-normal likelihood (and no gradient)."""
    t0, bad = early_observations(observations, schedule)
    if bad:
        raise ObservationError(
            f"observation(s) {', '.join(bad)} are at or before the schedule's first administration "
            f"carrying activity ({t0:g} h): no activity is injected yet (a cold pre-dose carries none), "
            "so the model predicts 0 there. time_h is on the "
            "schedule's clock (hours since the schedule's 0 h; pbpk.Schedule.single injects at 0 h): "
            "drop those observations, or shift their times (or the schedule) so that they follow the "
            "injection.")


def _loglik(problem: _Problem, z, data):
    mu, sigma, logy, s2_fixed, floor = data
    pred, status = problem.predict(mu + sigma * z)
    ok = (status == 0) & jnp.all(jnp.isfinite(pred))
    m = jnp.maximum(jnp.where(ok, pred, 1.0), _TINY)
    s2 = s2_fixed + (floor / m) ** 2
    r = logy - jnp.log(m)
    ll = jnp.sum(-0.5 * r * r / s2 - 0.5 * (jnp.log(s2) + _LOG2PI))
    ok = ok & jnp.isfinite(ll)
    return jnp.where(ok, ll, -jnp.inf), ok


def _loglik_grad_fwd(problem: _Problem, z, data):
    """Log-likelihood, solve status and its gradient in z by forward mode (one solve carries
    all P tangents; the solver reuses one LU per step for them). A callable model that only
    supports reverse mode is differentiated in reverse mode."""

    def f(zz):
        ll, ok = _loglik(problem, zz, data)
        return ll, (ll, ok)

    try:
        g, (ll, ok) = jax.jacfwd(f, has_aux=True)(z)
    except TypeError as e:
        # a callable model may carry a reverse-only derivative rule (a custom VJP, e.g.
        # pbpk.simulate(mode="reverse") inside it): fall back to reverse mode for it
        if problem.is_pbpk or "custom_vjp" not in str(e):
            raise
        (_, (ll, ok)), g = jax.value_and_grad(f, has_aux=True)(z)
    # a failed solve has log-likelihood -inf and no gradient: zero it (the optimisers step back,
    # NUTS counts a divergence). A finite log-likelihood with a non-finite gradient is kept
    # non-finite: the callers report it (it would otherwise hide the data from every optimiser).
    g = jnp.where(ok, g, 0.0)
    return ll, ok, g


def _make_loglik_vjp(problem: _Problem):
    """The log-likelihood as a function with a reverse-mode rule computed in forward mode.

    numpyro, optax and ``jax.grad`` ask for reverse-mode gradients; with a handful of
    parameters forward mode is the cheap direction (and the solver's forward loop is a plain
    ``lax.while_loop``), so the gradient is formed by :func:`jax.jacfwd` during the forward
    pass and returned by the custom VJP. Returns ``(ll, ok)`` with ``ok`` as 0.0/1.0.
    """

    @jax.custom_vjp
    def ll_fn(z, data):
        ll, ok = _loglik(problem, z, data)
        return ll, ok.astype(z.dtype)

    def fwd(z, data):
        ll, ok, g = _loglik_grad_fwd(problem, z, data)
        return (ll, ok.astype(z.dtype)), (g, data)

    def bwd(res, ct):
        g, data = res
        ct_ll, _ = ct
        return ct_ll * g, jax.tree_util.tree_map(jnp.zeros_like, data)

    ll_fn.defvjp(fwd, bwd)
    return ll_fn


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


def _functions(problem: _Problem) -> dict:
    """Jitted functions for a problem, cached by its static design (data are arguments)."""
    key = problem.key
    try:
        hit = _CACHE.get(key)
    except TypeError:  # unhashable callable
        hit, key = None, None
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit

    ll_vjp = _make_loglik_vjp(problem)

    def nlp_plain(z, data):  # negative log posterior in z space (up to a constant); jvp-able
        ll, _ = _loglik(problem, z, data)
        return 0.5 * jnp.sum(z * z) - ll

    def nlp(z, data):  # the same, with the forward-mode gradient rule (for grad / numpyro)
        ll, _ = ll_vjp(z, data)
        return 0.5 * jnp.sum(z * z) - ll

    def vg(z, data):  # ((value, ok), gradient) of the negative log posterior
        ll, ok, g = _loglik_grad_fwd(problem, z, data)
        return (0.5 * jnp.sum(z * z) - ll, ok), z - g

    import optax

    lbfgs = optax.scale_by_lbfgs()

    fns = {
        "nlp": jax.jit(nlp),
        "vg": jax.jit(vg),
        "hess": jax.jit(jax.jacfwd(jax.jacfwd(nlp_plain))),
        "lbfgs": (lbfgs.init, jax.jit(lbfgs.update)),
        "loglik": lambda z, data: _loglik(problem, z, data),
        "status_batch": jax.jit(jax.vmap(lambda z, data: _loglik(problem, z, data)[1], in_axes=(0, None))),
        "lp_batch": jax.jit(jax.vmap(lambda z, data: -nlp_plain(z, data), in_axes=(0, None))),
        "problem_ref": problem,  # first problem of this design (functions close over its design only)
    }
    if key is not None:
        _CACHE[key] = fns
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return fns


def read_only(a):
    """A read-only numpy copy of ``a`` (``None`` stays ``None``)."""
    if a is None:
        return None
    out = np.array(a)
    out.flags.writeable = False
    return out


# ============================================================================ public objective
@dataclass(frozen=True, eq=False)
class LogPosterior:
    """The calibration objective in log-parameter space (natural log of each prior parameter).

    ``lp(log_params)`` is the log posterior density up to a constant (``-inf`` where the
    simulation fails); ``lp.value_and_grad(log_params)`` adds its gradient. The same function
    :func:`calibrate` maximises for MAP.
    """

    names: tuple[str, ...]
    _problem: Any = field(repr=False)

    def _z(self, log_params):
        p = self._problem
        if isinstance(log_params, Mapping) or np.shape(log_params) != (len(self.names),):
            raise InvalidInputError(
                f"give the {len(self.names)} log-parameters as one vector in the order of .names "
                f"({', '.join(self.names)}); got {type(log_params).__name__} of shape {np.shape(log_params)}.")
        return (jnp.asarray(log_params, dtype=float) - p.data[0]) / p.data[1]

    def __call__(self, log_params) -> float:
        p = self._problem
        return float(-p.fns["nlp"](self._z(log_params), p.data) - jnp.sum(jnp.log(p.data[1])))

    def value_and_grad(self, log_params) -> tuple[float, np.ndarray]:
        p = self._problem
        (v, _), g = p.fns["vg"](self._z(log_params), p.data)
        return float(-v - jnp.sum(jnp.log(p.data[1]))), -np.asarray(g) / np.asarray(p.data[1])


def log_posterior(model, schedule, observations: Observations, prior: Prior | None = None, *,
                  simulate_options: Mapping | None = None) -> LogPosterior:
    """The log posterior of a calibration problem, as a function of the log-parameters."""
    prior = prior if prior is not None else Prior.default(model)
    problem = _Problem(model, schedule, observations, prior, simulate_options)
    return LogPosterior(problem.names, problem)


# ============================================================================ prediction
@dataclass(frozen=True, eq=False)
class Prediction:
    """Posterior-predictive simulation of a schedule: per-draw arrays and quantile tables.

    activity_mbq: (N, T, R) activity per draw, time and region (``regions``).
    tia_mbq_h: (N, Rb) TIA per draw and body region (``body_regions``).
    n_failed: draws whose simulation failed (excluded from the arrays and quantiles).
    """

    times_h: np.ndarray
    regions: tuple[str, ...]
    body_regions: tuple[str, ...]
    activity_mbq: np.ndarray
    tia_mbq_h: np.ndarray
    quantiles: tuple[float, ...]
    n_failed: int
    model_name: str

    def activity_quantiles(self):
        """Long pandas table: time_h, region, mean and one column per quantile (MBq), labelled in
        percent as elsewhere in the project (``q5``, ``q50``, ``q95`` for 0.05, 0.5, 0.95)."""
        import pandas as pd

        q = np.quantile(self.activity_mbq, self.quantiles, axis=0)  # (Q, T, R)
        mean = self.activity_mbq.mean(axis=0)
        rows = []
        for ti, t in enumerate(self.times_h):
            for ri, r in enumerate(self.regions):
                row = {"time_h": float(t), "region": r, "mean": mean[ti, ri]}
                row.update({f"q{100 * qq:g}": q[k, ti, ri] for k, qq in enumerate(self.quantiles)})
                rows.append(row)
        return pd.DataFrame(rows)

    def tia_quantiles(self):
        """pandas table indexed by body region: mean and one column per quantile (MBq h),
        labelled in percent (``q5``, ``q50``, ``q95``)."""
        import pandas as pd

        q = np.quantile(self.tia_mbq_h, self.quantiles, axis=0)
        data = {"mean": self.tia_mbq_h.mean(axis=0)}
        data.update({f"q{100 * qq:g}": q[k] for k, qq in enumerate(self.quantiles)})
        return pd.DataFrame(data, index=list(self.body_regions)).rename_axis("region")

    def tia(self, region: str) -> np.ndarray:
        """TIA draws (MBq h) of one body region."""
        if region not in self.body_regions:
            raise InvalidInputError(f"no TIA for {region!r}; body regions: {', '.join(self.body_regions)}.")
        return self.tia_mbq_h[:, self.body_regions.index(region)]


# ============================================================================ posterior
@dataclass(frozen=True, eq=False)
class Posterior:
    """Result of :func:`calibrate`.

    names: calibrated parameters. log_samples: (N, P) draws of log p (chains flattened, failed
    draws removed); for ``method="map"`` the one MAP point. chains: (C, D, P) for NUTS, else None.
    map_log: (P,) MAP point in log space (MAP/Laplace; SVI/NUTS when ``init="map"``) or None.
    diagnostics: dict (method, wall time, converged, R-hat, ESS, divergences, failed solves ...).
    """

    method: str
    names: tuple[str, ...]
    log_samples: np.ndarray
    prior: Prior
    observations: Observations
    model: Any
    schedule: Any
    map_log: np.ndarray | None
    diagnostics: dict
    chains: np.ndarray | None = None
    informed_threshold: float = 0.8
    _extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # the draws are the result: read-only copies, so no caller edits them in place
        for name in ("log_samples", "map_log", "chains"):
            object.__setattr__(self, name, read_only(getattr(self, name)))
        object.__setattr__(self, "_extra", {k: read_only(v) if isinstance(v, np.ndarray) else v
                                            for k, v in self._extra.items()})

    # ------------------------------------------------------------------ samples
    @property
    def samples(self) -> dict[str, np.ndarray]:
        """Draws in natural units: ``{name: (N,)}`` (usable with ``pbpk.simulate_cohort``)."""
        return {n: np.exp(self.log_samples[:, i]) for i, n in enumerate(self.names)}

    @property
    def map(self) -> dict[str, float] | None:
        if self.map_log is None:
            return None
        return {n: float(np.exp(self.map_log[i])) for i, n in enumerate(self.names)}

    @property
    def median(self) -> dict[str, float]:
        return {n: float(np.exp(np.median(self.log_samples[:, i]))) for i, n in enumerate(self.names)}

    @property
    def covariance_log(self) -> np.ndarray | None:
        """(P, P) covariance of log p: the Laplace covariance, else the sample covariance."""
        if "cov_log" in self._extra:
            return self._extra["cov_log"]
        if self.log_samples.shape[0] < 2:
            return None
        return np.atleast_2d(np.cov(self.log_samples, rowvar=False))

    def interval(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Central credible interval per parameter (natural units); NaN for a MAP point (one
        draw carries no uncertainty: an interval of zero width would read as certainty)."""
        level = check_level(level)
        if self.log_samples.shape[0] < 2:
            return {n: (math.nan, math.nan) for n in self.names}
        lo, hi = np.quantile(self.log_samples, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        return {n: (float(np.exp(lo[i])), float(np.exp(hi[i]))) for i, n in enumerate(self.names)}

    # ------------------------------------------------------------------ tables
    def prior_vs_posterior(self):
        """Per parameter: prior and posterior log-sd, their ratio, the shift of the posterior
        mean in prior sds and ``informed`` (False where the posterior is close to the prior:
        sd ratio above ``informed_threshold`` and shift below 0.5 prior sd)."""
        import pandas as pd

        mu, sd0 = self.prior.log_loc, self.prior.log_scale
        n = self.log_samples.shape[0]
        if n > 1:
            sd = self.log_samples.std(axis=0, ddof=1)
            mean = self.log_samples.mean(axis=0)
            ratio = sd / sd0
            shift = np.abs(mean - mu) / sd0
            informed = ~((ratio > self.informed_threshold) & (shift < 0.5))
        else:
            sd = ratio = np.full(len(self.names), np.nan)
            shift = np.abs(self.log_samples[0] - mu) / sd0
            informed = np.full(len(self.names), None)
        return pd.DataFrame({"prior_log_sd": sd0, "posterior_log_sd": sd, "sd_ratio": ratio,
                             "shift_prior_sd": shift, "informed": informed},
                            index=pd.Index(self.names, name="parameter"))

    @property
    def uninformed(self) -> tuple[str, ...]:
        """Parameters the data did not inform (posterior close to prior)."""
        t = self.prior_vs_posterior()
        return tuple(t.index[t["informed"] == False])  # noqa: E712 - elementwise on a column holding None

    def summary(self, level: float = 0.9):
        """pandas table per parameter: prior median and CV, MAP, posterior mean/median/sd (log),
        central ``level`` interval (natural units), R-hat and ESS (NUTS) and ``informed``."""
        import pandas as pd

        level = check_level(level)
        qlo, qhi = 0.5 - level / 2, 0.5 + level / 2
        med = np.quantile(self.log_samples, 0.5, axis=0)
        iv = self.interval(level)  # NaN for a MAP point
        pvp = self.prior_vs_posterior()
        data = {
            "prior_median": [e.median for e in self.prior.entries],
            "prior_cv": [e.cv for e in self.prior.entries],
            "map": np.exp(self.map_log) if self.map_log is not None else np.nan,
            "mean": np.exp(self.log_samples).mean(axis=0),
            "median": np.exp(med),
            "log_sd": pvp["posterior_log_sd"].to_numpy(),
            f"q{100 * qlo:g}": [iv[n][0] for n in self.names],
            f"q{100 * qhi:g}": [iv[n][1] for n in self.names],
        }
        if "rhat" in self.diagnostics:
            data["rhat"] = self.diagnostics["rhat"]
            data["ess"] = self.diagnostics["ess"]
        data["informed"] = pvp["informed"].to_numpy()
        return pd.DataFrame(data, index=pd.Index(self.names, name="parameter"))

    # ------------------------------------------------------------------ arviz
    @property
    def inference_data(self):
        """``arviz.InferenceData`` of the draws (natural units plus ``log_<name>``), or None
        when arviz is not installed or there is only a MAP point."""
        if self.log_samples.shape[0] < 2:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                import arviz as az
        except ImportError:
            log.info("arviz is not installed; no InferenceData")
            return None
        x = self.chains if self.chains is not None else self.log_samples[None]
        post = {}
        for i, n in enumerate(self.names):
            post[n] = np.exp(x[..., i])
            post[f"log_{n}"] = x[..., i]
        stats = {}
        if "diverging" in self._extra:
            stats["diverging"] = self._extra["diverging"]
        prior = {n: np.exp(self.prior.log_loc[i] + self.prior.log_scale[i]
                           * np.random.default_rng(0).standard_normal((1, 1000)))
                 for i, n in enumerate(self.names)}
        return az.from_dict(posterior=post, sample_stats=stats or None, prior=prior)

    # ------------------------------------------------------------------ prediction
    def predict(self, schedule, times_h, model=None, *, n_draws: int = 200,
                quantiles=(0.05, 0.5, 0.95), key=0, chunk_size: int = 64) -> Prediction:
        """Posterior-predictive simulation of ``schedule`` at ``times_h``.

        model: the model to simulate; default the calibrated one. Pass the therapy agent of a
            theranostic pair (``pbpk.theranostic_pair(imaging_model, "PSMA-617")``) to predict
            therapy on the calibrated physiology: the calibrated parameters are set on it.
        n_draws: posterior draws to simulate (all if fewer are available).
        quantiles: probabilities in [0, 1] of the quantile tables (0.05, not 5); the columns are
            labelled in percent (``q5``).
        """
        quantiles = _check_quantiles(quantiles)
        model = self.model if model is None else model
        if not isinstance(model, pbpk.PBPKModel):
            raise CalibrationError("predict() needs a pbpk.PBPKModel; this posterior came from a generic "
                                   "model function. Pass model=... explicitly.")
        self.prior.check_model(model)
        n = self.log_samples.shape[0]
        if n > n_draws:
            rng = np.random.default_rng(int(key) if isinstance(key, (int, np.integer)) else 0)
            idx = np.sort(rng.choice(n, n_draws, replace=False))
        else:
            idx = np.arange(n)
        params = {nm: np.exp(self.log_samples[idx, i]) for i, nm in enumerate(self.names)}
        res = pbpk.simulate_cohort(model, schedule, times_h, params, chunk_size=min(chunk_size, len(idx)))
        ok = np.asarray(res.status) == 0
        n_failed = int((~ok).sum())
        if n_failed:
            warnings.warn(f"{n_failed} of {len(idx)} posterior draws failed to simulate {model.name!r}; "
                          "they are excluded from the prediction.", SolverFailureWarning, stacklevel=2)
        if not ok.any():
            raise CalibrationError("every posterior draw failed to simulate; check the schedule and model.")
        return Prediction(
            times_h=np.asarray(times_h, dtype=float).reshape(-1),
            regions=res.regions, body_regions=res.body_regions,
            activity_mbq=np.asarray(res.activity_mbq)[ok], tia_mbq_h=np.asarray(res.tia_mbq_h)[ok],
            quantiles=tuple(float(q) for q in quantiles), n_failed=n_failed, model_name=model.name)

    def __repr__(self) -> str:
        return (f"Posterior(method={self.method!r}, {len(self.names)} parameters, "
                f"{self.log_samples.shape[0]} draws, uninformed={list(self.uninformed)})")


def _check_quantiles(quantiles) -> tuple[float, ...]:
    """Quantile probabilities, each a real number in [0, 1]."""
    if isinstance(quantiles, (str, bytes)) or np.ndim(quantiles) > 1:
        raise InvalidInputError(f"quantiles = {quantiles!r} must be a sequence of probabilities, e.g. (0.05, 0.5, 0.95).")
    qs = [quantiles] if np.ndim(quantiles) == 0 else list(quantiles)
    out = []
    for q in qs:
        x = real_or_none(q)
        if x is None or not 0.0 <= x <= 1.0:
            hint = f" (give {x / 100:g}, not {x:g}: probabilities, not percent)" if x is not None and 1 < x <= 100 else ""
            raise InvalidInputError(f"quantile {q!r} must be a probability in [0, 1]{hint}.")
        out.append(x)
    if not out:
        raise InvalidInputError("give at least one quantile, e.g. quantiles=(0.05, 0.5, 0.95).")
    return tuple(out)


def _check_setting(name: str, value, *, low: float = 0.0, high: float | None = None,
                   low_open: bool = True, example: str = "") -> float:
    """A real, finite setting of :func:`calibrate` in (low, high) (``low_open=False``: [low, ...))."""
    x = real_or_none(value)
    ok = x is not None and math.isfinite(x) and (x > low if low_open else x >= low) and (high is None or x < high)
    if not ok:
        rng = f"{'>' if low_open else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise InvalidInputError(f"{name} = {value!r} must be a finite number {rng}{example}.")
    return float(x)


# ============================================================================ methods
def _as_key(key):
    if isinstance(key, (int, np.integer)):
        return jax.random.PRNGKey(int(key))
    return key


#: accepted ``chain_method`` values of :func:`calibrate` (NUTS)
CHAIN_METHODS = ("auto", "processes", "vectorized", "sequential")


def _raw_keys(key, n: int) -> np.ndarray:
    """(n, 2) raw uint32 keys: ``split(key, n)``, or the key itself for one chain."""
    keys = key[None] if n == 1 else jax.random.split(key, n)
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        keys = jax.random.key_data(keys)
    return np.asarray(keys, dtype=np.uint32)


def _resolve_chain_method(chain_method: str, problem: _Problem, num_chains: int) -> str:
    from calibration._chains import available_cores

    if num_chains < 2:
        return "sequential"
    if chain_method == "auto":
        if problem.is_pbpk and available_cores() >= 2:
            return "processes"
        return "vectorized"
    if chain_method == "processes" and available_cores() < 2:
        log.info("chain_method='processes' on one CPU core: running the chains vectorised in this process")
        return "vectorized"
    return chain_method


def _run_map(problem: _Problem, z0, max_iter: int, gtol: float):
    """L-BFGS (optax's ``scale_by_lbfgs`` direction) with a backtracking Armijo line search.

    Every evaluation goes through the one jitted value-and-gradient of the problem, so MAP,
    Laplace (``hessian="fd"``) and :class:`LogPosterior` share a single compilation. A failed
    solve has value +inf: the line search steps back, and the failure is counted.
    """
    fns, data = problem.fns, problem.data

    n_bad_grad = 0

    def evaluate(z):
        nonlocal n_bad_grad
        (v, ok), g = fns["vg"](jnp.asarray(z), data)
        g = np.asarray(g)
        if bool(ok) and not np.all(np.isfinite(g)):
            n_bad_grad += 1
            return float(v), False, np.zeros_like(g), True
        return float(v), bool(ok), g, False

    z = np.asarray(z0, dtype=float)
    v, ok, g, bad_grad = evaluate(z)
    if bad_grad:
        raise CalibrationError(_nonfinite_gradient_message(problem, z, "at the starting point (prior median)"))
    if not ok:
        raise CalibrationError("the simulation fails at the starting point (prior median); check the model, "
                               "schedule and simulate_options (max_steps, tolerances).")
    lbfgs_init, lbfgs_update = fns["lbfgs"]
    state = lbfgs_init(jnp.asarray(z))
    n_failed, n_eval, converged, it = 0, 1, False, 0
    for it in range(1, max_iter + 1):
        if float(np.max(np.abs(g))) < gtol:
            converged = True
            break
        d, state = lbfgs_update(jnp.asarray(g), state, jnp.asarray(z))
        d = np.asarray(d)
        slope = float(g @ d)
        if not np.all(np.isfinite(d)) or slope <= 0:  # not a descent direction: restart
            state = lbfgs_init(jnp.asarray(z))
            d, slope = g / max(1.0, float(np.linalg.norm(g))), float(g @ g) / max(1.0, float(np.linalg.norm(g)))
        alpha, accepted = 1.0, False
        for _ in range(40):
            z_try = z - alpha * d
            v_try, ok_try, g_try, bad_try = evaluate(z_try)
            n_eval += 1
            if bad_try:
                pass  # a non-finite gradient: step back like a failed solve (counted in n_bad_grad)
            elif not ok_try:
                n_failed += 1
            elif v_try <= v - 1e-4 * alpha * slope:
                accepted = True
                break
            alpha *= 0.5
        if not accepted:
            converged = float(np.max(np.abs(g))) < 100 * gtol
            break
        rel = abs(v - v_try) / max(1.0, abs(v))
        z, v, g = z_try, v_try, g_try
        if rel < 1e-14:
            converged = float(np.max(np.abs(g))) < 100 * gtol
            break
    gmax = float(np.max(np.abs(g)))
    converged = converged or gmax < gtol
    return z, {"map_iterations": it, "map_evaluations": n_eval, "map_converged": bool(converged),
               "map_grad_max": gmax, "map_neg_log_post": v, "map_failed_evaluations": n_failed,
               "map_nonfinite_gradients": n_bad_grad}


def _nonfinite_gradient_message(problem: _Problem, z, where: str) -> str:
    """Why the log-likelihood gradient is not finite at ``z``, naming observations predicted <= 0."""
    names = ""
    try:
        pred, _ = problem.predict(problem.data[0] + problem.data[1] * jnp.asarray(z))
        pred = np.asarray(pred)
        bad = [f"{r} at {t:g} h" for r, t, m in zip(problem.obs.region, problem.obs.time_h.tolist(), pred)
               if not m > 0]
        if bad:
            names = f" The model predicts 0 (or a non-finite value) for observation(s) {', '.join(bad)}."
    except Exception:  # noqa: BLE001 - a diagnosis only; the error below is raised anyway
        pass
    return (f"the gradient of the log-likelihood is not finite {where} although its value is;{names} "
            "A prediction of 0 has no log-normal likelihood: drop observations made before the "
            "administration (time_h is on the schedule's clock) or check the model function.")


def _hessian(problem: _Problem, z, method: str):
    fns, data = problem.fns, problem.data
    if method == "autodiff":
        return np.asarray(fns["hess"](jnp.asarray(z), data))
    if method == "fd":
        h = 1e-3
        p = len(z)
        H = np.empty((p, p))
        for i in range(p):
            e = np.zeros(p)
            e[i] = h
            (_, okp), gp = fns["vg"](jnp.asarray(z + e), data)
            (_, okm), gm = fns["vg"](jnp.asarray(z - e), data)
            if not (bool(okp) and bool(okm)):
                # a failed solve has its likelihood gradient zeroed (prior only): a difference
                # across it is no curvature, so the Hessian is unknown (the callers report it)
                return np.full((p, p), np.nan)
            H[:, i] = (np.asarray(gp) - np.asarray(gm)) / (2 * h)
        return 0.5 * (H + H.T)
    raise InvalidInputError(f"hessian = {method!r}; use 'autodiff' or 'fd'.")


def _potential(problem: _Problem):
    """The NUTS potential energy: the negative log posterior in z space (prior N(0, I)), +inf
    where the simulation fails. Its gradient rule calls the problem's jitted value-and-gradient
    (forward mode), so the eager gradient calls numpyro makes while initialising reuse one
    compiled function (the MAP's) instead of compiling the solver again for each."""
    vg, nlp, data = problem.fns["vg"], problem.fns["nlp"], problem.data

    @jax.custom_vjp
    def potential(z):
        return nlp(z, data)

    def fwd(z):
        (v, _), g = vg(z, data)
        return v, g

    def bwd(g, ct):
        return (ct * g,)

    potential.defvjp(fwd, bwd)
    return potential


def _run_svi(problem: _Problem, z_init, steps: int, learning_rate: float, key, full_rank: bool):
    """Stochastic variational inference with a Gaussian guide in z space, Adam (optax).

    The guide is ``N(loc, L L^T)`` with ``L`` lower triangular (``full_rank``) or diagonal,
    ``diag(L) = exp(log_diag)``, started at ``z_init`` with scale 0.1. Each step draws one
    ``eps ~ N(0, I)`` and follows the reparameterised gradient of the negative ELBO,
    ``U(loc + L eps) - sum(log_diag)`` (the potential ``U`` up to a constant; the Gaussian
    entropy is ``sum(log_diag)`` + const), i.e. numpyro's ``Trace_ELBO`` with one particle.
    Steps whose loss or gradient is not finite (a failed solve) are skipped.

    The loop runs in Python around the problem's compiled value-and-gradient (shared with the
    MAP, Laplace and NUTS initialisation, so nothing about the solver is compiled again) and a
    small jitted Adam step; a single jitted scan over the steps would compile the solver's
    gradient a second time, which costs more than the loop's dispatch overhead.

    Returns ``({"loc", "scale_tril", "log_diag"} as numpy, losses)``.
    """
    import optax

    vg, data = problem.fns["vg"], problem.data
    p = len(problem.names)
    opt = optax.adam(learning_rate)
    lower = np.tril(np.ones((p, p)), -1) if full_rank else np.zeros((p, p))

    def tril(params):
        return jnp.diag(jnp.exp(params["log_diag"])) + params["off"] * lower

    @jax.jit
    def draw(params, k):
        eps = jax.random.normal(k, (p,))
        return params["loc"] + tril(params) @ eps, eps

    @jax.jit
    def step(params, state, eps, value, gz):
        grads = {"loc": gz, "log_diag": gz * eps * jnp.exp(params["log_diag"]) - 1.0,
                 "off": jnp.outer(gz, eps) * lower}
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(gz))
        grads = jax.tree_util.tree_map(lambda g: jnp.where(ok, g, 0.0), grads)
        updates, new_state = opt.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        def keep(new, old):
            return jnp.where(ok, new, old)

        params = jax.tree_util.tree_map(keep, new_params, params)
        state = jax.tree_util.tree_map(keep, new_state, state)
        bad = jnp.isfinite(value) & ~jnp.all(jnp.isfinite(gz))  # finite loss, non-finite gradient
        return params, state, value - jnp.sum(params["log_diag"]), bad

    params = {"loc": jnp.asarray(z_init, dtype=float), "log_diag": jnp.full(p, np.log(0.1)),
              "off": jnp.zeros((p, p))}
    state = opt.init(params)
    keys = jax.random.split(key, steps)
    losses = []
    bad_grad = []
    report = max(1, steps // 4)
    for i in range(steps):
        z, eps = draw(params, keys[i])
        (v, _), gz = vg(z, data)
        params, state, loss, bad = step(params, state, eps, v, gz)
        losses.append(loss)
        bad_grad.append(bad)
        if (i + 1) % report == 0 and log.isEnabledFor(logging.INFO):
            log.info("SVI: step %d/%d, loss %.4g", i + 1, steps, float(loss))
    losses = np.asarray(jnp.stack(losses)) if losses else np.zeros(0)
    out = {"loc": np.asarray(params["loc"]), "log_diag": np.asarray(params["log_diag"]),
           "scale_tril": np.asarray(tril(params)),
           "nonfinite_gradients": int(np.asarray(jnp.stack(bad_grad)).sum()) if bad_grad else 0}
    return out, losses


def _draw_status(problem: _Problem, z_draws: np.ndarray) -> np.ndarray:
    """True where the simulation at a draw succeeds (and gives a finite likelihood)."""
    if z_draws.shape[0] == 0:
        return np.zeros(0, bool)
    logp = np.asarray(problem.data[0]) + np.asarray(problem.data[1]) * z_draws
    if problem.is_pbpk:
        params = {n: np.exp(logp[:, i]) for i, n in enumerate(problem.names)}
        opts = {k: v for k, v in problem.opts.items()}
        res = pbpk.simulate_cohort(problem.model, problem.schedule, problem.times, params,
                                   chunk_size=min(64, len(z_draws)), **opts)
        ok = np.asarray(res.status) == 0
        act = np.asarray(res.activity_mbq)[:, problem.t_idx, problem.r_idx]
        return ok & np.all(np.isfinite(act), axis=1)
    return np.asarray(problem.fns["status_batch"](jnp.asarray(z_draws), problem.data))


def calibrate(
    model,
    schedule,
    observations: Observations,
    prior: Prior | None = None,
    method: str = "laplace",
    *,
    key=0,
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 2,
    chain_method: str = "auto",
    max_tree_depth: int = 8,
    target_accept_prob: float = 0.8,
    dense_mass: bool = True,
    svi_steps: int = 2000,
    learning_rate: float = 0.01,
    guide: str = "multivariate",
    map_max_iter: int = 200,
    map_gtol: float = 1e-5,
    hessian: str = "autodiff",
    init: str = "median",
    simulate_options: Mapping | None = None,
    rhat_threshold: float = 1.01,
    ess_threshold: float = 100.0,
    informed_threshold: float = 0.8,
) -> Posterior:
    """Calibrate ``model`` on ``observations`` under ``prior`` and return a :class:`Posterior`.

    Parameters
    ----------
    model:
        A ``pbpk.PBPKModel`` of the observed agent (e.g. ``pbpk.psma_model("PSMA-11", ...)``),
        or a callable ``params -> predictions`` (dict of JAX scalars -> one value per observation,
        optionally ``(predictions, status)``) for generic problems.
    schedule:
        The administration(s) the observations follow (``pbpk.Schedule``); ignored for callables.
    observations:
        :class:`~calibration.Observations`. The simulation window ends at the last time.
    prior:
        :class:`~calibration.Prior`; default ``Prior.default(model)``.
    method:
        ``"map"`` (L-BFGS via optax), ``"laplace"`` (MAP + Gaussian from the Hessian of the log
        posterior in log-parameter space), ``"laplace_is"`` (the Laplace Gaussian, widened by
        :data:`IS_PROPOSAL_SCALE`, as the proposal of Pareto-smoothed importance sampling, then
        resampled to ``num_samples`` equally weighted draws: it corrects the skew and curvature
        the Gaussian misses at the cost of one log-posterior evaluation per draw; the Pareto k
        diagnostic is in ``posterior.diagnostics["pareto_k"]``), ``"svi"`` (Gaussian guide in the standardised log space,
        full-rank or mean-field, reparameterised ELBO gradient with optax Adam; numpyro's
        ``Trace_ELBO`` with one particle) or ``"nuts"`` (numpyro NUTS on the potential).
    key:
        ``jax.random`` key or integer seed.
    num_samples, num_warmup, num_chains, chain_method, max_tree_depth, target_accept_prob, dense_mass:
        NUTS settings (``dense_mass``: adapt a full mass matrix, default; cheap for a few
        parameters and it removes the cost of correlated posteriors) (``num_samples`` also sets the number of Laplace/SVI draws). Chains run
        ``"vectorized"`` (lock-step, one process), ``"sequential"`` or ``"processes"`` (the
        chains split over one process per CPU core, this one included, each group vectorised;
        about 2x faster on 2 cores; the model must pickle: a ``pbpk.PBPKModel`` or a module-level
        function). ``"auto"`` (default) picks ``"processes"`` for a ``pbpk.PBPKModel`` with
        >= 2 chains on >= 2 cores, else ``"vectorized"``. numpyro's ``"parallel"`` does not work
        with the solver in this JAX version. Chain ``c`` is seeded with
        ``jax.random.split(key, num_chains)[c]`` whatever the chain method.
    svi_steps, learning_rate, guide:
        SVI settings; ``guide`` is ``"multivariate"`` or ``"normal"`` (mean field).
    map_max_iter, map_gtol, hessian:
        MAP iterations, gradient tolerance (z space), ``"autodiff"`` (``jax.hessian``) or ``"fd"``
        (central differences of the gradient; no extra compilation) for Laplace.
    init:
        ``"median"`` (prior median) or ``"map"`` (start SVI/NUTS from the MAP point).
    simulate_options:
        ``rtol``, ``atol``, ``max_steps``, ``solver`` passed to ``pbpk.simulate`` inside the
        likelihood; defaults :data:`LIKELIHOOD_SIMULATE_OPTIONS` (rtol 1e-4, atol 1e-8 nmol).
        Gradients are computed in forward mode (``jax.jacfwd``) whatever the method.
    rhat_threshold, ess_threshold:
        NUTS diagnostics below which a :class:`~calibration.ConvergenceWarning` is issued.
    informed_threshold:
        Posterior/prior log-sd ratio above which (with a small shift) a parameter is reported
        as not informed by the data.
    """
    if method not in METHODS:
        raise InvalidInputError(f"method {method!r} is not known; use one of {', '.join(METHODS)}.")
    if init not in ("median", "map"):
        raise InvalidInputError(f"init {init!r}; use 'median' or 'map'.")
    if chain_method not in CHAIN_METHODS:
        raise InvalidInputError(f"chain_method {chain_method!r}: use one of {', '.join(map(repr, CHAIN_METHODS))} "
                                "(numpyro's 'parallel' chains fail with the ODE solver in this JAX version; "
                                "'processes' runs chains in worker processes instead).")
    for name, v in (("num_samples", num_samples), ("num_warmup", num_warmup), ("num_chains", num_chains),
                    ("svi_steps", svi_steps), ("map_max_iter", map_max_iter)):
        if not isinstance(v, (int, np.integer)) or v < (0 if name == "num_warmup" else 1):
            raise InvalidInputError(f"{name} = {v!r} must be a positive integer.")
    learning_rate = _check_setting("learning_rate", learning_rate, example=" (the Adam step size of SVI, e.g. 0.01)")
    target_accept_prob = _check_setting("target_accept_prob", target_accept_prob, high=1.0,
                                        example=" (the NUTS target acceptance probability, e.g. 0.8)")
    map_gtol = _check_setting("map_gtol", map_gtol, example=" (e.g. 1e-5)")
    rhat_threshold = _check_setting("rhat_threshold", rhat_threshold, example=" (e.g. 1.01)")
    ess_threshold = _check_setting("ess_threshold", ess_threshold, low_open=False, example=" (e.g. 100)")
    informed_threshold = _check_setting("informed_threshold", informed_threshold,
                                        example=" (a posterior/prior log-sd ratio, e.g. 0.8)")
    if not isinstance(max_tree_depth, (int, np.integer)) or isinstance(max_tree_depth, bool) or max_tree_depth < 1:
        raise InvalidInputError(f"max_tree_depth = {max_tree_depth!r} must be a positive integer (e.g. 8).")
    if method == "laplace_is" and num_samples < _IS_MIN_DRAWS:
        raise InvalidInputError(f"method='laplace_is' needs num_samples >= {_IS_MIN_DRAWS} (the Pareto fit to the "
                                f"largest importance weights needs that many draws); got {num_samples}.")
    if prior is None:
        if not isinstance(model, pbpk.PBPKModel):
            raise InvalidInputError("a generic model function needs an explicit prior.")
        prior = Prior.default(model)
    problem = _Problem(model, schedule, observations, prior, simulate_options)
    key = _as_key(key)
    pool = None  # NUTS worker processes, started now so that they start up while the MAP runs
    if method == "nuts":
        from calibration import _chains

        keys = _raw_keys(key, num_chains)  # chain c: split(key, C)[c] whatever the method (1 chain: key)
        cm = _resolve_chain_method(chain_method, problem, num_chains)
        if cm == "processes":
            try:
                pool = _chains.ChainProcesses(model, problem.schedule, observations, prior, simulate_options, keys,
                                              _nuts_settings(num_warmup, num_samples, max_tree_depth,
                                                             target_accept_prob, dense_mass),
                                              min(num_chains, _chains.available_cores()))
            except ChainProcessError as e:
                cm = _processes_fallback(e, chain_method, "cannot run", stacklevel=3)
    try:
        return _calibrate(problem, model, observations, prior, method, key, num_samples, num_warmup, num_chains,
                          chain_method, cm if method == "nuts" else None, keys if method == "nuts" else None, pool,
                          svi_steps, learning_rate, guide, map_max_iter, map_gtol, hessian, init, rhat_threshold,
                          ess_threshold, informed_threshold, max_tree_depth, target_accept_prob, dense_mass)
    finally:
        if pool is not None:
            pool.close()


#: start NUTS warmup from the Laplace covariance at the MAP when ``init="map"`` (see
#: :func:`_laplace_inverse_mass`)
_LAPLACE_INIT_MASS = True


#: ``method="laplace_is"``: the proposal is the Laplace Gaussian with its standard deviations
#: multiplied by this factor, so that its tails cover the posterior's (importance weights from a
#: proposal narrower than the target have a heavy tail). Measured on the 18F-PSMA PET 1/4/8 h
#: calibrations of the virtual trial (10 parameters, 1000 draws, 14 patients): the largest
#: Pareto k was 0.77 at 1.0, 0.49 at 1.15 and 0.28 at 1.3, with a median importance ESS of 673,
#: 624 and 368 draws.
IS_PROPOSAL_SCALE = 1.15
_IS_MIN_DRAWS = 100  # below ~100 draws the Pareto tail fit has too few weights (k = inf)


_LP_CHUNK = 100  # draws per vectorised log-posterior evaluation (one compilation per design)


def _log_posterior_draws(problem: _Problem, z_draws: np.ndarray) -> np.ndarray:
    """Log posterior density (z space, up to a constant) at each draw; ``-inf`` where the
    simulation fails. Vectorised over chunks of :data:`_LP_CHUNK` draws (the last one padded, so
    one compilation serves every call); a generic model that cannot be vectorised is evaluated
    one draw at a time."""
    n = z_draws.shape[0]
    try:
        parts = []
        for i in range(0, n, _LP_CHUNK):
            chunk = z_draws[i:i + _LP_CHUNK]
            pad = _LP_CHUNK - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            parts.append(np.asarray(problem.fns["lp_batch"](jnp.asarray(chunk), problem.data))[:_LP_CHUNK - pad])
        out = np.concatenate(parts)
    except Exception:  # noqa: BLE001 - a generic model function may not support vmap
        if problem.is_pbpk:
            raise
        nlp = problem.fns["nlp"]
        out = np.array([-float(nlp(jnp.asarray(z), problem.data)) for z in z_draws])
    return np.where(np.isfinite(out), out, -np.inf)


def _importance_resample(problem: _Problem, z_prop: np.ndarray, log_q: np.ndarray, key) -> tuple[np.ndarray, dict]:
    """Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao and Gabry, JMLR
    2024;25:72) of the posterior with the proposal draws ``z_prop`` (log density ``log_q`` up
    to a constant), then systematic resampling to as many equally weighted draws.

    Returns the draws and the diagnostics: ``pareto_k`` (the fitted tail shape of the weights;
    reliable below ``pareto_k_threshold`` = min(1 - 1/log10(S), 0.7) for S draws),
    ``importance_ess`` (effective sample size of the smoothed weights) and ``failed_draws``."""
    n = z_prop.shape[0]
    log_p = _log_posterior_draws(problem, z_prop)
    ok = np.isfinite(log_p)
    if not ok.any():
        raise CalibrationError("every importance-sampling draw failed to simulate; use method='nuts' or "
                               "loosen the prior.")
    lw = log_p[ok] - log_q[ok]
    lw = lw - lw.max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz's own warning on a large k; reported below instead
        import arviz as az

        slw, k = az.psislw(lw)
    w = np.exp(np.asarray(slw, float) - np.max(slw))
    w = w / w.sum()
    # systematic resampling: one uniform offset, n evenly spaced points on the weights' CDF
    u = (float(jax.random.uniform(key, ())) + np.arange(n)) / n
    idx = np.minimum(np.searchsorted(np.cumsum(w), u), w.size - 1)
    info = {"pareto_k": float(k), "pareto_k_threshold": float(min(1.0 - 1.0 / math.log10(n), 0.7)),
            "importance_ess": float(1.0 / np.sum(w * w)), "proposal_draws": int(n),
            "proposal_scale": IS_PROPOSAL_SCALE, "failed_draws": int((~ok).sum())}
    return z_prop[ok][idx], info


def _laplace_inverse_mass(problem: _Problem, z_map) -> np.ndarray | None:
    """Initial NUTS inverse mass matrix: the Laplace covariance (inverse finite-difference
    Hessian, 2P gradients) at the MAP in z space, or None where it is not positive definite.
    Only the warmup's starting point changes (its windows still adapt the mass matrix from the
    draws): the early trajectories need fewer leapfrog steps on a correlated posterior."""
    H = _hessian(problem, np.asarray(z_map, dtype=float), "fd")
    if not np.all(np.isfinite(H)):
        return None
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    if np.any(w <= 1e-8):
        return None
    w = np.clip(w, 0.1, 1e8)  # prior precision is 1: posterior variances stay <= ~1 (here <= 10)
    return (V / w) @ V.T


def _processes_fallback(error, chain_method: str, what: str, stacklevel: int) -> str:
    """Worker processes for NUTS chains are unavailable: re-raise when the user asked for them,
    else warn and return the in-process chain method."""
    if chain_method != "auto":
        raise error
    warnings.warn(f"NUTS chains in worker processes {what}; running them vectorised in this process "
                  f"instead. {error}", CalibrationWarning, stacklevel=stacklevel)
    return "vectorized"


def _nuts_settings(num_warmup, num_samples, max_tree_depth, target_accept_prob, dense_mass) -> dict:
    return {"num_warmup": int(num_warmup), "num_samples": int(num_samples), "max_tree_depth": int(max_tree_depth),
            "target_accept_prob": float(target_accept_prob), "dense_mass": bool(dense_mass)}


def _calibrate(problem, model, observations, prior, method, key, num_samples, num_warmup, num_chains, chain_method,
               cm, keys, pool, svi_steps, learning_rate, guide, map_max_iter, map_gtol, hessian, init, rhat_threshold,
               ess_threshold, informed_threshold, max_tree_depth, target_accept_prob, dense_mass) -> Posterior:
    p = len(problem.names)
    diag: dict[str, Any] = {"method": method, "n_parameters": p, "n_observations": len(observations)}
    extra: dict[str, Any] = {}
    messages: list[str] = []
    map_log = None
    chains = None
    t0 = time.perf_counter()

    z_map = None
    if method in ("map", "laplace", "laplace_is") or init == "map":
        tm = time.perf_counter()
        z_map, info = _run_map(problem, np.zeros(p), map_max_iter, map_gtol)
        diag.update(info)
        diag["map_wall_s"] = time.perf_counter() - tm
        map_log = np.asarray(problem.data[0]) + np.asarray(problem.data[1]) * z_map
        if info["map_nonfinite_gradients"]:
            messages.append(f"{info['map_nonfinite_gradients']} MAP line-search point(s) had a non-finite "
                            "log-likelihood gradient; they were stepped back from.")
        if not info["map_converged"]:
            messages.append(f"MAP optimisation did not converge in {info['map_iterations']} iterations "
                            f"(max |grad| {info['map_grad_max']:.2g}); raise map_max_iter.")
    sigma = np.asarray(problem.data[1])
    mu = np.asarray(problem.data[0])

    if method == "map":
        z_draws = z_map[None, :]
    elif method in ("laplace", "laplace_is"):
        th = time.perf_counter()
        H = _hessian(problem, z_map, hessian)
        diag["hessian_wall_s"] = time.perf_counter() - th
        diag["hessian"] = hessian
        if not np.all(np.isfinite(H)):
            raise CalibrationError("the Hessian at the MAP is not finite (failed solves near the MAP"
                                   + (", at a finite-difference point: try hessian='autodiff'" if hessian == "fd"
                                      else "") + "); use method='nuts' or loosen the prior.")
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        if np.any(w <= 0):
            messages.append(f"the Hessian at the MAP has {int((w <= 0).sum())} non-positive eigenvalue(s); "
                            "they were clipped to the prior precision (the MAP may not be a maximum).")
            w = np.where(w <= 0, 1.0, w)
        cov_z = (V / w) @ V.T
        diag["laplace_min_eigenvalue"] = float(w.min())
        eps = np.asarray(jax.random.normal(key, (num_samples, p)))
        extra["cov_log"] = cov_z * np.outer(sigma, sigma)
        if method == "laplace":
            z_draws = z_map + eps @ (V / np.sqrt(w)).T
        else:
            ti = time.perf_counter()
            z_prop = z_map + IS_PROPOSAL_SCALE * eps @ (V / np.sqrt(w)).T
            # proposal log density up to a constant (it cancels in the normalised weights)
            z_draws, info = _importance_resample(problem, z_prop, -0.5 * np.sum(eps * eps, axis=1),
                                                 jax.random.fold_in(key, 1))
            info["importance_wall_s"] = time.perf_counter() - ti
            diag.update(info)
            if info["pareto_k"] > info["pareto_k_threshold"]:
                messages.append(f"importance sampling: Pareto k = {info['pareto_k']:.2f} > "
                                f"{info['pareto_k_threshold']:.2f}, the Laplace proposal is too far from the "
                                "posterior for reliable weights; raise num_samples or use method='nuts'.")
    elif method == "svi":
        if guide not in ("multivariate", "normal"):
            raise InvalidInputError(f"guide {guide!r}; use 'multivariate' or 'normal'.")
        z_init = z_map if z_map is not None else np.zeros(p)
        k1, k2 = jax.random.split(key)
        ts = time.perf_counter()
        svi_params, losses = _run_svi(problem, z_init, svi_steps, learning_rate, k1, guide == "multivariate")
        diag["svi_wall_s"] = time.perf_counter() - ts
        eps = np.asarray(jax.random.normal(k2, (num_samples, p)))
        z_draws = svi_params["loc"] + eps @ svi_params["scale_tril"].T
        diag["svi_final_loss"] = float(np.mean(losses[-max(1, svi_steps // 20):]))
        diag["svi_nonfinite_losses"] = int((~np.isfinite(losses)).sum())
        diag["svi_nonfinite_gradients"] = svi_params["nonfinite_gradients"]
        if svi_params["nonfinite_gradients"]:
            messages.append(f"{svi_params['nonfinite_gradients']} of {svi_steps} SVI steps had a finite loss but a "
                            "non-finite gradient and were skipped (a prediction of 0 or a non-differentiable "
                            "model); the guide may not have learnt from the data.")
        tail = losses[-max(2, svi_steps // 10):]
        if np.isfinite(tail).all() and np.std(tail) > 0 and len(tail) > 4:
            half = len(tail) // 2
            drift = abs(np.mean(tail[:half]) - np.mean(tail[half:])) / (np.std(tail) + 1e-12)
            diag["svi_loss_drift"] = float(drift)
            if drift > 2.0:
                messages.append("the SVI loss is still decreasing at the end; raise svi_steps.")
    else:  # nuts
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        from calibration import _chains

        settings = _nuts_settings(num_warmup, num_samples, max_tree_depth, target_accept_prob, dense_mass)
        tn = time.perf_counter()
        inv_mass = _laplace_inverse_mass(problem, z_map) if (z_map is not None and _LAPLACE_INIT_MASS) else None
        diag["nuts_initial_mass"] = "laplace" if inv_mass is not None else "identity"
        res = None
        log.info("NUTS: %d chain(s) x (%d warmup + %d draws), %s", num_chains, num_warmup, num_samples,
                 f"{len(pool.groups)} processes" if pool is not None else cm)
        if pool is not None:
            try:
                res, pinfo = pool.run(problem, z_map, inv_mass)
                diag.update({f"nuts_{k}": v for k, v in pinfo.items()})
            except ChainProcessError as e:
                cm = _processes_fallback(e, chain_method, "failed", stacklevel=4)
        diag["chain_method"] = cm
        if res is None:
            res = _chains.run_group(problem, z_map, keys, settings, chain_method=cm, inverse_mass=inv_mass)
        diag["nuts_wall_s"] = time.perf_counter() - tn
        log.info("NUTS: done in %.1f s", diag["nuts_wall_s"])
        zs = res["z"]  # (C, D, P)
        ok_draws = res["solve_ok"]
        div = res["diverging"]
        extra["diverging"] = div
        diag["divergences"] = int(div.sum())
        diag["num_steps_total_sampling"] = int(res["num_steps"].sum())
        diag["chains"], diag["draws"], diag["warmup"] = int(num_chains), int(num_samples), int(num_warmup)
        logc = mu + sigma * zs
        chains = logc
        if num_samples >= 4:
            rhat = np.asarray(split_gelman_rubin(logc))
            ess = np.asarray(effective_sample_size(logc))
        else:
            rhat = ess = np.full(p, np.nan)
        diag["rhat"], diag["ess"] = rhat, ess
        diag["rhat_max"] = float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan")
        diag["ess_min"] = float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan")
        if diag["divergences"]:
            messages.append(f"NUTS had {diag['divergences']} divergent transition(s) (failed solves count "
                            "as divergences); results may be biased.")
        if not diag["rhat_max"] <= rhat_threshold:
            messages.append(f"R-hat max {diag['rhat_max']:.3f} > {rhat_threshold}; run longer or more chains.")
        if not diag["ess_min"] >= ess_threshold:
            messages.append(f"ESS min {diag['ess_min']:.1f} < {ess_threshold}; run longer.")
        z_draws = zs.reshape(-1, p)
        diag["failed_draws"] = int((~ok_draws.reshape(-1)).sum())

    # failed solves among the draws (Laplace/SVI draws can land where the solver fails)
    if method == "laplace_is":
        pass  # failed draws had zero weight (diag["failed_draws"] counts them among the proposals)
    elif method in ("laplace", "svi"):
        ok = _draw_status(problem, z_draws)
        diag["failed_draws"] = int((~ok).sum())
        z_draws = z_draws[ok]
        if z_draws.shape[0] == 0:
            raise CalibrationError("every posterior draw failed to simulate.")
    elif method == "map":
        diag["failed_draws"] = 0
    diag["failed_solves"] = diag.get("failed_draws", 0) + diag.get("map_failed_evaluations", 0)
    if diag["failed_solves"]:
        warnings.warn(f"{diag['failed_solves']} simulation(s) failed during calibration (solver status != 0); "
                      "they had zero posterior density and were excluded. See posterior.diagnostics.",
                      SolverFailureWarning, stacklevel=3)
    diag["wall_s"] = time.perf_counter() - t0
    diag["warnings"] = list(messages)
    diag["converged"] = not messages
    for msg in messages:
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    post = Posterior(method=method, names=problem.names, log_samples=mu + sigma * z_draws, prior=prior,
                     observations=observations, model=model, schedule=problem.schedule, map_log=map_log,
                     diagnostics=diag, chains=chains, informed_threshold=informed_threshold, _extra=extra)
    if post.log_samples.shape[0] > 1 and post.uninformed:
        log.info("parameters not informed by the data (posterior ~ prior): %s", ", ".join(post.uninformed))
    return post
