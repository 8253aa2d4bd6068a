"""Automatic MBAM reduction of PBPK models (mbam.reduce_pbpk), its design, map and JSON."""

import json

import numpy as np
import pytest
import scipy.linalg
from organ_graph import organ_graph

import mbam
import pbpk
from pbpk import PBPKModel

TIMES = np.array([0.5, 1.0, 4.0, 24.0, 96.0])
SCHEDULE = pbpk.Schedule.single(100.0)


def organ_model(ps=1e4):
    """Plasma (dosed, renal clearance CL) perfusing one organ (vascular <-> interstitial by
    exchange PS, the interstitium loses ligand to urine at kt). PS is far above every other
    rate, so the exchange is at equilibrium."""
    graph = organ_graph("organ_model")
    return PBPKModel(graph, "Lu-177", {"V_p": 3.0, "V_v": 0.1, "V_i": 0.4, "Q": 2.0, "PS": ps,
                                       "CL": 1.5, "kt": 0.05})


def organ_design():
    # the agent is only checked against models that name their ligand
    return mbam.ReductionDesign(agent="none", pet_times_h=(1.0,), spect_times_h=(4.0, 24.0, 96.0),
                                regions=("plasma", "organ"), activity_mbq=100.0, cv=0.1,
                                floor_mbq=0.01)


def organ_prior():
    from calibration import LogNormal, Prior

    return Prior((LogNormal("Q", 2.0, 0.3), LogNormal("CL", 1.5, 0.3), LogNormal("V_i", 0.4, 0.3)))


@pytest.fixture(scope="module")
def organ_reduction():
    return mbam.reduce_pbpk(organ_model(), organ_design(), organ_prior(), max_iter=2,
                            geodesic=False, population_draws=8, population_tol=0.01)


# ------------------------------------------------------------------ design
def test_design_defaults_and_json_round_trip():
    d = mbam.ReductionDesign.psma_pet_spect(late_pet_h=3.0)
    assert d.times_h == (1.0, 3.0, 4.0, 24.0, 96.0, 168.0)
    again = mbam.ReductionDesign.from_json(d.to_json())
    assert again == d


@pytest.mark.parametrize("kw, match", [
    ({"spect_times_h": (4.0, -1.0)}, "spect_times_h"),
    ({"regions": "kidney"}, "list of region names"),
    ({"regions": ("kidney", "kidney")}, "duplicates"),
    ({"cv": 0.0}, "cv"),
    ({"activity_mbq": float("nan")}, "activity_mbq"),
])
def test_design_errors_are_typed(kw, match):
    with pytest.raises(mbam.DesignError, match=match):
        mbam.ReductionDesign(**kw)
    assert issubclass(mbam.DesignError, pbpk.InvalidInputError)


def test_design_must_fit_the_model():
    model = pbpk.psma_model("PSMA-617")
    with pytest.raises(mbam.DesignError, match="ligand"):
        mbam.ReductionDesign(agent="PSMA-11").check_model(model)
    with pytest.raises(mbam.DesignError, match="not body regions"):
        mbam.ReductionDesign(regions=("kidney", "urine")).check_model(model)
    with pytest.raises(mbam.DesignError, match="unknown design field"):
        mbam.ReductionDesign.from_dict({"agent": "PSMA-617", "times": [1]})
    with pytest.raises(mbam.DesignError, match="JSON"):
        mbam.ReductionDesign.from_json("{not json")


def test_reduce_pbpk_rejects_bad_arguments():
    model = organ_model()
    with pytest.raises(pbpk.InvalidInputError, match="PBPKModel"):
        mbam.reduce_pbpk("model", organ_design())
    with pytest.raises(pbpk.InvalidInputError, match="chi2_tol"):
        mbam.reduce_pbpk(model, organ_design(), chi2_tol=0)
    with pytest.raises(pbpk.InvalidInputError, match="unknown parameter"):
        mbam.reduce_pbpk(model, organ_design(), fixed=("nope",))
    with pytest.raises(pbpk.InvalidInputError, match="refit"):
        mbam.reduce_pbpk(model, organ_design(), refit="sometimes")


# ------------------------------------------------------------------ the loop on a small model
def test_fast_exchange_is_found_and_merged(organ_reduction):
    red = organ_reduction
    steps = red.accepted
    assert steps, red.summary()
    first = steps[0]
    assert {"name": "PS", "direction": "inf", "how": "axis"} in first.limits
    assert first.rewrites[0].kind == "merge_exchange"
    assert first.chi2 <= 1.0 and first.n_params < 7
    assert not any(p.kind == "exchange" for p in red.model.graph.processes)
    assert "PS" not in red.model.parameters
    assert red.parameter_map()["PS"] is None
    counts = red.counts()
    assert counts["states_after"] < counts["states_before"]
    assert first.population_max_rel_err is not None and first.population_max_rel_err <= 0.01


