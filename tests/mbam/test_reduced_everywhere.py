"""A reduced model runs where a full model runs and says which regions it predicts.

The shipped PSMA-617 reduction (``benchmarks/results/bench_mbam_reduced.json``, written by
``benchmarks/bench_mbam.py``) keeps the TIAs of its design's regions (kidney, salivary,
lacrimal, liver, spleen, tumours, plasma). Other regions were lumped (red marrow, brain, heart,
bone, skin -> ``lumped_2``) or changed where the design could not see them (the prostate's
release rate -> 0: its TIA comes out about 5x the full model's). Those must not be reported
as doses. The reference for every number below is the full model, simulated separately.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pytest

import mbam
import pbpk
import twin
from twin.cohort import CohortConfigError, Population, read_results, run_cohort
from twin.cohort._kinetics import endpoint_organs
from twin.trial import Arm, Limit, Trial

PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "bench_mbam_reduced.json"
DESIGN_REGIONS = ("kidney", "salivary", "lacrimal", "liver", "spleen", "tumour1", "tumour_rest", "plasma")


@pytest.fixture(scope="module")
def red():
    return mbam.load_reduced(PATH)


def test_reduced_model_predicts_its_design_regions_only(red):
    assert set(red.model.predicted_regions) == set(DESIGN_REGIONS)
    assert red.full_model.predicted_regions == ()  # a full model predicts every region
    assert red.model.predicts("kidney") and not red.model.predicts("prostate")
    # the field survives the model's own JSON round trip
    again = pbpk.PBPKModel.from_json(red.model.to_json())
    assert again.predicted_regions == red.model.predicted_regions


def test_predicted_regions_are_checked():
    m = pbpk.psma_model("PSMA-617")
    with pytest.raises(pbpk.UnknownNameError, match="bone_marrow"):
        m.__class__(**{**m.__dict__, "predicted_regions": ("kidney", "bone_marrow")})
    with pytest.raises(pbpk.InvalidInputError, match="tuple of region names"):
        m.__class__(**{**m.__dict__, "predicted_regions": "kidney"})


def test_tampered_predicted_regions_are_refused():
    data = json.loads(PATH.read_text(encoding="utf-8"))
    data["reduced_model"]["predicted_regions"] = ["kidney", "prostate"]
    with pytest.raises(pbpk.InvalidInputError, match="predicts"):
        mbam.load_reduced(json.dumps(data))


def test_model_doses_leave_out_unpredicted_organs(red):
    sched = pbpk.Schedule.single(7400.0)
    times = [1.0, 24.0, 168.0]
    full = twin.model_doses(pbpk.simulate(red.full_model, sched, times), red.full_model)["dose_gy"]
    with pytest.warns(pbpk.UnpredictedRegionWarning, match="prostate.*red_marrow"):
        got = twin.model_doses(pbpk.simulate(red.model, sched, times), red.model)["dose_gy"]
    # before: prostate 65.9 Gy from the reduced model against 13.6 Gy from the full one, and the
    # red marrow left out without a word
    assert "prostate" in full.index and "red_marrow" in full.index
    assert not {"prostate", "red_marrow", "lungs", "brain", "heart"} & set(got.index)
    assert set(got.index) == {"kidney", "liver", "spleen", "salivary", "tumour1", "tumour_rest", "lacrimal"}
    # the predicted organs' doses follow the full model (the reduction's 1 % TIA tolerance)
    np.testing.assert_allclose(got.to_numpy(), full[got.index].to_numpy(), rtol=0.01)


def test_full_model_doses_do_not_warn():
    m = pbpk.psma_model("PSMA-617")
    with warnings.catch_warnings():
        warnings.simplefilter("error", pbpk.UnpredictedRegionWarning)
        d = twin.model_doses(pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0, 24.0, 168.0]), m)
    assert {"prostate", "red_marrow"} <= set(d.index)


def test_endpoint_organs_follow_predicted_regions():
    body = ("plasma", "kidney", "red_marrow", "tumour1", "tumour_rest", "salivary")
    assert "red_marrow" in endpoint_organs(body)
    assert endpoint_organs(body, ("kidney", "tumour1", "tumour_rest")) == ("kidneys", "tumour")
    # the tumour endpoint sums every tumour region: it needs them all
    assert "tumour" not in endpoint_organs(body, ("kidney", "tumour1"))


def test_trial_limits_with_a_reduction(red):
    with pytest.warns(pbpk.UnpredictedRegionWarning, match="red_marrow"):
        trial = Trial((Arm("a", activity_gbq=7.4, cycles=4),), Population(), n_patients=4, reduction=red)
    assert "red_marrow" not in {lim.organ for lim in trial.limits}
    assert "kidneys" in {lim.organ for lim in trial.limits}
    with pytest.raises(CohortConfigError, match="reduced PSMA-617 model has no red_marrow"):
        Trial((Arm("a", activity_gbq=7.4),), Population(), n_patients=4, reduction=red,
              limits=(Limit("red_marrow", "dose", 2.0),))
    with pytest.raises(CohortConfigError, match="reduce the population's model"):
        Trial((Arm("a", activity_gbq=7.4),), Population(agent="DOTATATE"), n_patients=4, reduction=red)
    with pytest.raises(CohortConfigError, match="PBPKReduction or the path"):
        Trial((Arm("a", activity_gbq=7.4),), Population(), n_patients=4, reduction=red.model)
    with pytest.raises(pbpk.InvalidInputError, match="no reduction file"):
        Trial((Arm("a", activity_gbq=7.4),), Population(), n_patients=4, reduction="missing.json")


def test_cohort_runs_the_reduced_model(red, tmp_path):
    """The same virtual patients through the full and the reduced model: the doses of the
    organs the reduction predicts agree (the full model is the reference)."""
    kw = dict(workers=1, progress=False, chunk_size=8, key=3, cycles=2)
    run_cohort(tmp_path / "full", 8, **kw)
    with pytest.warns(pbpk.UnpredictedRegionWarning):
        run_cohort(tmp_path / "red", 8, reduction=PATH, **kw)
    a, b = read_results(tmp_path / "full"), read_results(tmp_path / "red")
    assert (a.status == 0).all() and (b.status == 0).all()
    np.testing.assert_array_equal(a.weight_kg, b.weight_kg)  # the same patients
    assert "red_marrow_dose_gy" in a and "red_marrow_dose_gy" not in b
    # TIA columns only for the regions the reduction predicts: before, the reduced model's
    # prostate TIA (release rate -> 0) was written, 4.6x the full model's over 256 patients
    assert "tia_lumped_2_mbq_h_per_cycle" not in b and "tia_prostate_mbq_h_per_cycle" not in b
    assert "tia_prostate_mbq_h_per_cycle" in a
    assert {c for c in b if c.startswith("tia_")} == {f"tia_{r}_mbq_h_per_cycle" for r in DESIGN_REGIONS}
    for organ in ("kidneys", "salivary_glands", "lacrimal_glands", "spleen", "tumour"):
        np.testing.assert_allclose(b[f"{organ}_dose_gy_per_gbq"], a[f"{organ}_dose_gy_per_gbq"], rtol=0.01)
        np.testing.assert_allclose(b[f"{organ}_bed_gy"], a[f"{organ}_bed_gy"], rtol=0.02)
    # the liver's dose includes cross-fire from the GI tract, whose TIA the reduction does not
    # keep (it is not in the design): 1.6 % off at most in a 64-patient check
    np.testing.assert_allclose(b["liver_dose_gy_per_gbq"], a["liver_dose_gy_per_gbq"], rtol=0.03)
    for region in ("kidney", "liver", "tumour1"):
        col = f"tia_{region}_mbq_h_per_cycle"
        np.testing.assert_allclose(b[col], a[col], rtol=0.01)
    # the manifest records which reduction ran: resuming without it is refused
    with pytest.raises(pbpk.PBPKError, match="reduction"):
        run_cohort(tmp_path / "red", 8, resume=True, **kw)


def test_check_population_on_given_patients(red):
    """check_population takes the patients themselves (a table of full-model parameters, e.g.
    Population.sample): three copies of the reference patient give exactly the reference
    patient's error, computed here with pbpk.simulate of both models."""
    import pandas as pd

    ref = {k: v for k, v in red.full_model.parameters.items() if k != "lambda_phys_per_h"}
    table = pd.DataFrame({"age_y": [70.0] * 3, **{k: [v] * 3 for k, v in ref.items()}})
    check = red.check_population(table)
    assert check.n_draws == 3 and check.source == "given patients" and "3 given patients" in str(check)
    sched = pbpk.Schedule.single(red.design.activity_mbq)
    times = list(red.design.times_h)
    rf, rr = pbpk.simulate(red.full_model, sched, times), pbpk.simulate(red.model, sched, times)
    expect = {r: abs(float(rr.tia(r)) / float(rf.tia(r)) - 1.0) for r in red.design.regions}
    for r, e in expect.items():
        assert check.by_region.loc[r, "max"] == pytest.approx(e, rel=1e-6, abs=1e-9)
    with pytest.raises(pbpk.InvalidInputError, match="none of the columns"):
        red.check_population(pd.DataFrame({"age_y": [70.0], "weight_kg": [80.0]}))
    with pytest.raises(pbpk.InvalidInputError, match="one value per patient"):
        red.check_population({"R_kidney": np.ones((2, 2))})

    # the covariate patients of the default population (same shapes: no new compilation):
    # organs and tumours stay within 1 % (plasma, 6.0 % over 1,000 such patients, is the
    # known gap: see the README)
    check = red.check_population(Population.default("PSMA-617").sample(0, 3))
    assert check.failed_solves == 0
    organs = [r for r in red.design.regions if r != "plasma"]
    assert float(check.by_region.loc[organs, "max"].max()) < 0.01


