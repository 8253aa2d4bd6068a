"""Validation report: verification, dosimetry and clinical validation of the shipped models.

Writes ``benchmarks/results/validation/report.md``, ``validation.json`` and figures there.
Every row states its reference (independent solver, analytic invariant, published number with
its source) and a pass/fail criterion.

1. Verification. Every shipped model (``pbpk.psma_model`` / ``pbpk.sstr_model`` for each
   ligand in ``pbpk.LIGANDS``) simulated with ``pbpk.simulate`` (RODAS4, rtol 1e-9) against
   (a) scipy Radau (rtol 1e-10) on an independent numpy right-hand side interpreted from the
   model graph (``validation/graph_rhs.py``) and (b) libroadrunner (CVODE, rtol 1e-10) on the
   SBML export (``pbpk.to_sbml``); mass balance and exact physical decay of the total activity;
   the MBAM test cases of ``mbam.models`` against their published limits (research/mbam.md §2).
2. Dosimetry. ``twin.dose`` kernels against the published Lanconelli 2012 table values;
   energy conservation of the 90Y/177Lu kernels (ICRP-107 energies); organ S-value doses,
   local deposition, sphere model, Hänscheid, TAC fits and BED against hand computation.
3. Validation. Virtual populations (per-patient physiology and a draw of
   ``calibration.Prior.default``) of 177Lu-PSMA-617 and 177Lu-DOTATATE: Gy/GBq (ICRP-89
   S-values with patient masses, as OLINDA), effective half-lives (mono-exponential fits at the
   published imaging times) and urinary excretion at 24 h against published clinical dosimetry
   (``validation/clinical.py``).

Usage: ``python benchmarks/validate.py [--quick] [--population N] [--skip-mbam]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import sys
import time
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from validation import clinical
from validation.checks import (
    Check,
    effective_half_life_h,
    excretion_half_time_h,
    markdown_table,
    published_agreement,
    summarise_population,
)

OUT = ROOT / "benchmarks" / "results" / "validation"
MEV_J = 1.602176634e-13
ACTIVITY = {"therapy": 7400.0, "PSMA-11": 150.0, "DCFPyL": 300.0, "Ga-DOTATATE": 150.0}
# criteria of the verification rows
TOL_RADAU = 1e-6
TOL_ROADRUNNER = 1e-5
TOL_MASS = 1e-8


def _say(msg: str) -> None:
    """Progress line on stderr (the script prints; the helpers do not)."""
    print(f"[validate {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ============================================================================ 1 verification
def shipped_models():
    import pbpk

    out = []
    for name, lig in pbpk.LIGANDS.items():
        model = pbpk.psma_model(name) if lig.target == "PSMA" else pbpk.sstr_model(name)
        therapy = lig.role == "therapy"
        activity = ACTIVITY["therapy"] if therapy else ACTIVITY.get(name, 150.0)
        t_end = 2000.0 if therapy else 24.0
        times = np.geomspace(0.05, t_end, 24)
        out.append((name, model, activity, times))
    return out


def verify_model(name, model, activity, times) -> tuple[list[Check], dict]:
    from scipy.integrate import solve_ivp
    from validation.graph_rhs import GraphRHS

    import pbpk

    rows = []
    sched = pbpk.Schedule.single(activity)
    hot, cold = sched.administrations[0].amounts_nmol(model.carrier_free_mbq_per_nmol,
                                                      model.default_molar_activity_mbq_per_nmol)
    acf = model.carrier_free_mbq_per_nmol
    lam = model.parameters["lambda_phys_per_h"]
    t0 = time.perf_counter()
    res = pbpk.simulate(model, sched, times, rtol=1e-9, atol=1e-13)
    t_ours = time.perf_counter() - t0
    ours = np.asarray(res.activity_mbq)
    regions = list(res.regions)
    body = list(res.body_regions)
    stats = {"model": model.name, "ligand": name, "nuclide": model.nuclide,
             "states": 2 * len(model.graph.compartments) + len(body), "simulate_s": t_ours}

    # (a) independent numpy RHS, scipy Radau
    g = GraphRHS(model.graph, model.parameters, lam)
    y0 = g.initial_state(model.graph.dose_compartment, hot, cold)
    t0 = time.perf_counter()
    sol = solve_ivp(g.rhs, (0.0, float(times[-1])), y0, method="Radau", t_eval=times, rtol=1e-10,
                    atol=1e-16 * max(hot, 1e-6), jac=g.jac)
    stats["radau_s"] = time.perf_counter() - t0
    ref = acf * g.region_hot(sol.y, model.graph, regions).T  # (T, R)
    mask = ref > 1e-6 * activity
    err_radau = float(np.max(np.abs(ours[mask] - ref[mask]) / ref[mask]))
    tail = acf * g.region_hot(sol.y[:, -1:], model.graph, body)[:, 0] / lam
    tia_ref = acf * sol.y[2 * g.nc:, -1] + tail
    tia_ours = np.asarray(res.tia_mbq_h)
    tmask = tia_ref > 1e-9 * activity / lam
    err_tia = float(np.max(np.abs(tia_ours[tmask] - tia_ref[tmask]) / tia_ref[tmask]))
    stats.update(radau_max_rel=err_radau, radau_tia_max_rel=err_tia, radau_points=int(mask.sum()))
    ok = sol.success and err_radau < TOL_RADAU and err_tia < TOL_RADAU
    rows.append(Check("verification", f"{name}: activities and TIA vs Radau (numpy RHS)",
                      f"{err_radau:.1e} / {err_tia:.1e}", "scipy Radau rtol 1e-10, independent numpy RHS",
                      f"max rel. error < {TOL_RADAU:g} (regions > 1e-6 of injected)", bool(ok)))

    # (b) libroadrunner on the SBML export
    try:
        import roadrunner
    except ImportError:  # pragma: no cover - dev extra
        rows.append(Check("verification", f"{name}: vs libroadrunner", "n/a", "libroadrunner",
                          "installed", None, note="libroadrunner not installed"))
    else:
        sbml = pbpk.to_sbml(model, sched)
        rr = roadrunner.RoadRunner(sbml)
        rr.integrator.relative_tolerance = 1e-10
        rr.integrator.absolute_tolerance = 1e-14
        rr.integrator.maximum_num_steps = 500_000
        # ids documented in pbpk.to_sbml: <compartment with . -> __>_hot, TIA_<region>
        hot_ids = [c.name.replace(".", "__") + "_hot" for c in model.graph.compartments]
        tia_ids = [f"TIA_{r}" for r in body]
        rr.timeCourseSelections = ["time", *hot_ids, *tia_ids]
        t0 = time.perf_counter()
        out = np.asarray(rr.simulate(times=[0.0, *times.tolist()]))[1:]
        stats["roadrunner_s"] = time.perf_counter() - t0
        nc = len(hot_ids)
        comp_hot = out[:, 1:1 + nc]
        rr_reg = np.stack([comp_hot[:, [i for i, c in enumerate(model.graph.compartments) if c.region == r]].sum(1)
                           for r in regions], axis=1) * acf
        m2 = rr_reg > 1e-6 * activity
        err_rr = float(np.max(np.abs(ours[m2] - rr_reg[m2]) / rr_reg[m2]))
        rr_body = np.stack([comp_hot[-1, [i for i, c in enumerate(model.graph.compartments) if c.region == r]].sum()
                            for r in body]) * acf
        tia_rr = acf * out[-1, 1 + nc:] + rr_body / lam
        err_rr_tia = float(np.max(np.abs(tia_ours[tmask] - tia_rr[tmask]) / tia_rr[tmask]))
        stats.update(roadrunner_max_rel=err_rr, roadrunner_tia_max_rel=err_rr_tia)
        rows.append(Check("verification", f"{name}: activities and TIA vs libroadrunner (SBML export)",
                          f"{err_rr:.1e} / {err_rr_tia:.1e}", f"libroadrunner {roadrunner.__version__} CVODE rtol 1e-10",
                          f"max rel. error < {TOL_ROADRUNNER:g}",
                          bool(err_rr < TOL_ROADRUNNER and err_rr_tia < TOL_ROADRUNNER)))

    # mass balance and exact decay of total activity (hot decays as exp(-lambda t) everywhere);
    # both relative to the administered amount (a relative error of an amount decayed to 1e-7
    # of the injection only measures the solver's absolute tolerance)
    mb = float(np.max(np.abs(np.asarray(res.mass_balance_residual))))
    total = ours.sum(axis=1)
    decay = float(np.max(np.abs(total - activity * np.exp(-lam * times)) / activity))
    stats.update(mass_balance_max=mb, total_activity_decay_max_rel=decay)
    rows.append(Check("verification", f"{name}: mass balance / total activity = A0 exp(-λt)",
                      f"{mb:.1e} / {decay:.1e}", "conservation of ligand; physical decay law",
                      f"both < {TOL_MASS:g} of the administered amount", bool(mb < TOL_MASS and decay < TOL_MASS)))
    return rows, stats


# published MBAM limits (research/mbam.md §2): per case, the two ends (either order)
MBAM_CASES = {
    "two_exponentials": ("T1", [{"fold": ("theta1", "theta2")},
                                {"diverge": {"theta2": "inf"}, "finite": ("theta1", 0.5104)}]),
    "michaelis_menten": ("T2", [{"diverge": {"Vmax": "inf", "Km": "inf"}, "combo": ({"Vmax", "Km"}, 0.620, "Vmax/Km")},
                                {"diverge": {"Km": "0"}, "finite": ("Vmax", 0.381)}]),
    "mass_action_enzyme": ("T3", [{"diverge": {"k1": "inf", "k_1": "inf"}, "combo": ({"k1", "k_1"}, 1.29, "k_1/k1")},
                                  {"diverge": {"k_1": "0"}}]),
    "linear_chain": ("T4", [{"fold": ("k1", "k2")}, {"diverge": {"k2": "inf"}, "finite": ("k1", 0.672)}]),
    "two_compartment_pk": ("T5", [{"diverge": {"k12": "inf", "k21": "inf"}, "combo": ({"k12", "k21"}, 2.02, "k12/k21"),
                                   "finite": ("k10", 0.1007)}, {"diverge": {"k10": "0"}}]),
    "adaptation": ("T6", [{"diverge": {"k1": "0", "k2": "inf"}, "combo": ({"k1", "k2"}, 0.374, "k1·k2")},
                          {"diverge": {"k1": "inf"}, "finite": ("k2", 0.740)}]),
    "kowalik_osborne": ("T7", [{"diverge": {"theta1": "0", "theta2": "inf"}, "combo": ({"theta1", "theta2"}, 1.50, "theta1·theta2")},
                               {"diverge": {"theta2": "0"}}]),
}
# geodesic stop settings of the published runs where the notes give them (T7: rho = 1e-9; the
# value of a finite combination depends on where the path stops)
MBAM_SETTINGS = {"kowalik_osborne": {"rho": 1e-9, "max_dx": 15}}
MBAM_REL_TOL = 0.05


def _end_matches(report, expect: dict) -> bool:
    if "fold" in expect:
        return report.kind == "fold" and bool(report.folds) and set(report.folds[0].names) == set(expect["fold"])
    if {p.name: p.direction for p in report.limits} != expect["diverge"]:
        return False
    if "combo" in expect:
        names, value, _text = expect["combo"]
        found = [c for c in report.combinations if set(c.names) == names]
        if not found:
            return False
        v = found[0].value
        if not any(abs(x - value) <= MBAM_REL_TOL * value for x in (v, 1.0 / v)):
            return False
    if "finite" in expect:
        name, value = expect["finite"]
        fin = dict(report.finite)
        if name not in fin or abs(fin[name] - value) > MBAM_REL_TOL * value:
            return False
    return True


def _describe(expect: dict) -> str:
    if "fold" in expect:
        return f"fold {expect['fold'][0]} = {expect['fold'][1]}"
    s = ", ".join(f"{k} -> {'∞' if v == 'inf' else '0'}" for k, v in expect["diverge"].items())
    if "combo" in expect:
        s += f" ({expect['combo'][2]} -> {expect['combo'][1]:g})"
    if "finite" in expect:
        s += f", {expect['finite'][0]} -> {expect['finite'][1]:g}"
    return s


def verify_mbam() -> tuple[list[Check], dict]:
    import mbam

    rows, stats = [], {}
    for case, (tag, ends) in MBAM_CASES.items():
        t0 = time.perf_counter()
        model, x0 = getattr(mbam.models, case)()
        bs = mbam.find_boundaries(model, x0, **MBAM_SETTINGS.get(case, {}))
        found = [bs.forward.limit, bs.reverse.limit]
        # each published end must be matched by a different found end
        ok = (_end_matches(found[0], ends[0]) and _end_matches(found[1], ends[1])) or \
             (_end_matches(found[1], ends[0]) and _end_matches(found[0], ends[1]))
        desc = " | ".join(r.description for r in found)
        stats[case] = {"found": desc, "wall_s": time.perf_counter() - t0}
        rows.append(Check("verification", f"MBAM {tag} {case}", desc,
                          "research/mbam.md §2: " + " | ".join(_describe(e) for e in ends),
                          f"both ends found; finite values within {100 * MBAM_REL_TOL:.0f} %", bool(ok)))
    return rows, stats


# ============================================================================ 2 dosimetry
# Lanconelli et al. 2012, soft tissue, mGy/(MBq s): (S000, S001, S011, S111) (research notes §1.1)
LANCONELLI = {
    ("Lu-177", 2.21): (1.66, 4.83e-2, 2.52e-3, 2.50e-4),
    ("Lu-177", 3.00): (6.93e-1, 1.51e-2, 6.17e-4, 7.98e-5),
    ("Lu-177", 3.59): (4.13e-1, 7.55e-3, 2.80e-4, 4.72e-5),
    ("Lu-177", 4.42): (2.26e-1, 3.39e-3, 1.19e-4, 2.82e-5),
    ("Lu-177", 4.80): (1.78e-1, 2.46e-3, 8.65e-5, 2.35e-5),
    ("Lu-177", 6.00): (9.25e-2, 1.04e-3, 3.94e-5, 1.46e-5),
    ("Lu-177", 9.28): (2.56e-2, 1.98e-4, 1.14e-5, 6.19e-6),
    ("Y-90", 3.00): (1.59, 2.75e-1, 9.50e-2, 4.29e-2),
    ("Y-90", 4.42): (6.89e-1, 9.73e-2, 2.48e-2, 7.78e-3),
    ("Y-90", 6.00): (3.42e-1, 3.80e-2, 6.86e-3, 1.45e-3),
    ("I-131", 3.00): (8.99e-1, 3.02e-2, 2.41e-3, 7.26e-4),
    ("I-131", 4.42): (3.00e-1, 7.33e-3, 6.73e-4, 3.05e-4),
    ("I-131", 6.00): (1.25e-1, 2.47e-3, 2.98e-4, 1.63e-4),
}
# ICRP-89 177Lu self S-values, adult male, mGy/(MBq s), reference masses kg (research notes §3)
S_SELF_MALE = {"kidneys": (7.76e-5, 0.310), "liver": (1.37e-5, 1.800), "spleen": (1.60e-4, 0.150),
               "salivary_glands": (2.78e-4, 0.085)}
E_NP_MEV = {"Lu-177": 0.14792, "Y-90": 0.93311}  # ICRP-107 non-penetrating (research notes §2)


def dosimetry_checks() -> list[Check]:
    from twin import dose

    rows = []
    worst, n = 0.0, 0
    for (nuc, vox), published in LANCONELLI.items():
        k = dose.lanconelli_table(nuc, vox).values_gy_per_mbq_h
        c = np.array(k.shape) // 2
        ours = (k[c[0], c[1], c[2]], k[c[0], c[1], c[2] + 1], k[c[0], c[1] + 1, c[2] + 1],
                k[c[0] + 1, c[1] + 1, c[2] + 1])
        for o, p in zip(ours, published):
            worst = max(worst, abs(o / 3.6 - p) / p)
            n += 1
    rows.append(Check("dosimetry", f"Lanconelli kernels: self/face/edge/corner values ({n} values)",
                      f"max rel. diff {worst:.1e}", "Lanconelli et al. Phys Med Biol 2012;57:517 (3 significant digits)",
                      "< 5e-3 (table rounding)", worst < 5e-3))
    # energy conservation: sum of S x voxel mass = energy per decay
    y90 = ("ICRP-107 mean beta energy 0.933 MeV (pure beta, research notes §1.1: "
           "0.934-0.936 MeV)")
    lu = "ICRP-107 electron energy 0.1479 MeV; research notes §1.1: the 11³ grid holds 0.140-0.146 MeV"
    for nuc, lo, hi, what in (("Y-90", 0.995, 1.005, y90),
                              ("Lu-177", 0.1395 / 0.14792, 0.1465 / 0.14792, lu)):
        fr = []
        for vox in (2.21, 3.0, 4.42, 6.0, 9.28):
            kern = dose.lanconelli_table(nuc, vox)
            m_kg = kern.density_g_cm3 * (vox / 10.0) ** 3 / 1000.0
            mev = kern.values_gy_per_mbq_h.sum() * m_kg / (MEV_J * 3.6e9)
            fr.append(mev / E_NP_MEV[nuc])
        rows.append(Check("dosimetry", f"{nuc} kernel energy conservation (5 voxel sizes)",
                          f"Σ S·m / E = {min(fr):.4f}–{max(fr):.4f}", what, f"in [{lo:.3f}, {hi:.3f}]",
                          bool(min(fr) >= lo and max(fr) <= hi)))
    # organ S-value doses vs hand computation (TIA 1e4 MBq h)
    tia = 1.0e4
    worst = 0.0
    for organ, (s, _m) in S_SELF_MALE.items():
        d = dose.organ_dose({organ: tia}, nuclide="Lu-177", phantom="male", targets=[organ]).dose_gy[organ]
        hand = tia * 3600.0 * s / 1000.0
        worst = max(worst, abs(d - hand) / hand)
    rows.append(Check("dosimetry", "organ self-dose, ICRP-89 male S-values (kidneys, liver, spleen, salivary)",
                      f"max rel. diff {worst:.1e}", "hand: TIA × 3600 × S (published S, 3 digits)",
                      "< 1e-2", worst < 1e-2))
    s, m_ref = S_SELF_MALE["kidneys"]
    d = dose.organ_dose({"kidneys": tia}, nuclide="Lu-177", phantom="male", targets=["kidneys"],
                        organ_masses_kg={"kidneys": 0.25}).dose_gy["kidneys"]
    hand = tia * 3600.0 * s / 1000.0 * m_ref / 0.25
    rows.append(Check("dosimetry", "kidney self-dose mass-scaled to 0.25 kg", f"{d:.4g} Gy",
                      f"hand {hand:.4g} Gy (S × m_ref/m)", "rel. diff < 1e-2", abs(d - hand) / hand < 1e-2))
    d = dose.local_deposition_dose_gy(tia, 0.3, "Lu-177")
    hand = tia * E_NP_MEV["Lu-177"] * MEV_J * 3.6e9 / 0.3
    rows.append(Check("dosimetry", "local deposition 177Lu (1e4 MBq h in 0.3 kg)", f"{d:.5g} Gy",
                      f"hand {hand:.5g} Gy (0.14792 MeV, ICRP-107)", "rel. diff < 1e-4",
                      abs(d - hand) / hand < 1e-4))
    d = dose.sphere_dose_gy(tia, 0.02, "Lu-177")
    hand = tia * E_NP_MEV["Lu-177"] * MEV_J * 3.6e9 / 0.02
    rows.append(Check("dosimetry", "sphere model, 20 g lesion", f"{d:.5g} Gy", f"hand {hand:.5g} Gy (E_np / m)",
                      "rel. diff < 1e-4", abs(d - hand) / hand < 1e-4))
    # STP / TAC baselines on analytic curves
    teff = 40.0
    lam = math.log(2) / teff
    a0 = 100.0
    exact = a0 / lam
    h = dose.tia_hanscheid(a0 * math.exp(-lam * teff), teff)
    rows.append(Check("dosimetry", "Hänscheid TIA at t = T_eff (mono-exponential)", f"{h:.6g} MBq h",
                      f"exact A0/λ = {exact:.6g}", "rel. diff < 1e-12", abs(h - exact) / exact < 1e-12))
    t = np.array([4.0, 24.0, 48.0, 96.0, 168.0])
    a = 60.0 * np.exp(-math.log(2) / 30.0 * t) + 40.0 * np.exp(-math.log(2) / 90.0 * t)
    exact = 60.0 * 30.0 / math.log(2) + 40.0 * 90.0 / math.log(2)
    fit = dose.fit_tac(t, a, nuclide="Lu-177", model="bi")
    rows.append(Check("dosimetry", "bi-exponential TAC fit on exact data", f"{fit.tia_mbq_h:.6g} MBq h",
                      f"analytic Σ a/k = {exact:.6g}", "rel. diff < 1e-6", abs(fit.tia_mbq_h - exact) / exact < 1e-6))
    bed = float(dose.bed_monoexponential(23.0, 40.0, alpha_beta_gy=2.6, repair_half_time_h=2.8))
    mu, lam = math.log(2) / 2.8, math.log(2) / 40.0
    hand = 23.0 * (1 + 23.0 / 2.6 * lam / (mu + lam))
    rows.append(Check("dosimetry", "BED 23 Gy, T_eff 40 h, α/β 2.6 Gy, T_rep 2.8 h", f"{bed:.3f} Gy",
                      f"Dale formula by hand {hand:.3f} Gy (research notes §5: 36.3)", "rel. diff < 1e-9",
                      abs(bed - hand) / hand < 1e-9))
    return rows


# ============================================================================ 3 validation
def _mird_map():
    from twin.dose import PBPK_SOURCE_REGIONS  # the twin's and the cohorts' map
    return dict(PBPK_SOURCE_REGIONS)


MIRD = _mird_map()


def population_doses(model_kind: str, n: int, seed: int):
    """Simulate a virtual population; return per-patient Gy/GBq, half-lives, urine and plasma."""
    from validation.population import population_parameters

    import pbpk
    from twin import dose

    if model_kind == "psma":
        def build(phys, lesion_l):
            return pbpk.psma_model("PSMA-617", physiology=phys, lesion_volumes_l=(lesion_l,))
        sched = pbpk.Schedule.single(7400.0, ligand_nmol=90.0)
        teff_times = clinical.HALF_LIVE_TIMES_PSMA617_H
    else:
        def build(phys, lesion_l):
            return pbpk.sstr_model("DOTATATE", physiology=phys, tumour_volumes_l=(lesion_l,))
        sched = pbpk.Schedule.single(7400.0, ligand_nmol=105.0)
        teff_times = clinical.HALF_LIVE_TIMES_DOTATATE_H
    params, models = population_parameters(build, n, seed)
    times = sorted({1.0, 4.0, 24.0, 48.0, 72.0, 96.0, 168.0, *teff_times,
                    *clinical.URINE_HALF_TIME_TIMES_H, *clinical.WHOLE_BODY_TEFF_TIMES_H, 2000.0})
    t0 = time.perf_counter()
    res = pbpk.simulate_cohort(models[0], sched, times, params, chunk_size=min(64, n))
    wall = time.perf_counter() - t0
    ok = np.asarray(res.status) == 0
    regions = list(res.regions)
    body = list(res.body_regions)
    act = np.asarray(res.activity_mbq)
    tia = np.asarray(res.tia_mbq_h)
    gbq = 7.4
    out = {k: [] for k in ("kidney", "salivary", "lacrimal", "red_marrow", "liver", "spleen", "tumour")}
    teff = {k: [] for k in ("kidney", "salivary", "liver", "spleen", "red_marrow")}
    urine, plasma_t, urine_half = [], [], []
    ui = [times.index(t) for t in clinical.URINE_HALF_TIME_TIMES_H]
    wi = [times.index(t) for t in clinical.WHOLE_BODY_TEFF_TIMES_H]
    bi = [regions.index(r) for r in body]
    decay = np.exp(-pbpk.get_nuclide("Lu-177").decay_constant_per_h * np.asarray(times))
    wb_teff, excreted = [], {"excreted_4h": [], "excreted_12h": []}
    ratio_24_4 = {"kidney": [], "salivary": []}
    ti = [times.index(t) for t in teff_times]
    for i, m in enumerate(models):
        if not ok[i]:
            continue
        sources, tumours = {}, {r: dose.tumour_mass_kg(m.organ_volumes_l[r]) for r in body if r.startswith("tumour")}
        for j, r in enumerate(body):
            if r in tumours or r == "lacrimal":
                continue
            key = MIRD.get(r, "remainder_of_body")
            sources[key] = sources.get(key, 0.0) + float(tia[i, j])
        for t in tumours:
            sources[t] = float(tia[i, body.index(t)])
        masses = {MIRD[o]: m.organ_volumes_l[o] for o in ("kidney", "liver", "spleen", "salivary") if o in m.organ_volumes_l}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = dose.organ_dose(sources, nuclide="Lu-177", phantom="male", organ_masses_kg=masses,
                                tumour_masses_kg=tumours).dose_gy
        for o in ("kidney", "liver", "spleen", "salivary", "red_marrow"):
            if MIRD[o] in d and (o != "salivary" or "salivary" in body):
                out[o].append(d[MIRD[o]] / gbq)
        out["tumour"].append(d["tumour1"] / gbq)
        if "lacrimal" in body:
            out["lacrimal"].append(dose.local_deposition_dose_gy(
                float(tia[i, body.index("lacrimal")]), m.organ_volumes_l["lacrimal"], "Lu-177") / gbq)
        for o, lst in teff.items():
            if o in regions:
                lst.append(effective_half_life_h(np.array(teff_times), act[i, ti, regions.index(o)]))
        for o in ("kidney", "salivary"):
            if o in regions:
                ratio_24_4[o].append(float(act[i, times.index(24.0), regions.index(o)]
                                           / act[i, times.index(4.0), regions.index(o)]))
        urine.append(100.0 * float(np.asarray(res.urine_fraction)[i, times.index(24.0)]))
        if model_kind == "psma":
            urine_half.append(excretion_half_time_h(clinical.URINE_HALF_TIME_TIMES_H,
                                                    np.asarray(res.urine_fraction)[i, ui]))
            wb = act[i][:, bi].sum(axis=1)   # body regions, urine and released activity excluded
            wb_teff.append(effective_half_life_h(clinical.WHOLE_BODY_TEFF_TIMES_H, wb[wi]))
            for key, t_h in (("excreted_4h", 4.0), ("excreted_12h", 12.0)):
                k = times.index(t_h)
                excreted[key].append(100.0 * (1.0 - wb[k] / (7400.0 * decay[k])))
        pl = act[i, [times.index(4.0), times.index(24.0)], regions.index("plasma")]
        # plasma effective half-life between 4 and 24 h from the activity (not decay-corrected;
        # biological 4.69 h vs effective 4.56 h on the reference patient), compared with the
        # published whole-blood elimination half-life (plasma vs whole blood)
        plasma_t.append(effective_half_life_h([4.0, 24.0], pl))
    return {"dose_gy_per_gbq": {k: np.array(v) for k, v in out.items() if v},
            "teff_h": {k: np.array(v) for k, v in teff.items() if v},
            "urine_24h_pct": np.array(urine), "plasma_t_half_4_24h": np.array(plasma_t),
            "urine_half_time_h": np.array(urine_half), "whole_body_teff_h": np.array(wb_teff),
            "excreted_pct": {k: np.array(v) for k, v in excreted.items()},
            "ratio_24h_4h": {k: np.array(v) for k, v in ratio_24_4.items() if v},
            "n_ok": int(ok.sum()), "n": n, "simulate_cohort_s": wall}


def clinical_checks(pop, published, section, label, kind="psma") -> list[Check]:
    rows = []
    for p in published:
        vals = pop["dose_gy_per_gbq"].get(p.quantity)
        if vals is None or vals.size == 0:
            continue
        s = summarise_population(vals)
        ok, crit = published_agreement(s["median"], s["p5"], s["p95"], p.mean, p.sd, p.low, p.high)
        spread = f"{p.mean:g}" + (f" ± {p.sd:g}" if p.sd else "") + (f" ({p.low:g}–{p.high:g})" if p.low is not None else "")
        note = ("calibration anchor: not independent" if p.anchor else "") + \
               ("; unverified value (tag " + p.tag + ")" if p.tag != "V" else "") + \
               ("; " + _note(kind, p.quantity) if not ok and _note(kind, p.quantity) else "")
        rows.append(Check(section, f"{label} {p.quantity} Gy/GBq",
                          f"{s['median']:.3g} ({s['p5']:.3g}–{s['p95']:.3g})",
                          f"{spread} [n={p.n or '?'}; {p.source}]", crit, ok, note=note.strip("; ")))
    return rows


def halflife_checks(pop, published, section, label, times, kind="psma") -> list[Check]:
    rows = []
    for p in published:
        vals = pop["teff_h"].get(p.quantity)
        if vals is None:
            continue
        v = vals[np.isfinite(vals)]
        s = summarise_population(v)
        ok, crit = published_agreement(s["median"], s["p5"], s["p95"], p.mean, p.sd, p.low, p.high)
        spread = f"{p.mean:g}" + (f" ± {p.sd:g}" if p.sd else "") + (f" ({p.low:g}–{p.high:g})" if p.low is not None else "")
        rows.append(Check(section, f"{label} {p.quantity} effective half-life (h), mono-exp. fit at {', '.join(f'{t:g}' for t in times)} h",
                          f"{s['median']:.3g} ({s['p5']:.3g}–{s['p95']:.3g})", f"{spread} [n={p.n}; {p.source}]",
                          crit, ok, note=("; ".join(x for x in (
                              "calibration anchor: not independent" if p.anchor else "",
                              f"{int((~np.isfinite(vals)).sum())} non-decreasing curves excluded"
                              if (~np.isfinite(vals)).any() else "",
                              _note(kind, p.quantity) if not ok else "") if x))))
    return rows


# ============================================================================ report
def figure_verification(stats, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["ligand"] for s in stats]
    keys = [("radau_max_rel", "vs Radau (activity)"), ("radau_tia_max_rel", "vs Radau (TIA)"),
            ("roadrunner_max_rel", "vs libroadrunner (activity)"), ("roadrunner_tia_max_rel", "vs libroadrunner (TIA)"),
            ("mass_balance_max", "mass balance")]
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.16
    x = np.arange(len(names))
    for i, (k, lab) in enumerate(keys):
        ax.bar(x + (i - 2) * w, [max(s.get(k, np.nan), 1e-17) for s in stats], w, label=lab)
    ax.set_yscale("log")
    ax.axhline(TOL_RADAU, color="k", ls="--", lw=0.8)
    ax.axhline(TOL_ROADRUNNER, color="grey", ls=":", lw=0.8)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("max relative error")
    ax.set_title("Verification of every shipped model (dashed: criteria)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_clinical(pops, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("psma", "177Lu-PSMA-617", clinical.PSMA617, ("kidney", "salivary", "lacrimal", "red_marrow", "liver", "tumour")),
              ("sstr", "177Lu-DOTATATE", clinical.DOTATATE, ("kidney", "liver", "spleen"))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for ax, (key, title, pubs, organs) in zip(axes, panels):
        pop = pops[key]
        data = [pop["dose_gy_per_gbq"][o] for o in organs]
        ax.boxplot(data, whis=(5, 95), showfliers=False)
        for i, o in enumerate(organs):
            ps = [p for p in pubs if p.quantity == o]
            for j, p in enumerate(ps):
                xx = i + 1 + 0.3 + 0.06 * j
                err = p.sd if p.sd else 0.0
                ax.errorbar(xx, p.mean, yerr=err if err else None, fmt="s" if p.tag == "V" else "o",
                            color="C3" if p.anchor else ("C0" if p.tag == "V" else "C7"), ms=4, capsize=2)
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(organs) + 1), organs)
        ax.set_ylabel("Gy/GBq")
        ax.set_title(f"{title}: population (box 25-75 %, whiskers 5-95 %) vs published\n"
                     "(blue: verified, grey: unverified, red: calibration anchor)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(checks, meta, path):
    lines = ["# Validation report", "",
             (f"Generated by `benchmarks/validate.py` on {meta['date']} ({meta['machine']}, load "
              f"{meta['load_1min']:.1f}; {meta['wall_s']:.0f} s{', quick settings' if meta['quick'] else ''})."),
             "",
             (f"**{sum(c.passed is True for c in checks)} pass, {sum(c.passed is False for c in checks)} fail**, "
              f"{sum(c.passed is None for c in checks)} reported only. Every row names its independent reference "
              "and the criterion; rows marked *calibration anchor* compare with numbers the shipped defaults "
              "were fitted to (`tools/calibrate_defaults.py`) and are consistency checks, not independent "
              "validation."), ""]
    titles = {"verification": "1. Verification (solvers, SBML export, mass balance, MBAM)",
              "dosimetry": "2. Dosimetry (kernels, energy conservation, S-values, baselines)",
              "validation": "3. Validation against published clinical dosimetry"}
    for sec, title in titles.items():
        rows = [c for c in checks if c.section == sec]
        if not rows:
            continue
        lines += [f"## {title}", ""]
        if sec == "verification":
            lines += ["![verification](verification.png)", ""]
        if sec == "validation":
            lines += [meta.get("population_text", ""), "", "![clinical](clinical_comparison.png)", ""]
        lines.append(markdown_table([[c.name, c.value, c.reference, c.criterion, c.verdict, c.note] for c in rows],
                                    ["check", "ours", "reference", "criterion", "verdict", "note"]))
        lines.append("")
    if meta.get("failures_text"):
        lines += ["## What fails and why", "", meta["failures_text"], ""]
    vtt_json = ROOT / "benchmarks" / "results" / "vtt.json"
    if vtt_json.exists():
        import vtt

        res = json.loads(vtt_json.read_text(encoding="utf-8"))
        st = res["settings"]
        lines += ["## Virtual theranostic trial (`benchmarks/vtt.py`, `benchmarks/results/vtt.json`)", "",
                  (f"{st['completed']} virtual patients ({res['date'][:16]}), {st['pet_agent']} PET "
                  f"{st['pet_mbq']:g} MBq, {st['therapy_agent']} {st['therapy_mbq']:g} MBq; {st['calibration']}. "
                  "Errors of the predicted therapy dose against the truth:"), "",
                  vtt.markdown(res["summary"]), "",
                  (f"Targets: mean |error| <= {res['targets']['organ_mean_abs_pct']:g} % (organs), "
                  f"<= {res['targets']['tumour_mean_abs_pct']:g} % (tumours) with late frames; 90 % coverage "
                  f"{100 * res['targets']['coverage_low']:.0f}-{100 * res['targets']['coverage_high']:.0f} %. "
                  f"Published reference: {res['published_reference']['source']}."), ""]
        lines += _vtt_published_table(res), ""
        if (OUT / "vtt_errors.png").exists():
            lines += ["![vtt](vtt_errors.png)", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _vtt_published_table(res: dict) -> str:
    """The published twin's signed error (mean ± SD, %) next to ours for the protocols that
    match: its early dynamic PET with our static 1 h PET, its 4 h/8 h frames with ours."""
    pub = res["published_reference"]
    pairs = (("early_pet_only", "pet_1h", "early PET only (theirs dynamic, ours static 1 h)"),
             ("pet_plus_4h_8h", "pet_1_4_8h", "PET + 4 h and 8 h frames"))
    organs = (("kidney", "kidney"), ("salivary", "salivary"), ("tumour", "tumour1"))
    rows = []
    for key, ours_key, label in pairs:
        theirs, ours = pub.get(key), res["summary"].get(ours_key)
        if not theirs or not ours:
            continue
        for organ, ours_organ in organs:
            if organ in theirs and ours_organ in ours:
                m, sd = theirs[organ]
                o = ours[ours_organ]
                rows.append((label, organ, f"{m:+.1f} ± {sd:.1f}", f"{o['mean_pct']:+.1f} ± {o['sd_pct']:.1f}"))
    if not rows:
        return ""
    return markdown_table(rows, ("protocol", "organ", "published twin, signed error %", "ours, signed error %"))


FAILURE_NOTES = {
    "plasma": "Plasma clears faster than the published blood elimination half-life: released activity "
              "leaves the body (`release=\"sink\"`), a known limitation listed in the README.",
    ("psma", "red_marrow"): "Model red marrow is a receptor-negative tissue that follows plasma, and plasma "
                            "clears too fast (see the plasma row); bone-lesion cross-dose and blood-based "
                            "marrow methods of the studies are not modelled.",
    ("psma", "liver"): "The liver release rate is fitted to the AAPM 2026 median T_eff (22.9 h) for the "
                       "reference male (tools/calibrate_defaults.py); the liver PSMA amount is the lineage "
                       "value, not fitted to a dose.",
    ("psma", "salivary"): "The failing comparison is Kabasakal's parotid-only dose (the highest-dosed gland); "
                          "ours is all salivary glands together, and the VISION, Hohberg, Peters and Delker "
                          "values lie inside our 5-95 % range.",
    ("psma", "spleen"): "As liver: the spleen release rate is fitted to the AAPM 2026 median T_eff (16.8 h).",
    ("psma", "tumour"): "The default lesion PSMA density (50 nM, mCRPC Begum cohort) is far above that of "
                        "small mHSPC lesions (Peters 2022); Delker's mCRPC range is met.",
    ("sstr", "kidney"): "The kidney release rate is fitted to Spink's 56 h for the reference male "
                        "(tools/calibrate_defaults.py); other SSTR2 release rates are the PSMA lineage "
                        "values (no SSTR values retrievable).",
}


def _note(kind: str, quantity: str) -> str:
    return FAILURE_NOTES.get((kind, quantity), "")


def population_row(name: str, values, p, unit_n: str = "", fmt: str = ".3g", approximate: bool = False,
                   note: str = "") -> Check:
    """One validation row: the population median (5-95 %) of ``values`` against the published
    value ``p`` (mean, and SD where given)."""
    s = summarise_population(values)
    ok, crit = published_agreement(s["median"], s["p5"], s["p95"], p.mean, p.sd)
    ref = ("~" if approximate else "") + f"{p.mean:g}" + (f" ± {p.sd:g}" if p.sd else "") + \
        (f" ({p.low:g}–{p.high:g})" if p.low is not None else "")
    return Check("validation", name, f"{s['median']:{fmt}} ({s['p5']:{fmt}}–{s['p95']:{fmt}})",
                 f"{ref} [n={p.n}{' ' + unit_n if unit_n else ''}; {p.source}]", crit, ok, note=note)


def spread_checks(pop, published, section, label) -> list[Check]:
    """Between-patient spread: our log-SD against the published CV (studies with n >= 20)."""
    rows = []
    for p in published:
        vals = pop["dose_gy_per_gbq"].get(p.quantity)
        if vals is None or not p.sd or not p.n or p.n < 20:
            continue
        ours = float(np.std(np.log(vals), ddof=1))
        theirs = math.sqrt(math.log1p((p.sd / p.mean) ** 2))
        ratio = ours / theirs
        ok = 0.5 <= ratio <= 2.0
        notes = []
        if p.tag != "V":
            notes.append(f"published value not verified against the paper (tag {p.tag})")
        if not ok:
            notes.append(
                ("ours is narrower than published" if ratio < 0.5 else "ours is wider than published")
                + ": the population spread comes from Prior.default CVs (receptor 30 %, tumour 100 %, "
                "release 50 %) plus physiology, set to the PSMA-617 kidney and salivary spread"
                + ("; smaller DOTATATE cohorts report kidney CVs of 30-50 % (0.43 ± 0.13, n=12; "
                   "0.38 ± 0.19, n=18)" if ratio > 2.0 and "DOTATATE" in label and p.quantity == "kidney"
                   else ""))
        rows.append(Check(section, f"{label} {p.quantity} between-patient spread (log-SD)",
                          f"{ours:.2f} ({ratio:.2f} x published)",
                          f"{theirs:.2f} (CV {100 * p.sd / p.mean:.0f} %, n={p.n}; {p.source})",
                          "ours within 0.5-2 x published", ok, note="; ".join(notes)))
    return rows


def main(argv=None) -> list[Check]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small populations, two models verified")
    ap.add_argument("--population", type=int, default=200, help="virtual patients per population")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--skip-mbam", action="store_true")
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    n_pop = min(args.population, 24) if args.quick else args.population
    t_start = time.perf_counter()
    checks: list[Check] = []
    timing = {}

    # 1 verification
    models = shipped_models()
    if args.quick:
        models = [m for m in models if m[0] in ("PSMA-617", "DOTATATE")]
    vstats = []
    for name, model, activity, times in models:
        t0 = time.perf_counter()
        rows, st = verify_model(name, model, activity, times)
        st["wall_s"] = time.perf_counter() - t0
        _say(f"verified {name}: {st['wall_s']:.0f} s")
        checks += rows
        vstats.append(st)
    timing["verification_s"] = time.perf_counter() - t_start
    mstats = {}
    if not args.skip_mbam:
        t0 = time.perf_counter()
        cases = dict(MBAM_CASES)
        if args.quick:
            for k in list(cases)[2:]:
                cases.pop(k)
        saved = dict(MBAM_CASES)
        MBAM_CASES.clear()
        MBAM_CASES.update(cases)
        try:
            rows, mstats = verify_mbam()
        finally:
            MBAM_CASES.clear()
            MBAM_CASES.update(saved)
        checks += rows
        timing["mbam_s"] = time.perf_counter() - t0
        _say(f"MBAM cases: {timing['mbam_s']:.0f} s")

    # 2 dosimetry
    t0 = time.perf_counter()
    checks += dosimetry_checks()
    timing["dosimetry_s"] = time.perf_counter() - t0

    # 3 validation
    t0 = time.perf_counter()
    pops = {"psma": population_doses("psma", n_pop, args.seed), "sstr": population_doses("sstr", n_pop, args.seed + 1)}
    timing["populations_s"] = time.perf_counter() - t0
    _say(f"populations: {timing['populations_s']:.0f} s")
    checks += clinical_checks(pops["psma"], clinical.PSMA617, "validation", "177Lu-PSMA-617")
    checks += halflife_checks(pops["psma"], clinical.HALF_LIVES_PSMA617, "validation", "177Lu-PSMA-617",
                              clinical.HALF_LIVE_TIMES_PSMA617_H)
    u = summarise_population(pops["psma"]["urine_24h_pct"])
    p = clinical.URINE_PSMA617
    ok, crit = published_agreement(u["median"], u["p5"], u["p95"], p.mean, p.sd)
    checks.append(Check("validation", "177Lu-PSMA-617 urinary excretion at 24 h (% IA)",
                        f"{u['median']:.1f} ({u['p5']:.1f}–{u['p95']:.1f})", f"{p.mean} ± {p.sd} ({p.low}–{p.high}) [n=7; {p.source}]",
                        crit, ok, note="calibration anchor: not independent"))
    pl = summarise_population(pops["psma"]["plasma_t_half_4_24h"])
    ok, crit = published_agreement(pl["median"], pl["p5"], pl["p95"], 10.8, 2.5)
    checks.append(Check("validation", "177Lu-PSMA-617 plasma half-life 4–24 h (h)",
                        f"{pl['median']:.3g} ({pl['p5']:.3g}–{pl['p95']:.3g})",
                        "blood elimination 10.8 ± 2.5 h [n=7; Kabasakal 2017, PMC5472088]", crit, ok,
                        note=FAILURE_NOTES["plasma"] if not ok else ""))
    fit_at = ", ".join(f"{t:g}" for t in clinical.URINE_HALF_TIME_TIMES_H)
    checks.append(population_row(
        f"177Lu-PSMA-617 urinary excretion half-time, first 20 h (h), U(t) = U_inf (1 - 2^(-t/T)) fitted at {fit_at} h",
        pops["psma"]["urine_half_time_h"], clinical.URINE_HALF_TIME_PSMA617, "cycles",
        note="independent of the blood row above: urine is filtered plasma"))
    fit_at = ", ".join(f"{t:g}" for t in clinical.WHOLE_BODY_TEFF_TIMES_H)
    checks.append(population_row(
        f"177Lu-PSMA-617 whole-body effective half-life (h), mono-exp. fit at {fit_at} h",
        pops["psma"]["whole_body_teff_h"], clinical.WHOLE_BODY_TEFF_PSMA617))
    for p in clinical.EXCRETED_PSMA617:
        vals = pops["psma"]["excreted_pct"][p.quantity]
        lower = float(np.median(vals)) < p.mean
        checks.append(population_row(
            f"177Lu-PSMA-617 activity excreted by {p.quantity.split('_')[1][:-1]} h (% IA; urine + released)",
            vals, p, fmt=".1f", approximate=True,
            note=("ours is lower: the urine anchor (Kabasakal, 56.5 % at 24 h in 7 patients) describes "
                  "slower excretion than this cohort's" if lower else "")))
    for o, vals in pops["psma"]["ratio_24h_4h"].items():
        r = summarise_population(vals)
        checks.append(Check(
            "validation", f"177Lu-PSMA-617 {o} activity 24 h / 4 h (time course shape)",
            f"{r['median']:.2f} ({r['p5']:.2f}–{r['p95']:.2f})",
            "clinical TACs fall from the first scan: mono-exponential fits from 4 h (AAPM 2026 abstract), "
            "VISION imaging 2-168 h", "reported only (no published ratio)", None,
            note="ratio > 1: the model's organ activity still rises after 4 h (internalised pool filling); "
                 "it peaks at ~16 h in the reference patient"))
    checks += spread_checks(pops["psma"], clinical.PSMA617, "validation", "177Lu-PSMA-617")
    checks += clinical_checks(pops["sstr"], clinical.DOTATATE, "validation", "177Lu-DOTATATE", "sstr")
    checks += halflife_checks(pops["sstr"], clinical.HALF_LIVES_DOTATATE, "validation", "177Lu-DOTATATE",
                              clinical.HALF_LIVE_TIMES_DOTATATE_H, "sstr")
    checks += spread_checks(pops["sstr"], clinical.DOTATATE, "validation", "177Lu-DOTATATE")

    # figures and report
    figure_verification(vstats, out / "verification.png")
    figure_clinical(pops, out / "clinical_comparison.png")
    wall = time.perf_counter() - t_start
    fails = [c for c in checks if c.passed is False]
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "load_1min": os.getloadavg()[0],
        "wall_s": wall, "quick": args.quick,
        "population_text": (
            f"Populations: {n_pop} virtual patients each (177Lu-PSMA-617 7.4 GBq/90 nmol, one lesion 2–30 mL and "
            f"a 50 mL tumour rest; 177Lu-DOTATATE 7.4 GBq/105 nmol, one tumour 2–30 mL). Each patient has its own "
            "physiology (male; age, height, BMI, creatinine → CKD-EPI eGFR, haematocrit, organ volumes; "
            "`benchmarks/validation/population.py`) and a draw of `calibration.Prior.default` around it. Doses: "
            "ICRP-89 177Lu S-values (male) with patient organ masses, other regions as remainder of body, sphere "
            "model for lesions, local deposition for the lacrimal glands. Ours: median (5–95 %)."),
        "failures_text": "\n".join(f"- **{c.name}**: ours {c.value} vs {c.reference}. {c.note}" for c in fails),
    }
    write_report(checks, meta, out / "report.md")
    (out / "validation.json").write_text(json.dumps({
        "meta": {k: v for k, v in meta.items() if not k.endswith("_text")}, "timing_s": timing,
        "verification": vstats, "mbam": mstats,
        "populations": {k: {"n": v["n"], "n_ok": v["n_ok"], "simulate_cohort_s": v["simulate_cohort_s"],
                            "dose_gy_per_gbq": {o: summarise_population(a) for o, a in v["dose_gy_per_gbq"].items()},
                            "teff_h": {o: summarise_population(a[np.isfinite(a)]) for o, a in v["teff_h"].items()},
                            "urine_24h_pct": summarise_population(v["urine_24h_pct"]),
                            **({"urine_half_time_h": summarise_population(v["urine_half_time_h"]),
                                "whole_body_teff_h": summarise_population(v["whole_body_teff_h"])}
                               if v["urine_half_time_h"].size else {})}
                        for k, v in pops.items()},
        "checks": [c.as_dict() for c in checks]}, indent=1, default=float) + "\n")
    print(f"{sum(c.passed is True for c in checks)} pass, {len(fails)} fail, "
          f"{sum(c.passed is None for c in checks)} info; {wall:.0f} s; wrote {out / 'report.md'}")
    for c in fails:
        print(f"FAIL {c.name}: {c.value} vs {c.reference}")
    return checks


if __name__ == "__main__":
    main()
