"""Lumping of tissues perfused in parallel (mbam.lump_parallel, mbam.parallel_groups) and the
lumping step of mbam.reduce_pbpk."""

import numpy as np
import pytest
import scipy.linalg

import mbam
import pbpk
from pbpk import Compartment, ModelGraph, PBPKModel, exchange, flow, transfer

TIMES = np.array([0.05, 0.2, 0.5, 1.0, 4.0, 24.0, 96.0])
SCHEDULE = pbpk.Schedule.single(100.0)


def parallel_model(volumes=(0.5, 1.0, 2.0), flows=(2.5, 5.0, 10.0), observed_organ=False):
    """Plasma (dosed, cleared to urine at CL) perfusing tissues t1..tn in parallel: a flow
    plasma -> t_i and t_i -> plasma at Q_i each. Optionally an observed organ (vascular <->
    interstitial exchange, interstitial loss to urine), which is not lumpable."""
    comps = [Compartment("plasma.plasma", "plasma", "plasma", "V_p")]
    procs = [flow("plasma.plasma", "urine.bladder", "CL")]
    params = {"V_p": 3.0, "CL": 1.5}
    for i, (v, q) in enumerate(zip(volumes, flows), start=1):
        comps.append(Compartment(f"t{i}.interstitial", f"t{i}", "interstitial", f"V_t{i}"))
        procs += [flow("plasma.plasma", f"t{i}.interstitial", f"Q_t{i}"),
                  flow(f"t{i}.interstitial", "plasma.plasma", f"Q_t{i}")]
        params.update({f"V_t{i}": v, f"Q_t{i}": q})
    if observed_organ:
        comps += [Compartment("organ.vascular", "organ", "vascular", "V_ov"),
                  Compartment("organ.interstitial", "organ", "interstitial", "V_oi")]
        procs += [flow("plasma.plasma", "organ.vascular", "Q_o"),
                  flow("organ.vascular", "plasma.plasma", "Q_o"),
                  exchange("organ.vascular", "organ.interstitial", "PS_o"),
                  transfer("organ.interstitial", "urine.bladder", "kt")]
        params.update({"V_ov": 0.05, "V_oi": 0.2, "Q_o": 1.0, "PS_o": 0.3, "kt": 0.02})
    comps.append(Compartment("urine.bladder", "urine", "excreta", None, in_body=False))
    graph = ModelGraph("parallel_tissues", tuple(comps), tuple(procs), dose_compartment="plasma.plasma")
    return PBPKModel(graph, "Lu-177", params)


def _two_compartment_plasma(v_p, cl, q, v_t, lam, times, dose):
    """Analytic plasma activity of plasma <-> one tissue (flows q), plasma cleared at cl, all
    decaying at lam: the matrix exponential of the 2x2 linear system."""
    a = np.array([[-(q + cl) / v_p, q / v_t], [q / v_p, -q / v_t]])
    return np.array([(scipy.linalg.expm(a * t) @ [dose, 0.0])[0] * np.exp(-lam * t) for t in times])


