"""Review 12 of twin.dose: the uptake-phase G-factor against quadrature of Dale's double
integral, typed errors for inputs that gave NaN/inf or silently wrong numbers (BED helpers,
OAR limits, DVH spacing, duplicate nuclides), and jit/grad still working after the checks."""

from __future__ import annotations

import csv
import math

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import integrate

import pbpk
from twin.dose import (
    bed,
    bed_monoexponential,
    bed_multicycle,
    check_oar_limits,
    dose_statistics,
    eqd2,
    g_factor_monoexponential,
    g_factor_multiexponential,
    g_factor_numerical,
    oar_limits,
)
from twin.dose._alpha import alpha_organ_dose
from twin.dose._errors import UnknownOrganError

LN2 = math.log(2.0)


def _g_by_quadrature(rate, mu, t_end):
    """Dale's G = 2 / D**2 * int_0^inf R(t) int_0^t R(w) exp(-mu (t - w)) dw dt, by scipy."""
    d = integrate.quad(rate, 0.0, t_end, limit=400)[0]

    def inner(t):
        return integrate.quad(lambda w: rate(w) * math.exp(-mu * (t - w)), 0.0, t, limit=200)[0]

    return 2.0 * integrate.quad(lambda t: rate(t) * inner(t), 0.0, t_end, limit=400)[0] / d**2


@pytest.mark.parametrize(
    "t_eff, t_up",
    [
        (40.0, 40.0),  # equal half-times: dose rate t exp(-lambda t); the old form gave NaN
        (40.0, 40.0 + 1e-7),  # near-equal: the old form lost everything to cancellation
        (40.0, 60.0),  # uptake slower than clearance (flip-flop): still a positive curve
    ],
)
def test_uptake_g_factor_matches_quadrature_of_the_double_integral(t_eff, t_up):
    lam, lam_u, mu = LN2 / t_eff, LN2 / t_up, LN2 / 2.8
    if t_up == t_eff:
        def rate(t):
            return t * math.exp(-lam * t)
    else:
        def rate(t):  # the Bateman curve (e^-lam t - e^-lam_u t) / (lam_u - lam), without cancellation
            return math.exp(-lam * t) * -math.expm1(-(lam_u - lam) * t) / (lam_u - lam)
    expected = _g_by_quadrature(rate, mu, 60.0 * max(t_eff, t_up))
    got = float(g_factor_monoexponential(t_eff, 2.8, uptake_half_time_h=t_up))
    assert got == pytest.approx(expected, rel=1e-7)
    if t_up == t_eff:
        assert expected == pytest.approx(0.034850, abs=1e-6)  # the reviewer's value


def test_multiexponential_refuses_dose_rates_that_are_negative_or_deliver_no_dose():
    with pytest.raises(pbpk.InvalidInputError, match="not positive"):  # dose 1 - 1 = 0 (was inf)
        g_factor_multiexponential([1.0, -2.0], [1.0, 2.0], 2.8)
    with pytest.raises(pbpk.InvalidInputError, match="not positive"):  # e^-2t - e^-t < 0
        g_factor_multiexponential([1.0, -1.0], [2.0, 1.0], 2.8)
    # positive total dose (20 - 10) but the slow negative term makes the rate negative late
    with pytest.raises(pbpk.InvalidInputError, match="negative at t"):
        g_factor_multiexponential([20.0, -1.0], [1.0, 0.1], 2.8)
    # nearly equal rates with opposite signs: G would be lost to cancellation
    lam = LN2 / 40.0
    with pytest.raises(pbpk.InvalidInputError, match="uptake_half_time_h"):
        g_factor_multiexponential([1.0, -1.0], [lam, lam * (1 + 1e-9)], 2.8)
    with pytest.raises(pbpk.InvalidInputError, match="zero everywhere"):  # was NaN
        g_factor_numerical([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], 2.8, 0.01)


def test_bed_helpers_refuse_out_of_range_inputs():
    with pytest.raises(pbpk.InvalidInputError, match=r"outside \[0, 1\]"):
        bed(10.0, 1.5, 3.0)
    # G = 1 (acute dose) is the upper end: BED = D + D**2 / (alpha/beta) by hand
    assert float(bed(10.0, 1.0, 2.5)) == pytest.approx(10.0 + 100.0 / 2.5, rel=1e-14)
    for bad in (-10.0, float("nan")):
        with pytest.raises(pbpk.InvalidInputError, match="bed_gy"):
            eqd2(bad, 3.0)
    with pytest.raises(pbpk.InvalidInputError, match="3 cycles"):
        bed_multicycle([1.0, 2.0, 3.0], effective_half_lives_h=[40.0, 50.0], tissue="kidneys")
    with pytest.raises(pbpk.InvalidInputError, match="1-D"):
        bed_multicycle([[1.0, 2.0], [3.0, 4.0]], effective_half_lives_h=40.0, tissue="kidneys")


