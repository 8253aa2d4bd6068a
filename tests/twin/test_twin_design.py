"""Imaging-schedule design: the Fisher/Laplace ranking, checked against invariants and against
calibration's Laplace posterior on noise-free data at the prior median."""

from __future__ import annotations

import numpy as np
import pytest

import pbpk
from calibration import NoiseModel, Observations, Prior, calibrate
from twin import ScanSet, TwinInputError, rank_imaging_schedules

PARAMS = ["R_kidney", "R_tumour1", "krel_kidney", "gfr_eff"]


@pytest.fixture(scope="module")
def model():
    return pbpk.psma_model("PSMA-11", lesion_volumes_l=(0.012,), tumour_rest_volume_l=0.0)


@pytest.fixture(scope="module")
def prior(model):
    return Prior.default(model, parameters=PARAMS)


@pytest.fixture(scope="module")
def ranking(model, prior):
    cands = [ScanSet((1.0,)), ScanSet((1.0, 4.0)), ScanSet((1.0,), (24.0,)), ScanSet((1.0,), (24.0, 96.0)),
             {"pet_times_h": (1.0, 4.0), "spect_times_h": (24.0, 96.0), "name": "all"}]
    return rank_imaging_schedules(model, cands, prior=prior, regions=["kidney", "tumour1"],
                                  dose_regions=["kidney", "tumour1"], target_rel_sd=0.25)


@pytest.mark.slow  # forward-mode Jacobians through the solver: ~40 s of compilation
def test_more_scans_never_increase_uncertainty(ranking):
    table, _ = ranking
    sd = table.set_index("schedule")["max_rel_sd"]
    assert sd["PET 1, 4 h"] <= sd["PET 1 h"] + 1e-12
    assert sd["PET 1 h + SPECT 24, 96 h"] <= sd["PET 1 h + SPECT 24 h"] + 1e-12
    assert sd["all"] <= sd.min() + 1e-12
    # every schedule is at least as precise as the prior alone
    assert (table["max_rel_sd"] <= table["prior_max_rel_sd"] + 1e-12).all()


@pytest.mark.slow
def test_recommendation_is_cheapest_meeting_target(ranking):
    table, rec = ranking
    ok = table[table["max_rel_sd"] <= 0.25]
    if ok.empty:
        assert rec is None
    else:
        assert rec in set(ok["schedule"])
        assert table.set_index("schedule").loc[rec, "cost"] == ok["cost"].min()


@pytest.mark.slow
def test_fisher_matches_laplace_posterior_of_calibrate(model, prior):
    """At zero residual the Laplace posterior of calibrate() is the inverse Fisher matrix; its
    covariance gives the same dose uncertainty through the same gradient. Reference: the
    log-parameter posterior sd of calibrate (finite-difference Hessian) vs the design's."""
    t = [1.0, 4.0]
    sched = pbpk.Schedule.single(150.0)
    med = {e.name: e.median for e in prior.entries}
    res = pbpk.simulate(model.with_parameters(**med), sched, t)
    recs = [{"region": r, "time_h": tt, "value": float(res.activity(r)[i]), "unit": "MBq"}
            for r in ("kidney", "tumour1") for i, tt in enumerate(t)]
    obs = Observations.from_records(recs, agent="PSMA-11", noise=NoiseModel(cv=0.15, rc_cv=0.0))
    post = calibrate(model, sched, obs, prior, method="laplace", hessian="fd", num_samples=10,
                     simulate_options={"rtol": 1e-8, "atol": 1e-12}, map_gtol=1e-8)
    table, _ = rank_imaging_schedules(model, [ScanSet(tuple(t))], prior=prior, regions=["kidney", "tumour1"],
                                      dose_regions=["kidney"], noise=NoiseModel(cv=0.15))
    # recompute the design's kidney sd from calibrate's covariance (log space -> z space)
    from twin._design import _log_jacobian

    therapy = pbpk.theranostic_pair(model.with_parameters(**med), "PSMA-617")
    cov_z = post.covariance_log / np.outer(prior.log_scale, prior.log_scale)
    from twin._twin import _dose_operator

    body = list(therapy.compiled.body_regions)
    op = _dose_operator(therapy, body, "male")
    val, jac = _log_jacobian(therapy, pbpk.Schedule.single(7400.0), np.array([2000.0]), med, list(prior.names),
                             prior.log_scale, np.array([therapy.regions.index("kidney")]), with_tia=True)
    tia0 = np.exp(val[-len(body):])
    row = op.matrix[op.targets.index("kidney")]
    g = (row @ (tia0[:, None] * jac[-len(body):])) / (row @ tia0)
    np.testing.assert_allclose(table["rel_sd_kidney"].item(), np.sqrt(g @ cov_z @ g), rtol=0.02)


def test_bad_candidates(model):
    with pytest.raises(TwinInputError, match="at least one"):
        ScanSet()
    with pytest.raises(TwinInputError, match="distinct"):
        ScanSet((1.0, 1.0))
    with pytest.raises(TwinInputError, match="candidate"):
        rank_imaging_schedules(model, [3.0])
