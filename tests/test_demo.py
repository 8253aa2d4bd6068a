"""`twin demo` (behind `make demo`): the embedded virtual patient end to end, small settings."""

from __future__ import annotations

import json

import pandas as pd

from twin.cli import main


def test_demo_end_to_end_writes_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--draws", "64", "--voxel-draws", "4", "--cycles", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Personalised activity" in printed and "timings (s)" in printed
    rep = tmp_path / "report"
    meta = json.loads((rep / "report.json").read_text())
    assert meta["therapy_agent"] == "PSMA-617" and meta["calibration"]["method"] == "laplace"
    assert meta["total_activity_gbq"] == 2 * 7.4
    esc = meta["escalation"]
    assert esc["n_cycles"] == 2 and esc["activity_gbq_per_cycle"] > 0
    # the personalised activity keeps kidney BED <= 40 Gy with probability >= 0.95 (its own table)
    kid = next(c for c in esc["constraints"] if c["organ"] == "kidneys")
    assert kid["probability_within"] >= 0.95 or esc["at_upper_bound"]
    doses = pd.read_csv(rep / "organ_doses.csv", index_col="region")
    # Gy/GBq times the administered GBq gives back the median dose
    k = doses.loc["kidney"]
    assert abs(k["dose_median_gy_per_gbq"] * 14.8 - k["dose_q50_gy"]) <= 1e-4 * k["dose_q50_gy"]
    for name in ("tac.png", "dose_map.pdf", "dvh.png", "escalation.png", "report.pdf"):
        assert (rep / name).stat().st_size > 1000
