"""Review 12J of `twin plan`: escalation on too few draws (MAP), the exact Monte Carlo interval
of the escalated activity, --draws beyond 400, infeasible escalation in the CLI, early schedule
checks, CLI flags in messages, phantom option conflicts and report metadata.

Fast: the CLI runs use the session twin (Twin.from_patient is replaced), the interval is checked
on an analytic power-law twin (no simulation), the report on a cached prediction.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types

import numpy as np
import pandas as pd
import pytest

import pbpk
from twin import TwinInputError, max_activity
from twin._twin import TherapyPrediction, Twin
from twin.cli import main

Z975 = 1.959963984540054  # standard normal 97.5 % point


# ------------------------------------------------------------------ analytic power-law twin
class _PowerLawTwin(Twin):
    """Per draw, kidney dose (and BED) of n cycles of A GBq = n c_i A**k: no simulation."""

    def __init__(self, c, k, method="laplace", n_posterior=None):
        object.__setattr__(self, "c", np.asarray(c, float))
        object.__setattr__(self, "k", float(k))
        object.__setattr__(self, "therapy_model", types.SimpleNamespace(
            carrier_free_mbq_per_nmol=726.8, default_molar_activity_mbq_per_nmol=82.0, nuclide="Lu-177"))
        n_post = len(c) if n_posterior is None else n_posterior
        object.__setattr__(self, "posterior", types.SimpleNamespace(log_samples=np.zeros((n_post, 1)),
                                                                    method=method))

    def dose_operator(self, body_regions=None):
        return types.SimpleNamespace(targets=("kidney",))

    def _dose(self, schedule):
        adm = schedule.administrations
        return (len(adm) * self.c * (adm[0].activity_mbq / 1000.0) ** self.k)[:, None]

    def _arrays(self, schedule, n_draws, key, cycles, times_h=None):
        d = self._dose(schedule)[:n_draws]
        return {"ok": np.ones(len(d), bool), "dose": d, "bed": d, "op": self.dose_operator()}

    def predict(self, schedule=None, *, n_draws=200, key=0, cycles="independent", **kw):
        d = self._dose(schedule)[:n_draws]
        n = len(d)
        return TherapyPrediction(schedule=schedule, times_h=np.zeros(1), regions=("kidney",),
                                 body_regions=("kidney",), activity_mbq=np.zeros((n, 1, 1)),
                                 tia_mbq_h=np.zeros((n, 1)), dose_regions=("kidney",), dose_gy=d, bed_gy=d,
                                 eqd2_gy=d)


KIDNEY_DOSE = [{"organ": "kidneys", "quantity": "absorbed_dose", "limit_gy": 23.0}]


def test_mc_interval_is_exact_when_dose_grows_slower_than_activity():
    """dose_i = n c_i A**k with k = 0.8 (receptor saturation: < 1). The activity that puts the
    r-th smallest dose at the limit L is (L / (n c_(r)))**(1/k), in closed form; the interval's
    ends are those of the binomial confidence ranks N p -/+ z sqrt(N p (1-p)), by hand."""
    n, p, k, n_cyc, limit = 400, 0.95, 0.8, 6, 23.0
    c = np.random.default_rng(3).lognormal(np.log(0.5), 0.4, n)  # Gy per GBq**k per cycle
    tw = _PowerLawTwin(c, k)
    esc = max_activity(tw, limits=KIDNEY_DOSE, probability=p, n_cycles=n_cyc, n_draws=n, rtol=1e-3)
    cs = np.sort(c)

    def at_rank(r):
        return (limit / (n_cyc * cs[r - 1])) ** (1 / k)

    # the plan itself: rank ceil(0.95 * 400) = 380
    assert esc.activity_gbq_per_cycle == pytest.approx(at_rank(380), rel=2e-3)
    half = Z975 * math.sqrt(n * p * (1 - p))  # 8.543
    r_lo, r_hi = math.floor(n * p - half), math.ceil(n * p + half)
    assert (r_lo, r_hi) == (371, 389)
    lo, hi = esc.activity_mc_interval_gbq
    assert lo == pytest.approx(at_rank(r_hi), rel=2e-3)
    assert hi == pytest.approx(at_rank(r_lo), rel=2e-3)


def test_max_activity_refuses_a_probability_on_too_few_draws():
    """One draw (a MAP posterior) proposed 2x the Laplace plan 'with probability 0.95'; now at
    least max(20, ceil(1 / (1 - p))) draws are needed, with a typed error naming the remedy."""
    from twin._scenarios import TooFewDrawsError, min_draws

    assert (min_draws(0.95), min_draws(0.9), min_draws(0.99), min_draws(0.5)) == (20, 20, 100, 20)
    c = np.random.default_rng(0).lognormal(0.0, 0.3, 400)
    with pytest.raises(TooFewDrawsError, match="laplace") as e:
        max_activity(_PowerLawTwin(c[:1], 1.0, method="map"), limits=KIDNEY_DOSE, n_draws=400)
    assert isinstance(e.value, TwinInputError) and "map" in str(e.value)
    with pytest.raises(TooFewDrawsError, match="n_draws"):
        max_activity(_PowerLawTwin(c, 1.0), limits=KIDNEY_DOSE, n_draws=19)
    with pytest.raises(TooFewDrawsError):
        max_activity(_PowerLawTwin(c, 1.0), limits=KIDNEY_DOSE, n_draws=99, probability=0.99)
    assert max_activity(_PowerLawTwin(c, 1.0), limits=KIDNEY_DOSE, n_draws=20).n_draws == 20


# ------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def patient_dir(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("ph12") / "patient"
    phantom.write(out)
    return out


def _plan_args(d, out, *extra):
    return ["plan", "--pet", str(d / "pet_1h.nii.gz"), "--hours", "1", "--injected-mbq", "150",
            "--masks", str(d / "labels.nii.gz"), "--label-table", str(d / "label_table.csv"),
            "--labs", str(d / "labs.csv"), "--no-voxel", "-q", "--out", str(out), *extra]


def _use_twin(monkeypatch, tw, calls=None):
    def from_patient(patient, **kw):
        if calls is not None:
            calls.append(kw)
        return tw
    monkeypatch.setattr(Twin, "from_patient", staticmethod(from_patient))


def test_plan_with_map_skips_the_escalation_in_one_warning_line(twin, patient_dir, tmp_path, monkeypatch,
                                                                  capsys):
    """--method map: the escalation is not attempted (the CLI knows before calibrating that one
    draw cannot carry "with probability 0.95"); one warning line, and the report is written. (The
    session twin stands in for the calibration, so the CLI's own decision is what is tested.)"""
    _use_twin(monkeypatch, twin)
    out = tmp_path / "map"
    rc = main(_plan_args(patient_dir, out, "--method", "map", "--draws", "64", "--cycles", "2"))
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("twin plan: warning: --method map")
    assert "escalation skipped" in lines[0] and "laplace" in lines[0]
    meta = json.loads((out / "report.json").read_text())
    assert "escalation" not in meta and (out / "organ_doses.csv").is_file()


def test_demo_with_map_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    import twin._demo

    def ran(*a, **k):
        raise AssertionError("the demo ran")
    monkeypatch.setattr(twin._demo, "run_demo", ran)
    assert main(["demo", "--method", "map", "--out", str(tmp_path / "d"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("twin demo: error: --method map") and "laplace" in err and "Traceback" not in err


def test_plan_asks_the_calibration_for_every_draw_and_reads_units_in_any_case(patient_dir, tmp_path,
                                                                              monkeypatch, capsys):
    """--draws 500 was silently capped at the 400 posterior samples; 'bq/ml' was refused."""
    calls = []

    def stop(patient, **kw):
        calls.append(kw)
        raise TwinInputError("calibration reached")
    monkeypatch.setattr(Twin, "from_patient", staticmethod(stop))
    for draws, unit, want in (("500", "bq/ml", 500), ("64", "KBQ/ML", 400)):
        rc = main(_plan_args(patient_dir, tmp_path / "r", "--draws", draws, "--unit", unit, "--no-escalation"))
        assert rc == 1 and "calibration reached" in capsys.readouterr().err  # the unit was accepted
        assert calls[-1]["num_samples"] == want


def test_plan_refuses_an_implausible_activity_before_calibrating(patient_dir, tmp_path, monkeypatch, capsys):
    def calibrate(patient, **kw):
        raise AssertionError("calibrated before checking --activity-gbq")
    monkeypatch.setattr(Twin, "from_patient", staticmethod(calibrate))
    assert main(_plan_args(patient_dir, tmp_path / "r", "--activity-gbq", "7400")) == 1
    err = capsys.readouterr().err
    assert "MBq" in err and "Traceback" not in err


def test_infeasible_escalation_writes_the_report_with_one_warning(twin, patient_dir, tmp_path, monkeypatch,
                                                                  capsys):
    import functools

    import twin._scenarios as scen

    _use_twin(monkeypatch, twin)
    # a kidney BED limit of 0.01 Gy searched from 7.4 GBq: the lowest activity violates it, and
    # max_activity raises its own InfeasibleError (on the draws the plan's prediction just simulated)
    monkeypatch.setattr(scen, "max_activity", functools.partial(
        scen.max_activity, limits=[{"organ": "kidneys", "quantity": "bed", "limit_gy": 0.01}],
        bounds_gbq=(7.4, 30.0)))
    out = tmp_path / "inf"
    rc = main(_plan_args(patient_dir, out, "--draws", "64", "--cycles", "2"))
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("twin plan: warning: no activity per cycle meets the limits")
    assert "--cycles" in lines[0] and "--no-escalation" in lines[0] and "bounds_gbq" not in lines[0]
    assert "escalation" not in json.loads((out / "report.json").read_text())


def test_phantom_options_conflicts_and_messages_name_cli_flags(phantom, tmp_path, capsys):
    from twin.patient._io import Geometry, check_same_grid

    for argv, words in ((["--default", "--seed", "3"], "--seed"),
                        (["--default", "--agent", "DCFPyL"], "--agent"),
                        (["--agent", "PSMA-617"], "SPECT"),  # a 177Lu therapy agent is no PET tracer
                        (["--agent", "Ga-DOTATATE", "--modality", "SPECT"], "PET")):
        with pytest.raises(SystemExit) as e:
            main(["phantom", *argv, "--out", str(tmp_path / "p")])
        assert e.value.code == 2
        assert words in capsys.readouterr().err
        assert not (tmp_path / "p").exists()
    (tmp_path / "exists").mkdir()
    with pytest.raises(pbpk.InvalidInputError, match="--overwrite"):
        phantom.write(tmp_path / "exists")
    a = Geometry((10, 10, 10), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(pbpk.InvalidInputError, match="--resample"):
        check_same_grid(a, dataclasses.replace(a, spacing=(5.0, 5.0, 5.0)), "label map")


# ------------------------------------------------------------------ report metadata
def test_report_json_has_resolved_ligand_quantile_definitions_and_exact_times(twin, tmp_path):
    from twin import write_report

    pred = twin.predict(activity_gbq=7.4, n_cycles=2, n_draws=64)
    out = tmp_path / "rep"
    write_report(out, pred, title="t")
    meta = json.loads((out / "report.json").read_text())
    ma = pbpk.get_ligand("PSMA-617").molar_activity_mbq_per_nmol  # 82 MBq/nmol, the agent's default
    for adm in meta["schedule"]:
        assert adm["ligand_nmol"] == pytest.approx(7400.0 / ma)
        assert adm["molar_activity_mbq_per_nmol"] == pytest.approx(ma)
    # two quantile definitions in one report, each named
    qm = meta["quantile_method"]
    assert any("limits.csv" in k and "order statistic" in v for k, v in qm.items())
    assert any("organ_doses.csv" in k and "interpolated" in v for k, v in qm.items())
    assert all("index" not in rec for rec in meta["limits"]["table"])
    # cycle 1 of a 6-week schedule ends just before 1008 h (grid point 1008 - 0.001 h)
    t = pd.read_csv(out / "tac.csv")["time_h"].to_numpy()
    assert t.max() == pytest.approx(1007.999, abs=1e-9) and t.max() < 1008.0


def test_escalation_png_keeps_the_axis_labels(tmp_path):
    """The long x label (with the off-scale note "also 10.8, 30 GBq", as in the review's plan)
    is inside the saved figure, also on the right panel."""
    from PIL import Image

    from twin.report._report import _escalation
    curve = pd.DataFrame({
        "activity_gbq_per_cycle": [0.5, 1.0, 2.0, 3.0, 3.1, 10.8, 30.0], "cumulative_activity_gbq": 0.0,
        "kidneys_bed_q95_gy": [6.5, 13.0, 26.0, 39.0, 40.0, 139.0, 387.0], "kidneys_bed_limit_gy": 40.0,
        "tumour1_dose_q5_gy": 1.0, "tumour1_dose_q50_gy": 2.0, "tumour1_dose_q95_gy": 3.0})
    esc = types.SimpleNamespace(curve=curve, probability=0.95, limits=[dict(organ="kidneys", quantity="bed",
                                                                             limit_gy=40.0)],
                                activity_gbq_per_cycle=3.1, fixed_activity_gbq=7.4, n_cycles=6, ligand="scaled")
    pages = []
    _escalation(esc, tmp_path, pages, "a long title for the patient report")
    fig = pages[0]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    with Image.open(tmp_path / "escalation.png") as im:
        w_px, h_px = im.size
    # the saved image spans the figure's tight box (inches x dpi), which holds every label
    tight = fig.get_tightbbox(r)
    assert w_px >= 110 * tight.width - 2 and h_px >= 110 * tight.height - 2
    for ax in fig.axes:
        box = ax.xaxis.label.get_window_extent(r)
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 + 1 and box.y0 >= 0
    import matplotlib.pyplot as plt
    plt.close(fig)
