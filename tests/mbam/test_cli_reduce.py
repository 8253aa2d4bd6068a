"""The ``twin reduce`` sub-command (twin/_cli_reduce.py), on a parser built here."""

import argparse
import json

import mbam
from twin import _cli_reduce


def run(argv):
    parser = argparse.ArgumentParser(prog="twin")
    sub = parser.add_subparsers(dest="command", required=True)
    _cli_reduce.register(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code
    return args.func(args)


def test_help_and_usage_errors(capsys):
    assert run(["reduce", "--help"]) == 0
    assert "--design" in capsys.readouterr().out
    assert run(["reduce"]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err
    assert run(["reduce", "--out", "x.json", "--max-iter", "two"]) == 2


def test_input_errors_exit_1_with_a_message(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert run(["reduce", "--design", str(tmp_path / "nope.json"), "--out", str(out)]) == 1
    assert "design file" in capsys.readouterr().err
    bad = tmp_path / "design.json"
    bad.write_text(json.dumps({"agent": "PSMA-617", "spect_times_h": [-4]}))
    assert run(["reduce", "--design", str(bad), "--out", str(out)]) == 1
    assert "spect_times_h" in capsys.readouterr().err
    assert run(["reduce", "--agent", "PSMA-999", "--out", str(out), "--max-iter", "0"]) == 1
    assert "PSMA-999" in capsys.readouterr().err
    assert run(["reduce", "--out", str(tmp_path / "missing" / "r.json")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert run(["reduce", "--out", str(out), "--check-draws", "-1"]) == 1
    assert "--check-draws" in capsys.readouterr().err
    assert not out.exists()


def test_writes_a_loadable_reduction(tmp_path, capsys):
    design = tmp_path / "design.json"
    design.write_text(mbam.ReductionDesign(spect_times_h=(24.0, 168.0)).to_json())
    out = tmp_path / "reduced.json"
    code = run(["reduce", "--agent", "PSMA-617", "--design", str(design), "--out", str(out),
                "--max-iter", "0", "--population-draws", "0", "--no-lump", "--no-transit",
                "--check-draws", "8"])
    assert code == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "reducing" in captured.err
    # no step: the "reduced" model is the full one, so the population check finds no error
    assert "TIA over 8 prior draws: max error 0.00 %" in captured.out
    red = mbam.load_reduced(out)
    assert red.design.spect_times_h == (24.0, 168.0)
    assert red.model.graph == red.full_model.graph  # no step was asked for


def test_population_tol_must_be_positive_and_finite(tmp_path, capsys):
    out = tmp_path / "r.json"
    for bad in ("-1", "0", "nan", "inf", "one"):
        # --max-iter 0 and no checks: were the value accepted, the command would end quickly (0)
        assert run(["reduce", "--out", str(out), "--max-iter", "0", "--check-draws", "0",
                    "--population-tol", bad]) == 2
        assert "--population-tol" in capsys.readouterr().err
    assert not out.exists()
