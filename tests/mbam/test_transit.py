"""The transit-time limit V -> 0 of a flow-through space (mbam.eliminate_transit,
mbam.transit_candidates) and its step in mbam.reduce_pbpk."""

import numpy as np
import pytest
import scipy.linalg
from organ_graph import organ_graph

import mbam
import pbpk
from pbpk import Compartment, ModelGraph, PBPKModel, exchange, flow, transfer

TIMES = np.array([0.05, 0.2, 0.5, 1.0, 4.0, 24.0, 96.0])
SCHEDULE = pbpk.Schedule.single(100.0)
V1, VI, Q, PS, CL, KT = 3.0, 0.4, 5.0, 1.5, 1.2, 0.05


def organ_model(v_vas=0.003, q=Q, ps=PS):
    """Plasma (dosed, cleared to urine at CL) perfusing an organ's vascular space (flow Q in and
    out), which exchanges with the interstitium (PS); the interstitium loses ligand to urine
    at kt."""
    graph = organ_graph("transit_organ")
    return PBPKModel(graph, "Lu-177", {"V_p": V1, "V_v": v_vas, "V_i": VI, "Q": q, "PS": ps,
                                       "CL": CL, "kt": KT})


def _analytic(lam):
    """Independent reference: the quasi-steady vascular space leaves an exchange of clearance
    Q PS / (Q + PS) between plasma and interstitium; 2x2 linear system, matrix exponential."""
    cl_x = Q * PS / (Q + PS)
    K = np.array([[-(CL + cl_x) / V1, cl_x / VI], [cl_x / V1, -cl_x / VI - KT]]) - lam * np.eye(2)
    return np.array([scipy.linalg.expm(K * t) @ np.array([100.0, 0.0]) for t in TIMES])