def test_trial_config_with_a_reduction(red):
    """`twin trial CONFIG --reduced FILE`: a file without [[limits]] gets the reduced model's
    default limits (before: the full model's, red marrow included, were then refused)."""
    from twin.trial import EXAMPLE_CONFIG, load_trial_config

    cfg = load_trial_config(EXAMPLE_CONFIG)
    assert not cfg.limits_given and "red_marrow" in {lim.organ for lim in cfg.trial.limits}
    with pytest.warns(pbpk.UnpredictedRegionWarning, match="red_marrow"):
        trial = cfg.with_reduction(red)
    assert trial.reduction is red and "red_marrow" not in {lim.organ for lim in trial.limits}
    assert trial.arms == cfg.trial.arms and trial.n_patients == cfg.trial.n_patients


def test_cli_cohort_reduced_missing_file(tmp_path, capsys):
    from twin.cli import main

    rc = main(["cohort", "--n", "2", "--reduced", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "no reduction file" in capsys.readouterr().err


def test_calibration_refuses_observations_of_unpredicted_regions(red):
    from calibration import ObservationError, Observations, Prior, calibrate

    obs = Observations.from_records(
        [{"region": "prostate", "time_h": 24.0, "value": 50.0, "unit": "MBq"},
         {"region": "kidney", "time_h": 24.0, "value": 300.0, "unit": "MBq"}], agent="PSMA-617")
    with pytest.raises(ObservationError, match="prostate are not predicted"):
        calibrate(red.model, pbpk.Schedule.single(7400.0), obs, Prior.default(red.model), method="map")
