"""Report and trial figures: escalation window, TAC title, trial title/limit lines/legend.

Fast: synthetic escalation curves, predictions and trial folders (no twin calibration).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from twin.report._report import _escalation, _tac

LIMITS = [dict(organ="kidneys", quantity="bed", limit_gy=40.0),
          dict(organ="red_marrow", quantity="absorbed_dose", limit_gy=2.0)]


def _bisection_curve(lo=0.5, hi=30.0, a_star=3.1, steps=8):
    """The activities a log bisection evaluates (dose proportional to activity: kidney BED q95
    reaches 40 Gy at ``a_star``), as in EscalationResult.curve."""
    pts = [lo, hi]
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        pts.append(mid)
        lo, hi = (mid, hi) if mid <= a_star else (lo, mid)
    a = np.array(sorted(pts))
    k = 40.0 / a_star
    return pd.DataFrame({
        "activity_gbq_per_cycle": a, "cumulative_activity_gbq": 6 * a,
        "kidneys_bed_q50_gy": 0.5 * k * a, "kidneys_bed_q95_gy": k * a, "kidneys_bed_limit_gy": 40.0,
        "red_marrow_absorbed_dose_q50_gy": 0.01 * a, "red_marrow_absorbed_dose_q95_gy": 0.02 * a,
        "red_marrow_absorbed_dose_limit_gy": 2.0,
        "tumour1_dose_q5_gy": 40 * a, "tumour1_dose_q50_gy": 80 * a, "tumour1_dose_q95_gy": 160 * a})


def _esc(curve, a_star=3.1, fixed=2.0):
    return types.SimpleNamespace(curve=curve, probability=0.95, limits=LIMITS, activity_gbq_per_cycle=a_star,
                                 fixed_activity_gbq=fixed, n_cycles=6, ligand="scaled with activity")


def _escalation_fig(esc, tmp_path):
    pages = []
    files = _escalation(esc, tmp_path, pages, "test")
    assert "escalation.png" in files and (tmp_path / "escalation.png").stat().st_size > 0
    return pages[0]


def _lines(ax):
    """(x, y) of the joining lines (no markers) and of the marker-only series."""
    joined = [ln for ln in ax.get_lines() if ln.get_marker() in ("None", None, "") and ln.get_linestyle() == "-"
              and len(ln.get_xdata()) > 2]
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    return joined, markers


def test_escalation_axis_is_limited_around_the_found_activity(tmp_path):
    curve = _bisection_curve()
    fig = _escalation_fig(_esc(curve), tmp_path)
    for ax in fig.axes:
        right = ax.get_xlim()[1]
        assert right < 1.6 * 3.1  # not the 30 GBq search bound
        assert right == pytest.approx(1.5 * 3.1)
        assert "30 GBq, off scale" in ax.get_xlabel()
    ax = fig.axes[0]
    joined, markers = _lines(ax)
    shown = curve["activity_gbq_per_cycle"][curve["activity_gbq_per_cycle"] <= 1.5 * 3.1].to_numpy()
    # every evaluated activity in the window is a marker, per limit
    assert len(markers) == 2
    for m in markers:
        np.testing.assert_allclose(np.asarray(m.get_xdata(), float), shown)
    # no line reaches a point off the scale (the straight 4 -> 30 GBq segment is gone)
    for ln in joined:
        x = np.asarray(ln.get_xdata(), float)
        assert np.nanmax(x) <= 1.5 * 3.1
    # the y range follows the shown points: kidney BED q95 / limit at the largest shown activity
    assert ax.get_ylim()[1] < 1.2 * (40 / 3.1) * shown.max() / 40
    plt.close(fig)


def test_escalation_keeps_the_fixed_protocol_visible(tmp_path):
    fig = _escalation_fig(_esc(_bisection_curve(), fixed=7.4), tmp_path)
    for ax in fig.axes:
        assert 7.4 < ax.get_xlim()[1] <= 1.1 * 7.4 + 1e-9
        assert any(np.allclose(np.asarray(ln.get_xdata(), float), 7.4) for ln in ax.get_lines())
    plt.close(fig)


def test_escalation_does_not_join_across_an_unsampled_gap(tmp_path):
    # 0.5 -> 2.9 GBq is a factor 5.8 never evaluated in between: no straight line across it
    a = np.array([0.5, 2.9, 3.0, 3.1, 3.2, 3.3])
    curve = _bisection_curve().iloc[:0]
    k = 40.0 / 3.1
    curve = pd.DataFrame({c: np.nan for c in curve.columns}, index=range(a.size))
    curve["activity_gbq_per_cycle"] = a
    curve["kidneys_bed_q95_gy"] = k * a
    curve["red_marrow_absorbed_dose_q95_gy"] = 0.02 * a
    for q, f in (("q5", 40), ("q50", 80), ("q95", 160)):
        curve[f"tumour1_dose_{q}_gy"] = f * a
    fig = _escalation_fig(_esc(curve), tmp_path)
    joined, _ = _lines(fig.axes[0])
    assert joined
    for ln in joined:
        x = np.asarray(ln.get_xdata(), float)
        finite = x[np.isfinite(x)]
        assert 0.5 in finite and 2.9 in finite
        i = int(np.flatnonzero(x == 0.5)[0])
        assert np.isnan(x[i + 1])  # broken right after 0.5
    plt.close(fig)


class _Admin:
    def __init__(self, t, a):
        self.time_h, self.activity_mbq = t, a


def _prediction(n_admin):
    times = np.r_[np.geomspace(0.25, 1000.0, 40), 1008.0 + np.geomspace(0.25, 1000.0, 40)]
    admins = [_Admin(1008.0 * k, 7400.0) for k in range(n_admin)]
    rng = np.random.default_rng(0)
    base = 500.0 * np.exp(-times[None, :, None] * np.array([0.01, 0.02])[None, None, :] % 5)
    act = base * rng.lognormal(0.0, 0.1, (20, 1, 1))
    return types.SimpleNamespace(regions=("kidney", "tumour1"), quantiles=(0.05, 0.5, 0.95),
                                 schedule=types.SimpleNamespace(administrations=admins), times_h=times,
                                 activity_mbq=act)


def test_tac_title_says_which_cycle_is_shown(tmp_path):
    pages = []
    _tac(_prediction(2), tmp_path, pages, "P, 7.4 GBq x 2")
    title = pages[0].axes[0].get_title()
    assert "cycle 1 of 2 shown" in title
    # and only cycle 1 is drawn
    assert max(np.max(ln.get_xdata()) for ln in pages[0].axes[0].get_lines()) < 1008.0
    plt.close(pages[0])
    pages = []
    _tac(_prediction(1), tmp_path, pages, "P, 7.4 GBq x 1")
    assert "cycle 1 of" not in pages[0].axes[0].get_title()
    plt.close(pages[0])


# ---------------------------------------------------------------------------------- trial plot
N = 30


@dataclass(frozen=True)
class _Trial:
    """Two arms; patient i has kidney BED i * 2 Gy (arm A) and i Gy (arm B)."""

    n_patients: int = N
    chunk_size: int = 15
    rows_per_patient: int = 2

    @property
    def n_chunks(self):
        return math.ceil(self.n_patients / self.chunk_size)

    def rows_in_chunk(self, c):
        return 2 * min(self.chunk_size, self.n_patients - c * self.chunk_size)

    def fingerprint(self):
        return {"kind": "synthetic-plots11", "name": "Plot trial 11",
                "arms": [{"name": "arm A"},
                         {"name": "arm B", "limit": {"organ": "kidneys", "quantity": "bed", "limit_gy": 40.0}}],
                "limits": [{"organ": "kidneys", "quantity": "bed", "limit_gy": 40.0},
                           {"organ": "kidneys", "quantity": "dose", "limit_gy": 23.0}]}

    def run_chunk(self, c):
        import pyarrow as pa

        i = np.arange(c * self.chunk_size, c * self.chunk_size + self.rows_in_chunk(c) // 2)
        tables = []
        for arm, f in (("arm A", 2.0), ("arm B", 1.0)):
            bed = i * f
            tables.append(pa.table({
                "patient_id": i, "arm": [arm] * i.size, "status": np.zeros(i.size, int),
                "cycles_given": np.minimum(6, 1 + i // 5).astype(float),
                "kidneys_bed_gy": bed, "kidneys_dose_gy": 0.6 * bed, "tumour_dose_gy": 10 * bed,
                "exceeds_kidneys_dose_le_23gy": 0.6 * bed > 23.0,
                "exceeds_kidneys_bed_le_40gy": bed > 40.0}))
        return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def trial_dir(tmp_path_factory):
    from twin.cohort import run_chunks

    out = tmp_path_factory.mktemp("trial_plots11")
    run_chunks(_Trial(), out, workers=1, progress=False)
    return out


def _hlines_at(ax, y):
    return [ln for ln in ax.get_lines()
            if len(ln.get_ydata()) == 2 and np.allclose(np.asarray(ln.get_ydata(), float), y)
            and ln.get_xdata()[0] == 0 and ln.get_xdata()[1] == 1]


def test_trial_figure_has_title_limit_lines_and_a_legend_outside(trial_dir):
    from twin.trial import plot_trial

    fig = plot_trial(trial_dir, endpoints=("kidneys_bed_gy", "kidneys_dose_gy", "tumour_dose_gy"))
    assert fig._suptitle is not None and "Plot trial 11" in fig._suptitle.get_text()
    bed, dose, tumour = fig.axes[:3]
    assert len(_hlines_at(bed, 40.0)) == 1  # trial and arm limit: one line
    assert len(_hlines_at(dose, 23.0)) == 1
    assert not _hlines_at(tumour, 40.0) and not _hlines_at(tumour, 23.0)
    assert not _hlines_at(bed, 23.0)
    assert bed.get_ylim()[1] > 40.0 and dose.get_ylim()[1] > 23.0  # the lines are in view
    # one figure legend naming the arms, clear of every panel
    assert len(fig.legends) == 1
    assert {t.get_text() for t in fig.legends[0].get_texts()} >= {"arm A", "arm B"}
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    lb = fig.legends[0].get_window_extent(r)
    for ax in fig.axes:
        assert ax.get_legend() is None
        assert not lb.overlaps(ax.get_window_extent(r))
    assert lb.y0 >= 0 and fig._suptitle.get_window_extent(r).y1 <= fig.bbox.y1 + 0.5
    plt.close(fig)


def test_trial_default_panels_and_report(trial_dir):
    from twin.trial import plot_trial, write_trial_report

    fig = plot_trial(trial_dir)
    assert len(fig.axes) == 4 and len(_hlines_at(fig.axes[0], 40.0)) == 1
    plt.close(fig)
    paths = write_trial_report(trial_dir)
    assert paths["plot"].stat().st_size > 0
