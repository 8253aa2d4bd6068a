"""Review 13B fixes of the calibration statistics: the early-observation rule after a cold
pre-dose, the finite-difference Laplace Hessian across a failed solve, stage-1 convergence in
population calibration and the prior density of a NaN.

References: the conjugate log-normal posterior written out by hand, a simulation of the
schedule (no activity before the hot injection), the sign of the curvature of a model that is
symmetric in log a, and scipy.stats.lognorm."""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import pbpk
from calibration import (
    CalibrationError,
    ConvergenceWarning,
    LogNormal,
    NoiseModel,
    ObservationError,
    Observations,
    Prior,
    PriorError,
    calibrate,
    calibrate_population,
    log_posterior,
)
from calibration._inference import early_observations


def _recs(rows, unit="MBq"):
    return [{"region": r, "time_h": t, "value": v, "unit": unit} for r, t, v in rows]


# ---------------------------------------------------------------- 1: cold pre-dose
def test_observation_after_a_cold_predose_but_before_the_hot_injection_is_refused():
    model = pbpk.psma_model("PSMA-11")
    sched = pbpk.Schedule((pbpk.Administration(0.0, time_h=0.0, ligand_nmol=5.0),
                           pbpk.Administration(150.0, time_h=2.0)))
    # reference: the simulation has no activity in the kidney at 1 h (only cold ligand so far)
    res = pbpk.simulate(model, sched, [1.0, 4.0])
    k = model.regions.index("kidney")
    assert float(res.activity_mbq[0, k]) == 0.0 and float(res.activity_mbq[1, k]) > 0.0
    obs = Observations.from_records(_recs([("kidney", 1.0, 1.0), ("kidney", 4.0, 3.0)]))
    assert early_observations(obs, sched) == (2.0, ["kidney at 1 h"])
    prior = Prior.default(model, parameters=["R_kidney"])
    # before: accepted, and the log posterior was a finite -1.07e7 at the prior median
    with pytest.raises(ObservationError, match=r"kidney at 1 h .*first administration carrying activity \(2 h\)"):
        log_posterior(model, sched, obs, prior)
    # after the hot injection: accepted
    later = Observations.from_records(_recs([("kidney", 3.0, 1.0), ("kidney", 4.0, 3.0)]))
    assert early_observations(later, sched) == (2.0, [])


# ---------------------------------------------------------------- 2: fd Hessian across a failure
_Y = np.array([2.0, 2.4, 1.8])
_CV = 0.1
_PRIOR_A = Prior((LogNormal("a", 1.0, 0.5),))
_S0 = math.sqrt(math.log1p(0.5**2))
_S2 = math.log1p(_CV**2)
_PREC = 1 / _S0**2 + len(_Y) / _S2  # conjugate posterior precision of log a (prior median 1)
_MEAN = (np.log(_Y).sum() / _S2) / _PREC
_A_FAIL = math.exp(_MEAN + 0.5e-3 * _S0)  # between the MAP and its finite-difference point z + 1e-3


def _fails_above(params):
    a = params["a"]
    return jnp.stack([a, a, a]), jnp.where(a > _A_FAIL, 1, 0)


