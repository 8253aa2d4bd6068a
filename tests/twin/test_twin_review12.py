"""Review 12 of the twin: a failed posterior draw is excluded from the BED (it used to make
twin.dose.bed raise), and the escalation curve reports the constraint's quantile."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

import pbpk
from twin import max_activity
from twin._scenarios import _curve

N_DRAWS = 64
KEY = 1212  # draws of their own: the twin's simulation cache is not shared with other tests


def _cohort_with_a_failed_first_draw(model, schedule, times_h, params, **kwargs):
    """Stand-in for pbpk.simulate_cohort (no compilation): every region's activity decays
    mono-exponentially with the draw's effective half-life T_EFF_H[i] (so the twin's late
    effective half-life is known exactly), TIA = w / lambda per body region, and draw 0 failed
    as a failed solve returns it: NaN TIA (unreached save points) and solver status 2."""
    n = len(next(iter(params.values())))
    cg = model.compiled
    t = np.asarray(times_h, dtype=float)
    lam = math.log(2) / T_EFF_H[:n]
    a0 = np.linspace(1.0, 2.0, len(cg.all_regions))  # MBq at t = 0 per region
    act = a0[None, None, :] * np.exp(-lam[:, None, None] * t[None, :, None])
    w = np.linspace(0.5, 1.5, len(cg.body_regions))
    tia = w[None, :] / lam[:, None]
    tia[0] = np.nan
    status = np.zeros(n, dtype=int)
    status[0] = 2
    return types.SimpleNamespace(activity_mbq=act, tia_mbq_h=tia, status=status,
                                 regions=cg.all_regions, body_regions=cg.body_regions)


T_EFF_H = np.linspace(30.0, 90.0, N_DRAWS)  # below the 159.5 h of Lu-177: not clipped


def test_failed_draw_is_excluded_and_the_others_keep_dales_bed(twin, monkeypatch):
    monkeypatch.setattr(pbpk, "simulate_cohort", _cohort_with_a_failed_first_draw)
    before = set(twin._cache)
    try:
        with pytest.warns(UserWarning, match=f"1 of {N_DRAWS} posterior draws failed"):
            pred = twin.predict(activity_gbq=7.4, ligand_nmol=100.0, n_draws=N_DRAWS, key=KEY)
        assert pred.n_failed == 1 and pred.n_draws == N_DRAWS - 1
        idx, _ = twin._draw_params(N_DRAWS, KEY)
        np.testing.assert_array_equal(pred.draw_index, idx[1:])
        # kidney BED of every remaining draw: Dale's closed form by hand (alpha/beta 2.6 Gy,
        # T_rep 2.8 h for kidneys) from its dose and the effective half-life it was made with
        k = pred.dose_regions.index("kidney")
        d = pred.dose_gy[:, k]
        lam, mu = math.log(2) / T_EFF_H[1:], math.log(2) / 2.8
        assert np.all(np.isfinite(d)) and np.all(d > 0)
        np.testing.assert_allclose(pred.effective_half_life_h[:, k], T_EFF_H[1:], rtol=1e-9)
        # numerical G of the sampled curve (twin.dose.g_factor_numerical) vs Dale's closed form
        np.testing.assert_allclose(pred.bed_gy[:, k], d + d**2 / 2.6 * lam / (mu + lam), rtol=1e-5)
        np.testing.assert_allclose(pred.eqd2_gy[:, k], pred.bed_gy[:, k] / (1 + 2 / 2.6), rtol=1e-12)

        # max_activity on the same (cached) draws: no error, the failed draw is left out. The
        # limit is the hand BED's 0.9 quantile at 10 GBq, so a* is near 10 GBq
        d10 = d * 10.0 / 7.4
        limit = float(np.quantile(d10 + d10**2 / 2.6 * lam / (mu + lam), 0.9, method="inverted_cdf"))
        lim = [{"organ": "kidneys", "quantity": "bed", "limit_gy": limit}]
        with pytest.warns(UserWarning, match="posterior draws failed"):
            esc = max_activity(twin, limits=lim, probability=0.9, n_cycles=1, n_draws=N_DRAWS,
                               ligand_nmol=100.0, key=KEY, rtol=1e-3)
        assert esc.n_draws == N_DRAWS - 1 and not esc.at_upper_bound
        # at a* the hand BED of the remaining draws meets the limit with probability 0.9
        dose_star = d * esc.activity_gbq_per_cycle / 7.4
        bed_star = dose_star + dose_star**2 / 2.6 * lam / (mu + lam)
        assert np.mean(bed_star <= limit) >= 0.9
        d_up = 1.01 * dose_star  # and 1 % more activity violates it
        assert np.mean(d_up + d_up**2 / 2.6 * lam / (mu + lam) <= limit) < 0.9
    finally:
        for key in set(twin._cache) - before:  # leave the shared twin's cache as it was
            del twin._cache[key]


def test_escalation_curve_reports_the_limit_quantile():
    # kidney BED of ten draws, 1..10 Gy: the 0.9 limit quantile is the 9th smallest draw (9 Gy,
    # 9 of 10 draws within); linear interpolation would report 9.1 Gy
    vals = {"dose_gy": np.arange(1.0, 11.0)[:, None], "bed_gy": np.arange(1.0, 11.0)[:, None],
            "regions": ("kidney",)}
    ev = types.SimpleNamespace(evaluations=[(2.0, vals)], n=4)
    lim = [{"organ": "kidneys", "region": "kidney", "quantity": "bed", "limit_gy": 9.0}]
    row = _curve(ev, lim, 0.9).iloc[0]
    assert row["kidneys_bed_q90_gy"] == 9.0
    assert row["cumulative_activity_gbq"] == 8.0