def test_equal_time_constants_lump_exactly_to_the_analytic_two_compartment_model():
    # V_i / Q_i = 0.2 h for every tissue: the lumped model is exact
    model = parallel_model()
    assert mbam.parallel_groups(model) == (("t1.interstitial", "t2.interstitial", "t3.interstitial"),)
    lumped, rec = mbam.lump_parallel(model, mbam.parallel_groups(model)[0], name="other")
    assert rec.kind == "lump_parallel"
    assert rec.new_parameters == {"Q_other": "Q_t1 + Q_t2 + Q_t3", "V_other": "V_t1 + V_t2 + V_t3"}
    assert lumped.parameters["Q_other"] == pytest.approx(17.5)
    assert lumped.parameters["V_other"] == pytest.approx(3.5)
    assert rec.parameter_map == {"Q_t1": "Q_other", "Q_t2": "Q_other", "Q_t3": "Q_other",
                                 "V_t1": "V_other", "V_t2": "V_other", "V_t3": "V_other"}
    assert len(lumped.parameter_names) == len(model.parameter_names) - 4
    assert "other" in lumped.graph.regions and "t1" not in lumped.graph.regions

    lam = float(model.parameters["lambda_phys_per_h"])
    ref = _two_compartment_plasma(3.0, 1.5, 17.5, 3.5, lam, TIMES, 100.0)
    full = pbpk.simulate(model, SCHEDULE, TIMES, rtol=1e-10, atol=1e-12)
    red = pbpk.simulate(lumped, SCHEDULE, TIMES, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(full.activity("plasma")), ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(red.activity("plasma")), ref, rtol=1e-6, atol=1e-9)
    tissues = sum(np.asarray(full.activity(f"t{i}")) for i in (1, 2, 3))
    np.testing.assert_allclose(np.asarray(red.activity("other")), tissues, rtol=1e-6, atol=1e-9)
    assert float(np.max(np.abs(np.asarray(red.mass_balance_residual)))) < 1e-9


def test_unequal_time_constants_conserve_ligand_and_note_the_range():
    model = parallel_model(volumes=(0.5, 1.0, 2.0), flows=(50.0, 5.0, 1.0))
    lumped, rec = mbam.lump_parallel(model, ["t1.interstitial", "t3.interstitial"])
    assert "0.01 to 2 h" in rec.notes[0]
    assert "t2" in lumped.graph.regions and "lumped" in lumped.graph.regions
    res = pbpk.simulate(lumped, SCHEDULE, TIMES)
    assert float(np.max(np.abs(np.asarray(res.mass_balance_residual)))) < 1e-9


def test_psma_receptor_negative_tissues_become_lumpable_once_their_exchanges_merge():
    full = pbpk.psma_model("PSMA-617")
    assert mbam.parallel_groups(full) == ()  # vascular and interstitial spaces still apart
    tissues = ("muscle", "skin", "adipose", "bone", "heart", "rest", "red_marrow")
    merged, _ = mbam.apply_limit_to_model(full, {f"PS_{t}": "inf" for t in tissues})
    (group,) = mbam.parallel_groups(merged)
    # brain has a vascular space only (no exchange), so it is lumpable from the start
    assert {merged.graph.compartment(c).region for c in group} == {*tissues, "brain"}
    lumped, rec = mbam.lump_parallel(merged, group)
    assert len(mbam.patient_parameters(lumped)) == len(mbam.patient_parameters(merged)) - 14
    sched = pbpk.Schedule.single(7400.0)
    times = [1.0, 24.0, 168.0]
    a = pbpk.simulate(merged, sched, times)
    b = pbpk.simulate(lumped, sched, times)
    assert float(np.max(np.abs(np.asarray(b.mass_balance_residual)))) < 1e-9
    # receptor organs hardly see how the fast receptor-negative tissues are split
    for r in ("kidney", "salivary", "tumour1"):
        assert float(b.tia(r) / a.tia(r)) == pytest.approx(1.0, abs=0.005)
    lumped_sum = sum(float(a.tia(t)) for t in (*tissues, "brain"))
    assert float(b.tia("lumped")) == pytest.approx(lumped_sum, rel=0.02)


def test_lumping_errors_are_typed():
    model = parallel_model(observed_organ=True)
    assert mbam.parallel_groups(model, exclude_regions=("t3",)) == (
        ("t1.interstitial", "t2.interstitial"),)
    with pytest.raises(pbpk.InvalidInputError, match="list of compartment names"):
        mbam.lump_parallel(model, "t1.interstitial")
    with pytest.raises(pbpk.InvalidInputError, match="at least two"):
        mbam.lump_parallel(model, ["t1.interstitial"])
    with pytest.raises(pbpk.GraphError, match="cannot be lumped"):
        mbam.lump_parallel(model, ["t1.interstitial", "organ.vascular"])
    with pytest.raises(pbpk.GraphError, match="already used"):
        mbam.lump_parallel(model, ["t1.interstitial", "t2.interstitial"], name="organ")
    with pytest.raises(pbpk.UnknownNameError):
        mbam.lump_parallel(model, ["t1.interstitial", "t9.interstitial"])


