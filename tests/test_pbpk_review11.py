"""Review 11B fixes: administrations at/after the last output time, the output convention at a
bolus time, urine_fraction's meaning, the plasma-flow budget of the shipped models, organ-volume
bounds, schedule inputs, SBML element units, the activity plausibility warning and sex/GFR
inputs of Physiology.for_patient.

Independent references: a hand-written vector field of a 4-compartment graph integrated with
scipy's Radau at rtol 1e-10 (``_reference``), hand computations of the flow rule from the
lineage's formulas, and typed errors whose messages name the problem.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pbpk
from pbpk import Compartment, ModelGraph, PBPKModel, binding, exchange, flow, transfer

# ----------------------------------------------------------------------------- tiny model
P = dict(V_p=3.0, V_t=2.0, PS=5.0, kon=5.4, koff=5.4, R=2.0, CL=4.0, krel=0.05)
MA = 82.0  # default molar activity (MBq/nmol) of the tiny model
TOL = dict(rtol=1e-10, atol=1e-14)


def _tiny(urine_region: str = "urine") -> PBPKModel:
    comps = (
        Compartment("plasma.vascular", "plasma", "plasma", "V_p"),
        Compartment("tissue.interstitial", "tissue", "interstitial", "V_t"),
        Compartment("tissue.bound", "tissue", "bound", None),
        Compartment(f"{urine_region}.bladder", urine_region, "excreta", None, in_body=False),
    )
    procs = (
        exchange("plasma.vascular", "tissue.interstitial", "PS"),
        binding("tissue.interstitial", "tissue.bound", "kon", "koff", "R"),
        transfer("tissue.bound", "plasma.vascular", "krel"),
        flow("plasma.vascular", f"{urine_region}.bladder", "CL"),
    )
    g = ModelGraph("tiny", comps, procs, "plasma.vascular")
    return PBPKModel(g, "Lu-177", dict(P), default_molar_activity_mbq_per_nmol=MA)


def _amounts(a: pbpk.Administration, acf: float) -> tuple[float, float]:
    """(hot, cold) nmol by hand: hot = activity / carrier-free molar activity."""
    hot = a.activity_mbq / acf
    total = a.ligand_nmol if a.ligand_nmol is not None else a.activity_mbq / (
        a.molar_activity_mbq_per_nmol or MA)
    return hot, total - hot


def _reference(schedule: pbpk.Schedule, times):
    """Hand-written tiny-model ODE (hot[4], cold[4], hot integrals of plasma and tissue),
    integrated with Radau through the schedule; states just after any bolus at an output time."""
    nuc = pbpk.get_nuclide("Lu-177")
    lam, acf = nuc.decay_constant_per_h, nuc.carrier_free_mbq_per_nmol
    adms = schedule.administrations
    amts = [_amounts(a, acf) for a in adms]

    def inp(t):
        rh = rt = 0.0
        for a, (hot, cold) in zip(adms, amts):
            if a.infusion_h > 0 and a.time_h <= t < a.end_h:
                rh += hot / a.infusion_h * np.exp(-lam * (t - a.time_h))
                rt += (hot + cold) / a.infusion_h
        return rh, rt

    def f(t, y):
        h, c = y[0:4], y[4:8]
        dy = np.zeros(10)
        free_r = P["R"] - h[2] - c[2]
        for k, s in ((0, h), (4, c)):
            cp, ct = s[0] / P["V_p"], s[1] / P["V_t"]
            ex = P["PS"] * (cp - ct)
            bind = P["kon"] * ct * free_r - P["koff"] * s[2]
            rel = P["krel"] * s[2]
            ur = P["CL"] * cp
            dy[k: k + 4] += (-ex + rel - ur, ex - bind, bind - rel, ur)
        dy[0:4] -= lam * h
        dy[4:8] += lam * h
        rh, rt = inp(t)
        dy[0] += rh
        dy[4] += rt - rh
        dy[8] = h[0]
        dy[9] = h[1] + h[2]
        return dy

    pts = sorted({0.0, *[a.time_h for a in adms], *[a.end_h for a in adms], *times})
    y = np.zeros(10)
    out = {}
    for i, a in enumerate(pts):
        for adm, (hot, cold) in zip(adms, amts):
            if adm.infusion_h == 0 and adm.time_h == a:
                y[0] += hot
                y[4] += cold
        if a in times:
            out[a] = y.copy()
        if i + 1 < len(pts):
            y = solve_ivp(f, (a, pts[i + 1]), y, method="Radau", rtol=1e-10, atol=1e-14).y[:, -1]
    Y = np.array([out[t] for t in times])
    activity = acf * np.stack([Y[:, 0], Y[:, 1] + Y[:, 2], Y[:, 3]], 1)
    ligand = np.stack([Y[:, 0] + Y[:, 4], Y[:, 1] + Y[:, 2] + Y[:, 5] + Y[:, 6], Y[:, 3] + Y[:, 7]], 1)
    yend = Y[-1]
    tia = acf * (yend[8:10] + np.array([yend[0], yend[1] + yend[2]]) / lam)
    return activity, ligand, tia


def _close(a, b, rtol=1e-6, floor=1e-6):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.all(np.abs(a - b) <= rtol * np.maximum(np.abs(b), floor)), (a, b)


# ----------------------------------------------------------------------------- findings 1, 3
def test_bolus_at_last_output_time_is_refused():
    s = pbpk.Schedule.cycles(7400.0, 2, interval_h=100.0)
    with pytest.raises(pbpk.InvalidInputError, match=r"7400 MBq bolus at 100 h.*extend times_h past 100 h"):
        pbpk.simulate(_tiny(), s, [1.0, 24.0, 100.0])


def test_bolus_at_last_output_time_refused_for_psma_cycles():
    with pytest.raises(pbpk.InvalidInputError, match=r"bolus at 1008 h.*extend times_h past 1008 h"):
        pbpk.simulate(pbpk.psma_model(), pbpk.Schedule.cycles(7400.0, 2), [24.0, 1008.0])


def test_infusion_running_at_last_output_time_is_refused():
    s = pbpk.Schedule.single(7400.0, infusion_h=4.0)
    with pytest.raises(pbpk.InvalidInputError, match=r"infusion of 4 h.*extend times_h past 4 h"):
        pbpk.simulate(_tiny(), s, [1.0])


# ----------------------------------------------------------------------------- finding 2
def test_output_at_bolus_times_reports_post_bolus_state():
    s = pbpk.Schedule.cycles(7400.0, 2, interval_h=100.0)
    times = [0.0, 1.0, 100.0, 101.0, 2000.0]
    r = pbpk.simulate(_tiny(), s, times, **TOL)
    act, lig, tia = _reference(s, times)
    _close(np.asarray(r.activity_mbq), act)
    _close(np.asarray(r.ligand_nmol), lig)
    _close(np.asarray(r.tia_mbq_h), tia)
    # hand: right after each bolus the whole 7400 MBq is in plasma
    assert float(r.activity("plasma")[0]) == pytest.approx(7400.0, rel=1e-12)
    assert float(r.activity("plasma")[2]) == pytest.approx(7400.0, rel=1e-6)
    np.testing.assert_allclose(np.asarray(r.injected_activity_mbq), [7400, 7400, 14800, 14800, 14800])
    _close(np.asarray(r.urine_fraction), lig[:, 2] / lig.sum(1), floor=1e-12)
    assert np.max(np.abs(np.asarray(r.mass_balance_residual))) < 1e-9


# ----------------------------------------------------------------------------- findings 4, 7
def test_cold_predose_and_urine_fraction_is_ligand_fraction():
    """A cold pre-dose, then two cycles of very different molar activity."""
    s = pbpk.Schedule((
        pbpk.Administration(0.0, ligand_nmol=100.0),
        pbpk.Administration(7400.0, time_h=10.0, ligand_nmol=90.0),
        pbpk.Administration(7400.0, time_h=100.0, ligand_nmol=900.0, infusion_h=0.5),
    ))
    times = [1.0, 10.0, 50.0, 100.25, 101.0, 3000.0]
    r = pbpk.simulate(_tiny(), s, times, **TOL)
    act, lig, tia = _reference(s, times)
    assert float(np.abs(r.activity_mbq[0]).max()) == 0.0  # only cold ligand before 10 h
    _close(np.asarray(r.activity_mbq), act)
    _close(np.asarray(r.ligand_nmol), lig)
    _close(np.asarray(r.tia_mbq_h), tia)
    administered = np.array([100.0, 190.0, 190.0, 190.0 + 450.0, 1090.0, 1090.0])  # by hand
    _close(np.asarray(r.urine_fraction), lig[:, 2] / administered, floor=1e-12)
    # %IA (session 12): of the most recent hot administration, decay-corrected to it; by hand
    # (A_k, t_k) per time: none, cycle 1 (7400 at 10 h) twice, half the infusion (3700 at
    # 100 h), then cycle 2; 177Lu half-life 6.647 d (ICRP-107)
    lam = math.log(2) / (6.647 * 24.0)
    a_k = np.array([np.inf, 7400.0, 7400.0, 3700.0, 7400.0, 7400.0])
    t_k = np.array([1.0, 10.0, 10.0, 100.0, 100.0, 100.0])
    ref = a_k * np.exp(-lam * (np.asarray(times) - t_k))
    np.testing.assert_allclose(np.asarray(r.percent_injected(True)), 100.0 * act / ref[:, None],
                               rtol=1e-6, atol=1e-12)
    assert np.max(np.abs(np.asarray(r.mass_balance_residual))) < 1e-9
    np.testing.assert_allclose(np.asarray(r.injected_activity_mbq), [0, 7400, 7400, 11100, 14800, 14800])


def test_cold_only_single_dose():
    s = pbpk.Schedule.single(0.0, ligand_nmol=50.0)
    times = [1.0, 24.0, 500.0]
    r = pbpk.simulate(_tiny(), s, times, **TOL)
    _, lig, _ = _reference(s, times)
    _close(np.asarray(r.ligand_nmol), lig)
    assert float(np.abs(r.activity_mbq).max()) == 0.0
    assert float(np.abs(r.tia_mbq_h).max()) == 0.0


# ----------------------------------------------------------------------------- finding 10
def test_urine_fraction_nan_without_urine_region():
    r = pbpk.simulate(_tiny("excreta"), pbpk.Schedule.single(7400.0), [1.0, 100.0])
    assert np.all(np.isnan(np.asarray(r.urine_fraction)))
    assert np.max(np.abs(np.asarray(r.mass_balance_residual))) < 1e-6


# ----------------------------------------------------------------------------- finding 5
def _cardiac_plasma_output(weight, height, hct=0.40):
    return 1.23 * 60.0 * 2.8 * math.sqrt(height * weight / 3600.0) * (1.0 - hct)


def _age_factor(age):
    return (4.3 - 0.026 * age) / (4.3 - 0.026 * 60.0)


FRACTIONS = {"kidney": 0.19, "liver": 0.065, "spleen": 0.03, "gi": 0.16, "muscle": 0.17,
             "brain": 0.12, "skin": 0.05, "adipose": 0.05, "red_marrow": 0.03, "bone": 0.05,
             "heart": 0.04}


def _per_volume_psma(lesion=0.012, rest=0.05, weight=73.0, hct=0.40):
    """Per-volume flows (L/h) of the default PSMA reference male, by hand."""
    s = weight / 73.0
    return 60.0 * (0.5 * (lesion + rest) + 0.16 * 0.085 * s + 0.16 * 0.000727
                   + 0.18 * (1 - hct) * 0.017 * s)


def test_reference_patient_flows_unchanged():
    m = pbpk.psma_model(calibrated=False)
    F = _cardiac_plasma_output(73.0, 176.0)
    p = m.parameters
    for organ, frac in FRACTIONS.items():
        assert p[f"Q_{organ}"] == pytest.approx(frac * F, rel=1e-12)
    assert p["Q_rest"] == pytest.approx(F * (1 - 0.955) - _per_volume_psma(), rel=1e-10)
    assert "flow-budget" not in m.sources["Q_kidney"]


def test_young_patient_flow_budget():
    phys = pbpk.Physiology.for_patient("male", 73.0, 176.0, 18.0, gfr_ml_min=100.0)
    m = pbpk.psma_model(physiology=phys, calibrated=False)
    p = m.parameters
    F = _cardiac_plasma_output(73.0, 176.0)
    af = _age_factor(18.0)
    qv = _per_volume_psma()
    scale = (0.99 * F - qv) / (F * (0.955 - 0.19 + 0.19 * af))
    assert 0 < scale < 1
    assert p["Q_kidney"] == pytest.approx(0.19 * af * F * scale, rel=1e-10)
    assert p["Q_muscle"] == pytest.approx(0.17 * F * scale, rel=1e-10)
    assert p["Q_tumour1"] == pytest.approx(0.5 * 60.0 * 0.012, rel=1e-12)  # per volume: unscaled
    assert p["Q_rest"] == pytest.approx(0.01 * F, rel=1e-9)
    systemic = sum(v for k, v in p.items() if k.startswith("Q_") and k != "Q_lungs")
    assert systemic == pytest.approx(p["Q_lungs"], rel=1e-12) and p["Q_lungs"] == pytest.approx(F)
    assert all(v > 0 for k, v in p.items() if k.startswith("Q_"))
    assert "flow-budget" in m.sources["Q_kidney"] and "flow-budget" in m.sources["Q_rest"]
    for age in (18.0, 30.0, 45.0):  # the SSTR model too (its glands take more flow)
        ph = pbpk.Physiology.for_patient("female", 60.0, 163.0, age, gfr_ml_min=90.0)
        q = pbpk.sstr_model(physiology=ph).parameters
        assert min(v for k, v in q.items() if k.startswith("Q_")) > 0


def test_flow_budget_is_continuous_at_threshold():
    F = _cardiac_plasma_output(73.0, 176.0)
    qv = _per_volume_psma()
    af_star = (1 - 0.01 - 0.765 - qv / F) / 0.19  # hand: Q_rest = 1 % of F exactly
    age_star = (4.3 - af_star * (4.3 - 0.026 * 60.0)) / 0.026
    assert 18 < age_star < 60
    qk = {}
    for age in (age_star - 1e-6, age_star + 1e-6, age_star + 5.0):
        phys = pbpk.Physiology.reference(age_y=age)
        qk[age] = pbpk.psma_model(physiology=phys, calibrated=False).parameters["Q_kidney"]
    lo, hi, older = qk.values()
    assert lo == pytest.approx(hi, rel=1e-6)
    assert older == pytest.approx(0.19 * _age_factor(age_star + 5.0) * F, rel=1e-12)  # unchanged


def test_large_lesion_builds_and_budget_error_names_flows():
    m = pbpk.psma_model(lesion_volumes_l=(3.0,), calibrated=False)
    p = m.parameters
    F = _cardiac_plasma_output(73.0, 176.0)
    assert p["Q_tumour1"] == pytest.approx(90.0)
    assert p["Q_rest"] == pytest.approx(0.01 * F, rel=1e-9)
    assert all(v > 0 for k, v in p.items() if k.startswith("Q_"))
    heavy = pbpk.Physiology.for_patient("male", 150.0, 176.0, 60.0, gfr_ml_min=100.0)
    with pytest.raises(pbpk.InvalidInputError, match="plasma flow budget"):
        pbpk.psma_model(physiology=heavy, lesion_volumes_l=(4.9, 4.9), tumour_rest_volume_l=2.0)


# ----------------------------------------------------------------------------- finding 6
def test_large_measured_organ_volumes():
    ph = pbpk.Physiology.reference()
    big = ph.with_organ_volumes(muscle=30.9, adipose=15.0)
    m = pbpk.psma_model(physiology=big)
    assert m.organ_volumes_l["muscle"] == 30.9 and m.organ_volumes_l["adipose"] == 15.0
    with pytest.raises(pbpk.InvalidInputError, match="body weight"):
        ph.with_organ_volumes(kidney=310.0)  # mL given as L
    with pytest.raises(pbpk.InvalidInputError, match="rest of the body"):
        pbpk.psma_model(physiology=ph.with_organ_volumes(muscle=60.0, adipose=12.0))


# ----------------------------------------------------------------------------- finding 7
def test_schedule_accepts_arrays_and_numpy_integers():
    s = pbpk.Schedule.cycles(np.array([7400.0, 6000.0]), 2)
    assert [a.activity_mbq for a in s.administrations] == [7400.0, 6000.0]
    assert [a.time_h for a in s.administrations] == [0.0, 1008.0]
    s4 = pbpk.Schedule.cycles(7400.0, np.int64(4), interval_h=np.float64(24.0))
    assert [a.time_h for a in s4.administrations] == [0.0, 24.0, 48.0, 72.0]
    with pytest.raises(pbpk.InvalidInputError, match="n_cycles"):
        pbpk.Schedule.cycles(7400.0, True)
    with pytest.raises(pbpk.InvalidInputError, match="1-D"):
        pbpk.Schedule.cycles(np.ones((2, 2)), 2)
    with pytest.raises(pbpk.InvalidInputError, match="ligand_nmol"):
        pbpk.Administration(0.0)
    with pytest.raises(pbpk.InvalidInputError, match="ligand_nmol"):
        pbpk.Administration(0.0, molar_activity_mbq_per_nmol=50.0)


# ----------------------------------------------------------------------------- finding 9
def test_implausible_activity_warns():
    with pytest.warns(UserWarning, match="Bq"):
        pbpk.Schedule.single(7.4e9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pbpk.Schedule.single(7400.0)


# ----------------------------------------------------------------------------- finding 8
_SBML = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
 <model id="m">
  <listOfUnitDefinitions>
   <unitDefinition id="ml"><listOfUnits><unit kind="litre" exponent="1" scale="-3" multiplier="1"/></listOfUnits></unitDefinition>
   <unitDefinition id="per_min"><listOfUnits><unit kind="second" exponent="-1" scale="0" multiplier="60"/></listOfUnits></unitDefinition>
   <unitDefinition id="per_h"><listOfUnits><unit kind="second" exponent="-1" scale="0" multiplier="3600"/></listOfUnits></unitDefinition>
   <unitDefinition id="nm"><listOfUnits><unit kind="mole" exponent="1" scale="-9" multiplier="1"/></listOfUnits></unitDefinition>
  </listOfUnitDefinitions>
  <listOfCompartments>
   <compartment id="plasma" size="SIZE" units="VUNIT" spatialDimensions="3" constant="true"/>
  </listOfCompartments>
  <listOfSpecies>
   <species id="A" compartment="plasma" initialAmount="100" substanceUnits="SUNIT" hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/>
  </listOfSpecies>
  <listOfParameters>
   <parameter id="k" value="0.1" units="KUNIT" constant="true"/>
  </listOfParameters>
  <listOfReactions>
   <reaction id="elim" reversible="false">
    <listOfReactants><speciesReference species="A" stoichiometry="1" constant="true"/></listOfReactants>
    <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML"><apply><times/><ci>k</ci><ci>A</ci></apply></math></kineticLaw>
   </reaction>
  </listOfReactions>
 </model>
</sbml>"""


