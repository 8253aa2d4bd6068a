"""Trial TOML configuration and the cohort/trial CLI (parsing and errors; no simulation)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from twin import _cli_trial
from twin.trial import Arm, TrialConfigError, load_trial_config, parse_trial_config

EXAMPLE = Path(__file__).resolve().parents[2] / "twin" / "trial" / "data" / "psma_kidney_limit.toml"


def test_example_config_parses():
    cfg = load_trial_config(EXAMPLE)
    t = cfg.trial
    assert [a.name for a in t.arms] == ["fixed 7.4 GBq x 6", "stop at kidney BED 40 Gy", "activity to kidney 23 Gy"]
    assert t.arms[1].limit.quantity == "bed" and t.arms[1].limit.limit_gy == 40.0
    assert t.n_patients == 2000 and cfg.chunk_size == 128
    assert t.population.prior["R_kidney"].cv == 0.6
    assert dict(t.population.covariates)["age_y"].mean == 71.0


def _minimal(**extra):
    data = {"arms": [{"name": "fixed"}]}
    data.update(extra)
    return data


def test_minimal_config_uses_defaults():
    t = parse_trial_config(_minimal()).trial
    assert t.arms == (Arm("fixed"),) and t.population.agent == "PSMA-617"


@pytest.mark.parametrize("data, words", [
    ({}, "missing key"),
    ({"arms": [{"name": "a"}], "trail": {}}, "unknown key.*trail"),
    (_minimal(trial={"n_patients": 0}), "n_patients"),
    (_minimal(trial={"n_patients": 10, "sede": 1}), "unknown key.*sede"),
    (_minimal(trial={"seed": "one"}), "seed"),
    (_minimal(trial={"chunk_size": 0}), "chunk_size"),
    ({"arms": [{"name": "a", "activity": 7.4}]}, r"arms\]\] #1.*unknown key.*activity"),
    ({"arms": [{"name": "a", "activity_gbq": "7.4"}]}, "activity_gbq"),
    ({"arms": [{"name": "a", "personalise": "cycles"}]}, "needs a limit"),
    ({"arms": [{"name": "a", "personalise": "cycles", "limit": {"organ": "kidneys", "limit_gy": 40}}]},
     "missing key.*quantity"),
    ({"arms": [{"name": "a"}, {"name": "a"}]}, "unique"),
    ({"arms": []}, "at least one arm"),
    (_minimal(population={"agent": "PSMA-617", "female_fraction": 0.5}), "male"),
    (_minimal(population={"covariates": {"age_y": {"distribution": "gamma"}}}), "distribution"),
    (_minimal(population={"covariates": {"age_y": {"distribution": "normal", "mean": 70}}}), "missing key.*sd"),
    (_minimal(population={"covariates": {"age": {"distribution": "fixed", "value": 70}}}), "unknown covariate"),
    (_minimal(prior={"cv": {"R_kidny": 0.5}}), "R_kidny"),
    (_minimal(prior={"cv": {"R_kidney": -0.5}}), "cv"),
    (_minimal(limits=[{"organ": "kidneys", "quantity": "dose"}]), "missing key.*limit_gy"),
])
def test_bad_configs_say_what_is_wrong(data, words):
    with pytest.raises(TrialConfigError, match=words):
        parse_trial_config(data)


def test_bad_files(tmp_path):
    with pytest.raises(TrialConfigError, match="does not exist"):
        load_trial_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[arms]\nname = 'x'\n")
    with pytest.raises(TrialConfigError, match="not valid TOML"):
        load_trial_config(bad)


def _parser():
    p = argparse.ArgumentParser(prog="twin")
    sub = p.add_subparsers(dest="command", required=True)
    _cli_trial.register(sub)
    return p


def test_cli_help_and_defaults(capsys):
    for cmd in ("cohort", "trial"):
        with pytest.raises(SystemExit) as e:
            _parser().parse_args([cmd, "--help"])
        assert e.value.code == 0
        assert "--resume" in capsys.readouterr().out
    args = _parser().parse_args(["cohort"])
    assert (args.n, args.agent, args.activity_gbq, args.engine, args.out) == (1000, "PSMA-617", 7.4, "local", "out/cohort")


@pytest.mark.parametrize("argv", [["cohort", "--n", "0"], ["cohort", "--engine", "spark"],
                                  ["cohort", "--activity-gbq", "-1"], ["trial"]])
def test_cli_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2


def test_cli_input_errors_exit_1_without_traceback(tmp_path, capsys):
    p = _parser()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[arms]]\nname = "a"\nactivity_gbq = 7400\n')
    args = p.parse_args(["trial", str(bad), "--out", str(tmp_path / "o"), "--no-progress"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "GBq" in err and "Traceback" not in err
    args = p.parse_args(["cohort", "--engine", "dask", "--out", str(tmp_path / "c")])
    assert args.func(args) == 1
    assert "--scheduler-address" in capsys.readouterr().err
    args = p.parse_args(["cohort", "--agent", "PSMA-617", "--female-fraction", "0.5", "--out", str(tmp_path / "c")])
    assert args.func(args) == 1
    assert "female_fraction" in capsys.readouterr().err


def test_cli_input_error_in_a_real_process(tmp_path):
    """Through python -m twin when the twin command registers these sub-commands."""
    code = ("import argparse, sys; from twin import _cli_trial; p = argparse.ArgumentParser(prog='twin'); "
            "s = p.add_subparsers(dest='c', required=True); _cli_trial.register(s); "
            "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    r = subprocess.run([sys.executable, "-c", code, "trial", str(tmp_path / "missing.toml")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


# DOTATATE's model has kidneys, red marrow, liver, spleen and tumours, but no salivary or
# lacrimal glands (pbpk.sstr_model's body regions).
_SSTR = {"agent": "DOTATATE", "female_fraction": 0.5}


@pytest.mark.parametrize("data, where", [
    (_minimal(population=_SSTR, limits=[{"organ": "kidneys", "quantity": "dose", "limit_gy": 23},
                                        {"organ": "lacrimal_glands", "quantity": "dose", "limit_gy": 30}]),
     r"\[\[limits\]\] #2"),
    ({"population": _SSTR, "arms": [{"name": "a", "personalise": "cycles",
                                     "limit": {"organ": "salivary_glands", "quantity": "dose", "limit_gy": 25}}]},
     r"\[\[arms\]\] #1"),
])
def test_limit_on_an_organ_the_model_lacks(data, where):
    with pytest.raises(TrialConfigError, match=where) as e:
        parse_trial_config(data)
    msg = str(e.value)
    assert "DOTATATE" in msg and "kidneys, red_marrow, liver, spleen, tumour" in msg
    assert ("lacrimal_glands" in msg) or ("salivary_glands" in msg)


def test_trial_refuses_a_limit_on_an_organ_the_model_lacks():
    from twin.cohort import CohortConfigError, Population
    from twin.trial import Limit, Trial

    with pytest.raises(CohortConfigError, match="lacrimal_glands.*kidneys, red_marrow"):
        Trial((Arm("a"),), Population(agent="DOTATATE"), n_patients=2,
              limits=(Limit("lacrimal_glands", "dose", 30.0),))
    with pytest.raises(CohortConfigError, match="arm 'b'.*salivary_glands"):
        Trial((Arm("b", personalise="activity", limit=Limit("salivary_glands", "dose", 25.0)),),
              Population(agent="DOTATATE"), n_patients=2)
    # the shipped default limits (kidneys 23 Gy, kidney BED 40 Gy, red marrow 2 Gy, salivary
    # glands 25 Gy) keep those on organs the model has; replace() re-validates them
    t = Trial((Arm("a"),), Population(agent="DOTATATE"), n_patients=2)
    assert [str(lim) for lim in t.limits] == ["kidneys absorbed dose <= 23 Gy", "kidneys BED <= 40 Gy",
                                              "red_marrow absorbed dose <= 2 Gy"]
    assert dataclasses.replace(t, n_patients=3).limits == t.limits


def test_cli_bad_limit_organ_writes_nothing(tmp_path, capsys):
    cfg = tmp_path / "sstr.toml"
    cfg.write_text('[trial]\nn_patients = 2\nchunk_size = 2\n[population]\nagent = "DOTATATE"\n'
                   '[[arms]]\nname = "a"\n[[limits]]\norgan = "lacrimal_glands"\nquantity = "dose"\n'
                   'limit_gy = 30\n')
    out = tmp_path / "run"
    args = _parser().parse_args(["trial", str(cfg), "--out", str(out), "--no-progress"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "lacrimal_glands" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_trial_refuses_a_folder_of_other_files(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text('[trial]\nn_patients = 2\nchunk_size = 2\n[[arms]]\nname = "a"\n')
    out = tmp_path / "mine"
    out.mkdir()
    (out / "patient.nii.gz").write_bytes(b"not mine to touch")
    args = _parser().parse_args(["trial", str(cfg), "--out", str(out), "--no-progress"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "patient.nii.gz" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["patient.nii.gz"]


def test_cli_cohort_resume_takes_the_schedule_of_the_run(tmp_path, capsys):
    """README: `twin cohort --n 2000 --activity-gbq 7.4 --cycles 6 --out out/cohort`, then
    `twin cohort --n 2000 --out out/cohort --resume` (here with 2 patients)."""
    out = str(tmp_path / "cohort")
    p = _parser()
    first = p.parse_args(["cohort", "--n", "2", "--activity-gbq", "7.4", "--cycles", "6", "--interval-weeks", "8",
                          "--chunk-size", "2", "--seed", "3", "--out", out, "--no-progress"])
    assert first.func(first) == 0
    capsys.readouterr()
    again = p.parse_args(["cohort", "--n", "2", "--out", out, "--resume", "--no-progress"])
    assert again.func(again) == 0
    printed = capsys.readouterr().out
    assert "0 run now, 1 already done" in printed
    assert "--cycles 6" in printed and "--interval-weeks 8" in printed and "--seed" in printed
    # an explicit different value is refused, naming the setting and both values
    other = p.parse_args(["cohort", "--n", "2", "--cycles", "4", "--out", out, "--resume", "--no-progress"])
    assert other.func(other) == 1
    assert "arms[0].cycles: 6 in the run, 4 now" in capsys.readouterr().err


def test_cli_report_keeps_significant_figures_for_slow_runs(tmp_path, capsys):
    import json

    from twin.cohort import RunSummary

    (tmp_path / "manifest.json").write_text(json.dumps({
        "format": "twin-cohort/1", "fingerprint": {},
        "last_run": {"patients_per_cpu_s_steady": 0.0123, "chunks_timed": 3}}))
    summary = RunSummary(tmp_path, 10, 5, 5, 0, 10, 0, 800.0, 0.0125, "local", 1)
    _cli_trial._report(summary)
    out = capsys.readouterr().out
    assert "0.0123 patients per CPU-second" in out and "0.0125 patients/s" in out


def test_cli_report_prints_fast_runs_without_an_exponent():
    assert _cli_trial._rate(12345.6) == "12,346"
    assert _cli_trial._rate(789.4) == "789"
    assert _cli_trial._rate(4.567) == "4.57"


def test_cli_trial_resume_takes_n_and_chunk_size_of_the_run(tmp_path, capsys):
    """`twin trial t.toml --out o --n 3 --chunk-size 2`, then `twin trial t.toml --out o --resume`
    continues that run (3 patients in chunks of 2) instead of refusing the TOML's n = 4."""
    cfg = tmp_path / "t.toml"
    cfg.write_text('[trial]\nn_patients = 4\nchunk_size = 4\n[[arms]]\nname = "a"\n')
    out = str(tmp_path / "run")
    p = _parser()
    first = p.parse_args(["trial", str(cfg), "--out", out, "--n", "3", "--chunk-size", "2", "--no-progress"])
    assert first.func(first) == 0
    capsys.readouterr()
    again = p.parse_args(["trial", str(cfg), "--out", out, "--resume", "--no-progress"])
    assert again.func(again) == 0
    printed = capsys.readouterr().out
    assert "--n 3" in printed and "--chunk-size 2" in printed
    assert "0 run now, 2 already done" in printed
    # a value typed differently is still refused, naming both values
    other = p.parse_args(["trial", str(cfg), "--out", out, "--resume", "--n", "4", "--no-progress"])
    assert other.func(other) == 1
    assert "n_patients: 3 in the run, 4 now" in capsys.readouterr().err