def test_reduce_pbpk_lumps_unobserved_parallel_tissues_first():
    from calibration import LogNormal, Prior

    model = parallel_model(volumes=(0.5, 1.0, 2.0), flows=(5.0, 5.0, 5.0), observed_organ=True)
    design = mbam.ReductionDesign(agent="none", pet_times_h=(1.0,), spect_times_h=(4.0, 24.0, 96.0),
                                  regions=("plasma", "organ"), activity_mbq=100.0, cv=0.1,
                                  floor_mbq=0.01)
    prior = Prior((LogNormal("CL", 1.5, 0.3), LogNormal("Q_o", 1.0, 0.3)))
    red = mbam.reduce_pbpk(model, design, prior, max_iter=1, geodesic=False,
                           population_draws=8, population_tol=0.01)
    (step,) = red.history
    assert step.accepted and step.description.startswith("lump")
    assert [r.kind for r in step.rewrites] == ["lump_parallel"]
    assert len(red.model.parameter_names) == len(model.parameter_names) - 4
    assert step.population_max_rel_err <= 0.01
    # the map sends a population to the lumped parameters: Q = sum of the members' flows
    mapped = red.map_parameters({"Q_t1": 1.0, "Q_t2": 2.0, "Q_t3": 4.0})
    assert mapped["Q_lumped"] == pytest.approx(7.0 * step.scale.get("Q_lumped", 1.0))
    # without lumping, the same call takes no lumping step
    plain = mbam.reduce_pbpk(model, design, prior, max_iter=1, geodesic=False, lump=False,
                             population_draws=8, population_tol=0.01)
    assert all(not s.description.startswith("lump") for s in plain.history)


def test_a_two_part_lumping_step_never_reuses_a_name_of_the_starting_model():
    """Regression: a step that lumps an earlier lump again (part 1) and other tissues (part 2)
    used to name part 2 'lumped' again (freed by part 1), so the reduction started its Q_lumped
    at the starting model's Q_lumped value (unrefitted chi-square 16.6 instead of 0.016 on the
    PSMA model). Each part must get a fresh name, and with equal time constants the two-part
    lump stays exact (each tissue V/Q = 0.2 h)."""
    from mbam._pbpk_reduce import _lump_parts

    model = parallel_model(volumes=(0.5, 1.0, 2.0, 0.4, 0.6), flows=(2.5, 5.0, 10.0, 2.0, 3.0))
    first, _ = mbam.lump_parallel(model, ["t1.interstitial", "t2.interstitial"], name="lumped")
    start_names = set(first.graph.regions) | set(first.parameters)
    parts = (("lumped.tissue", "t3.interstitial"), ("t4.interstitial", "t5.interstitial"))
    lumped, recs = _lump_parts(first, parts)
    new = [n for rec in recs for n in rec.new_parameters]
    assert len(new) == 4 and not set(new) & start_names
    assert lumped.parameters[new[0]] == pytest.approx(2.5 + 5.0 + 10.0)   # Q of part 1
    assert lumped.parameters[new[2]] == pytest.approx(2.0 + 3.0)          # Q of part 2
    full = pbpk.simulate(model, SCHEDULE, TIMES, rtol=1e-10, atol=1e-12)
    red = pbpk.simulate(lumped, SCHEDULE, TIMES, rtol=1e-10, atol=1e-12)
    # exact up to the solver tolerance (1e-7 MBq at 96 h, where 1.8e-7 MBq are left of 100)
    np.testing.assert_allclose(np.asarray(red.activity("plasma")), np.asarray(full.activity("plasma")),
                               rtol=1e-6, atol=1e-9)