def test_checked_functions_still_jit_and_differentiate():
    """Regression guard: the value checks skip jax tracers."""
    lam, mu = LN2 / 40.0, LN2 / 2.8
    g = lam / (lam + mu)
    assert float(jax.jit(lambda d: bed(d, g, 2.6))(23.0)) == pytest.approx(23 + g * 23**2 / 2.6)
    assert float(jax.jit(lambda b: eqd2(b, 2.6))(36.0)) == pytest.approx(36 / (1 + 2 / 2.6))
    # dBED/dD = 1 + 2 D G / (alpha/beta)
    dbed = jax.grad(lambda d: bed_multicycle(d, effective_half_lives_h=40.0, tissue="kidneys"))
    np.testing.assert_allclose(dbed(np.array([5.0, 7.0])), 1 + 2 * np.array([5.0, 7.0]) * g / 2.6)
    # d/dc of the single-term G is 0 (G does not depend on the scale)
    dg = jax.grad(lambda c: g_factor_multiexponential(c, jax.numpy.array([lam]), 2.8))
    assert float(dg(jax.numpy.array([3.0]))[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(jax.jit(lambda t: g_factor_monoexponential(t, 2.8, uptake_half_time_h=t))(40.0)) == (
        pytest.approx(lam * lam * (2 * lam + mu) / (2 * lam * (lam + mu) ** 2)))
    assert float(bed_monoexponential(23.0, 40.0, tissue="kidneys")) == pytest.approx(
        23 * (1 + 23 / 2.6 * g))


def _write_limits(path, rows):
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["organ", "quantity", "limit_gy", "condition", "source"])
        w.writerows(rows)
    return path


@pytest.mark.parametrize("limit", ["-40", "nan", "forty"])
def test_oar_limit_table_needs_positive_finite_limits(tmp_path, limit):
    path = _write_limits(tmp_path / "lim.csv", [["kidneys", "bed", "40", "x", "y"],
                                                ["red_marrow", "absorbed_dose", limit, "x", "y"]])
    with pytest.raises(pbpk.InvalidInputError, match=r"row 2 \(red_marrow"):
        oar_limits(path)
    table = oar_limits()
    table.loc[0, "limit_gy"] = float("nan")  # an edited DataFrame is checked too
    with pytest.raises(pbpk.InvalidInputError, match="limit_gy"):
        check_oar_limits({"kidneys": 10.0}, limits=table)


def test_check_oar_limits_refuses_nan_negative_and_unknown_organs():
    for bad in (float("nan"), -5.0):
        with pytest.raises(pbpk.InvalidInputError, match="finite, non-negative"):
            check_oar_limits({"kidneys": bad})
        with pytest.raises(pbpk.InvalidInputError, match="bed_gy"):
            check_oar_limits(bed_gy={"kidneys": bad})
    with pytest.raises(UnknownOrganError, match="'kidnys'.*kidneys"):
        check_oar_limits(dose_gy={"kidnys": 50.0})
    # organs without a limit (liver, a tumour) are accepted and give no row
    out = check_oar_limits({"kidney": 30.0, "liver": 12.0, "tumour_1": 80.0})
    assert isinstance(out, pd.DataFrame) and set(out.organ) == {"kidneys"}
    assert out.exceeded.all() and out.value_gy.iloc[0] == 30.0


def test_dose_statistics_spacing_is_one_or_three_positive_numbers():
    dose, mask = np.ones((2, 2, 2)), np.ones((2, 2, 2), bool)
    # 8 voxels of 2 x 2 x 2 mm = 64 mm3 = 0.064 mL (a 0-d array raised TypeError)
    assert dose_statistics(dose, mask, spacing_mm=np.array(2.0)).volume_ml == pytest.approx(0.064)
    assert dose_statistics(dose, mask, spacing_mm=(1.0, 2.0, 3.0)).volume_ml == pytest.approx(0.048)
    for bad in ((2.0, 2.0), -2.0, (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0), (1, 1, 1, 1)):
        with pytest.raises(pbpk.InvalidInputError, match="spacing_mm"):
            dose_statistics(dose, mask, spacing_mm=bad)


def test_alpha_dose_refuses_one_nuclide_under_two_spellings():
    with pytest.raises(pbpk.InvalidInputError, match="Ac-225 twice.*'225Ac'"):
        alpha_organ_dose({"Ac-225": {"k": 1.0}, "225Ac": {"k": 1.0}}, {"k": 1.0})
