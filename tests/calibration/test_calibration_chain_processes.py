"""NUTS chains in worker processes (``chain_method="processes"``) on the linear-Gaussian case.

The model function is defined at module level so that it pickles by reference; the worker
imports this module through the parent's ``sys.path``. ``available_cores`` is patched to 2 so
the process path is exercised on any machine.
"""

import sys
import warnings

import numpy as np
import pytest
from linear_gaussian_case import PRIOR, closed_form, linear_model, observations

import calibration._chains as chains_mod
from calibration import (
    CalibrationWarning,
    ChainProcessError,
    calibrate,
)


def fails_in_worker(params):
    """The linear model, except in a chains worker process (``python -m calibration._chains``)."""
    if sys.argv and sys.argv[0].endswith("_chains.py"):
        raise RuntimeError("boom in the worker")
    return linear_model(params)


@pytest.fixture(scope="module")
def obs():
    return observations()


@pytest.fixture(autouse=True)
def two_cores(monkeypatch):
    monkeypatch.setattr(chains_mod, "available_cores", lambda: 2)


def test_processes_match_closed_form_and_vectorized(obs):
    mean, cov = closed_form(obs)
    kw = {"method": "nuts", "num_warmup": 150, "num_samples": 200, "num_chains": 2, "key": 5, "ess_threshold": 50,
          "init": "map"}
    post = calibrate(linear_model, None, obs, PRIOR, chain_method="processes", **kw)
    d = post.diagnostics
    assert d["chain_method"] == "processes" and d["nuts_initial_mass"] == "laplace"
    assert d["nuts_workers"] == 2 and d["nuts_chains_per_worker"] == [1, 1]
    assert d["divergences"] == 0 and d["rhat_max"] < 1.05 and d["ess_min"] > 50
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(post.log_samples.mean(0), mean, atol=5 * sd.max() / np.sqrt(d["ess_min"]))
    np.testing.assert_allclose(post.log_samples.std(0), sd, rtol=0.2)
    # merged in chain order, one chain dimension in the InferenceData
    assert post.chains.shape == (2, 200, 2) and post.log_samples.shape == (400, 2)
    idata = post.inference_data
    assert idata.posterior["a"].shape == (2, 200)
    assert idata.sample_stats["diverging"].shape == (2, 200)
    # chain c is seeded with split(key, C)[c] whatever the method: the same chains in one process
    # (vectorised groups of several chains agree to rounding, ~1e-6)
    seq = calibrate(linear_model, None, obs, PRIOR, chain_method="sequential", **kw)
    assert seq.diagnostics["chain_method"] == "sequential"
    np.testing.assert_allclose(post.chains, seq.chains, rtol=0, atol=1e-10)


def test_worker_failure_is_a_typed_error(obs):
    with pytest.raises(ChainProcessError, match="boom in the worker"):
        calibrate(fails_in_worker, None, obs, PRIOR, method="nuts", num_warmup=5, num_samples=5, num_chains=2,
                  chain_method="processes")


def test_unpicklable_model_is_a_typed_error(obs):
    with pytest.raises(ChainProcessError, match="module level"):
        calibrate(lambda p: linear_model(p), None, obs, PRIOR, method="nuts", num_warmup=10, num_samples=10,
                  num_chains=2, chain_method="processes")


def test_auto_falls_back_with_a_warning(obs, monkeypatch):
    import calibration._inference as inf

    monkeypatch.setattr(inf, "_resolve_chain_method", lambda *a: "processes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # short run: ESS warnings
        with pytest.warns(CalibrationWarning, match="vectorised in this process"):
            post = calibrate(fails_in_worker, None, obs, PRIOR, method="nuts", num_warmup=5, num_samples=5,
                             num_chains=2, chain_method="auto")
    assert post.diagnostics["chain_method"] == "vectorized"
    assert post.chains.shape == (2, 5, 2)


def test_auto_resolution(obs):
    import calibration._inference as inf

    gen = inf._Problem(linear_model, None, obs, PRIOR, None)
    assert inf._resolve_chain_method("auto", gen, 4) == "vectorized"  # generic function: stays in process
    assert inf._resolve_chain_method("auto", gen, 1) == "sequential"
    assert inf._resolve_chain_method("processes", gen, 2) == "processes"
    # the initial NUTS inverse mass (init="map") is the Laplace covariance in z = (log p - mu) / sd
    mean, cov = closed_form(obs)
    s0 = PRIOR.log_scale
    imm = inf._laplace_inverse_mass(gen, (mean - PRIOR.log_loc) / s0)
    np.testing.assert_allclose(imm, cov / np.outer(s0, s0), rtol=1e-3, atol=1e-8)
    with pytest.raises(Exception, match="parallel"):
        calibrate(linear_model, None, obs, PRIOR, method="nuts", chain_method="parallel")