def test_fd_hessian_across_a_failed_solve_is_an_error_not_a_wrong_covariance():
    obs = Observations.from_records(_recs([(f"r{i}", 1.0, v) for i, v in enumerate(_Y)]),
                                    noise=NoiseModel(cv=_CV, rc_cv=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = calibrate(_fails_above, None, obs, _PRIOR_A, method="laplace", hessian="autodiff")
    # the local (autodiff) Hessian is the analytic posterior precision
    assert post.map_log[0] == pytest.approx(_MEAN, abs=1e-6)
    assert post.covariance_log[0, 0] == pytest.approx(1 / _PREC, rel=1e-6)
    # before: the failed point's gradient (prior only) entered the difference, and the Laplace
    # sd came out 0.0169 instead of 0.0572 with no error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CalibrationError, match="Hessian at the MAP is not finite.*hessian='autodiff'"):
            calibrate(_fails_above, None, obs, _PRIOR_A, method="laplace", hessian="fd")


# ---------------------------------------------------------------- 3: population stage 1
def _symmetric(params):
    """y = a + 1/a: symmetric in log a, so the gradient is 0 at the prior median a = 1."""
    a = params["a"]
    return jnp.stack([a + 1.0 / a, a + 1.0 / a])


def test_population_reports_stage1_fits_that_did_not_converge():
    obs = [Observations.from_records(_recs([(f"r{j}", 1.0, v) for j, v in enumerate(y)]),
                                     noise=NoiseModel(cv=0.1)) for y in ([3.0, 3.2], [2.9, 3.1])]
    # reference: log m = log(2 cosh(log a)) has second derivative 1 at a = 1, where the
    # prediction 2 is below the data (~3, residual r ~ 0.4): the log-likelihood curves upwards by
    # r / s^2 ~ 0.4 / 0.01 = 40 in log a, more than the prior's 1/s0^2 = 4.5 downwards, so the
    # point where the optimiser starts (gradient 0) is a minimum of the posterior, not a maximum
    lp = log_posterior(_symmetric, None, obs[0], _PRIOR_A)
    h = 1e-3
    assert lp([h]) + lp([-h]) - 2 * lp([0.0]) > 0
    with pytest.warns(ConvergenceWarning, match=r"stage 1: the calibration of patient\(s\) 0, 1 did not converge"):
        pop = calibrate_population(_symmetric, None, obs, _PRIOR_A, num_warmup=50, num_samples=50, num_chains=1)
    # before: no warning at all and diagnostics["converged"] True
    assert pop.diagnostics["stage1_not_converged"] == [0, 1]
    assert not pop.diagnostics["converged"]


# ---------------------------------------------------------------- 4: prior density of NaN
def test_prior_log_density_matches_scipy_and_refuses_nan():
    prior = Prior((LogNormal("a", 2.0, 0.8), LogNormal("b", 0.5, 0.3)))
    ref = (st.lognorm.logpdf(3.1, math.sqrt(math.log1p(0.8**2)), scale=2.0)
           + st.lognorm.logpdf(0.2, math.sqrt(math.log1p(0.3**2)), scale=0.5))
    assert prior.log_density({"a": 3.1, "b": 0.2}) == pytest.approx(ref, rel=1e-12)
    assert prior.log_density({"a": -1.0, "b": 0.2}) == -math.inf
    # before: nan was returned silently
    with pytest.raises(PriorError, match="a = nan"):
        prior.log_density({"a": float("nan"), "b": 0.2})


# ---------------------------------------------------------------- 5: bool cells
@pytest.mark.parametrize("key", ["time_h", "value", "cv", "recovery_coefficient"])
def test_bool_cells_are_not_numbers(key):
    row = {"region": "kidney", "time_h": 1.0, "value": 2.0, "unit": "MBq", key: True}
    # before: True was read as 1.0 (time 1 h, 1 MBq, CV 100 %), unlike NoiseModel(cv=True)
    with pytest.raises(ObservationError, match=f"{key} = True is a bool"):
        Observations.from_records([row])
    with pytest.raises(ObservationError, match="not a bool"):
        NoiseModel(cv=True)


def test_map_point_has_no_interval():
    """A MAP is one point: its interval is unknown (NaN), not of zero width (which read as
    certainty next to log_sd NaN). Reference: a posterior of one draw carries no spread."""
    import math

    import jax.numpy as jnp

    from calibration import NoiseModel, Observations, calibrate

    t = np.array([1.0, 2.0, 4.0])
    obs = Observations.from_records(
        [{"region": "a", "time_h": float(x), "value": float(2.0 * np.exp(-0.3 * x)), "unit": "MBq"} for x in t],
        noise=NoiseModel(cv=0.1))

    def model(p):
        return p["amp"] * jnp.exp(-0.3 * jnp.asarray(t))  # the observations in their order

    post = calibrate(model, None, obs, Prior((LogNormal("amp", 1.0, 1.0),)), method="map")
    assert post.log_samples.shape[0] == 1
    lo, hi = post.interval(0.9)["amp"]
    assert math.isnan(lo) and math.isnan(hi)
    s = post.summary()
    assert np.isnan(s.loc["amp", "q5"]) and np.isnan(s.loc["amp", "q95"])
    assert s.loc["amp", "map"] == pytest.approx(s.loc["amp", "median"])