def test_population_tia_of_the_reduced_model_within_tolerance(organ_reduction):
    """Prior draws through the parameter map: reduced-model TIA against the full model's
    (an independent run of both models, not the loop's own check)."""
    red = organ_reduction
    draws = organ_prior().sample(3, 16)
    full = pbpk.simulate_cohort(red.full_model, SCHEDULE, TIMES, draws, chunk_size=16)
    reduced = pbpk.simulate_cohort(red.model, SCHEDULE, TIMES, red.map_parameters(draws), chunk_size=16)
    rel = np.abs(np.asarray(reduced.tia_mbq_h) / np.asarray(full.tia_mbq_h) - 1.0)
    assert rel.max() < 0.01
    assert np.max(np.abs(np.asarray(reduced.mass_balance_residual))) < 1e-9


def test_reduced_model_matches_the_analytic_lumped_system(organ_reduction):
    """Independent reference: the two-pool linear system (plasma; organ of volume V_v + V_i)
    solved with the matrix exponential."""
    red = organ_reduction
    if len(red.accepted) != 1:  # pragma: no cover - the reference below is for the merge only
        pytest.skip(red.summary())
    vp, vo, q, cl, kt = 3.0, 0.5, 2.0, 1.5, 0.05
    fi = 0.4 / vo  # interstitial share of the merged organ amount
    lam = red.model.parameters["lambda_phys_per_h"]
    K = np.array([[-(q + cl) / vp, q / vo], [q / vp, -q / vo - kt * fi]]) - lam * np.eye(2)
    ref = np.array([scipy.linalg.expm(K * t) @ np.array([100.0, 0.0]) for t in TIMES])
    res = pbpk.simulate(red.model, SCHEDULE, TIMES, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(res.activity("plasma")), ref[:, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(res.activity("organ")), ref[:, 1], rtol=1e-6, atol=1e-9)
    # mass conservation (invariant) of the reduced graph
    assert float(np.max(np.abs(np.asarray(res.mass_balance_residual)))) < 1e-9


def test_parameter_map_sends_populations_to_the_reduced_model(organ_reduction):
    red = organ_reduction
    vv = np.array([0.1, 0.2, 0.05])
    vi = np.array([0.4, 0.3, 0.6])
    mapped = red.map_parameters({"V_v": vv, "V_i": vi})
    (merged,) = [n for n in red.model.parameter_names if n.startswith("V_organ")]
    np.testing.assert_allclose(mapped[merged], vv + vi, rtol=1e-12)  # V = V_v + V_i
    np.testing.assert_allclose(mapped["V_p"], 3.0)
    assert {np.shape(v) for v in mapped.values()} == {(3,)}  # ready for simulate_cohort
    with pytest.raises(pbpk.UnknownNameError, match="unknown"):
        red.map_parameters({"V_x": 1.0})
    cohort = pbpk.simulate_cohort(red.model, SCHEDULE, TIMES, mapped, chunk_size=3)
    assert np.all(np.asarray(cohort.status) == 0)
    assert np.max(np.abs(np.asarray(cohort.mass_balance_residual))) < 1e-9


def test_reduction_json_round_trip(organ_reduction, tmp_path):
    red = organ_reduction
    path = red.save(tmp_path / "reduced.json")
    data = json.loads(path.read_text())
    assert data["format"] == "mbam-pbpk-reduction/1"
    again = mbam.load_reduced(path)
    assert again.model.graph == red.model.graph
    assert again.model.parameters == red.model.parameters
    assert [s.description for s in again.history] == [s.description for s in red.history]
    vals = {"V_v": np.array([0.2]), "Q": np.array([3.0])}
    a, b = red.map_parameters(vals), again.map_parameters(vals)
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k]) for k in a)
    r1 = pbpk.simulate(again.model, SCHEDULE, TIMES)
    r2 = pbpk.simulate(red.model, SCHEDULE, TIMES)
    np.testing.assert_array_equal(np.asarray(r1.activity_mbq), np.asarray(r2.activity_mbq))
    assert mbam.load_reduced(red.to_json()).model.graph == red.model.graph


@pytest.mark.parametrize("text, match", [
    ("{\"format\": \"other\"}", "not an MBAM reduction"),
    ("{broken", "not valid JSON"),
    ("{\"format\": \"mbam-pbpk-reduction/1\"}", "incomplete"),
])
def test_load_reduced_errors(text, match, tmp_path):
    with pytest.raises(pbpk.InvalidInputError, match=match):
        mbam.load_reduced(text)
    with pytest.raises(pbpk.InvalidInputError, match="no reduction file"):
        mbam.load_reduced(tmp_path / "missing.json")


