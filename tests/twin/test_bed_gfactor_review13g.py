"""Review 13G: the BED of a cycle uses the Lea-Catcheside G-factor of the region's own
time-activity curve (uptake phase included), as twin.cohort does; it used the mono-exponential
G of the late (24-168 h) effective half-life, which ignores the uptake phase and overstated the
kidney G of the default test patient by up to 23 % (BED at 3.3 GBq x 6 by up to 3 %)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

import pbpk
from twin import dose, therapy_schedule

LN2 = math.log(2.0)
KEY = 1313  # draws of their own: the shared twin's simulation cache is not reused
N_DRAWS = 16
T_EFF_H = np.linspace(20.0, 60.0, N_DRAWS)  # clearance half-life per draw
T_UPTAKE_H = 3.0  # uptake half-time of every region


def _bateman_cohort(model, schedule, times_h, params, **kwargs):
    """Stand-in for pbpk.simulate_cohort (no compilation): every region's activity after the
    administration is the Bateman curve exp(-lam t) - exp(-lam_u t) (uptake, then clearance),
    TIA its integral 1/lam - 1/lam_u."""
    n = len(next(iter(params.values())))
    cg = model.compiled
    t = np.asarray(times_h, dtype=float)
    lam, lam_u = LN2 / T_EFF_H[:n], LN2 / T_UPTAKE_H
    a0 = np.linspace(100.0, 200.0, len(cg.all_regions))
    curve = np.exp(-lam[:, None] * t[None, :]) - np.exp(-lam_u * t)[None, :]
    act = a0[None, None, :] * curve[:, :, None]
    tia = np.linspace(50.0, 150.0, len(cg.body_regions))[None, :] * (1 / lam - 1 / lam_u)[:, None]
    return types.SimpleNamespace(activity_mbq=act, tia_mbq_h=tia, status=np.zeros(n, dtype=int),
                                 regions=cg.all_regions, body_regions=cg.body_regions)


def _implied_g(pred, region, n_cycles, alpha_beta):
    """G of each cycle from BED = n d (1 + G d / (a/b)), d = D / n (identical cycles)."""
    k = pred.dose_regions.index(region)
    d = pred.dose_gy[:, k] / n_cycles
    return (pred.bed_gy[:, k] / n_cycles / d - 1.0) * alpha_beta / d


@pytest.mark.parametrize("cycles", ["independent", "coupled"])
def test_bed_uses_the_g_factor_of_a_curve_with_an_uptake_phase(twin, monkeypatch, cycles):
    """Analytic reference: the G-factor of the Bateman dose rate exp(-a t) - exp(-b t) is
    a b (a + b + mu) / ((a + b)(a + mu)(b + mu)) (closed form of the Lea-Catcheside double
    integral, e.g. Dale 1985 / MIRD Pamphlet 20), with mu = ln 2 / 2.8 h and alpha/beta 2.6 Gy
    for kidneys (shipped values = /work/shared/reference research notes). The late half-life
    would give a / (a + mu), 2.5-7 % higher here."""
    monkeypatch.setattr(pbpk, "simulate_cohort", _bateman_cohort)
    before = set(twin._cache)
    try:
        pred = twin.predict(therapy_schedule(7.4, 2, ligand_nmol=100.0), n_draws=N_DRAWS, key=KEY,
                            cycles=cycles)
        a, b, mu = LN2 / T_EFF_H, LN2 / T_UPTAKE_H, LN2 / 2.8
        expected = a * b * (a + b + mu) / ((a + b) * (a + mu) * (b + mu))
        got = _implied_g(pred, "kidney", 2, 2.6)
        np.testing.assert_allclose(got, expected, rtol=2e-3)
        assert np.all(np.abs(a / (a + mu) / expected - 1) > 0.02)  # the late-half-life G is off
        # the lesions (alpha/beta 10 Gy, T_rep 1.5 h) too
        mu_t = LN2 / 1.5
        exp_t = a * b * (a + b + mu_t) / ((a + b) * (a + mu_t) * (b + mu_t))
        np.testing.assert_allclose(_implied_g(pred, "tumour1", 2, 10.0), exp_t, rtol=2e-3)
    finally:
        for key in set(twin._cache) - before:
            del twin._cache[key]


def test_kidney_bed_matches_the_g_factor_of_a_direct_simulation(twin):
    """Reference by another code path: the posterior draws simulated directly with pbpk from
    t = 0 on a fine grid of 400 points, twin.dose.g_factor_numerical on each draw's kidney curve
    (16 sub-steps), BED = 6 d (1 + G d / 2.6) per cycle dose d. The old late-half-life G read
    10-23 % high for these draws."""
    n = N_DRAWS
    pred = twin.predict(activity_gbq=3.3, n_cycles=6, n_draws=n)
    _, params = twin._draw_params(n, 0)
    t = np.r_[0.0, np.geomspace(0.05, 3000.0, 400)]
    res = pbpk.simulate_cohort(twin.therapy_model, pbpk.Schedule.single(3300.0), t, params, chunk_size=n)
    act = np.asarray(res.activity_mbq)[:, :, list(res.regions).index("kidney")]
    lam_phys = pbpk.get_nuclide("Lu-177").decay_constant_per_h
    g_ref = np.array([float(dose.g_factor_numerical(t, c, 2.8, max(math.log(c[-2] / c[-1]) / (t[-1] - t[-2]), lam_phys),
                                                    substeps=16)) for c in act])
    np.testing.assert_allclose(_implied_g(pred, "kidney", 6, 2.6), g_ref, rtol=2e-3)
    k = pred.dose_regions.index("kidney")
    d = pred.dose_gy[:, k] / 6
    np.testing.assert_allclose(pred.bed_gy[:, k], 6 * d * (1 + g_ref * d / 2.6), rtol=1e-4)
    np.testing.assert_allclose(pred.eqd2_gy[:, k], pred.bed_gy[:, k] / (1 + 2 / 2.6), rtol=1e-12)
