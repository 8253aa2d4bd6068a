"""Inputs of the planning layer that used to give wrong numbers or lose files: output times,
schedules not starting at t = 0, ligand that cannot carry the activity, report folders, and
the argument checks of predict, limit_table, voxel_dose, scenario_table and max_activity."""

import json
import math

import numpy as np
import pytest

import pbpk
from twin import TwinInputError, max_activity, scenario_table
from twin.report import check_report_folder, write_report

# carrier-free molar activity of 177Lu from its half-life alone (A = lambda N):
# 6.647 d (ICRP-107) and Avogadro's number, 1 nmol = 6.02214076e14 atoms -> MBq/nmol
LU177_CARRIER_FREE_MBQ_PER_NMOL = math.log(2) / (6.647 * 86400.0) * 6.02214076e14 / 1e6


@pytest.fixture(scope="module")
def pred(twin):
    return twin.predict(activity_gbq=7.4, n_draws=16)


# ------------------------------------------------------------------ numbers
@pytest.mark.slow  # 73 s (make test-slow); test_bed_does_not_depend_on_the_time_origin stays in make test
def test_output_times_do_not_change_tia_dose_or_bed(twin, pred):
    """times_h only adds output points (invariant): TIA still runs to infinity."""
    p = twin.predict(activity_gbq=7.4, n_draws=16, times_h=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(p.tia_mbq_h, pred.tia_mbq_h, rtol=1e-9)
    np.testing.assert_allclose(p.dose_gy, pred.dose_gy, rtol=1e-9)
    np.testing.assert_allclose(p.bed_gy, pred.bed_gy, rtol=1e-9)
    np.testing.assert_array_equal(p.times_h, [1.0, 2.0, 3.0])
    # 1 h is a point of the default grid: the same activity there
    k = int(np.flatnonzero(pred.times_h == 1.0)[0])
    np.testing.assert_allclose(p.activity_mbq[:, 0], pred.activity_mbq[:, k], rtol=1e-9)
    coupled = twin.predict(activity_gbq=7.4, n_cycles=2, n_draws=16, cycles="coupled", times_h=[1.0, 2.0])
    ref = twin.predict(activity_gbq=7.4, n_cycles=2, n_draws=16, cycles="coupled")
    np.testing.assert_allclose(coupled.dose_gy, ref.dose_gy, rtol=1e-9)


def test_a_later_start_changes_neither_dose_nor_bed(twin, pred):
    """Shifting the whole schedule in time is an invariant of the kinetics."""
    late = twin.predict(pbpk.Schedule((pbpk.Administration(7400.0, time_h=100.0),)), n_draws=16)
    np.testing.assert_allclose(late.dose_gy, pred.dose_gy, rtol=1e-6)
    np.testing.assert_allclose(late.effective_half_life_h, pred.effective_half_life_h, rtol=1e-3)
    np.testing.assert_allclose(late.bed_gy, pred.bed_gy, rtol=1e-4)


def test_ligand_that_cannot_carry_the_activity_is_refused(twin):
    assert twin.therapy_model.carrier_free_mbq_per_nmol == pytest.approx(LU177_CARRIER_FREE_MBQ_PER_NMOL, rel=2e-3)
    with pytest.raises(TwinInputError, match="ligand amount"):
        twin.predict(activity_gbq=7.4, ligand_nmol=1.0, n_draws=16)
    with pytest.raises(TwinInputError, match="ligand amount"):
        twin.predict(pbpk.Schedule.single(7400.0, ligand_nmol=1.0), n_draws=16)
    with pytest.raises(TwinInputError, match="carries at most"):
        max_activity(twin, ligand_nmol=2.0, bounds_gbq=(2.0, 30.0), n_draws=16)


def test_escalation_with_fixed_ligand_stays_within_what_it_can_carry(twin):
    cap = 2.0 * LU177_CARRIER_FREE_MBQ_PER_NMOL / 1000.0   # GBq that 2 nmol carry
    esc = max_activity(twin, ligand_nmol=2.0, n_draws=64, fixed_activity_gbq=1.0, fixed_n_cycles=1,
                       n_cycles=1, curve_points=0)
    assert esc.activity_gbq_per_cycle <= cap * (1 + 2e-3)


# ------------------------------------------------------------------ argument checks
@pytest.mark.parametrize("call, match", [
    (lambda tw, p: tw.predict(activity_gbq=7.4, n_draws=0), "n_draws"),
    (lambda tw, p: tw.predict(activity_gbq=7.4, n_draws=-1), "n_draws"),
    (lambda tw, p: tw.predict(activity_gbq=7.4, n_draws=16, quantiles=(5, 50, 95)), "fractions"),
    (lambda tw, p: tw.predict(activity_gbq=7.4, n_draws=16, times_h=[3.0, 1.0]), "increasing"),
    (lambda tw, p: tw.predict(activity_gbq=7.4, n_draws=16, times_h=[-1.0, 1.0]), "times_h"),
    (lambda tw, p: p.limit_table(probability=95), "between 0 and 1"),
    (lambda tw, p: p.limit_table(probability=1.5), "between 0 and 1"),
    (lambda tw, p: p.voxel_dose(n_draws=0), "n_draws"),
    (lambda tw, p: max_activity(tw, molar_activity_mbq_per_nmol=0, n_draws=16), "molar_activity"),
    (lambda tw, p: max_activity(tw, molar_activity_mbq_per_nmol=5000.0, n_draws=16), "carrier-free"),
    (lambda tw, p: max_activity(tw, n_draws=0), "n_draws"),
    (lambda tw, p: scenario_table(tw, activities_gbq=[7.4], n_cycles=[2.5], n_draws=16), "n_cycles"),
    (lambda tw, p: scenario_table(tw, activities_gbq=[7.4], quantiles=(5, 95), n_draws=16), "fractions"),
    # wrong types: a typed error naming the argument, not a bare TypeError/AttributeError
    (lambda tw, p: tw.predict(activity_gbq="a"), "activity_gbq"),
    (lambda tw, p: tw.predict(activity_gbq=7400.0), "did you give MBq"),  # MBq typed as GBq
    (lambda tw, p: tw.predict(activity_gbq=7.4, n_cycles=2, interval_weeks="x"), "interval_weeks"),
    (lambda tw, p: tw.predict(activity_gbq=7.4, n_cycles=True), "n_cycles"),
    (lambda tw, p: max_activity(tw, limits=5, n_draws=16), "limits must be"),
    (lambda tw, p: max_activity(tw, limits=[{"organ": "kidneys", "quantity": "bed", "limit_gy": "x"}],
                                n_draws=16), "limit_gy"),
    (lambda tw, p: max_activity(p), "twin.Twin"),
    (lambda tw, p: scenario_table(None), "twin.Twin"),
])
def test_bad_arguments_raise_typed_errors(twin, pred, call, match):
    with pytest.raises(TwinInputError, match=match):
        call(twin, pred)


def test_scenario_table_takes_numpy_arrays(twin):
    t = scenario_table(twin, activities_gbq=np.array([7.4]), n_cycles=np.array([1]), n_draws=16,
                       regions=["kidney"])
    assert set(t["n_cycles"]) == {1} and set(t["activity_gbq_per_cycle"]) == {7.4}


# ------------------------------------------------------------------ report folders
def test_report_never_empties_a_folder_of_other_files(pred, tmp_path, monkeypatch):
    patient_dir = tmp_path / "patient1"
    patient_dir.mkdir()
    (patient_dir / "pet_1h.nii.gz").write_bytes(b"image")
    for overwrite in (True, False):
        with pytest.raises(TwinInputError, match="not a twin report"):
            write_report(patient_dir, pred, overwrite=overwrite)
    assert (patient_dir / "pet_1h.nii.gz").read_bytes() == b"image"
    # the working folder itself is refused
    monkeypatch.chdir(patient_dir)
    with pytest.raises(TwinInputError, match="working folder"):
        check_report_folder(".")
    # a report under a file
    with pytest.raises(TwinInputError, match="not a folder"):
        check_report_folder(patient_dir / "pet_1h.nii.gz" / "report")


def test_a_previous_report_is_replaced_and_only_with_overwrite(pred, tmp_path):
    out = tmp_path / "report"
    files = write_report(out, pred)
    meta = json.loads((out / "report.json").read_text())
    assert sorted(meta["files"]) == sorted(files)
    write_report(out, pred)                      # replaces its own earlier report
    with pytest.raises(TwinInputError, match="previous report"):
        write_report(out, pred, overwrite=False)
    (out / "notes.txt").write_text("mine")       # a user's file inside: no longer only a report
    with pytest.raises(TwinInputError, match="not a twin report"):
        write_report(out, pred)
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_plan_refuses_the_patient_folder_before_any_work(tmp_path, capsys):
    from twin.cli import main

    folder = tmp_path / "patient1"
    assert main(["phantom", "--default", "--out", str(folder), "--quiet"]) == 0
    before = sorted(p.name for p in folder.iterdir())
    code = main(["plan", "--pet", str(folder / "pet_1h.nii.gz"), "--hours", "1", "--injected-mbq", "150",
                 "--masks", str(folder / "labels.nii.gz"), "--label-table", str(folder / "label_table.csv"),
                 "--labs", str(folder / "labs.csv"), "--quiet", "--out", str(folder)])
    assert code == 1
    assert "not a twin report" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_update_refuses_a_scan_at_or_before_the_therapy_injection(twin):
    """A SPECT at 0 h (or before a schedule starting at 24 h) has a predicted activity of 0,
    which has no log-normal likelihood: refused by name, not a silent prior or a gradient error."""
    from calibration import Observations

    for sched, t in ((pbpk.Schedule.single(7400.0), 0.0),
                     (pbpk.Schedule((pbpk.Administration(activity_mbq=7400.0, time_h=24.0),)), 20.0)):
        obs = Observations.from_records([{"region": "kidney", "time_h": t, "value": 50.0, "unit": "MBq"},
                                         {"region": "kidney", "time_h": 48.0, "value": 60.0, "unit": "MBq"}],
                                        agent=twin.therapy_model.ligand)
        with pytest.raises(TwinInputError, match=rf"kidney at {t:g} h .*before the therapy"):
            twin.update(obs, sched)


def test_limit_table_of_an_sstr_twin_uses_the_limits_of_its_organs():
    """The shipped limits list the salivary glands, which the SSTR2 models do not have: the
    default table keeps the others (it raised "no dose_gy for 'salivary'" before)."""
    from calibration import NoiseModel, Observations, Prior, calibrate
    from twin import Twin, dose

    img = pbpk.sstr_model("Ga-DOTATATE", tumour_volumes_l=(0.01,))
    sched = pbpk.Schedule.single(150.0)
    truth = pbpk.simulate(img, sched, [1.0])
    obs = Observations.from_records(
        [{"region": r, "time_h": 1.0, "value": float(truth.activity(r)[0]), "unit": "MBq"}
         for r in ("kidney", "liver", "spleen")], agent="Ga-DOTATATE", noise=NoiseModel(cv=0.1))
    post = calibrate(img, sched, obs, Prior.default(img), method="laplace", num_samples=50, hessian="fd")
    pred = Twin.from_posterior(post, "DOTATATE").predict(activity_gbq=7.4, n_cycles=4, n_draws=32)
    table = pred.limit_table()
    assert "salivary" not in set(table["region"])
    # every shipped limit of an organ the model has is kept (first row per organ and quantity)
    shipped = dose.oar_limits().drop_duplicates(subset=["organ", "quantity"])
    kept = {(o, q) for o, q in zip(shipped["organ"], shipped["quantity"]) if o != "salivary_glands"}
    assert {(o, q) for o, q in zip(table["organ"], table["quantity"])} == kept
    with pytest.raises(TwinInputError, match="salivary"):  # asked for by name: still refused
        pred.limit_table([{"organ": "salivary_glands", "quantity": "absorbed_dose", "limit_gy": 25}])


def test_model_doses_of_a_simulation_result():
    """twin.model_doses maps a pbpk result to doses: the kidney dose against twin.dose.organ_dose
    with the regions mapped by hand (kidney -> kidneys, others -> remainder of body), the lesion
    against E_np / (V x 1.04 kg/L) with 177Lu's 0.1479 MeV (ICRP-107)."""
    from twin import dose, model_doses

    m = pbpk.psma_model("PSMA-617", tumour_rest_volume_l=0.0)
    r = pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0, 24.0, 168.0, 2000.0])
    d = model_doses(r, m)
    tia = dict(r.tia_table())
    mird = {"kidney": "kidneys", "liver": "liver", "spleen": "spleen", "salivary": "salivary_glands",
            "red_marrow": "red_marrow", "lungs": "lungs", "brain": "brain", "prostate": "prostate",
            "heart": "heart_wall"}
    src: dict = {}
    for reg, v in tia.items():
        if reg.startswith("tumour") or reg == "lacrimal":
            continue
        key = mird.get(reg, "remainder_of_body")
        src[key] = src.get(key, 0.0) + v
    vols = m.organ_volumes_l
    ref = dose.organ_dose(src, nuclide="Lu-177", phantom="male", targets=["kidneys"],
                          organ_masses_kg={mird[o]: vols[o] for o in ("kidney", "liver", "spleen", "salivary")})
    assert d.loc["kidney", "dose_gy"] == pytest.approx(ref.dose_gy["kidneys"], rel=1e-10)
    hand = tia["tumour1"] * 3.6e9 * 0.1479 * 1.602176634e-13 / (vols["tumour1"] * 1.04)
    assert d.loc["tumour1", "dose_gy"] == pytest.approx(hand, rel=2e-3)
    with pytest.raises(TwinInputError, match="model_doses"):
        model_doses({"kidney": 1.0}, m)
    with pytest.raises(TwinInputError, match="PBPKModel"):
        model_doses(r)