def test_max_iter_zero_returns_the_full_model():
    model = organ_model()
    with pytest.raises(pbpk.InvalidInputError, match="prior"):
        mbam.reduce_pbpk(model, organ_design(), prior=object())
    red = mbam.reduce_pbpk(model, organ_design(), max_iter=0, parameters=("Q", "PS"))
    assert red.model is model and red.history == () and red.stop_reason == "max_iter"
    assert red.map_parameters({"Q": 2.5})["Q"] == pytest.approx(2.5)


# ------------------------------------------------------------------ receptor removal and pruning
def test_receptor_to_zero_and_pruning_conserve_mass_and_match_the_unpruned_graph():
    psma = pbpk.psma_model()
    removed, _ = mbam.remove_process(psma, "binding", "gi.interstitial", "gi.bound")
    pruned, rec = mbam.prune_unreachable(removed)
    assert rec.kind == "prune_unreachable"
    assert set(rec.parameter_map) == {"krel_gi"}  # R_gi went with the binding
    assert "gi.bound" not in pruned.graph.compartment_names
    assert pruned.compiled.n_states == removed.compiled.n_states - 4  # 2 pools x hot/cold
    kw = {"rtol": 1e-9, "atol": 1e-12}
    times = [1.0, 24.0, 168.0]
    a = pbpk.simulate(removed, pbpk.Schedule.single(7400.0), times, **kw)
    b = pbpk.simulate(pruned, pbpk.Schedule.single(7400.0), times, **kw)
    assert a.body_regions == b.body_regions
    np.testing.assert_allclose(np.asarray(b.tia_mbq_h), np.asarray(a.tia_mbq_h), rtol=1e-7)
    assert float(np.max(np.abs(np.asarray(b.mass_balance_residual)))) < 1e-9



def test_pruning_drops_unreached_regions_outside_keep():
    psma = pbpk.psma_model()
    # no flow into the brain: its only compartment stays empty for every schedule
    cut, _ = mbam.apply_limit_to_model(psma, {"Q_brain": 0})
    kept, rec = mbam.prune_unreachable(cut)
    assert rec is None and "brain" in kept.graph.regions  # reported (as zero) by default
    dropped, rec = mbam.prune_unreachable(cut, keep=("kidney", "plasma"))
    assert "brain" not in dropped.graph.regions
    assert set(rec.parameter_map) == {"V_brain_vas"}
    times = [1.0, 24.0, 168.0]
    a = pbpk.simulate(cut, pbpk.Schedule.single(7400.0), times, rtol=1e-9, atol=1e-12)
    b = pbpk.simulate(dropped, pbpk.Schedule.single(7400.0), times, rtol=1e-9, atol=1e-12)
    assert float(np.max(np.abs(np.asarray(a.activity("brain"))))) == 0.0
    np.testing.assert_allclose(np.asarray(b.activity("kidney")), np.asarray(a.activity("kidney")),
                               rtol=1e-7)

def test_patient_and_reducible_parameters():
    psma = pbpk.psma_model()
    pat = mbam.patient_parameters(psma)
    assert "kon" not in pat and "lambda_phys_per_h" not in pat and "R_kidney" in pat
    red = mbam.reducible_parameters(psma, fixed=("Q_kidney",))
    assert "V_art" not in red and "f_exc" not in red and "Q_kidney" not in red
    assert "PS_lungs" in red and "gfr_eff" in red


# ------------------------------------------------------------------ the PSMA model (slow)
@pytest.mark.slow
def test_psma_reduction_step_runs_everywhere_a_full_model_runs():
    from calibration import Observations, Prior, calibrate

    full = pbpk.psma_model("PSMA-617")
    red = mbam.reduce_pbpk(full, max_iter=1, prior=Prior.default(full), population_draws=8)
    assert red.accepted, red.summary()
    model = red.model
    assert len(model.parameter_names) < len(full.parameter_names)
    res = pbpk.simulate(model, pbpk.Schedule.single(7400.0), [1.0, 24.0, 168.0])
    assert float(np.max(np.abs(np.asarray(res.mass_balance_residual)))) < 1e-9
    two = pbpk.simulate(model, pbpk.Schedule.cycles(7400.0, n_cycles=2, interval_h=1000.0),
                        [1.0, 24.0, 168.0, 1100.0])
    assert float(np.max(np.abs(np.asarray(two.mass_balance_residual)))) < 1e-9
    ref = pbpk.simulate(full, pbpk.Schedule.single(7400.0), [24.0, 168.0])
    obs = Observations.from_records(
        [{"region": r, "time_h": 24.0, "value": float(ref.activity(r)[0]), "unit": "MBq"}
         for r in ("kidney", "salivary", "tumour1")], agent="PSMA-617")
    prior = Prior.default(model, parameters=[n for n in ("R_kidney", "R_salivary", "R_tumour1")
                                             if n in model.parameters])
    post = calibrate(model, pbpk.Schedule.single(7400.0), obs, prior, method="map")
    assert np.all(np.isfinite(list(post.map.values())))


