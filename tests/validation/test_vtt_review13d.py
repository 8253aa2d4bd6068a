"""Review of the VTT benchmark's baselines and seeds (``benchmarks/vtt.py``).

``run_patient`` runs on real models with ``pbpk.simulate`` replaced by analytic time-activity
curves whose TIAs are known exactly, noise-free measurements, and the calibration replaced by
a recorder of its key, so the checks are fast and every expected number is analytic:

* the bi-exponential baseline of a TAC with an uptake phase (activity rising from 4 h to
  24 h) is exact for ``A(t) = A0 (exp(-k1 t) - exp(-ku t))`` (TIA ``A0 (1/k1 - 1/ku)``); the
  old baseline fitted the two-clearance model, which cannot rise, and was 25-50 % low;
* Hänscheid (J Nucl Med 2018;59:75) on a mono-exponential TAC: exact at ``t = T_eff`` and
  ``2 T_eff``, ratio ``(2/ln2) x exp(-x)``, ``x = ln2 t / T_eff``, at other times;
* the calibration's random numbers are independent of the truth's draw (the first
  Laplace/IS proposal used to be the truth's standard score).
"""

from __future__ import annotations

import math
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

LAM_LU = math.log(2.0) / (6.647 * 24.0)  # 177Lu physical decay constant, 1/h
T_EFF_MARROW_H = 48.0
# uptake-and-clearance curves A0 (exp(-k1 t) - exp(-ku t)), MBq: they rise from 4 h to 24 h
UPTAKE = {
    "kidney": (400.0, LAM_LU + math.log(2.0) / 30.0, 0.15),
    "salivary": (150.0, LAM_LU + math.log(2.0) / 20.0, 0.08),
    "tumour1": (220.0, LAM_LU + math.log(2.0) / 60.0, 0.10),
}
MONO_A0 = 300.0  # every other region: A0 exp(-ln2 t / T_eff), T_eff 48 h


def _activity(region: str, t: np.ndarray) -> np.ndarray:
    if region in UPTAKE:
        a0, k1, ku = UPTAKE[region]
        return a0 * (np.exp(-k1 * t) - np.exp(-ku * t))
    return MONO_A0 * np.exp(-math.log(2.0) / T_EFF_MARROW_H * t)


def _tia(region: str) -> float:
    if region in UPTAKE:
        a0, k1, ku = UPTAKE[region]
        return a0 * (1.0 / k1 - 1.0 / ku)
    return MONO_A0 * T_EFF_MARROW_H / math.log(2.0)


class _AnalyticResult:
    def __init__(self, times):
        self.t = np.asarray(times, dtype=float)

    def activity(self, region):
        return _activity(region, self.t)

    def tia(self, region):
        return _tia(region)


@pytest.fixture(scope="module")
def patient():
    """One virtual patient through ``vtt.run_patient`` with analytic TACs, noise-free
    measurements and a recording calibration; returns (record, key, keys seen)."""
    import jax
    import vtt

    import pbpk
    from calibration import Prior

    pet = pbpk.psma_model(vtt.PET_AGENT, lesion_volumes_l=(0.01,), tumour_rest_volume_l=0.0)
    therapy = pbpk.theranostic_pair(pet, vtt.THERAPY_AGENT)
    cu = vtt.theranostic_cu64(pet)
    prior = Prior.default(pet)
    seen = []

    def fake_protocol(proto, pid, group, key, *args, **kwargs):
        seen.append(key)
        return {}

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(pbpk, "simulate", lambda model, schedule, times, params=None, **kw: _AnalyticResult(times))
        mp.setattr(vtt, "measure", lambda rng, true_mbq, cv, rc: float(true_mbq))
        mp.setattr(vtt, "_run_protocol", fake_protocol)
        key = jax.random.PRNGKey(2026 * 1000 + 7)
        rec = vtt.run_patient(7, 0, np.random.default_rng(0), key, prior, pet, therapy, cu, {}, {})
    finally:
        mp.undo()
    return rec, key, seen


def test_analytic_truth_reaches_the_record(patient):
    rec, _, _ = patient
    for r in ("kidney", "salivary", "tumour1", "red_marrow"):
        assert rec["true_tia_mbq_h"][r] == pytest.approx(_tia(r), rel=1e-12)


@pytest.mark.parametrize("region", ["kidney", "salivary", "tumour1"])
def test_biexp_baseline_is_exact_for_an_uptake_phase(patient, region):
    rec, _, _ = patient
    pred = rec["predictions"]["biexp_4tp"][region]["median_gy"]
    # noise-free points of A0 (exp(-k1 t) - exp(-ku t)): the fitted TIA is A0 (1/k1 - 1/ku)
    # (old code: the two-clearance "bi" model, -27 %, -50 %, -27 %)
    assert pred == pytest.approx(rec["true_dose_gy"][region], rel=1e-6)


def test_biexp_baseline_still_exact_for_a_clearing_curve(patient):
    rec, _, _ = patient
    # falling mono-exponential marrow curve: the clearance fit is exact (A0 T_eff / ln2)
    pred = rec["predictions"]["biexp_4tp"]["red_marrow"]["median_gy"]
    assert pred == pytest.approx(rec["true_dose_gy"]["red_marrow"], rel=1e-6)


@pytest.mark.parametrize("t_h", [24.0, 48.0, 96.0])
def test_hanscheid_baseline_matches_the_published_ratio(patient, t_h):
    rec, _, _ = patient
    pred = rec["predictions"][f"hanscheid_{t_h:g}h"]["red_marrow"]["median_gy"]
    # Hänscheid et al., J Nucl Med 2018;59:75: TIA = A(t) 2 t / ln2; for a mono-exponential
    # curve estimate / truth = (2 / ln2) x exp(-x), x = ln2 t / T_eff (1 at t = T_eff and 2 T_eff)
    x = math.log(2.0) * t_h / T_EFF_MARROW_H
    expected = 2.0 / math.log(2.0) * x * math.exp(-x)
    assert pred / rec["true_dose_gy"]["red_marrow"] == pytest.approx(expected, rel=1e-12)
    if t_h in (T_EFF_MARROW_H, 2 * T_EFF_MARROW_H):
        assert expected == pytest.approx(1.0, rel=1e-12)


def test_calibration_random_numbers_are_independent_of_the_truth(patient):
    import jax

    rec, key, seen = patient
    assert len(seen) == 5  # one calibration per protocol
    names = list(rec["truth_z"])
    z_truth = np.array([rec["truth_z"][n] for n in names])
    for k in seen:
        # the Laplace / importance-sampling proposals are jax.random.normal(key, (n, p)); with
        # the truth's own key their first row was the truth's standard score
        eps = np.asarray(jax.random.normal(k, (1000, len(names))), dtype=np.float64)
        assert np.min(np.max(np.abs(eps - z_truth), axis=1)) > 1e-3
    # the truth itself is still drawn from the patient's key (same virtual patients as before)
    z_key = np.asarray(jax.random.normal(key, (1, len(names))), dtype=np.float64)[0]
    np.testing.assert_allclose(z_truth, z_key, atol=1e-5)
