"""Vectorised cohort dosimetry against twin.dose called per patient, and the G-factor (no simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin import dose
from twin.cohort._kinetics import TIME_GRID_H, _doses, _g_function, dose_coefficients

BODY = ("plasma", "lungs", "brain", "tumour1", "tumour_rest", "salivary", "lacrimal", "prostate",
        "liver", "spleen", "gi", "heart", "muscle", "skin", "adipose", "red_marrow", "bone", "rest",
        "kidney")
MIRD = {"kidney": "kidneys", "liver": "liver", "spleen": "spleen", "salivary": "salivary_glands",
        "red_marrow": "red_marrow", "lungs": "lungs", "brain": "brain", "prostate": "prostate",
        "heart": "heart_wall"}


def _per_patient(tia: dict, vol: dict, nuclide: str) -> dict:
    """The same doses with twin.dose's public functions, one patient at a time."""
    sources: dict[str, float] = {}
    for r, v in tia.items():
        if r.startswith("tumour") or r == "lacrimal":
            continue
        key = MIRD.get(r, "remainder_of_body")
        sources[key] = sources.get(key, 0.0) + v
    masses = {"kidneys": vol["kidney"], "liver": vol["liver"], "spleen": vol["spleen"],
              "salivary_glands": vol["salivary"]}
    res = dose.organ_dose(sources, nuclide=nuclide, phantom="male", organ_masses_kg=masses,
                          targets=["kidneys", "liver", "spleen", "salivary_glands", "red_marrow"])
    out = dict(res.dose_gy)
    out["lacrimal_glands"] = dose.local_deposition_dose_gy(tia["lacrimal"], vol["lacrimal"], nuclide)
    # tumour volumes are physical: mass at the sphere model's soft-tissue density, 1.04 g/cm3
    # (research notes dosimetry_reference.md §1.1)
    m1, m2 = 1.04 * vol["tumour1"], 1.04 * vol["tumour_rest"]
    d1 = dose.sphere_dose_gy(tia["tumour1"], m1, nuclide)
    d2 = dose.sphere_dose_gy(tia["tumour_rest"], m2, nuclide)
    out["tumour"] = (d1 * m1 + d2 * m2) / (m1 + m2)  # mass-weighted mean
    return out


@pytest.mark.parametrize("nuclide", ["Lu-177", "Y-90"])
def test_vectorised_doses_equal_organ_dose_per_patient(nuclide):
    rng = np.random.default_rng(1)
    n = 4
    tia = rng.uniform(10.0, 5e4, (n, len(BODY)))
    vols = {"kidney": rng.uniform(0.2, 0.4, n), "liver": rng.uniform(1.2, 2.2, n),
            "spleen": rng.uniform(0.1, 0.25, n), "salivary": rng.uniform(0.05, 0.1, n),
            "lacrimal": np.full(n, 0.000727), "tumour1": rng.uniform(0.02, 0.1, n),
            "tumour_rest": rng.uniform(0.05, 0.3, n)}
    coef = dose_coefficients(BODY, nuclide, "male")
    if nuclide != "Lu-177":  # local deposition gives self-dose only: compare the self-dose organs
        coef_organs = [o for o in coef.organs if o != "red_marrow"]
    else:
        coef_organs = list(coef.organs)
    got = _doses(coef, tia, vols, BODY)
    for i in range(n):
        ref = _per_patient(dict(zip(BODY, tia[i])), {k: v[i] for k, v in vols.items()}, nuclide) \
            if nuclide == "Lu-177" else None
        if ref is None:
            sources = {"kidneys": tia[i, BODY.index("kidney")], "liver": tia[i, BODY.index("liver")]}
            res = dose.organ_dose(sources, nuclide=nuclide, organ_masses_kg={
                "kidneys": vols["kidney"][i], "liver": vols["liver"][i]})
            ref = {"kidneys": res.dose_gy["kidneys"], "liver": res.dose_gy["liver"]}
        for o in coef_organs:
            if o in ref:
                assert got[i, coef.organs.index(o)] == pytest.approx(ref[o], rel=1e-10), (nuclide, o)


def test_g_factor_of_a_monoexponential_curve():
    """Dale: G = lambda / (lambda + mu) for instantaneous uptake and mono-exponential clearance."""
    t = np.asarray(TIME_GRID_H)
    lam = math.log(2) / 40.0
    lam_phys = math.log(2) / (6.647 * 24)
    curves = np.stack([100 * np.exp(-lam * t), 50 * (np.exp(-lam * t) - np.exp(-0.5 * t))], axis=-1)
    g = np.asarray(_g_function(TIME_GRID_H, lam_phys)(curves[None], np.array([2.8, 2.8])))[0]
    assert g[0] == pytest.approx(float(dose.g_factor_monoexponential(40.0, 2.8)), rel=2e-3)
    # with an uptake phase: the analytic bi-exponential G of twin.dose
    ref = float(dose.g_factor_monoexponential(40.0, 2.8, uptake_half_time_h=math.log(2) / 0.5))
    assert g[1] == pytest.approx(ref, rel=5e-3)
