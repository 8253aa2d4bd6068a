"""The PSMA model against a separately written numpy right-hand side solved with scipy Radau.

The equations below are typed from research/pbpk_models.md §1.4-1.5 (with the §1.10 defects
fixed), not generated from the model graph: they share only the parameter names.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pbpk

NON_RECEPTOR = ("heart", "muscle", "skin", "adipose", "red_marrow", "bone", "rest")
PORTAL = ("spleen", "gi")


def _layout(receptor):
    names = ["art", "ven", "lungs_vas", "lungs_int", "brain_vas"]
    for o in NON_RECEPTOR:
        names += [f"{o}_vas", f"{o}_int"]
    for o in receptor:
        names += [f"{o}_vas", f"{o}_int", f"{o}_B", f"{o}_I"]
    names += ["kidney_vas", "kidney_tub", "kidney_pt", "kidney_B", "kidney_I", "urine", "released"]
    return {n: i for i, n in enumerate(names)}


def numpy_psma_rhs(p, receptor):
    ix = _layout(receptor)
    n = len(ix)
    lam = p["lambda_phys_per_h"]
    V = {"art": p["V_art"], "ven": p["V_ven"], "lungs_vas": p["V_lungs_vas"],
         "lungs_int": p["V_lungs_int"], "brain_vas": p["V_brain_vas"],
         "kidney_vas": p["V_kidney_vas"], "kidney_tub": p["V_kidney_tub"],
         "kidney_pt": p["V_kidney_pt"]}
    for o in (*NON_RECEPTOR, *receptor):
        V[f"{o}_vas"] = p[f"V_{o}_vas"]
        V[f"{o}_int"] = p[f"V_{o}_int"]

    def rhs(t, yflat):
        y = yflat.reshape(2, n)  # species hot, cold
        d = np.zeros_like(y)
        C = {k: y[:, ix[k]] / v for k, v in V.items()}
        A = {k: y[:, i] for k, i in ix.items()}
        G, fexc = p["gfr_eff"], p["f_exc"]
        # central plasma and lungs
        systemic = [*NON_RECEPTOR, *receptor, "brain", "kidney"]
        d[:, ix["ven"]] -= p["Q_lungs"] * C["ven"]
        d[:, ix["lungs_vas"]] += p["Q_lungs"] * (C["ven"] - C["lungs_vas"]) - p["PS_lungs"] * (
            C["lungs_vas"] - C["lungs_int"])
        d[:, ix["lungs_int"]] += p["PS_lungs"] * (C["lungs_vas"] - C["lungs_int"])
        d[:, ix["art"]] += p["Q_lungs"] * C["lungs_vas"] - sum(p[f"Q_{o}"] for o in systemic) * C["art"]
        # venous return; liver carries the portal flow
        for o in systemic:
            if o in PORTAL:
                continue
            q_out = p[f"Q_{o}"] + (sum(p[f"Q_{x}"] for x in PORTAL) if o == "liver" else 0.0)
            d[:, ix["ven"]] += q_out * C[f"{o}_vas"]
        for o in systemic:
            vas = f"{o}_vas"
            inflow = p[f"Q_{o}"] * C["art"]
            if o == "liver":
                inflow = inflow + sum(p[f"Q_{x}"] * C[f"{x}_vas"] for x in PORTAL)
                q_out = p["Q_liver"] + sum(p[f"Q_{x}"] for x in PORTAL)
            else:
                q_out = p[f"Q_{o}"]
            d[:, ix[vas]] += inflow - q_out * C[vas]
            if o in ("brain", "kidney"):
                continue
            ps = p[f"PS_{o}"] * (C[vas] - C[f"{o}_int"])
            d[:, ix[vas]] -= ps
            d[:, ix[f"{o}_int"]] += ps
        for o in receptor:
            Bt = A[f"{o}_B"].sum()
            bind = p["kon"] * C[f"{o}_int"] * (p[f"R_{o}"] - Bt) - p["koff"] * A[f"{o}_B"]
            d[:, ix[f"{o}_int"]] -= bind
            d[:, ix[f"{o}_B"]] += bind - p["kint"] * A[f"{o}_B"]
            d[:, ix[f"{o}_I"]] += p["kint"] * A[f"{o}_B"] - p[f"krel_{o}"] * A[f"{o}_I"]
            d[:, ix["released"]] += p[f"krel_{o}"] * A[f"{o}_I"]
        # kidney (§1.5)
        d[:, ix["kidney_vas"]] += -G * C["kidney_vas"] + (1 - fexc) * G * C["kidney_pt"]
        Bk = A["kidney_B"].sum()
        bind = p["kon"] * C["kidney_tub"] * (p["R_kidney"] - Bk) - p["koff"] * A["kidney_B"]
        d[:, ix["kidney_tub"]] += G * C["kidney_vas"] - G * C["kidney_tub"] - bind
        d[:, ix["kidney_pt"]] += (1 - fexc) * G * (C["kidney_tub"] - C["kidney_pt"])
        d[:, ix["kidney_B"]] += bind - p["kint"] * A["kidney_B"]
        d[:, ix["kidney_I"]] += p["kint"] * A["kidney_B"] - p["krel_kidney"] * A["kidney_I"]
        d[:, ix["released"]] += p["krel_kidney"] * A["kidney_I"]
        d[:, ix["urine"]] += fexc * G * C["kidney_tub"]
        # physical decay hot -> cold everywhere
        d[0] -= lam * y[0]
        d[1] += lam * y[0]
        return d.ravel()

    return rhs, ix


def region_of(name):
    base = name.rsplit("_", 1)[0]
    return {"art": "plasma", "ven": "plasma", "urine": "urine", "released": "released"}.get(name, base)


# PSMA-11 differs from PSMA-617 in agent constants only: slow target (make test-slow), CI time
@pytest.mark.parametrize("ligand", ["PSMA-617", pytest.param("PSMA-11", marks=pytest.mark.slow)])
def test_psma_matches_independent_numpy_rhs_with_radau(ligand):
    model = pbpk.psma_model(ligand, lesion_volumes_l=(0.012, 0.03), lacrimal=True)
    p = model.parameters
    receptor = ["tumour1", "tumour2", "tumour_rest", "salivary", "lacrimal", "prostate", "liver",
                "spleen", "gi"]
    rhs, ix = numpy_psma_rhs(p, receptor)
    activity = 7400.0 if ligand == "PSMA-617" else 150.0
    sched = pbpk.Schedule.single(activity)
    hot, cold = sched.administrations[0].amounts_nmol(
        model.carrier_free_mbq_per_nmol, model.default_molar_activity_mbq_per_nmol)
    y0 = np.zeros((2, len(ix)))
    y0[:, ix["ven"]] = hot, cold
    t_end = 2000.0 if ligand == "PSMA-617" else 12.0
    times = np.array([0.1, 1.0, 4.0, 24.0, 72.0, 168.0, 500.0, 2000.0])
    times = times[times <= t_end]
    ref = solve_ivp(rhs, (0.0, t_end), y0.ravel(), method="Radau", t_eval=times, rtol=1e-11,
                    atol=1e-16 * max(hot, 1e-3))
    assert ref.success
    ref_hot = ref.y.reshape(2, len(ix), -1)[0]
    res = pbpk.simulate(model, sched, times, rtol=1e-9, atol=1e-13)
    ours = np.asarray(res.activity_mbq) / model.carrier_free_mbq_per_nmol
    compared = 0
    for region in res.regions:
        rows = [i for n, i in ix.items() if region_of(n) == region]
        expect = ref_hot[rows].sum(0)
        got = ours[:, res.regions.index(region)]
        mask = expect > 1e-6 * hot
        np.testing.assert_allclose(got[mask], expect[mask], rtol=1e-6, err_msg=region)
        compared += mask.sum()
    assert compared > 50
