"""The fast likelihood: forward-mode gradients and the loose solver tolerance inside it.

References: central finite differences of a tight (rtol 1e-10) log posterior for the gradient;
the tight log posterior itself for the tolerance (the likelihood's default rtol 1e-4 must move
the log posterior by far less than one unit and the gradient by a small fraction).
"""

import math

import numpy as np
import pytest

import pbpk
from calibration import LIKELIHOOD_SIMULATE_OPTIONS, NoiseModel, Observations, Prior, log_posterior

PARAMS = ("R_kidney", "R_salivary", "R_spleen", "R_tumour1", "gfr_eff")
REGIONS = ("kidney", "salivary", "spleen", "tumour1", "plasma")
SCHEDULE = pbpk.Schedule.single(150.0)
TIGHT = {"rtol": 1e-10, "atol": 1e-14}


@pytest.fixture(scope="module")
def problem():
    model = pbpk.psma_model("PSMA-11", lesion_volumes_l=(0.012,), tumour_rest_volume_l=0.0)
    prior = Prior.default(model, PARAMS)
    truth = {k: float(v[0]) for k, v in prior.sample(4, 1).items()}
    res = pbpk.simulate(model, SCHEDULE, [1.0], truth)
    rng = np.random.default_rng(4)
    recs = [{"region": r, "time_h": 1.0, "unit": "MBq",
             "value": float(res.activity(r)[0]) * math.exp(0.1 * rng.standard_normal())} for r in REGIONS]
    obs = Observations.from_records(recs, agent="PSMA-11", noise=NoiseModel(cv=0.1))
    return model, prior, obs


def test_default_tolerance_is_the_documented_one():
    assert LIKELIHOOD_SIMULATE_OPTIONS["rtol"] == 1e-4 and LIKELIHOOD_SIMULATE_OPTIONS["atol"] == 1e-8
    with pytest.raises(TypeError):
        LIKELIHOOD_SIMULATE_OPTIONS["rtol"] = 1.0  # read-only


def test_forward_mode_gradient_matches_finite_differences(problem):
    model, prior, obs = problem
    lp = log_posterior(model, SCHEDULE, obs, prior, simulate_options=TIGHT)
    x = prior.log_loc + 0.3 * prior.log_scale * np.array([1.0, -0.5, 0.2, 0.8, -1.0])
    _, g = lp.value_and_grad(x)
    h = 1e-5
    fd = np.array([(lp(x + h * e) - lp(x - h * e)) / (2 * h) for e in np.eye(len(x))])
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-4 * np.abs(fd).max())


def test_loose_likelihood_tolerance_is_harmless(problem):
    model, prior, obs = problem
    loose = log_posterior(model, SCHEDULE, obs, prior)  # the calibrate() default
    tight = log_posterior(model, SCHEDULE, obs, prior, simulate_options=TIGHT)
    draws = prior.sample(7, 5)
    for k in range(5):
        x = np.log([draws[n][k] for n in prior.names])
        v1, g1 = loose.value_and_grad(x)
        v2, g2 = tight.value_and_grad(x)
        assert abs(v1 - v2) < 0.05, (k, v1, v2)
        assert np.max(np.abs(g1 - g2)) < 0.02 * max(1.0, np.max(np.abs(g2))), (k, g1, g2)