def _doc(size="3", vunit="litre", sunit="nm", kunit="per_h"):
    return (_SBML.replace("SIZE", size).replace("VUNIT", vunit).replace("SUNIT", sunit)
            .replace("KUNIT", kunit))


def test_sbml_element_units():
    pytest.importorskip("libsbml")
    graph, params = pbpk.from_sbml(_doc())
    assert params["k"] == 0.1 and params["plasma"] == 3.0
    for doc, name in ((_doc(size="3000", vunit="ml"), "compartment 'plasma'"),
                      (_doc(kunit="per_min"), "parameter 'k'"),
                      (_doc(sunit="mole"), "species 'A'")):
        with pytest.raises(pbpk.UnitError, match=name):
            pbpk.from_sbml(doc)


# ----------------------------------------------------------------------------- finding 11
def test_for_patient_sex_case_and_gfr_conflict():
    a = pbpk.Physiology.for_patient("Male", 80.0, 180.0, 60.0, gfr_ml_min=90.0)
    b = pbpk.Physiology.for_patient(" FEMALE ", 60.0, 163.0, 60.0, gfr_ml_min=90.0)
    assert a.sex == "male" and b.sex == "female"
    assert pbpk.Physiology.reference("Female").weight_kg == 60.0
    with pytest.raises(pbpk.InvalidInputError, match="not both"):
        pbpk.Physiology.for_patient("male", 80.0, 180.0, 60.0, creatinine=1.0,
                                    creatinine_unit="mg/dL", gfr_ml_min=120.0)


def test_parameter_table_units_and_short_repr():
    """Units follow the rate laws of pbpk._graph (flux Q*C in nmol/h with C in nmol/L -> Q in
    L/h; k*A -> k in 1/h; kon*C*R -> kon in L/(nmol h), R in nmol), listed here by hand."""
    m = pbpk.psma_model("PSMA-617")
    t = m.parameter_table()
    expected = {"Q_kidney": "L/h", "gfr_eff": "L/h", "PS_liver": "L/h", "V_art": "L", "V_kidney_pt": "L",
                "kon": "L/(nmol h)", "koff": "1/h", "kint": "1/h", "krel_kidney": "1/h",
                "R_kidney": "nmol", "f_exc": "1", "lambda_phys_per_h": "1/h"}
    for name, unit in expected.items():
        assert t.loc[name, "unit"] == unit, name
    assert (t["unit"] != "").all()  # every PSMA parameter has a role that fixes its unit
    r = repr(m)
    assert len(r) < 200 and "psma_PSMA-617" in r and "Lu-177" in r