def test_transit_limit_is_the_analytic_exchange_model():
    reduced, rec = mbam.eliminate_transit(organ_model(), "organ.vascular")
    assert rec.kind == "eliminate_transit"
    assert rec.parameter_map == {"V_v": None, "PS": "E_organ"}
    assert rec.new_parameters == {"E_organ": "(PS) / (Q + PS)"}
    assert reduced.parameters["E_organ"] == pytest.approx(PS / (Q + PS), rel=1e-14)
    assert "organ.vascular" not in reduced.graph.compartment_names
    assert len(reduced.parameter_names) == len(organ_model().parameter_names) - 1
    res = pbpk.simulate(reduced, SCHEDULE, TIMES, rtol=1e-10, atol=1e-13)
    ref = _analytic(reduced.parameters["lambda_phys_per_h"])
    np.testing.assert_allclose(np.asarray(res.activity("plasma")), ref[:, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(res.activity("organ")), ref[:, 1], rtol=1e-6, atol=1e-9)
    assert float(np.max(np.abs(np.asarray(res.mass_balance_residual)))) < 1e-9


def test_full_model_approaches_the_limit_in_proportion_to_the_volume():
    """The limit is V -> 0: the full model's error against the analytic limit falls in
    proportion to V (the space's content and its time to steady state both scale with V)."""
    ref = _analytic(organ_model().parameters["lambda_phys_per_h"])
    late = (TIMES >= 0.2) & (TIMES <= 24.0)  # later, both are below the solver's tolerance floor
    errs = []
    for v_vas in (1e-3, 1e-5):
        full = pbpk.simulate(organ_model(v_vas=v_vas), SCHEDULE, TIMES, rtol=1e-12, atol=1e-14)
        body = np.stack([np.asarray(full.activity("plasma")), np.asarray(full.activity("organ"))], 1)
        errs.append(float(np.max(np.abs(body[late] / ref[late] - 1.0))))
    assert errs[1] < 1e-4
    assert 80.0 < errs[0] / errs[1] < 120.0  # first order in V: 100x smaller for 100x less V


def test_psma_tumour_vascular_space_is_a_candidate_and_its_limit_conserves_ligand():
    model = pbpk.psma_model("PSMA-617")
    cands = dict(mbam.transit_candidates(model, 0.01))
    # tumour blood: V/Q = 0.36 mL / 0.36 L/h = 3.6 s; the gut's large vascular bed and the
    # lungs (in series with the whole cardiac output) are not candidates
    assert cands["tumour1.vascular"] == pytest.approx(1e-3, rel=0.05)
    assert "gi.vascular" not in cands and "lungs.vascular" not in cands
    assert mbam.transit_candidates(model, 0.01, exclude_regions=("tumour1",)) == tuple(
        (c, t) for c, t in mbam.transit_candidates(model, 0.01) if c != "tumour1.vascular")
    reduced, rec = mbam.eliminate_transit(model, "tumour1.vascular")
    P = model.parameters
    assert reduced.parameters["E_tumour1"] == pytest.approx(
        P["PS_tumour1"] / (P["Q_tumour1"] + P["PS_tumour1"]), rel=1e-14)
    assert "PS_tumour1" not in reduced.parameters and "V_tumour1_vas" not in reduced.parameters
    times = [1.0, 24.0, 168.0]
    res = pbpk.simulate(reduced, pbpk.Schedule.single(7400.0), times)
    assert float(np.max(np.abs(np.asarray(res.mass_balance_residual)))) < 1e-9
    full = pbpk.simulate(model, pbpk.Schedule.single(7400.0), times)
    # the dropped content is 0.36 mL of tumour blood next to a lesion dominated by bound ligand
    np.testing.assert_allclose(np.asarray(res.activity("tumour1")), np.asarray(full.activity("tumour1")),
                               rtol=0.01)


def test_transit_errors_are_typed():
    model = organ_model()
    with pytest.raises(pbpk.GraphError, match="flow-through space"):
        mbam.eliminate_transit(model, "organ.interstitial")
    with pytest.raises(pbpk.UnknownNameError):
        mbam.eliminate_transit(model, "organ.nope")
    with pytest.raises(pbpk.InvalidInputError, match="max_transit_h"):
        mbam.transit_candidates(model, 0)
    with pytest.raises(pbpk.InvalidInputError, match="max_volume_fraction"):
        mbam.transit_candidates(model, 0.01, max_volume_fraction=-1)
    with pytest.raises(pbpk.InvalidInputError, match="transit_fraction"):
        mbam.reduce_pbpk(model, _design(), transit_fraction=2.0)
    # slowly flushed (V/Q = 0.1 h) or large (a third of plasma): not candidates
    assert mbam.transit_candidates(organ_model(v_vas=0.5), 0.01) == ()
    assert mbam.transit_candidates(organ_model(v_vas=1.0, q=500.0), 0.01) == ()
    assert [c for c, _ in mbam.transit_candidates(model, 0.01)] == ["organ.vascular"]


def _design():
    return mbam.ReductionDesign(agent="none", pet_times_h=(1.0,), spect_times_h=(4.0, 24.0, 96.0),
                                regions=("plasma", "organ"), activity_mbq=100.0, cv=0.1,
                                floor_mbq=0.01)


def test_reduce_pbpk_takes_the_transit_step_and_maps_populations(tmp_path):
    from calibration import LogNormal, Prior

    prior = Prior((LogNormal("Q", Q, 0.3), LogNormal("PS", PS, 0.3), LogNormal("CL", CL, 0.3)))
    red = mbam.reduce_pbpk(organ_model(), _design(), prior, max_iter=1, geodesic=False,
                           population_draws=8, refit="never")
    (step,) = red.accepted
    assert step.limits == ({"name": "V_v", "direction": "0", "how": "transit"},)
    assert step.population_max_rel_err is not None and step.population_max_rel_err <= 0.01
    q = np.array([4.0, 5.0, 7.0])
    ps = np.array([0.5, 1.5, 3.0])
    mapped = red.map_parameters({"Q": q, "PS": ps})
    np.testing.assert_allclose(mapped["E_organ"], ps / (q + ps), rtol=1e-12)
    # the ratio definition survives the JSON round trip
    again = mbam.load_reduced(red.save(tmp_path / "r.json"))
    np.testing.assert_allclose(again.map_parameters({"Q": q, "PS": ps})["E_organ"], ps / (q + ps),
                               rtol=1e-12)
    # the mapped population through the reduced model against the full model (independent runs)
    draws = prior.sample(4, 8)
    full = pbpk.simulate_cohort(red.full_model, SCHEDULE, TIMES, draws, chunk_size=8)
    reduced = pbpk.simulate_cohort(red.model, SCHEDULE, TIMES, red.map_parameters(draws), chunk_size=8)
    rel = np.abs(np.asarray(reduced.tia_mbq_h) / np.asarray(full.tia_mbq_h) - 1.0)
    assert rel.max() < 0.01
    # switched off, or its PS held fixed: no transit step
    off = mbam.reduce_pbpk(organ_model(), _design(), prior, max_iter=1, geodesic=False,
                           population_draws=8, refit="never", transit=False)
    assert all(lim["how"] != "transit" for s in off.history for lim in s.limits)
    held = mbam.reduce_pbpk(organ_model(), _design(), prior, max_iter=1, geodesic=False,
                            population_draws=8, refit="never", fixed=("PS",))
    assert all(lim["how"] != "transit" for s in held.history for lim in s.limits)


def circulation_model():
    """Arterial and venous plasma (one region) joined by the lungs (Q_c) and the rest of the
    body (Q_r); an organ's vascular space between them (Q) exchanges with its interstitium
    (PS); renal clearance CL from venous plasma, interstitial loss kt. Dosed venous."""
    graph = ModelGraph(
        "circulation",
        (
            Compartment("arterial.plasma", "plasma", "plasma", "V_a"),
            Compartment("venous.plasma", "plasma", "plasma", "V_ven"),
            Compartment("organ.vascular", "organ", "vascular", "V_v"),
            Compartment("organ.interstitial", "organ", "interstitial", "V_i"),
            Compartment("urine.bladder", "urine", "excreta", None, in_body=False),
        ),
        (
            flow("venous.plasma", "arterial.plasma", "Q_c"),
            flow("arterial.plasma", "venous.plasma", "Q_r"),
            flow("arterial.plasma", "organ.vascular", "Q"),
            flow("organ.vascular", "venous.plasma", "Q"),
            exchange("organ.vascular", "organ.interstitial", "PS"),
            flow("venous.plasma", "urine.bladder", "CL"),
            transfer("organ.interstitial", "urine.bladder", "kt"),
        ),
        dose_compartment="venous.plasma",
    )
    return PBPKModel(graph, "Lu-177", {"V_a": 1.0, "V_ven": 2.0, "V_v": 0.002, "V_i": VI,
                                       "Q_c": 100.0, "Q_r": 95.0, "Q": Q, "PS": PS, "CL": CL,
                                       "kt": KT})


def test_dropping_the_bypass_leaves_one_clearance_and_the_analytic_system():
    model = circulation_model()
    reduced, rec = mbam.eliminate_transit(model, "organ.vascular", bypass=False)
    assert rec.parameter_map == {"V_v": None, "PS": "CL_organ", "Q": "CL_organ"}
    assert rec.new_parameters == {"CL_organ": "(Q*PS) / (Q + PS)"}
    assert len(reduced.parameter_names) == len(model.parameter_names) - 2
    cl_x = Q * PS / (Q + PS)
    assert reduced.parameters["CL_organ"] == pytest.approx(cl_x, rel=1e-14)
    # independent reference: arterial, venous and interstitial amounts, hand-written 3x3 system
    va, vv, qc, qr = 1.0, 2.0, 100.0, 95.0
    K = np.array([
        [-(qr + cl_x) / va, qc / vv, 0.0],
        [qr / va, -(qc + CL) / vv, cl_x / VI],
        [cl_x / va, 0.0, -cl_x / VI - KT],
    ]) - reduced.parameters["lambda_phys_per_h"] * np.eye(3)
    ref = np.array([scipy.linalg.expm(K * t) @ np.array([0.0, 100.0, 0.0]) for t in TIMES])
    res = pbpk.simulate(reduced, SCHEDULE, TIMES, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(res.activity("plasma")), ref[:, 0] + ref[:, 1], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(res.activity("organ")), ref[:, 2], rtol=1e-6, atol=1e-9)
    assert float(np.max(np.abs(np.asarray(res.mass_balance_residual)))) < 1e-9
    # the ratio definition evaluates like the hand formula on arrays (population mapping)
    from mbam._pbpk_reduce import _evaluate, _parse_definition

    q, ps = np.array([2.0, 5.0]), np.array([1.0, 4.0])
    np.testing.assert_allclose(_evaluate(_parse_definition(rec.new_parameters["CL_organ"]), {"Q": q, "PS": ps}),
                               q * ps / (q + ps), rtol=1e-14)
    # a space fed from and drained to the same compartment has no bypass to drop
    with pytest.raises(pbpk.GraphError, match="bypass"):
        mbam.eliminate_transit(organ_model(), "organ.vascular", bypass=False)


def test_a_taken_default_name_is_numbered_and_a_taken_given_name_refused():
    model = organ_model()
    P = dict(model.parameters)
    P.pop("lambda_phys_per_h", None)
    taken = PBPKModel(model.graph, "Lu-177", {**P, "E_organ": 0.5})
    reduced, rec = mbam.eliminate_transit(taken, "organ.vascular")
    assert list(rec.new_parameters) == ["E_organ_2"]
    assert reduced.parameters["E_organ_2"] == pytest.approx(PS / (Q + PS), rel=1e-14)
    with pytest.raises(pbpk.GraphError, match="already used"):
        mbam.eliminate_transit(taken, "organ.vascular", extraction="E_organ")
