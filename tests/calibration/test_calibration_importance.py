"""``method="laplace_is"`` against a skewed posterior computed by quadrature.

Model: one parameter ``theta`` with a log-normal prior (median 1, log-sd 1) and one observation
of ``m = theta + 0.5`` (log-normal noise, log-sd 0.3), observed value 0.6. As ``theta -> 0`` the
prediction tends to 0.5, so the likelihood flattens and the posterior of ``log theta`` keeps the
prior's left tail: it is strongly skewed, and the Laplace Gaussian at the mode misses its lower
quantiles. The reference is the exact posterior of ``z = log theta`` on a fine grid
(trapezoidal quadrature of the normalised density), independent of the sampler.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from calibration import ConvergenceWarning, LogNormal, Observations, Prior, calibrate
from pbpk import InvalidInputError

OFFSET, Y_OBS, LOG_SD = 0.5, 0.6, 0.3
CV = float(np.sqrt(np.expm1(1.0)))  # log-sd 1 for a log-normal prior
PRIOR = Prior((LogNormal("theta", 1.0, CV),))
QUANTILES = (0.05, 0.5, 0.95)


def model(params):
    return jnp.reshape(params["theta"] + OFFSET, (1,))


def _observations():
    cv = float(np.sqrt(np.expm1(LOG_SD**2)))  # log-sd 0.3
    return Observations.from_records([{"region": "r", "time_h": 1.0, "value": Y_OBS, "unit": "MBq", "cv": cv}])


def _exact_quantiles():
    z = np.linspace(-10.0, 6.0, 200_001)
    r = np.log(Y_OBS) - np.log(np.exp(z) + OFFSET)
    logd = -0.5 * z * z - 0.5 * r * r / LOG_SD**2
    d = np.exp(logd - logd.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(z))])
    cdf /= cdf[-1]
    return np.interp(QUANTILES, cdf, z)


@pytest.fixture(scope="module")
def posteriors():
    obs = _observations()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        lap = calibrate(model, None, obs, PRIOR, method="laplace", num_samples=4000, key=3)
        lis = calibrate(model, None, obs, PRIOR, method="laplace_is", num_samples=4000, key=3)
    return lap, lis


def test_importance_corrected_quantiles_match_quadrature(posteriors):
    lap, lis = posteriors
    exact = _exact_quantiles()
    got = np.quantile(lis.log_samples[:, 0], QUANTILES)
    lap_q = np.quantile(lap.log_samples[:, 0], QUANTILES)
    # Monte Carlo standard error of a 5 % or 95 % quantile from ~3700 effective draws: ~0.02
    np.testing.assert_allclose(got, exact, atol=0.08)
    # the plain Laplace Gaussian misses both tails (0.27 and 0.16 here): the test can tell
    assert abs(lap_q[0] - exact[0]) > 0.2 and abs(lap_q[2] - exact[2]) > 0.1
    assert lis.log_samples.shape == (4000, 1)


def test_importance_diagnostics(posteriors):
    _, lis = posteriors
    d = lis.diagnostics
    assert d["method"] == "laplace_is"
    assert d["pareto_k"] < d["pareto_k_threshold"] <= 0.7
    assert 0.2 * 4000 < d["importance_ess"] <= 4000
    assert d["failed_draws"] == 0 and d["converged"]


def test_poor_proposal_is_flagged():
    """Observed value at the prediction's floor (0.5 = 0.5 + theta for theta -> 0) with 2 %
    noise: the posterior is the prior's left tail cut off near theta = 0.01, far heavier to
    the left than the Gaussian at its mode, so the weights' tail is heavy (Pareto k ~0.8) and
    the user is told to use NUTS instead."""

    def floor_model(params):  # its own function: jitted problems are cached per model function
        return jnp.reshape(params["theta"] + 0.5, (1,))

    cv = float(np.sqrt(np.expm1(0.02**2)))
    obs = Observations.from_records([{"region": "r", "time_h": 1.0, "value": 0.5, "unit": "MBq", "cv": cv}])
    with pytest.warns(ConvergenceWarning, match="Pareto k"):
        post = calibrate(floor_model, None, obs, PRIOR, method="laplace_is", num_samples=1000, key=3)
    assert post.diagnostics["pareto_k"] > post.diagnostics["pareto_k_threshold"]
    assert not post.diagnostics["converged"]


def test_too_few_draws_is_a_typed_error():
    with pytest.raises(InvalidInputError, match="num_samples >= 100"):
        calibrate(model, None, _observations(), PRIOR, method="laplace_is", num_samples=20)
