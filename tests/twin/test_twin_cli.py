"""CLI smoke tests: twin phantom, twin plan, exit codes and plain-word errors."""

from __future__ import annotations

import json

import pytest

from twin.cli import main


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ph") / "patient"
    assert main(["phantom", "--default", "--out", str(out), "--quiet"]) == 0
    return out


def test_phantom_writes_a_patient(phantom_dir, tmp_path, capsys):
    for name in ("ct.nii.gz", "labels.nii.gz", "label_table.csv", "pet_1h.nii.gz", "labs.csv",
                 "ground_truth.json"):
        assert (phantom_dir / name).is_file(), name
    gt = json.loads((phantom_dir / "ground_truth.json").read_text())
    assert gt["agent"] == "PSMA-11" and gt["frames"][0]["time_h"] == 1.0
    # an existing folder is an input error: exit 1, message on stderr, no traceback
    assert main(["phantom", "--default", "--out", str(phantom_dir)]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "Traceback" not in err


def test_plan_writes_report(phantom_dir, tmp_path, capsys):
    out = tmp_path / "plan"
    rc = main(["plan", "--pet", str(phantom_dir / "pet_1h.nii.gz"), "--hours", "1", "--injected-mbq", "150",
               "--masks", str(phantom_dir / "labels.nii.gz"), "--label-table", str(phantom_dir / "label_table.csv"),
               "--ct", str(phantom_dir / "ct.nii.gz"), "--labs", str(phantom_dir / "labs.csv"),
               "--cycles", "2", "--draws", "64", "--no-voxel", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Personalised activity" in printed and "report written" in printed
    meta = json.loads((out / "report.json").read_text())
    assert meta["imaging_agent"] == "PSMA-11" and meta["therapy_agent"] == "PSMA-617"
    assert (out / "escalation.png").is_file() and (out / "tac.png").is_file()
    assert not (out / "dose_map.png").exists()  # --no-voxel


def test_usage_and_input_errors(phantom_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["plan"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["demo", "--cycles", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:  # one --hours per --pet
        main(["plan", "--pet", "a.nii", "--pet", "b.nii", "--hours", "1", "--injected-mbq", "150",
              "--masks", "m", "--label-table", "t", "--labs", "l", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    capsys.readouterr()
    rc = main(["plan", "--pet", str(tmp_path / "missing.nii.gz"), "--hours", "1", "--injected-mbq", "150",
               "--masks", str(phantom_dir / "labels.nii.gz"), "--label-table", str(phantom_dir / "label_table.csv"),
               "--labs", str(phantom_dir / "labs.csv"), "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "missing.nii.gz" in err and "Traceback" not in err
    for cmd in ("demo", "plan", "phantom"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
