"""Hierarchical (population) calibration: learn population medians and spreads from many
patients, then use them as the :class:`~calibration.Prior` of a new patient.

Population model, per calibrated parameter ``k`` and patient ``i``::

    log p_ik = log c_ik + delta_ik,      delta_ik ~ N(d_k, omega_k^2)

``c_ik`` is the patient's own model value (the covariate prediction: eGFR -> GFR, volumes
from CT ...; the median of ``prior.recentred(model_i)``), ``d_k`` the population shift of the
log-median relative to it and ``omega_k`` the between-patient log-sd (log-normal spread).
Hyperpriors: ``d_k ~ N(0, s_k^2)`` and ``omega_k ~ HalfNormal(s_k)``, ``s_k`` the log-sd of
the given prior (the prior states how far the population may sit from the model values).

Inference is two-stage (a Laplace-approximate hierarchical model, like first-order
conditional estimation in population PK):

1. every patient is calibrated alone by MAP + Laplace under ``prior``; dividing out that
   prior gives the patient's likelihood as a Gaussian in log p (information form
   ``exp(-theta' L theta / 2 + eta' theta)``, ``L`` projected onto the positive semi-definite
   cone; directions the data do not inform have ``L = 0``);
2. the patient parameters are integrated out analytically (Gaussian x Gaussian), and NUTS
   samples ``(d, omega)`` from the resulting closed-form marginal posterior: no ODE solve in
   stage 2, so it takes seconds for any number of patients.

Stage 2 is exact when the per-patient likelihood is Gaussian in log p (the linear-Gaussian
test case); for the PBPK model its accuracy is that of the Laplace approximation, which is
checked against NUTS in the recovery benchmark.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from calibration._errors import ConvergenceWarning, ObservationError, PriorError
from calibration._inference import Posterior, calibrate, read_only
from calibration._observations import Observations
from calibration._priors import LogNormal, Prior, check_level
from pbpk._errors import InvalidInputError
from pbpk._numbers import real_or_none

__all__ = ["PopulationPosterior", "calibrate_population", "population_log_likelihood"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PopulationPosterior:
    """Result of :func:`calibrate_population`.

    names: the calibrated parameters. shift_draws: (N, P) draws of ``d`` (log population median
    minus log model value). spread_draws: (N, P) draws of ``omega`` (between-patient log-sd).
    patients: the per-patient stage-1 :class:`Posterior` objects (Laplace under ``prior``).
    reference_prior: ``prior``; the population median is ``exp(log median + d)`` of its entries.
    reference_values: (P,) the parameter values of the reference model the shift is relative to
        (one model for every patient: that model's values; per-patient models: None, the
        prior's medians play that role). :meth:`prior` of a new model scales the reference
        prior's medians by ``new value / reference value``, so ``prior(reference model)``
        equals ``prior()``.
    """

    names: tuple[str, ...]
    shift_draws: np.ndarray
    spread_draws: np.ndarray
    patients: tuple[Posterior, ...]
    reference_prior: Prior
    diagnostics: dict
    _info: dict = field(default_factory=dict, repr=False)
    reference_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("shift_draws", "spread_draws", "reference_values"):
            object.__setattr__(self, name, read_only(getattr(self, name)))
        object.__setattr__(self, "patients", tuple(self.patients))

    @property
    def median(self) -> dict[str, float]:
        """The population median in natural units (reference model): ``exp(E[log median])``,
        the exponential of the posterior mean of its log, i.e. the posterior geometric mean (not
        the arithmetic posterior mean of the median)."""
        mu = self.reference_prior.log_loc + self.shift_draws.mean(axis=0)
        return {n: float(np.exp(mu[i])) for i, n in enumerate(self.names)}

    @property
    def spread(self) -> dict[str, float]:
        """Posterior mean of the between-patient log-sd ``omega``."""
        return {n: float(self.spread_draws[:, i].mean()) for i, n in enumerate(self.names)}

    def interval(self, level: float = 0.9) -> dict[str, dict[str, tuple[float, float]]]:
        """Central credible intervals: ``{"median": {name: (lo, hi)}, "spread": {...}}``
        (population median in natural units, spread as log-sd)."""
        level = check_level(level)
        q = [0.5 - level / 2, 0.5 + level / 2]
        mu = self.reference_prior.log_loc + self.shift_draws
        lo_m, hi_m = np.quantile(mu, q, axis=0)
        lo_s, hi_s = np.quantile(self.spread_draws, q, axis=0)
        return {"median": {n: (float(np.exp(lo_m[i])), float(np.exp(hi_m[i]))) for i, n in enumerate(self.names)},
                "spread": {n: (float(lo_s[i]), float(hi_s[i])) for i, n in enumerate(self.names)}}

    def prior(self, model=None, source: str | None = None) -> Prior:
        """The population as a :class:`Prior` for a new patient (posterior predictive of one
        patient's log p: mean ``log c + E[d]``, variance ``E[omega^2] + Var[d]``).

        model: the new patient's model; its parameter values are the covariate predictions
            ``c``: the reference prior's medians are scaled by ``c / reference value`` (see
            ``reference_values``). Default: the reference model (the ``reference_prior`` medians).
        """
        base_log = self.reference_prior.log_loc
        if model is not None:
            params = getattr(model, "parameters", None)
            if params is None:
                raise InvalidInputError(
                    f"prior(model) needs a model with parameters (a pbpk.PBPKModel), got {type(model).__name__}; "
                    "call prior() for the reference model.")
            self.reference_prior.check_model(model)
            new = np.array([float(params[n]) for n in self.names])
            if np.any(~np.isfinite(new) | (new <= 0)):
                bad = [n for n, v in zip(self.names, new) if not (math.isfinite(v) and v > 0)]
                raise PriorError(f"model {getattr(model, 'name', '')!r} has parameter(s) {', '.join(bad)} <= 0; "
                                 "a log-normal prior needs values > 0.")
            ref = self.reference_values if self.reference_values is not None else np.exp(base_log)
            base_log = base_log + np.log(new) - np.log(ref)
        mean_d = self.shift_draws.mean(axis=0)
        var = (self.spread_draws**2).mean(axis=0) + self.shift_draws.var(axis=0)
        src = source or (f"population calibration of {len(self.patients)} patients "
                         f"({self.diagnostics.get('method', 'laplace+nuts')})")
        ents = []
        for i, e in enumerate(self.reference_prior.entries):
            cv = math.sqrt(math.expm1(float(var[i])))
            ents.append(LogNormal(e.name, math.exp(float(base_log[i] + mean_d[i])), max(cv, 1e-6), src))
        return Prior(tuple(ents))

    def summary(self, level: float = 0.9):
        """pandas table per parameter: population median (mean and interval), spread (log-sd,
        mean and interval, and as CV) and the reference prior's median and log-sd."""
        import pandas as pd

        iv = self.interval(level)
        lo, hi = f"q{50 - 50 * level:g}", f"q{50 + 50 * level:g}"
        med, spr = self.median, self.spread
        rows = []
        for i, n in enumerate(self.names):
            rows.append({"parameter": n, "prior_median": self.reference_prior.entries[i].median,
                         "prior_log_sd": self.reference_prior.log_scale[i],
                         "pop_median": med[n], f"pop_median_{lo}": iv["median"][n][0],
                         f"pop_median_{hi}": iv["median"][n][1], "spread_log_sd": spr[n],
                         f"spread_{lo}": iv["spread"][n][0], f"spread_{hi}": iv["spread"][n][1],
                         "spread_cv": math.sqrt(math.expm1(spr[n] ** 2)),
                         "rhat": self.diagnostics["rhat"][i] if "rhat" in self.diagnostics else np.nan})
        return pd.DataFrame(rows).set_index("parameter")

    def __repr__(self) -> str:
        return (f"PopulationPosterior({len(self.names)} parameters, {len(self.patients)} patients, "
                f"{self.shift_draws.shape[0]} draws)")


def _gaussian_likelihood(post: Posterior, prior: Prior) -> tuple[np.ndarray, np.ndarray, int]:
    """Information form (L, eta) of a patient's likelihood in log p from its Laplace posterior
    (posterior precision minus prior precision); L is projected onto the PSD cone."""
    cov = post.covariance_log
    if cov is None:
        raise InvalidInputError("stage 1 needs Laplace posteriors (with a covariance).")
    m = post.map_log if post.map_log is not None else post.log_samples.mean(axis=0)
    prec_post = np.linalg.inv(cov)
    prec0 = np.diag(1.0 / prior.log_scale**2)
    L = 0.5 * ((prec_post - prec0) + (prec_post - prec0).T)
    w, V = np.linalg.eigh(L)
    clipped = int((w < -1e-8 * max(1.0, np.abs(w).max())).sum())
    w = np.clip(w, 0.0, None)
    L = (V * w) @ V.T
    # the posterior mean satisfies prec_post m = prec0 mu0 + eta
    eta = prec_post @ m - prec0 @ prior.log_loc
    # with L projected, keep eta in L's range (a flat direction carries no information)
    eta = V @ np.where(w > 0, V.T @ eta, 0.0)
    return L, eta, clipped


def population_log_likelihood(shift, spread, base_log, L, eta):
    """Marginal log-likelihood of the population ``(d, omega)`` (up to a constant).

    shift, spread: (P,) population log-median shift ``d`` and log-sd ``omega``.
    base_log: (I, P) patients' log model values ``log c_i``. L, eta: (I, P, P), (I, P): each
    patient's Gaussian likelihood ``exp(-theta' L theta / 2 + eta' theta)`` in ``theta = log p``.
    Integrates ``theta_i ~ N(log c_i + d, diag(omega^2))`` out analytically. JAX-traceable.
    """
    a = base_log + shift[None, :]
    prec = 1.0 / spread**2
    K = jnp.diag(prec)[None] + L
    b = prec[None, :] * a + eta
    chol = jnp.linalg.cholesky(K)
    y = jax.scipy.linalg.solve_triangular(chol, b[..., None], lower=True)[..., 0]
    logdet_k = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    per = (-0.5 * jnp.sum(prec[None, :] * a * a, axis=-1) + 0.5 * jnp.sum(y * y, axis=-1)
           + jnp.sum(jnp.log(prec)) * 0.5 - 0.5 * logdet_k)
    return jnp.sum(per)


def calibrate_population(
    model,
    schedule,
    observations: Sequence[Observations],
    prior: Prior | None = None,
    *,
    key=0,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    hessian: str = "fd",
    simulate_options=None,
    patient_posteriors: Sequence[Posterior] | None = None,
    rhat_threshold: float = 1.01,
) -> PopulationPosterior:
    """Learn population medians and spreads from many patients' data (see module docstring).

    Parameters
    ----------
    model:
        One model for every patient, or a sequence (one per patient: each patient's own
        physiology and covariates). A ``pbpk.PBPKModel`` or a generic callable (as in
        :func:`~calibration.calibrate`).
    schedule:
        One schedule or a sequence (one per patient).
    observations:
        A sequence of :class:`~calibration.Observations`, one per patient (at least 2).
    prior:
        Stage-1 prior and hyperprior scale; default ``Prior.default(model)``. With per-patient
        models it is recentred on each patient's model values.
    patient_posteriors:
        Stage-1 Laplace posteriors computed already (skips stage 1). Each one's own prior
        (``posterior.prior``) is divided out to recover that patient's likelihood, so they may
        have been fitted under another prior than ``prior`` (same parameters, same order).
    rhat_threshold:
        Stage-2 R-hat above which a :class:`~calibration.ConvergenceWarning` is issued (> 0).
    """
    x = real_or_none(rhat_threshold)
    if x is None or not math.isfinite(x) or x <= 0:
        raise InvalidInputError(f"rhat_threshold = {rhat_threshold!r} must be a finite number > 0 (e.g. 1.01).")
    obs = list(observations) if observations is not None else []
    if len(obs) < 2:
        raise ObservationError("population calibration needs the observations of at least 2 patients.")
    if any(not isinstance(o, Observations) for o in obs):
        raise ObservationError("observations must be a sequence of calibration.Observations, one per patient.")
    n = len(obs)
    models = list(model) if isinstance(model, (list, tuple)) else [model] * n
    schedules = list(schedule) if isinstance(schedule, (list, tuple)) and not _is_schedule_list(schedule) else [schedule] * n
    if len(models) != n or len(schedules) != n:
        raise InvalidInputError(f"{n} patients but {len(models)} models and {len(schedules)} schedules; "
                                "give one of each or one per patient.")
    if prior is None:
        if not hasattr(models[0], "parameters"):
            raise PriorError("a generic model function needs an explicit prior.")
        prior = Prior.default(models[0])
    t0 = time.perf_counter()
    per_patient = isinstance(model, (list, tuple))
    priors = [prior.recentred(m) if per_patient and hasattr(m, "parameters") else prior for m in models]
    if patient_posteriors is None:
        fits = []
        for i in range(n):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fits.append(calibrate(models[i], schedules[i], obs[i], priors[i], method="laplace",
                                      hessian=hessian, num_samples=200, key=i,
                                      simulate_options=simulate_options))
    else:
        fits = list(patient_posteriors)
        if len(fits) != n:
            raise InvalidInputError(f"{len(fits)} patient posteriors for {n} patients.")
        for i, (f, pr) in enumerate(zip(fits, priors)):
            if not isinstance(f, Posterior) or not isinstance(f.prior, Prior):
                raise InvalidInputError(f"patient posterior {i} is a {type(f).__name__}; give the Posterior "
                                        "objects returned by calibrate(..., method='laplace').")
            if tuple(getattr(f, "names", ())) != tuple(pr.names):
                raise InvalidInputError(
                    f"patient posterior {i} is over ({', '.join(getattr(f, 'names', ()))}) but the prior "
                    f"over ({', '.join(pr.names)}); calibrate each patient with this prior (same "
                    "parameters, same order).")
    stage1_s = time.perf_counter() - t0
    Ls, etas, clipped = [], [], 0
    for f in fits:
        # divide out the prior the patient was fitted under (its own), not the population's
        L, eta, c = _gaussian_likelihood(f, f.prior)
        Ls.append(L)
        etas.append(eta)
        clipped += c
    base = np.stack([pr.log_loc for pr in priors])
    # the shift d is relative to ``base``: with one model for all, the prior's medians, which
    # correspond to that model's values (kept to rescale the prior of a new patient's model)
    ref_values = None
    if not per_patient and hasattr(models[0], "parameters"):
        ref_values = np.array([float(models[0].parameters[nm]) for nm in prior.names])
        if not np.all(np.isfinite(ref_values) & (ref_values > 0)):
            ref_values = None  # no log-normal reference: the prior's medians stand for it
    s0 = prior.log_scale
    data = (jnp.asarray(base), jnp.asarray(np.stack(Ls)), jnp.asarray(np.stack(etas)))

    import numpyro
    import numpyro.distributions as dist
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
    from numpyro.infer import MCMC, NUTS

    p = len(prior)

    def hier(base_log, L, eta):
        d = numpyro.sample("shift", dist.Normal(jnp.zeros(p), jnp.asarray(s0)).to_event(1))
        w = numpyro.sample("spread", dist.HalfNormal(jnp.asarray(s0)).to_event(1))
        numpyro.factor("marginal", population_log_likelihood(d, w, base_log, L, eta))

    if isinstance(key, (int, np.integer)):
        key = jax.random.PRNGKey(int(key))
    mcmc = MCMC(NUTS(hier, dense_mass=True, target_accept_prob=0.9), num_warmup=num_warmup,
                num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized" if num_chains > 1 else "sequential", progress_bar=False)
    t1 = time.perf_counter()
    mcmc.run(key, *data, extra_fields=("diverging",))
    s = mcmc.get_samples(group_by_chain=True)
    d_c, w_c = np.asarray(s["shift"]), np.asarray(s["spread"])
    div = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    both = np.concatenate([d_c, np.log(w_c)], axis=-1)
    rhat = np.asarray(split_gelman_rubin(both)) if num_chains > 1 else np.full(2 * p, np.nan)
    ess = np.asarray(effective_sample_size(both))
    diag: dict[str, Any] = {
        "method": "laplace+nuts", "patients": n, "stage1_wall_s": stage1_s,
        "stage2_wall_s": time.perf_counter() - t1, "divergences": div,
        "rhat": np.maximum(rhat[:p], rhat[p:]), "ess_min": float(np.min(ess)),
        "rhat_max": float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan"),
        "clipped_likelihood_directions": clipped,
        "stage1_failed_solves": int(sum(f.diagnostics.get("failed_solves", 0) for f in fits)),
    }
    # stage-1 fits whose own diagnostics failed (MAP not converged, Hessian eigenvalues clipped,
    # non-finite gradients): their Gaussian likelihood feeds stage 2, so say so here
    bad1 = [i for i, f in enumerate(fits) if f.diagnostics.get("converged", True) is False]
    diag["stage1_not_converged"] = bad1
    msgs = []
    if bad1:
        first = (fits[bad1[0]].diagnostics.get("warnings") or ["see its diagnostics"])[0]
        msgs.append(f"stage 1: the calibration of patient(s) {', '.join(map(str, bad1))} did not converge "
                    f"(patient {bad1[0]}: {first}); the Laplace likelihood that stage 2 uses may be wrong for "
                    "them. See population.patients[i].diagnostics['warnings'].")
    if div:
        msgs.append(f"population NUTS had {div} divergent transition(s).")
    if num_chains > 1 and not diag["rhat_max"] <= rhat_threshold:
        msgs.append(f"population R-hat max {diag['rhat_max']:.3f} > {rhat_threshold}; run longer.")
    for m in msgs:
        warnings.warn(m, ConvergenceWarning, stacklevel=2)
    diag["converged"] = not msgs
    log.info("population calibration of %d patients: stage 1 %.1f s, stage 2 %.1f s", n, stage1_s,
             diag["stage2_wall_s"])
    return PopulationPosterior(names=prior.names, shift_draws=d_c.reshape(-1, p), spread_draws=w_c.reshape(-1, p),
                               patients=tuple(fits), reference_prior=prior, diagnostics=diag,
                               _info={"L": data[1], "eta": data[2], "base": data[0]},
                               reference_values=ref_values)


def _is_schedule_list(schedule) -> bool:
    """A list of Administrations is one schedule, not one schedule per patient."""
    try:
        from pbpk import Administration
    except ImportError:  # pragma: no cover
        return False
    return all(isinstance(a, Administration) for a in schedule)