def _full_tia_analytic(q, cl, vi, lam, t_end, ps):
    """TIA (MBq h) of plasma and organ in the full organ model after 100 MBq into plasma: the
    linear system's integral to ``t_end`` plus the physical-decay tail A(t_end) / lambda (the
    TIA convention of pbpk.simulate), by the matrix exponential."""
    vp, vv, kt = 3.0, 0.1, 0.05
    K = np.array([[-(q + cl) / vp, q / vv, 0.0],
                  [q / vp, -(q + ps) / vv, ps / vi],
                  [0.0, ps / vv, -ps / vi - kt]]) - lam * np.eye(3)
    a0 = np.array([100.0, 0.0, 0.0])
    e = scipy.linalg.expm(K * t_end)
    tia = np.linalg.solve(K, (e - np.eye(3)) @ a0) + e @ a0 / lam
    return np.array([tia[0], tia[1] + tia[2]])


@pytest.fixture(scope="module")
def slow_exchange_reduction():
    """PS = 10 L/h: the merge PS -> inf passes but costs 0.1-0.3 % of the organ's TIA."""
    return mbam.reduce_pbpk(organ_model(ps=10.0), organ_design(), organ_prior(), max_iter=1,
                            geodesic=False, population_draws=8, population_tol=0.01)


def test_check_population_against_analytic_full_model_tias(slow_exchange_reduction):
    red = slow_exchange_reduction
    assert [d["name"] for s in red.accepted for d in s.limits] == ["PS"]
    chk = red.check_population(organ_prior(), n_draws=12, key=5)
    assert chk.n_draws == 12 and chk.failed_solves == 0
    assert list(chk.by_region.index) == ["plasma", "organ"]
    # the same draws, each solved on its own: full model by the matrix exponential, reduced by
    # pbpk.simulate (not simulate_cohort)
    draws = organ_prior().sample(5, 12)
    mapped = red.map_parameters(draws)
    lam = red.model.parameters["lambda_phys_per_h"]
    t_end = max(red.design.times_h)
    rel = []
    for i in range(12):
        ref = _full_tia_analytic(draws["Q"][i], draws["CL"][i], draws["V_i"][i], lam, t_end, 10.0)
        r = pbpk.simulate(red.model, SCHEDULE, list(red.design.times_h),
                          {k: float(v[i]) for k, v in mapped.items()}, rtol=1e-10, atol=1e-12)
        rel.append(np.abs(np.array([float(r.tia("plasma")), float(r.tia("organ"))]) / ref - 1.0))
    rel = np.array(rel)
    np.testing.assert_allclose(chk.by_region["max"].to_numpy(), rel.max(0), rtol=0.02, atol=2e-6)
    np.testing.assert_allclose(chk.by_region["median"].to_numpy(), np.median(rel, 0), rtol=0.02, atol=2e-6)
    assert chk.max_rel_err == pytest.approx(rel.max(), rel=0.02, abs=2e-6)
    assert chk.worst_region == ["plasma", "organ"][int(np.argmax(rel.max(0)))]
    assert 1e-3 < chk.max_rel_err < 0.01   # the merge's cost is resolved, not rounding noise
    assert chk.passes(0.01) and not chk.passes(chk.max_rel_err / 2)
    assert "12 prior draws" in str(chk) and chk.to_dict()["by_region"]["organ"]["max"] >= 0


def test_check_population_errors_are_typed(organ_reduction):
    with pytest.raises(pbpk.InvalidInputError, match="n_draws"):
        organ_reduction.check_population(organ_prior(), n_draws=0)
    with pytest.raises(pbpk.InvalidInputError, match="prior"):
        organ_reduction.check_population(object())
    from calibration import LogNormal, Prior

    with pytest.raises(pbpk.InvalidInputError, match="not in"):
        organ_reduction.check_population(Prior((LogNormal("Q_x", 1.0, 0.3),)))
    with pytest.raises(pbpk.InvalidInputError, match="activity_mbq"):
        organ_reduction.check_population(organ_prior(), activity_mbq=-1.0)
