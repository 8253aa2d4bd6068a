"""Calibration inputs that used to be accepted silently: patient posteriors over other
parameters, log-parameter vectors of the wrong length, CV overrides for names the prior does
not hold, and interval levels given in percent."""

import math

import numpy as np
import pytest
from linear_gaussian_case import PRIOR, closed_form, linear_model, observations

import pbpk
from calibration import LogNormal, Prior, calibrate, calibrate_population, log_posterior
from calibration._errors import UnknownParameterError


@pytest.fixture(scope="module")
def post():
    return calibrate(linear_model, None, observations(), PRIOR, method="laplace", num_samples=200, key=0)


def test_log_posterior_needs_one_value_per_parameter_in_order():
    obs = observations()
    lp = log_posterior(linear_model, None, obs, PRIOR)
    mean, _ = closed_form(obs)
    v = lp(mean)   # a proper vector still works
    assert math.isfinite(v)
    for bad in (1.0, [1.0], [1.0, 2.0, 3.0], {"a": 1.0, "b": 0.1}):
        with pytest.raises(pbpk.InvalidInputError, match="2 log-parameters"):
            lp(bad)
    with pytest.raises(pbpk.InvalidInputError, match="2 log-parameters"):
        lp.value_and_grad(1.0)


def test_population_refuses_patient_posteriors_over_other_parameters(post):
    obs = [observations(), observations()]
    fits = [post, post]
    swapped = Prior((PRIOR["b"], PRIOR["a"]))
    with pytest.raises(pbpk.InvalidInputError, match="same order"):
        calibrate_population(linear_model, None, obs, swapped, patient_posteriors=fits, num_warmup=10,
                             num_samples=10, num_chains=1)
    with pytest.raises(pbpk.InvalidInputError, match="same order"):
        calibrate_population(linear_model, None, obs, Prior((PRIOR["a"],)), patient_posteriors=fits,
                             num_warmup=10, num_samples=10, num_chains=1)


def test_cv_overrides_must_name_prior_parameters():
    m = pbpk.psma_model("PSMA-11")
    with pytest.raises(UnknownParameterError, match="R_kidny"):
        Prior.default(m, cv={"R_kidny": 0.9})
    with pytest.raises(pbpk.InvalidInputError, match="must be a number"):
        Prior.default(m, cv={"R_kidney": "abc"})
    with pytest.raises(pbpk.InvalidInputError, match="cv must be a mapping"):
        Prior.default(m, cv=0.5)
    assert Prior.default(m, cv={"R_kidney": 0.9})["R_kidney"].cv == 0.9


@pytest.mark.parametrize("level", [90, 0.0, 1.0, -0.5, True])
def test_interval_levels_are_fractions(post, level):
    for call in (lambda: PRIOR["a"].interval(level), lambda: PRIOR.table(level),
                 lambda: post.interval(level), lambda: post.summary(level)):
        with pytest.raises(pbpk.InvalidInputError, match="between 0 and 1"):
            call()


def test_prior_interval_is_the_log_normal_quantile():
    # reference: exp(mu +- z sigma) with z = 1.6449 for 90 % (normal table)
    e = LogNormal("a", 2.0, 0.8)
    s = math.sqrt(math.log1p(0.8**2))
    lo, hi = e.interval(0.9)
    np.testing.assert_allclose([lo, hi], [2.0 * math.exp(-1.644854 * s), 2.0 * math.exp(1.644854 * s)], rtol=1e-6)


def test_an_empty_region_cell_is_a_missing_value():
    import pandas as pd

    from calibration import ObservationError, Observations

    df = pd.DataFrame({"region": ["kidney", np.nan], "time_h": [1.0, 1.0], "value": [1.0, 2.0],
                       "unit": ["MBq", "MBq"]})
    with pytest.raises(ObservationError, match="record 1 lacks region"):
        Observations.from_records(df)
