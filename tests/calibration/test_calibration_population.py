"""Hierarchical (population) calibration on a linear-Gaussian model in log space.

Per patient: log y_i = C + A theta_i + e, e ~ N(0, s^2 I), theta_i = log p_i ~ N(mu0 + d, omega^2 I).
Here the per-patient Laplace stage is exact, so the population marginal likelihood has the
closed form  log y_i ~ N(C + A (mu0 + d), A diag(omega^2) A' + s^2 I)  (independent numpy
reference), and the (d, omega) posterior of a one-parameter problem can be integrated on a grid.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from calibration import (
    LogNormal,
    NoiseModel,
    ObservationError,
    Observations,
    Prior,
    calibrate_population,
    population_log_likelihood,
)

A = np.array([[1.0, 0.5], [0.2, 1.0], [1.0, -1.0], [0.3, 0.3]])
C = np.array([0.1, -0.2, 0.3, 0.0])
CV = 0.2
S2 = math.log1p(CV**2)
PRIOR = Prior((LogNormal("a", 2.0, 0.8), LogNormal("b", 0.5, 0.5)))
D_TRUE = np.array([0.3, -0.2])
OMEGA_TRUE = np.array([0.25, 0.4])


def linear_model(params):
    logp = jnp.stack([jnp.log(params["a"]), jnp.log(params["b"])])
    return jnp.exp(C + jnp.asarray(A) @ logp)


def _patients(n, seed, a=A, c=C, prior=PRIOR, d=D_TRUE, omega=OMEGA_TRUE):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        theta = prior.log_loc + d + omega * rng.standard_normal(len(prior))
        logy = c + a @ theta + math.sqrt(S2) * rng.standard_normal(len(c))
        recs = [{"region": f"r{i}", "time_h": 1.0, "value": float(np.exp(v)), "unit": "MBq"}
                for i, v in enumerate(logy)]
        out.append(Observations.from_records(recs, noise=NoiseModel(cv=CV, floor=0.0)))
    return out


def _closed_form_loglik(obs_list, d, omega, a=A, c=C, prior=PRIOR):
    cov = a @ np.diag(omega**2) @ a.T + S2 * np.eye(len(c))
    mean = c + a @ (prior.log_loc + d)
    return sum(multivariate_normal(mean, cov).logpdf(np.log(o.value)) for o in obs_list)


@pytest.fixture(scope="module")
def population():
    obs = _patients(40, seed=5)
    return obs, calibrate_population(linear_model, None, obs, PRIOR, num_warmup=400, num_samples=1000,
                                     num_chains=2, key=3)


def test_marginal_likelihood_matches_closed_form(population):
    obs, pop = population
    info = pop._info
    points = [(np.zeros(2), np.array([0.5, 0.5])), (D_TRUE, OMEGA_TRUE), (np.array([-0.4, 0.6]), np.array([0.1, 1.2]))]
    ours = [float(population_log_likelihood(jnp.asarray(d), jnp.asarray(w), info["base"], info["L"], info["eta"]))
            for d, w in points]
    ref = [_closed_form_loglik(obs, d, w) for d, w in points]
    # equal up to one additive constant (the Laplace normalisations)
    np.testing.assert_allclose(np.diff(ours), np.diff(ref), rtol=1e-7, atol=1e-6)


def test_population_recovers_the_truth(population):
    _, pop = population
    d = pop.diagnostics
    assert d["divergences"] == 0 and d["rhat_max"] < 1.02
    # 99 % credible intervals of the population median and spread contain the truth
    iv = pop.interval(0.99)
    for i, n in enumerate(PRIOR.names):
        true_median = PRIOR.entries[i].median * math.exp(D_TRUE[i])
        assert iv["median"][n][0] <= true_median <= iv["median"][n][1]
        assert iv["spread"][n][0] <= OMEGA_TRUE[i] <= iv["spread"][n][1]
    s = pop.summary()
    assert list(s.index) == ["a", "b"] and (s["spread_log_sd"] > 0).all()


def test_population_prior_for_a_new_patient(population):
    _, pop = population
    new = pop.prior()
    assert isinstance(new, Prior) and new.names == PRIOR.names
    mean_d, var = pop.shift_draws.mean(0), (pop.spread_draws**2).mean(0) + pop.shift_draws.var(0)
    for i, e in enumerate(new.entries):
        assert e.median == pytest.approx(PRIOR.entries[i].median * math.exp(mean_d[i]), rel=1e-12)
        assert e.log_scale == pytest.approx(math.sqrt(var[i]), rel=1e-9)
        assert "population" in e.source
    # it is narrower than the broad prior it was learned under, and near the true spread
    assert new.log_scale[0] < PRIOR.log_scale[0]
    np.testing.assert_allclose(new.log_scale, OMEGA_TRUE, rtol=0.5)


def test_stage_two_posterior_matches_grid_integration():
    """One parameter: the (d, omega) posterior on a grid (closed-form likelihood, the hyperpriors
    N(0, s0^2) and HalfNormal(s0)) against the NUTS draws."""
    a1, c1 = np.array([[1.0], [0.6]]), np.array([0.0, 0.2])
    prior1 = Prior((LogNormal("k", 1.5, 0.6),))
    d_true, w_true = np.array([0.2]), np.array([0.3])
    obs = _patients(8, seed=9, a=a1, c=c1, prior=prior1, d=d_true, omega=w_true)

    def model1(params):
        return jnp.exp(c1 + jnp.asarray(a1)[:, 0] * jnp.log(params["k"]))

    pop = calibrate_population(model1, None, obs, prior1, num_warmup=500, num_samples=2000, num_chains=2, key=1)
    s0 = prior1.log_scale[0]
    dg = np.linspace(-1.5, 1.5, 301)[:, None]
    wg = np.linspace(1e-3, 2.0, 400)[None, :]
    # closed form per patient: r ~ N(0, w^2 a a' + s2 I) (Sherman-Morrison, vectorised on the grid)
    av = a1[:, 0]
    aa = av @ av
    logpost = norm.logpdf(dg, 0, s0) + norm.logpdf(wg, 0, s0) + 0.0 * dg * wg
    for o in obs:
        r = np.log(o.value)[:, None, None] - (c1[:, None, None] + av[:, None, None] * (prior1.log_loc[0] + dg))
        ar = np.tensordot(av, r, axes=1)
        quad = ((r * r).sum(0) - wg**2 * ar**2 / (S2 + wg**2 * aa)) / S2
        logdet = len(av) * math.log(S2) + np.log1p(wg**2 * aa / S2)
        logpost = logpost - 0.5 * quad - 0.5 * logdet
    dg, wg = dg[:, 0], wg[0]
    wts = np.exp(logpost - logpost.max())
    wts /= wts.sum()
    mean_d, mean_w = (wts.sum(1) * dg).sum(), (wts.sum(0) * wg).sum()
    sd_d = math.sqrt((wts.sum(1) * (dg - mean_d) ** 2).sum())
    sd_w = math.sqrt((wts.sum(0) * (wg - mean_w) ** 2).sum())
    ess = pop.diagnostics["ess_min"]
    assert abs(pop.shift_draws[:, 0].mean() - mean_d) < 4 * sd_d / math.sqrt(ess) + 1e-3
    assert abs(pop.spread_draws[:, 0].mean() - mean_w) < 4 * sd_w / math.sqrt(ess) + 1e-3
    assert pop.shift_draws[:, 0].std() == pytest.approx(sd_d, rel=0.15)


def test_population_draws_are_read_only(population):
    _, pop = population
    with pytest.raises(ValueError, match="read-only"):
        pop.shift_draws[0, 0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        pop.patients[0].log_samples[0, 0] = 0.0


def test_needs_two_patients():
    with pytest.raises(ObservationError, match="at least 2"):
        calibrate_population(linear_model, None, _patients(1, seed=0), PRIOR)
