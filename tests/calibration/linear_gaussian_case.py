"""The linear-Gaussian calibration case shared by the calibration tests.

Model: log y = c + A log p with log-normal noise (no floor) and log-normal priors, so the
posterior of log p is Gaussian in closed form. The model function lives at module level so
that it pickles by reference (chain worker processes import this module through the parent's
``sys.path``).
"""

import math

import jax.numpy as jnp
import numpy as np

from calibration import LogNormal, NoiseModel, Observations, Prior

A = np.array([[1.0, 0.5], [0.2, 1.0], [1.0, -1.0], [0.3, 0.3]])
C = np.array([0.1, -0.2, 0.3, 0.0])
CV = 0.2
PRIOR = Prior((LogNormal("a", 2.0, 0.8), LogNormal("b", 0.5, 0.5)))


def linear_model(params):
    logp = jnp.stack([jnp.log(params["a"]), jnp.log(params["b"])])
    return jnp.exp(C + jnp.asarray(A) @ logp)


def observations():
    """Noisy data from a = 3.0, b = 0.4 (fixed seed)."""
    rng = np.random.default_rng(3)
    true_log = np.array([math.log(3.0), math.log(0.4)])
    y = np.exp(C + A @ true_log + 0.15 * rng.standard_normal(len(C)))
    recs = [{"region": f"r{i}", "time_h": 1.0, "value": v, "unit": "MBq"} for i, v in enumerate(y)]
    return Observations.from_records(recs, noise=NoiseModel(cv=CV, floor=0.0))


def closed_form(obs):
    """Posterior mean and covariance of (log a, log b), written out independently."""
    s2 = math.log1p(CV**2)
    mu0, s0 = PRIOR.log_loc, PRIOR.log_scale
    cov = np.linalg.inv(np.diag(1 / s0**2) + A.T @ A / s2)
    mean = cov @ (mu0 / s0**2 + A.T @ (np.log(obs.value) - C) / s2)
    return mean, cov
