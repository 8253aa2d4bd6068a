"""The report folder: every file written, tables and JSON carry units, figures are real."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from twin import TwinInputError, max_activity, write_report


@pytest.fixture(scope="module")
def report(twin, tmp_path_factory):
    pred = twin.predict(activity_gbq=7.4, n_cycles=2, n_draws=64)
    esc = max_activity(twin, n_cycles=2, n_draws=64, fixed_n_cycles=2, rtol=0.02)
    vox = pred.voxel_dose(n_draws=4)
    out = tmp_path_factory.mktemp("rep") / "report"
    files = write_report(out, pred, escalation=esc, voxel=vox, title="test patient")
    return out, files, pred, esc


def test_files_written(report):
    out, files, _, _ = report
    for stem in ("tac", "dose_map", "dvh", "escalation"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (out / f"{stem}.png").stat().st_size > 10_000
    for name in ("organ_doses.csv", "limits.csv", "tac.csv", "dvh.csv", "escalation.csv", "report.json",
                 "report.pdf"):
        assert (out / name).is_file(), name
    assert set(files) == {p.name for p in out.iterdir()}
    assert not list(out.parent.glob(".report.tmp-*"))  # temporary folder moved into place


def test_tables_and_json_carry_units(report):
    out, _, pred, esc = report
    doses = pd.read_csv(out / "organ_doses.csv", index_col="region")
    units = ("_gy", "_gy_per_gbq", "_mbq_h")
    numeric = [c for c in doses.columns if c != "method"]
    assert all(c.endswith(units) for c in numeric), numeric
    np.testing.assert_allclose(doses.loc["kidney", "dose_q50_gy"], np.median(pred.draws("dose_gy", "kidney")),
                               rtol=1e-5)
    tac = pd.read_csv(out / "tac.csv")
    assert tac.columns[0] == "time_h" and all(c.endswith("_mbq") for c in tac.columns[1:])
    meta = json.loads((out / "report.json").read_text())
    assert meta["format"] == "twin-report/1" and "_gy" in meta["units"] and "time_h" in meta["units"]
    assert meta["schedule"][0]["activity_mbq"] == pytest.approx(7400.0)
    assert meta["escalation"]["activity_gbq_per_cycle"] == pytest.approx(esc.activity_gbq_per_cycle)
    assert sorted(meta["files"]) == sorted(p.name for p in out.iterdir())
    esc_csv = pd.read_csv(out / "escalation.csv")
    assert (esc_csv["kidneys_bed_limit_gy"] == 40.0).all()


def test_bad_report_arguments(report, tmp_path):
    _, _, pred, _ = report
    with pytest.raises(TwinInputError, match="TherapyPrediction"):
        write_report(tmp_path / "r", {"not": "a prediction"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(TwinInputError, match="not a folder"):
        write_report(tmp_path / "file", pred)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(TwinInputError, match="not a twin report"):
        write_report(tmp_path / "full", pred, overwrite=False)
    assert (tmp_path / "full" / "keep.txt").exists()
