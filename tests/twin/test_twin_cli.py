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


def test_plan_refuses_impossible_uptake_and_reads_decay_corrected_pet(phantom_dir, tmp_path, capsys):
    """Whole-body uptake above the injected activity names the usual causes (GBq typed as MBq,
    a decay-corrected image) instead of planning 3x the dose; --decay-corrected reads such an
    image; a structure no region takes is named in a warning."""
    import math

    import SimpleITK as sitk

    args = ["--masks", str(phantom_dir / "labels.nii.gz"), "--labs", str(phantom_dir / "labs.csv"),
            "--cycles", "1", "--draws", "16", "--no-voxel", "--no-escalation", "--method", "map", "--quiet"]
    pet = str(phantom_dir / "pet_1h.nii.gz")
    table = str(phantom_dir / "label_table.csv")
    # 0.15 MBq: GBq typed as MBq -> 1000x the injected activity in the body
    rc = main(["plan", "--pet", pet, "--hours", "1", "--injected-mbq", "0.15", "--label-table", table,
               *args, "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 1 and "more than was injected" in err and "GBq" in err and "Traceback" not in err
    # the same PET decay-corrected to the injection (68Ga, T1/2 = 67.71 min, ICRP-107): x 2^(60/67.71)
    dc = tmp_path / "pet_dc.nii.gz"
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(pet), sitk.sitkFloat32) * (2.0 ** (60.0 / 67.71)), str(dc))
    rc = main(["plan", "--pet", str(dc), "--hours", "1", "--injected-mbq", "150", "--label-table", table,
               *args, "--out", str(tmp_path / "b")])
    assert rc == 1 and "decay-corrected" in capsys.readouterr().err  # 185 % of the injection
    renamed = tmp_path / "labels_renamed.csv"
    renamed.write_text((phantom_dir / "label_table.csv").read_text().replace("kidney_right", "kidney_r"))
    rc = main(["plan", "--pet", str(dc), "--hours", "1", "--injected-mbq", "150", "--decay-corrected",
               "--label-table", str(renamed), *args, "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 0
    # warnings are one line each, also with --quiet
    assert "twin plan: warning: mask structure(s) kidney_r match no model region" in err
    assert "Traceback" not in err and ".py:" not in err
    assert math.isfinite(json.loads((tmp_path / "c" / "report.json").read_text())["n_draws"])


def test_plan_defaults_to_the_labelled_protocol_of_the_therapy_agent(tmp_path, capsys):
    """177Lu-DOTATATE: 4 cycles of 7.4 GBq every 8 weeks (NETTER-1 / Lutathera label, research
    notes dosimetry_reference.md: "standard Lutate course 4 x 7.4 GBq at 8 weeks"), not PSMA's 6."""
    ph = tmp_path / "sstr"
    assert main(["phantom", "--agent", "Ga-DOTATATE", "--out", str(ph), "--quiet"]) == 0
    rc = main(["plan", "--pet", str(ph / "pet_1h.nii.gz"), "--hours", "1", "--injected-mbq", "150",
               "--masks", str(ph / "labels.nii.gz"), "--label-table", str(ph / "label_table.csv"),
               "--labs", str(ph / "labs.csv"), "--agent", "Ga-DOTATATE", "--draws", "16", "--method", "map",
               "--no-voxel", "--no-escalation", "--out", str(tmp_path / "plan")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "29.6 GBq in 4 cycle(s) every 8 weeks" in out
