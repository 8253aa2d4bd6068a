"""Review 12 of the decay chains (pbpk.simulate_chain, free_ion_graph, ChainModel checks).

Independent references, written out here: closed forms of small hand-built systems (first-order
transfer, Bateman), a hand-written ODE of the free-ion system solved with scipy's Radau at
rtol 1e-10, and the well-stirred organ relation E = CL / (Q + CL).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pbpk
from pbpk import Compartment, ModelGraph, PBPKModel, flow, transfer

TIGHT = {"rtol": 1e-10, "atol": 1e-14}
A0 = 100.0  # MBq


def _lam(nuclide: str) -> float:
    return pbpk.get_nuclide(nuclide).decay_constant_per_h


# ----------------------------------------------------------------------------- horizon, urine
K_OUT = 0.2  # 1/h, plasma -> urine


def _plasma_urine_chain() -> pbpk.ChainModel:
    """212Pb in one plasma pool emptying into urine at K_OUT; free 212Bi stays where it is made."""
    g = ModelGraph("pu", (Compartment("plasma.central", "plasma", "central", "V"),
                          Compartment("urine.bladder", "urine", "bladder", None, in_body=False)),
                   (transfer("plasma.central", "urine.bladder", "k"),), "plasma.central")
    parent = PBPKModel(g, "Pb-212", {"V": 3.0, "k": K_OUT}, default_molar_activity_mbq_per_nmol=1.0)
    dg = ModelGraph("free_Bi", (Compartment("plasma.free", "plasma", "free", "V"),
                                Compartment("urine.excreta", "urine", "excreta", None, in_body=False)),
                    (), "plasma.free")
    d = pbpk.FreeDaughter("Bi-212", dg, {"V": 3.0}, {"*": 1.0},
                          {"*": "plasma.free", "urine": "urine.excreta"})
    return pbpk.ChainModel(parent, (d,))


@pytest.fixture(scope="module")
def short_run():
    # last output at 5 h, half a 212Pb half-life: 72 % of the atoms are still in the chain
    return pbpk.simulate_chain(_plasma_urine_chain(), pbpk.Schedule.single(A0), [1.0, 5.0], **TIGHT)


def test_short_last_output_time_still_gives_the_tia_to_infinity(short_run):
    """Closed form: 212Pb leaves plasma at lambda + k, so its plasma TIA is A0 / (lambda + k)
    and every 212Bi made there decays there (b = 1); the rest decays in urine."""
    lp, ld = _lam("Pb-212"), _lam("Bi-212")
    tia_plasma = A0 / (lp + K_OUT)
    tia_urine = A0 / lp - tia_plasma
    assert short_run.tia("Pb-212", "plasma") == pytest.approx(tia_plasma, rel=1e-7)
    assert short_run.tia("Bi-212", "plasma") == pytest.approx(tia_plasma, rel=1e-7)
    assert short_run.tia("Bi-212", "urine") == pytest.approx(tia_urine, rel=1e-7)
    # the outputs stay at the requested times (Bateman, parent leaving at lambda + k)
    assert list(short_run.times_h) == [1.0, 5.0]
    assert short_run.parent.activity_mbq.shape[0] == 2
    l1 = lp + K_OUT
    for i, t in enumerate((1.0, 5.0)):
        bateman = ld * lp * (A0 / lp) / (ld - l1) * (math.exp(-l1 * t) - math.exp(-ld * t))
        assert short_run.activity("Bi-212", "plasma")[i] == pytest.approx(bateman, rel=1e-7)
    assert short_run.atoms_residual.shape == (2,)


def test_short_and_long_horizons_agree(short_run):
    long = pbpk.simulate_chain(_plasma_urine_chain(), pbpk.Schedule.single(A0), [1.0, 5.0, 400.0], **TIGHT)
    for nuc in ("Pb-212", "Bi-212"):
        for region in ("plasma", "urine"):
            assert short_run.tia(nuc, region) == pytest.approx(long.tia(nuc, region), rel=1e-7)
    assert short_run.activity("Bi-212", "plasma") == pytest.approx(long.activity("Bi-212", "plasma")[:2], rel=1e-8)


def test_parent_tia_in_urine_is_computed(short_run):
    """Atoms in urine do not move: their TIA is A0/lambda - A0/(lambda + k), not 0."""
    lp = _lam("Pb-212")
    assert short_run.tia("Pb-212", "urine") == pytest.approx(A0 / lp - A0 / (lp + K_OUT), rel=1e-7)
    # in situ: each 212Pb decay in urine is one 212Bi decay there
    assert short_run.in_situ_tia["Bi-212"]["urine"] == pytest.approx(short_run.tia("Pb-212", "urine"), rel=1e-12)


# ----------------------------------------------------------------------------- portal flow
V_P, V_G, V_L = 3.0, 1.0, 1.5  # L
Q_L, Q_G = 15.0, 45.0  # L/h: hepatic artery, gut (portal)
E_LIVER = 0.4


def _portal_parent() -> PBPKModel:
    comps = (Compartment("arterial.plasma", "plasma", "plasma", "V_p"),
             Compartment("gi.vascular", "gi", "vascular", "V_gi_vas"),
             Compartment("liver.vascular", "liver", "vascular", "V_liver_vas"))
    procs = (flow("arterial.plasma", "gi.vascular", "Q_gi"), flow("gi.vascular", "liver.vascular", "Q_gi"),
             flow("arterial.plasma", "liver.vascular", "Q_liver"),
             flow("liver.vascular", "arterial.plasma", "Q_liver"), flow("liver.vascular", "arterial.plasma", "Q_gi"))
    g = ModelGraph("portal", comps, procs, "arterial.plasma")
    return PBPKModel(g, "Pb-212", {"V_p": V_P, "V_gi_vas": V_G, "V_liver_vas": V_L, "Q_gi": Q_G, "Q_liver": Q_L},
                     default_molar_activity_mbq_per_nmol=1.0)


def test_free_ion_liver_uptake_uses_total_hepatic_flow():
    """Hand-written ODE: parent and free 212Bi both pass gut -> liver (portal vein); the liver
    cells take up E of the free Bi entering the liver per pass, CL = (Q_L + Q_G) E / (1 - E)."""
    parent = _portal_parent()
    kin = {"kidney_extraction": 0.3, "liver_extraction": E_LIVER, "urine_fraction": 0.5}
    graph, params, src, entry = pbpk.free_ion_graph(parent, "Bi-212", kinetics=kin)
    d = pbpk.FreeDaughter("Bi-212", graph, params, {"*": 1.0}, entry, src)
    r = pbpk.simulate_chain(pbpk.ChainModel(parent, (d,)), pbpk.Schedule.single(A0), [1.0, 400.0], **TIGHT)

    lp, ld = _lam("Pb-212"), _lam("Bi-212")
    cl = (Q_L + Q_G) * E_LIVER / (1.0 - E_LIVER)

    def rhs(t, y):
        pp, pg, pl, dp, dg, dl, dc = y[:7]
        def organs(p, g, liver):
            return (-(Q_L + Q_G) / V_P * p + (Q_L + Q_G) / V_L * liver,
                    Q_G / V_P * p - Q_G / V_G * g,
                    Q_L / V_P * p + Q_G / V_G * g - (Q_L + Q_G) / V_L * liver)
        fp = organs(pp, pg, pl)
        fd = organs(dp, dg, dl)
        dy = [fp[0] - lp * pp, fp[1] - lp * pg, fp[2] - lp * pl,
              fd[0] - ld * dp + lp * pp, fd[1] - ld * dg + lp * pg,
              fd[2] - cl / V_L * dl - ld * dl + lp * pl, cl / V_L * dl - ld * dc]
        return dy + [ld * dp, ld * dg, ld * (dl + dc)]  # daughter decays per region

    y0 = np.zeros(10)
    y0[0] = A0 / lp  # atoms in MBq h
    sol = solve_ivp(rhs, (0.0, 400.0), y0, method="Radau", rtol=1e-10, atol=1e-12)
    tia_ref = dict(zip(("plasma", "gi", "liver"), sol.y[7:, -1]))
    for region, ref in tia_ref.items():
        assert r.tia("Bi-212", region) == pytest.approx(ref, rel=1e-6)
    # steady-state single pass through the liver (well-stirred): CL / (Q_total + CL) = E
    assert params["CL_liver_uptake"] / (Q_L + Q_G + params["CL_liver_uptake"]) == pytest.approx(E_LIVER, rel=1e-12)


@pytest.mark.parametrize("element,nuclide", [("Bi", "Bi-213"), ("Fr", "Fr-221")])
def test_stated_extraction_is_the_single_pass_fraction(element, nuclide):
    """Well-stirred organ at steady state, no decay: Q C_a = (Q + CL) C_o, so the fraction of
    the ion entering the kidney that is taken up is CL / (Q + CL); it must be the stated E
    (Bi 0.3, Fr 0.5 per pass, pbpk.ELEMENT_KINETICS source texts)."""
    parent = _portal_parent()
    g = parent.graph.with_compartment(Compartment("kidney.vascular", "kidney", "vascular", "V_kidney_vas"))
    g = g.with_process(flow("arterial.plasma", "kidney.vascular", "Q_kidney"))
    g = g.with_process(flow("kidney.vascular", "arterial.plasma", "Q_kidney"))
    parent = PBPKModel(g, "Ac-225", {**parent.parameters, "V_kidney_vas": 0.3, "Q_kidney": 40.0},
                       default_molar_activity_mbq_per_nmol=1.0)
    _, params, _, _ = pbpk.free_ion_graph(parent, nuclide)
    stated = {"Bi": 0.3, "Fr": 0.5}[element]
    cl = params["CL_kidney_uptake"]
    assert cl / (40.0 + cl) == pytest.approx(stated, rel=1e-12)
    assert "about half" not in str(pbpk.ELEMENT_KINETICS["Bi"]["source"])


# ----------------------------------------------------------------------------- retained sites
def test_retained_daughters_release_at_their_site_fraction():
    """225Ac moves from plasma to a closed extracellular site ('out', space bound) and into
    cells ('in', internalised); the daughters (not moving) have ac225_psma_model's release maps
    (extracellular 0.5, internalised 0.2). Every decay at a site, of 225Ac or of retained
    221Fr, releases the site's fraction f, so the free share of 213Bi there is f + (1 - f) f:
    0.75 outside cells, 0.36 in cells."""
    ch = pbpk.ac225_psma_model(release_extracellular=0.5, release_internalised=0.2)
    g = ModelGraph("sites", (Compartment("plasma.central", "plasma", "central", "V"),
                             Compartment("out.bound", "out", "bound"),
                             Compartment("in.internalised", "in", "internalised")),
                   (transfer("plasma.central", "out.bound", "k"), transfer("plasma.central", "in.internalised", "k")),
                   "plasma.central")
    parent = PBPKModel(g, "Ac-225", {"V": 3.0, "k": 0.5}, default_molar_activity_mbq_per_nmol=1.0)
    pools = tuple(Compartment(f"{r}.free", r, "free", "V") for r in ("plasma", "out", "in"))
    entry = {"*": "plasma.free", "out": "out.free", "in": "in.free"}
    daughters = tuple(pbpk.FreeDaughter(d.nuclide, ModelGraph("f", pools, (), "plasma.free"), {"V": 1.0},
                                        dict(d.release), entry) for d in ch.daughters)
    r = pbpk.simulate_chain(pbpk.ChainModel(parent, daughters), pbpk.Schedule.single(10.0), [100.0, 3000.0],
                            **TIGHT)
    for region, f in (("out", 0.5), ("in", 0.2)):
        free = r.free_activity_mbq["Bi-213"][0, r.regions["Bi-213"].index(region)]
        assert free / r.activity("Bi-213", region)[0] == pytest.approx(f + (1 - f) * f, rel=1e-9)
    # the stated assumptions quote the values used; summary() shows no unused value
    text = " ".join(ch.assumptions)
    assert "release 0.5" in text and "release 0.2" in text and "release 1.0" not in text
    assert "retained" not in ch.daughter("Bi-213").release


# ----------------------------------------------------------------------------- regions, entry
def test_with_parent_lacking_a_daughter_region_is_a_graph_error():
    ch = pbpk.ac225_psma_model()
    p2 = pbpk.psma_model("PSMA-617", "Ac-225", lesion_volumes_l=(), tumour_rest_volume_l=0.0)
    with pytest.raises(pbpk.GraphError, match="tumour1"):
        ch.with_parent(p2)


def test_daughter_graph_with_a_region_the_parent_lacks_simulates():
    """Free 221Fr moves from the site to 'bone' (a region only the daughters have) at k; each
    221Fr decays where it is (fraction lambda/(lambda + k) at the site), and 213Bi where made."""
    k = 5.0
    g = ModelGraph("site", (Compartment("site.bound", "site", "bound"),), (), "site.bound")
    parent = PBPKModel(g, "Ac-225", {}, default_molar_activity_mbq_per_nmol=1.0)
    fr_g = ModelGraph("fr", (Compartment("site.free", "site", "free", "V"), Compartment("bone.free", "bone", "free", "V")),
                      (transfer("site.free", "bone.free", "k"),), "site.free")
    bi_g = ModelGraph("bi", (Compartment("site.free", "site", "free", "V"), Compartment("bone.free", "bone", "free", "V")),
                      (), "site.free")
    fr = pbpk.FreeDaughter("Fr-221", fr_g, {"V": 1.0, "k": k}, {"*": 1.0}, {"*": "site.free"})
    bi = pbpk.FreeDaughter("Bi-213", bi_g, {"V": 1.0}, {"*": 1.0}, {"*": "site.free", "bone": "bone.free"})
    r = pbpk.simulate_chain(pbpk.ChainModel(parent, (fr, bi)), pbpk.Schedule.single(A0), [10.0], **TIGHT)
    lf = _lam("Fr-221")
    tia_p = A0 / _lam("Ac-225")
    b_bi = pbpk.decay_transitions(["Ac-225", "Fr-221", "Bi-213"])["Fr-221"]["Bi-213"]
    # atoms left after 20 half-lives of 225Ac (2^-20) are booked at the site: rel 3e-6
    assert r.tia("Fr-221", "bone") == pytest.approx(tia_p * k / (lf + k), rel=3e-6)
    assert r.tia("Bi-213", "bone") == pytest.approx(b_bi * tia_p * k / (lf + k), rel=3e-6)
    assert r.tia("Bi-213", "site") == pytest.approx(b_bi * tia_p * lf / (lf + k), rel=3e-6)


def _kidney_parent() -> PBPKModel:
    pg = ModelGraph("two", (Compartment("plasma.free", "plasma", "free", "V"),
                            Compartment("kidney.bound", "kidney", "bound")),
                    (transfer("plasma.free", "kidney.bound", "k"),), "plasma.free")
    return PBPKModel(pg, "Pb-212", {"V": 3.0, "k": 1.0}, default_molar_activity_mbq_per_nmol=1.0)


def _bi_graph() -> ModelGraph:
    return ModelGraph("free_Bi", (Compartment("plasma.free", "plasma", "free", "V"),
                                  Compartment("kidney.free", "kidney", "free", "Vk")), (), "plasma.free")


def test_misspelt_entry_region_is_refused():
    d = pbpk.FreeDaughter("Bi-212", _bi_graph(), {"V": 3.0, "Vk": 0.3}, {"*": 1.0},
                          {"*": "plasma.free", "kidneys": "kidney.free"})
    with pytest.raises(pbpk.UnknownNameError, match="'kidneys'.*kidney"):
        pbpk.ChainModel(_kidney_parent(), (d,))


def test_parent_region_without_entry_is_warned_about():
    d = pbpk.FreeDaughter("Bi-212", _bi_graph(), {"V": 3.0, "Vk": 0.3}, {"*": 1.0}, {"*": "plasma.free"})
    with pytest.warns(UserWarning, match="kidney"):
        pbpk.ChainModel(_kidney_parent(), (d,))
    ok = pbpk.FreeDaughter("Bi-212", _bi_graph(), {"V": 3.0, "Vk": 0.3}, {"*": 1.0},
                           {"*": "plasma.free", "kidney": "kidney.free"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pbpk.ChainModel(_kidney_parent(), (ok,))


# ----------------------------------------------------------------------------- input checks
def test_free_ion_kinetics_are_checked():
    parent = _portal_parent()
    _, p, _, _ = pbpk.free_ion_graph(parent, "Bi-213", kinetics={"liver_extraction": np.float32(0.25)})
    assert p["CL_liver_uptake"] == pytest.approx((Q_L + Q_G) * 0.25 / 0.75, rel=1e-12)
    with pytest.raises(pbpk.InvalidInputError, match="liver_extraction"):
        pbpk.free_ion_graph(parent, "Bi-213", kinetics={"liver_extraction": True})
    with pytest.raises(pbpk.UnknownNameError, match="kidney_extration"):
        pbpk.free_ion_graph(parent, "Bi-213", kinetics={"kidney_extration": 0.9})
    with pytest.raises(pbpk.InvalidInputError, match="lacks liver_extraction, urine_fraction"):
        pbpk.free_ion_graph(parent, "Pb-209", kinetics={"kidney_extraction": 0.1})
    with pytest.raises(pbpk.InvalidInputError, match=r"\[0, 1\)"):
        pbpk.free_ion_graph(parent, "Bi-213", kinetics={"liver_extraction": 1.0})


def test_simulate_chain_params_and_decay_transitions_inputs():
    c = _plasma_urine_chain()
    s = pbpk.Schedule.single(10.0)
    with pytest.raises(pbpk.InvalidInputError, match="mapping"):
        pbpk.simulate_chain(c, s, [1.0, 100.0], params=[("k", 1.0)])
    with pytest.raises(pbpk.InvalidInputError, match="params\\['k'\\]"):
        pbpk.simulate_chain(c, s, [1.0, 100.0], params={"k": "abc"})
    with pytest.raises(pbpk.InvalidInputError, match="list of nuclide names"):
        pbpk.decay_transitions("Ac-225")
    with pytest.raises(pbpk.InvalidInputError, match="not in the decay chain of Lu-177"):
        pbpk.decay_transitions(["Lu-177", "Bi-213"])
    with pytest.raises(pbpk.InvalidInputError, match="more than once"):
        pbpk.decay_transitions(["Ac-225", "Ac-225"])
