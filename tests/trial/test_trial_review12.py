"""Review 12 of twin.trial and the cohort/trial CLI: ligand amounts, arm limits, --quiet, the
run summary's counts, seeds and infeasible populations (no model is solved here)."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import twin.cohort
import twin.trial
from twin.cli import main
from twin.cohort import COVARIATES, CohortConfigError, Population, RunSummary
from twin.cohort._kinetics import CycleKinetics
from twin.trial import Arm, Limit, Trial, TrialConfigError, TrialTask, parse_trial_config

AVOGADRO = 6.02214076e23
LU177_HALF_LIFE_S = 6.647 * 86400.0  # 177Lu: 6.647 d
#: carrier-free molar activity of 177Lu by hand, MBq/nmol (lambda N_A)
LU177_MBQ_PER_NMOL = math.log(2) / LU177_HALF_LIFE_S * AVOGADRO * 1e-9 / 1e6


@pytest.fixture(scope="module")
def pop():
    return Population.default("PSMA-617")


def test_ligand_amount_below_what_the_arm_activity_needs_is_refused(pop):
    need = 7400.0 / LU177_MBQ_PER_NMOL  # 10.18 nmol
    assert round(need, 2) == 10.18
    for nmol in (2.0, 1.0, need * 0.999):
        with pytest.raises(CohortConfigError, match=r"arm 'low'.*10\.18 nmol.*7\.4 GBq"):
            Trial((Arm("fixed", 7.4, 1), Arm("low", 7.4, 1, ligand_nmol=nmol)), pop, n_patients=2)
    Trial((Arm("enough", 7.4, 1, ligand_nmol=need * 1.001),), pop, n_patients=2)
    # personalised activities are capped at activity_gbq: the cap must be deliverable
    capped = Arm("act", 12.0, 4, ligand_nmol=10.5, personalise="activity", limit=Limit("kidneys", "dose", 23.0))
    with pytest.raises(CohortConfigError, match="maximum activity of 12 GBq"):
        Trial((capped,), pop, n_patients=2)


def test_config_names_the_arm_whose_ligand_amount_is_too_small():
    text = '[[arms]]\nname = "a"\n[[arms]]\nname = "b"\nligand_nmol = 5.0\n'
    with pytest.raises(TrialConfigError, match=r"\[\[arms\]\] #2: arm 'b'.*10\.18 nmol"):
        parse_trial_config(tomllib.loads(text))


def test_run_cohort_refuses_before_writing_anything(tmp_path, pop):
    with pytest.raises(CohortConfigError, match=r"ligand_nmol = 1 nmol"):
        twin.cohort.run_cohort(tmp_path / "run", 2, population=pop, activity_gbq=7.4, ligand_nmol=1.0,
                               progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_cohort_bad_ligand_amount_or_seed_exit_1_without_traceback(tmp_path, capsys):
    for argv, words in ((["--ligand-nmol", "1"], "10.18 nmol"),
                        (["--seed", "18446744073709551617"], "2**63 - 1")):
        out = tmp_path / argv[0][2:]
        assert main(["cohort", "--n", "3", *argv, "--out", str(out), "-q"]) == 1
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
        assert not out.exists()


def _fake_kinetics(calls):
    """chunk_kinetics standing in for pbpk: doses and TIA exactly linear in the activity
    (kidneys 2e-3 Gy per MBq, red marrow 1e-4; TIA 50 MBq h per MBq in each region)."""
    def fake(prep, key, ids, *, activity_mbq, ligand_nmol, chunk_size, rtol, atol):
        # the constraint pbpk.Administration enforces: the labelled ligand fits in the amount
        assert activity_mbq / LU177_MBQ_PER_NMOL <= ligand_nmol * (1 + 1e-12), (activity_mbq, ligand_nmol)
        calls.append((activity_mbq, ligand_nmol))
        n = len(ids)
        draw = {"female": np.zeros(n, bool), "gfr_ml_min": np.full(n, 90.0),
                **{c: np.full(n, 1.0) for c in COVARIATES}}
        organs = ("kidneys", "red_marrow")
        return CycleKinetics(draw=draw, status=np.zeros(n, np.int64), activity_mbq=activity_mbq,
                             ligand_nmol=ligand_nmol, tia_mbq_h=np.full((n, 2), 50.0 * activity_mbq),
                             body_regions=("kidney", "red_marrow"), organs=organs,
                             dose_gy=np.tile([2e-3 * activity_mbq, 1e-4 * activity_mbq], (n, 1)),
                             g_factor=np.full((n, 2), 0.1), alpha_beta_gy=(2.6, 15.0))
    return fake


def test_small_ligand_amounts_are_simulated_at_an_activity_they_allow_and_scaled(pop, monkeypatch):
    calls = []
    monkeypatch.setattr(twin.trial._trial, "chunk_kinetics", _fake_kinetics(calls))
    arms = (Arm("usual", 7.4, 2), Arm("tiny", 0.5, 3, ligand_nmol=1.0))  # 0.5 GBq needs 0.69 nmol
    prepared = SimpleNamespace(population=pop, template=pop.reference_model())
    task = TrialTask(prepared, arms, (), (0, 0), n_patients=2, chunk_size=2, include_tia=True)
    rows = task.run_chunk(0).to_pandas()
    # 1000 MBq needs 1.38 nmol: 1 nmol is simulated at a lower activity; 90 nmol at 1000 MBq
    assert sorted(a for a, _ in calls)[-1] == 1000.0 and min(a for a, _ in calls) < 1000.0
    for name, gbq, cycles in (("usual", 7.4, 2), ("tiny", 0.5, 3)):
        r = rows[rows.arm == name]
        np.testing.assert_allclose(r.kidneys_dose_gy_per_gbq, 2.0, rtol=1e-14)    # 2e-3 Gy/MBq
        np.testing.assert_allclose(r.red_marrow_dose_gy_per_gbq, 0.1, rtol=1e-14)
        np.testing.assert_allclose(r.kidneys_dose_gy, cycles * gbq * 2.0, rtol=1e-14)
        np.testing.assert_allclose(r.tia_kidney_mbq_h_per_cycle, 50.0 * gbq * 1000.0, rtol=1e-14)


def test_arm_limit_without_personalisation_is_refused():
    with pytest.raises(CohortConfigError, match=r"personalise = 'cycles' or 'activity'.*drop the limit"):
        Arm("a", limit=Limit("kidneys", "dose", 23.0))
    text = '[[arms]]\nname = "a"\nlimit = {organ="kidneys", quantity="dose", limit_gy=23}\n'
    with pytest.raises(TrialConfigError, match=r"\[\[arms\]\] #1.*personalise"):
        parse_trial_config(tomllib.loads(text))


def test_infeasible_population_in_a_config_names_the_section_and_covariates():
    text = ('[population.covariates.weight_kg]\ndistribution = "fixed"\nvalue = 30.0\n'
            '[population.covariates.tumour_volume_l]\ndistribution = "fixed"\nvalue = 4.0\n'
            '[[arms]]\nname = "fixed"\n')
    with pytest.raises(TrialConfigError, match=r"\[population\].*weight_kg = 30.*tumour_volume_l = 4"):
        parse_trial_config(tomllib.loads(text))


def _summary(out, **kw):
    base = dict(out_dir=Path(out), n_patients=4, n_chunks=1, chunks_run=0, chunks_skipped=1, rows=12,
                n_failed=0, wall_s=1.0, patients_per_s=0.0, engine="local", workers=1)
    return RunSummary(**{**base, **kw})


def test_cli_summary_counts_patients_and_invalid_covariates_separately(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "twin-cohort/1", "fingerprint": {},
                                                        "last_run": {}}))
    twin._cli_trial._report(_summary(tmp_path, chunks_run=1, chunks_skipped=0, n_failed=2, n_invalid=1))
    out = capsys.readouterr().out
    assert "2 patients with a failed solve, 1 patient with covariates outside the model" in out
    assert "failed solves" not in out


def test_cli_prints_no_steady_speed_without_chunks_after_compilation(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format": "twin-cohort/1", "fingerprint": {},
        "last_run": {"chunks_timed": 0, "patients_per_cpu_s_steady": None}}))
    twin._cli_trial._report(_summary(tmp_path, chunks_run=1, chunks_skipped=0))
    out = capsys.readouterr().out
    assert "wall time" in out and "after compilation" not in out


def test_quiet_prints_no_summary_no_resuming_and_no_wrote_lines(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_cohort(out_dir, n_patients, **kwargs):
        calls.append(kwargs)
        return _summary(out_dir)

    def fake_trial(trial, out_dir, **kwargs):
        calls.append(kwargs)
        return _summary(out_dir)

    monkeypatch.setattr(twin.cohort, "run_cohort", fake_cohort)
    monkeypatch.setattr(twin.trial, "run_trial", fake_trial)
    monkeypatch.setattr(twin.trial, "write_trial_report", lambda out: {"summary": Path(out) / "summary.csv"})
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({  # a `twin cohort` run to resume
        "format": "twin-cohort/1",
        "fingerprint": {"kind": "trial/1", "name": "cohort", "n_patients": 4, "chunk_size": 4,
                        "key": [0, 3], "population": {"agent": "PSMA-617", "female_fraction": 0.0},
                        "arms": [{"activity_gbq": 7.4, "cycles": 6, "interval_weeks": 6.0,
                                  "ligand_nmol": None}]}}))
    cfg = tmp_path / "t.toml"
    cfg.write_text('[trial]\nn_patients = 4\n[[arms]]\nname = "a"\n')
    cohort = ["cohort", "--out", str(out), "--resume"]
    trial = ["trial", str(cfg), "--out", str(tmp_path / "trial")]
    for argv in (cohort, trial):
        assert main([*argv, "-q"]) == 0
        assert capsys.readouterr().out == ""
        assert calls.pop()["progress"] is False
        assert main([*argv, "--no-progress"]) == 0  # no bar, but the summary
        printed = capsys.readouterr().out
        assert "already done" in printed and calls.pop()["progress"] is False
        assert ("resuming" in printed) if argv is cohort else ("wrote" in printed)