def test_sstr_adrenals_and_thyroid_are_their_own_sources():
    """The SSTR model's adrenals and thyroid are ICRP-89 source organs: the twin's red-marrow
    dose against twin.dose.organ_dose with the sources mapped by hand (before, the twin put them
    in the remainder of body while twin.cohort did not: marrow 1 % apart)."""
    from twin import dose, model_doses

    m = pbpk.sstr_model("DOTATATE")
    r = pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0, 24.0, 168.0, 2000.0])
    d = model_doses(r, m)
    mird = {"kidney": "kidneys", "liver": "liver", "spleen": "spleen", "red_marrow": "red_marrow",
            "lungs": "lungs", "brain": "brain", "heart": "heart_wall", "adrenals": "adrenals",
            "thyroid": "thyroid"}
    src: dict = {}
    for reg, v in dict(r.tia_table()).items():
        if not reg.startswith("tumour"):
            key = mird.get(reg, "remainder_of_body")
            src[key] = src.get(key, 0.0) + v
    vols = m.organ_volumes_l
    ref = dose.organ_dose(src, nuclide="Lu-177", phantom="male", targets=["red_marrow", "adrenals"],
                          organ_masses_kg={mird[o]: vols[o] for o in ("kidney", "liver", "spleen")})
    assert d.loc["red_marrow", "dose_gy"] == pytest.approx(ref.dose_gy["red_marrow"], rel=1e-10)
    assert d.loc["adrenals", "dose_gy"] == pytest.approx(ref.dose_gy["adrenals"], rel=1e-10)
