"""Arms and endpoints: hand-computed cases (no simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.cohort import CohortConfigError
from twin.trial import Arm, Limit, default_limits, evaluate_arm

ORGANS = ("kidneys", "tumour")
AB = (2.6, 10.0)  # kidney and tumour alpha/beta (twin/dose/data/radiobiology/tissue_parameters.csv)


def _inputs(d_kidney, g_kidney, d_tumour=5.0, g_tumour=0.02):
    d = np.array([[d_kidney, d_tumour]], float)
    g = np.array([[g_kidney, g_tumour]], float)
    return d, g


def test_fixed_arm_dose_and_bed_by_hand():
    d, g = _inputs(0.6, 0.1)
    out = evaluate_arm(Arm("fixed", 7.4, 6), ORGANS, d, g, AB, ())
    per_cycle = 0.6 * 7.4  # 4.44 Gy
    assert out["cycles_given"][0] == 6
    assert out["cumulative_activity_gbq"][0] == pytest.approx(44.4)
    assert out["kidneys_dose_gy"][0] == pytest.approx(6 * per_cycle)
    # Dale: BED = n (d + G d^2 / (alpha/beta))
    assert out["kidneys_bed_gy"][0] == pytest.approx(6 * (per_cycle + 0.1 * per_cycle**2 / 2.6))
    assert out["treatment_weeks"][0] == pytest.approx(30.0)


def test_stop_cycles_at_dose_limit():
    d, g = _inputs(0.6, 0.1)
    arm = Arm("stop", 7.4, 6, personalise="cycles", limit=Limit("kidneys", "dose", 23.0))
    out = evaluate_arm(arm, ORGANS, d, g, AB, (Limit("kidneys", "dose", 23.0),))
    # 5 x 4.44 = 22.2 Gy <= 23 < 6 x 4.44 = 26.64 Gy
    assert out["cycles_given"][0] == 5
    assert out["kidneys_dose_gy"][0] == pytest.approx(22.2)
    assert not out["exceeds_kidneys_dose_le_23gy"][0]


def test_stop_cycles_at_bed_limit_and_cap():
    d, g = _inputs(0.6, 0.1)
    per_cycle_bed = 4.44 + 0.1 * 4.44**2 / 2.6  # 5.198 Gy -> 40 Gy allows 7 cycles
    assert math.floor(40 / per_cycle_bed) == 7
    capped = evaluate_arm(Arm("s", 7.4, 6, personalise="cycles", limit=Limit("kidneys", "bed", 40.0)),
                          ORGANS, d, g, AB, ())
    assert capped["cycles_given"][0] == 6
    free = evaluate_arm(Arm("s", 7.4, 10, personalise="cycles", limit=Limit("kidneys", "bed", 40.0)),
                        ORGANS, d, g, AB, ())
    assert free["cycles_given"][0] == 7


def test_min_cycles_given_even_if_first_cycle_exceeds():
    d, g = _inputs(10.0, 0.1)  # 74 Gy in one cycle
    arm = Arm("s", 7.4, 6, personalise="cycles", limit=Limit("kidneys", "dose", 23.0))
    assert evaluate_arm(arm, ORGANS, d, g, AB, ())["cycles_given"][0] == 1
    arm0 = Arm("s", 7.4, 6, personalise="cycles", limit=Limit("kidneys", "dose", 23.0), min_cycles=0)
    assert evaluate_arm(arm0, ORGANS, d, g, AB, ())["cycles_given"][0] == 0


def test_activity_to_dose_limit():
    d, g = _inputs(0.6, 0.1)
    arm = Arm("a", 12.0, 4, personalise="activity", limit=Limit("kidneys", "dose", 23.0))
    out = evaluate_arm(arm, ORGANS, d, g, AB, ())
    assert out["activity_per_cycle_gbq"][0] == pytest.approx(23.0 / (4 * 0.6))  # 9.583 GBq
    assert out["kidneys_dose_gy"][0] == pytest.approx(23.0)
    capped = evaluate_arm(Arm("a", 8.0, 4, personalise="activity", limit=Limit("kidneys", "dose", 23.0)),
                          ORGANS, d, g, AB, ())
    assert capped["activity_per_cycle_gbq"][0] == 8.0


def test_activity_to_bed_limit_solves_the_quadratic():
    d, g = _inputs(0.6, 0.1)
    arm = Arm("a", 20.0, 4, personalise="activity", limit=Limit("kidneys", "bed", 40.0))
    out = evaluate_arm(arm, ORGANS, d, g, AB, (Limit("kidneys", "bed", 40.0),))
    x = out["activity_per_cycle_gbq"][0] * 0.6  # dose per cycle
    assert 4 * (x + 0.1 * x * x / 2.6) == pytest.approx(40.0, rel=1e-12)  # the limit is reached exactly
    # by hand: 0.1 x^2 / 2.6 + x - 10 = 0 -> x = (sqrt(1 + 40 x 0.1/2.6) - 1) / (2 x 0.1/2.6) = 7.7123 Gy
    assert x == pytest.approx(7.7123, abs=1e-4)
    assert out["kidneys_bed_gy"][0] == pytest.approx(40.0)
    assert not out["exceeds_kidneys_bed_le_40gy"][0]


def test_failed_patients_stay_nan():
    d = np.array([[np.nan, np.nan]])
    g = np.array([[np.nan, np.nan]])
    arm = Arm("s", 7.4, 6, personalise="cycles", limit=Limit("kidneys", "dose", 23.0))
    out = evaluate_arm(arm, ORGANS, d, g, AB, (Limit("kidneys", "dose", 23.0),))
    assert np.isnan(out["cycles_given"][0]) and np.isnan(out["kidneys_dose_gy"][0])
    assert not out["exceeds_kidneys_dose_le_23gy"][0]


def test_default_limits_come_from_the_shipped_table():
    labels = {lim.label for lim in default_limits()}
    assert {"kidneys_dose_le_23gy", "kidneys_bed_le_40gy", "red_marrow_dose_le_2gy"} <= labels
    assert "kidneys_bed_le_28gy" not in labels  # the risk-factor limit is not a default


@pytest.mark.parametrize("kwargs, words", [
    ({"name": ""}, "name"),
    ({"name": "a", "activity_gbq": 7400}, "GBq"),
    ({"name": "a", "activity_gbq": -1}, "activity_gbq"),
    ({"name": "a", "cycles": 2.5}, "whole number"),
    ({"name": "a", "personalise": "magic"}, "personalise"),
    ({"name": "a", "personalise": "cycles"}, "needs a limit"),
    ({"name": "a", "cycles": 2, "min_cycles": 3}, "min_cycles"),
])
def test_bad_arms(kwargs, words):
    with pytest.raises(CohortConfigError, match=words):
        Arm(**kwargs)


def test_bad_limits():
    with pytest.raises(CohortConfigError, match="organ"):
        Limit("kidney_left", "dose", 23)
    with pytest.raises(CohortConfigError, match="quantity"):
        Limit("kidneys", "eqd2", 23)
    with pytest.raises(CohortConfigError, match="limit_gy"):
        Limit("kidneys", "dose", 0)


@pytest.mark.parametrize("cycles", [math.inf, math.nan])
def test_non_finite_cycles_are_a_config_error(cycles):
    with pytest.raises(CohortConfigError, match="finite"):
        Arm("a", cycles=cycles)
