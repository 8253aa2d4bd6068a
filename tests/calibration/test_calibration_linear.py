"""Generic-model path: a linear-Gaussian problem in log space against its closed-form posterior.

Model: log y = c + A log p, log-normal noise without floor, log-normal priors. In the
log-parameters this is a linear-Gaussian model, so the posterior is Gaussian with known mean
and covariance; Laplace is exact, SVI (multivariate guide) and NUTS approximate it.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from linear_gaussian_case import PRIOR, closed_form, linear_model, observations

from calibration import (
    CalibrationError,
    ConvergenceWarning,
    LogNormal,
    NoiseModel,
    Observations,
    Prior,
    SolverFailureWarning,
    calibrate,
)


@pytest.fixture(scope="module")
def obs():
    return observations()


@pytest.mark.parametrize("hessian", ["autodiff", "fd"])
def test_laplace_is_exact(obs, hessian):
    mean, cov = closed_form(obs)
    post = calibrate(linear_model, None, obs, PRIOR, method="laplace", hessian=hessian, num_samples=4000)
    np.testing.assert_allclose(post.map_log, mean, atol=1e-6)
    np.testing.assert_allclose(post.covariance_log, cov, rtol=1e-4 if hessian == "autodiff" else 1e-3, atol=1e-8)
    np.testing.assert_allclose(post.log_samples.mean(0), mean, atol=4 * np.sqrt(np.diag(cov).max() / 4000) + 1e-3)
    s = post.summary()
    assert list(s.index) == ["a", "b"] and s["informed"].all()
    assert post.inference_data is not None


def test_map_only(obs):
    mean, _ = closed_form(obs)
    post = calibrate(linear_model, None, obs, PRIOR, method="map")
    np.testing.assert_allclose(post.map_log, mean, atol=1e-6)
    assert post.log_samples.shape == (1, 2)
    assert post.diagnostics["map_converged"]


def test_posterior_draws_are_read_only(obs):
    post = calibrate(linear_model, None, obs, PRIOR, method="laplace", num_samples=200)
    for arr in (post.log_samples, post.map_log, post.covariance_log):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0.0
    # the derived dictionaries are fresh copies the caller may edit
    s = post.samples
    s["a"][0] = -1.0
    assert np.all(post.samples["a"] > 0)


def test_svi_matchesclosed_form(obs):
    mean, cov = closed_form(obs)
    post = calibrate(linear_model, None, obs, PRIOR, method="svi", svi_steps=3000, learning_rate=0.02,
                     num_samples=4000, key=1)
    np.testing.assert_allclose(post.log_samples.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.sqrt(np.diag(post.covariance_log)), np.sqrt(np.diag(cov)), rtol=0.15)


def test_nuts_matchesclosed_form(obs):
    mean, cov = closed_form(obs)
    post = calibrate(linear_model, None, obs, PRIOR, method="nuts", num_warmup=300, num_samples=500,
                     num_chains=2, key=2, ess_threshold=50)
    d = post.diagnostics
    assert d["divergences"] == 0 and d["rhat_max"] < 1.05 and d["ess_min"] > 50
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(post.log_samples.mean(0), mean, atol=5 * sd.max() / np.sqrt(d["ess_min"]))
    np.testing.assert_allclose(post.log_samples.std(0), sd, rtol=0.2)
    assert post.chains.shape == (2, 500, 2)
    idata = post.inference_data
    assert idata.posterior["a"].shape == (2, 500)
    assert "diverging" in idata.sample_stats
    assert {"rhat", "ess"} <= set(post.summary().columns)


def test_short_nuts_warns(obs):
    with pytest.warns(ConvergenceWarning) as record:
        calibrate(linear_model, None, obs, PRIOR, method="nuts", num_warmup=20, num_samples=20, num_chains=2)
    assert any("ESS" in str(w.message) for w in record)


def test_uninformed_parameter_is_reported():
    # only 'a' enters the predictions: 'b' keeps its prior
    prior = Prior((LogNormal("a", 2.0, 0.8), LogNormal("b", 0.5, 0.5)))
    obs = Observations.from_records([{"region": "r", "time_h": 1.0, "value": 2.5, "unit": "MBq"},
                                     {"region": "s", "time_h": 1.0, "value": 2.7, "unit": "MBq"}],
                                    noise=NoiseModel(cv=0.05))
    post = calibrate(lambda p: jnp.stack([p["a"], p["a"]]), None, obs, prior, method="laplace", num_samples=2000)
    assert post.uninformed == ("b",)
    pvp = post.prior_vs_posterior()
    assert pvp.loc["b", "sd_ratio"] == pytest.approx(1.0, abs=0.06)
    assert pvp.loc["a", "sd_ratio"] < 0.2


def failing_model(params):
    """Fails (status 1, NaN output) where a > 3: a solver failure region."""
    pred = linear_model(params)
    bad = params["a"] > 3.0
    return jnp.where(bad, jnp.nan, pred), jnp.where(bad, 1, 0)


def test_failed_solves_are_flagged_not_crashed(obs):
    # the posterior mode sits on the failure boundary (a = 3), so the MAP may stop there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(SolverFailureWarning, match="failed"):
            post = calibrate(failing_model, None, obs, PRIOR, method="laplace", num_samples=500)
    assert post.diagnostics["failed_draws"] > 0
    assert np.all(np.isfinite(post.log_samples)) and np.all(np.exp(post.log_samples[:, 0]) <= 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nuts = calibrate(failing_model, None, obs, PRIOR, method="nuts", num_warmup=100, num_samples=100,
                         num_chains=1, key=4)
    assert np.all(np.isfinite(nuts.log_samples)) and np.all(np.exp(nuts.log_samples[:, 0]) <= 3.0)
    assert nuts.diagnostics["failed_draws"] == 0


def always_failing_model(params):
    """Every simulation fails (status 1)."""
    pred = linear_model(params)
    return jnp.full_like(pred, jnp.nan), jnp.ones((), jnp.int32)


def test_nuts_without_a_valid_start_raises(obs):
    # init="median" draws starting points around the prior median and redraws failed ones; when
    # none succeeds the error says so instead of sampling from a point of zero density
    with pytest.raises(CalibrationError, match="starting point"):
        calibrate(always_failing_model, None, obs, PRIOR, method="nuts", num_warmup=10, num_samples=10,
                  num_chains=1)
