"""Review 12K, finding 1: ``percent_injected(decay_corrected=True)`` (the ``"%IA"`` unit of
Observations, used by calibrate and Twin.update) is the percent of the most recent
administration carrying activity, decay-corrected to that administration's time.

Independent reference: a hand computation from the simulated activities (MBq) and the Lu-177
half-life typed in by hand (6.647 d): ``100 A(t) / (A_k exp(-ln2/T (t - t_k)))``.
"""

from __future__ import annotations

import math

import numpy as np

import pbpk
from pbpk import Compartment, ModelGraph, PBPKModel, binding, exchange, flow, transfer

LAM = math.log(2) / (6.647 * 24.0)  # Lu-177, by hand (per h)
TOL = dict(rtol=1e-10, atol=1e-14)


def _tiny() -> PBPKModel:
    comps = (
        Compartment("plasma.vascular", "plasma", "plasma", "V_p"),
        Compartment("tissue.interstitial", "tissue", "interstitial", "V_t"),
        Compartment("tissue.bound", "tissue", "bound", None),
        Compartment("urine.bladder", "urine", "excreta", None, in_body=False),
    )
    procs = (
        exchange("plasma.vascular", "tissue.interstitial", "PS"),
        binding("tissue.interstitial", "tissue.bound", "kon", "koff", "R"),
        transfer("tissue.bound", "plasma.vascular", "krel"),
        flow("plasma.vascular", "urine.bladder", "CL"),
    )
    g = ModelGraph("tiny12", comps, procs, "plasma.vascular")
    p = dict(V_p=3.0, V_t=2.0, PS=5.0, kon=5.4, koff=5.4, R=2.0, CL=4.0, krel=0.05)
    return PBPKModel(g, "Lu-177", p, default_molar_activity_mbq_per_nmol=82.0)


def test_two_cycles_percent_of_the_latest_injection_decay_corrected_to_it():
    s = pbpk.Schedule((pbpk.Administration(7400.0, time_h=0.0), pbpk.Administration(3700.0, time_h=100.0)))
    times = np.array([24.0, 100.0, 124.0, 196.0, 3000.0])
    r = pbpk.simulate(_tiny(), s, times, **TOL)
    act = np.asarray(r.activity_mbq)
    a_k = np.array([7400.0, 3700.0, 3700.0, 3700.0, 3700.0])  # the scan follows this injection
    t_k = np.array([0.0, 100.0, 100.0, 100.0, 100.0])
    hand = 100.0 * act / (a_k * np.exp(-LAM * (times - t_k)))[:, None]
    np.testing.assert_allclose(np.asarray(r.percent_injected(decay_corrected=True)), hand, rtol=2e-4)
    # not the share of all the ligand given so far (cycles 1 + 2), which halves it here
    lig = np.asarray(r.ligand_nmol)
    share = 100.0 * lig[2] / lig[2].sum()
    assert np.asarray(r.percent_injected(True))[2, 0] > 1.5 * share[0]


def test_cold_predose_then_infusion():
    s = pbpk.Schedule((pbpk.Administration(0.0, ligand_nmol=100.0),
                       pbpk.Administration(7400.0, time_h=10.0, infusion_h=2.0)))
    times = np.array([5.0, 11.0, 50.0])
    r = pbpk.simulate(_tiny(), s, times, **TOL)
    pct = np.asarray(r.percent_injected(True))
    assert np.all(pct[0] == 0.0)  # no activity given yet
    ref = np.array([3700.0 * np.exp(-LAM * 1.0), 7400.0 * np.exp(-LAM * 40.0)])  # half infused at 11 h
    np.testing.assert_allclose(pct[1:], 100.0 * np.asarray(r.activity_mbq)[1:] / ref[:, None], rtol=2e-4)


def test_single_administration_unchanged():
    times = np.array([1.0, 24.0, 500.0])
    r = pbpk.simulate(_tiny(), pbpk.Schedule.single(7400.0), times, **TOL)
    lig = r.ligand_nmol
    pct = np.asarray(r.percent_injected(True))
    assert np.array_equal(pct, np.asarray(100.0 * lig / lig.sum(-1, keepdims=True)))  # former formula, bit for bit
    hand = 100.0 * np.asarray(r.activity_mbq) / (7400.0 * np.exp(-LAM * times))[:, None]
    np.testing.assert_allclose(pct, hand, rtol=2e-4)
