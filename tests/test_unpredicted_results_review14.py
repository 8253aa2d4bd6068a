"""A reduced model's simulation result says which regions it predicts.

The shipped PSMA-617 reduction (``benchmarks/results/bench_mbam_reduced.json``) predicts its
design's regions only. Its prostate release rate went to 0 (the design cannot see the
prostate), so its prostate TIA comes out several times the full model's; before session 14,
``SimulationResult.tia("prostate")`` and ``tia_table()`` returned it without a word. The
reference for every number below is the full model, simulated separately.
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest

import mbam
import pbpk

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bench_mbam_reduced.json"
TIMES = [1.0, 4.0, 24.0, 96.0, 168.0]


@pytest.fixture(scope="module")
def runs():
    red = mbam.load_reduced(PATH)
    sched = pbpk.Schedule.single(7400.0)
    return red, pbpk.simulate(red.model, sched, TIMES), pbpk.simulate(red.full_model, sched, TIMES)


def test_result_carries_the_predicted_regions(runs):
    red, r, f = runs
    assert r.predicted_regions == red.model.predicted_regions
    assert f.predicted_regions == ()
    assert r.predicts("kidney") and not r.predicts("prostate") and f.predicts("prostate")


def test_tia_table_leaves_out_unpredicted_regions(runs):
    red, r, f = runs
    with pytest.warns(pbpk.UnpredictedRegionWarning, match="prostate"):
        tab = r.tia_table()
    assert set(tab.index) == set(red.model.predicted_regions)
    # what is left agrees with the full model (the reduction's 1 % design tolerance)
    full = f.tia_table()
    np.testing.assert_allclose(tab.to_numpy(), full[tab.index].to_numpy(), rtol=0.01)
    # the prostate, which the table now leaves out, is far from the full model's
    i, j = r.body_regions.index("prostate"), f.body_regions.index("prostate")
    assert float(r.tia_mbq_h[i]) > 2.0 * float(f.tia_mbq_h[j])


def test_to_dataframe_leaves_out_unpredicted_regions(runs):
    red, r, _ = runs
    with pytest.warns(pbpk.UnpredictedRegionWarning, match="left out"):
        df = r.to_dataframe()
    assert set(df.region) == set(red.model.predicted_regions)
    assert len(df) == len(TIMES) * len(red.model.predicted_regions)


def test_by_name_accessors_warn_for_unpredicted_regions(runs):
    _, r, _ = runs
    with pytest.warns(pbpk.UnpredictedRegionWarning, match="prostate.*unchecked"):
        r.tia("prostate")
    with pytest.warns(pbpk.UnpredictedRegionWarning, match="prostate.*unchecked"):
        r.activity("prostate")
    with warnings.catch_warnings():
        warnings.simplefilter("error", pbpk.UnpredictedRegionWarning)
        r.tia("kidney")
        r.activity("kidney")


def test_full_model_results_do_not_warn(runs):
    _, _, f = runs
    with warnings.catch_warnings():
        warnings.simplefilter("error", pbpk.UnpredictedRegionWarning)
        assert "prostate" in f.tia_table().index
        f.tia("prostate")
        f.to_dataframe()


def test_cohort_result_carries_the_predicted_regions(runs):
    red, r, _ = runs
    k = red.model.parameters["R_kidney"]
    c = pbpk.simulate_cohort(red.model, pbpk.Schedule.single(7400.0), TIMES, {"R_kidney": [k, k]})
    assert c.predicted_regions == red.model.predicted_regions
    # the same patient twice gives the single run's TIA (an independent solve path: batched)
    np.testing.assert_allclose(np.asarray(c.tia_mbq_h), np.tile(np.asarray(r.tia_mbq_h), (2, 1)), rtol=1e-5)
    with pytest.raises(pbpk.InvalidInputError, match="single-patient"):
        c.tia_table()
