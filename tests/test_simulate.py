"""simulate(): analytic solutions, conservation, TIA, schedules, batching, derivatives."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pbpk
from pbpk import Compartment, ModelGraph, exchange, transfer

LU = pbpk.get_nuclide("Lu-177")
LAM = math.log(2) / (6.647 * 24)  # 177Lu, ICRP-107 half-life 6.647 d


def one_compartment(k_per_h=0.1):
    g = ModelGraph(
        "one",
        (Compartment("plasma.c", "plasma", "plasma", "V_p"),
         Compartment("urine.c", "urine", "excreta", None, in_body=False)),
        (transfer("plasma.c", "urine.c", "k_el"),),
        "plasma.c",
    )
    return pbpk.PBPKModel(g, "Lu-177", {"V_p": 3.0, "k_el": k_per_h})


def two_compartment(k12=0.8, k21=0.3, k10=0.2):
    """Central (V1) <-> peripheral (V2) exchange with PS, elimination from central."""
    v1, v2 = 3.0, 10.0
    g = ModelGraph(
        "two",
        (Compartment("central.c", "central", "plasma", "V1"),
         Compartment("periph.c", "periph", "interstitial", "V2"),
         Compartment("urine.c", "urine", "excreta", None, in_body=False)),
        (exchange("central.c", "periph.c", "PS"), transfer("central.c", "urine.c", "k10")),
        "central.c",
    )
    # exchange PS*(C1 - C2): k12 = PS/V1, k21 = PS/V2
    ps = k12 * v1
    k21 = ps / v2
    return pbpk.PBPKModel(g, "Lu-177", {"V1": v1, "V2": v2, "PS": ps, "k10": k10}), (k12, k21, k10)


@pytest.mark.parametrize("solver, tol", [("rodas", 1e-7), ("diffrax", 1e-6)])
def test_one_compartment_analytic(solver, tol):
    model = one_compartment(0.1)
    t = np.array([0.5, 1, 5, 24, 100])
    res = pbpk.simulate(model, pbpk.Schedule.single(1000.0), t, solver=solver, rtol=1e-9, atol=1e-12)
    expected = 1000.0 * np.exp(-(0.1 + LAM) * t)  # analytic mono-exponential
    np.testing.assert_allclose(res.activity("plasma"), expected, rtol=tol)
    # TIA = integral of A0 exp(-(k + lam) t) to T = 100 h plus the decay-only tail A(T)/lam
    kk = 0.1 + LAM
    tia = 1000.0 / kk * (1 - math.exp(-kk * 100)) + 1000.0 * math.exp(-kk * 100) / LAM
    np.testing.assert_allclose(res.tia("plasma"), tia, rtol=tol)
    # cumulative urine fraction of ligand: 1 - exp(-k t) (decay-independent)
    np.testing.assert_allclose(res.urine_fraction, 1 - np.exp(-0.1 * t), rtol=tol)


def test_two_compartment_analytic_biexponential():
    model, (k12, k21, k10) = two_compartment()
    t = np.array([0.1, 1.0, 3.0, 10.0, 48.0, 1000.0])
    res = pbpk.simulate(model, pbpk.Schedule.single(500.0), t, rtol=1e-9, atol=1e-12)
    # closed form: eigenvalues of [[-(k12+k10), k21], [k12, -k21]]
    s = k12 + k21 + k10
    disc = math.sqrt(s * s - 4 * k21 * k10)
    a, b = (s + disc) / 2, (s - disc) / 2
    c1 = ((k21 - a) * np.exp(-a * t) - (k21 - b) * np.exp(-b * t)) / (b - a)
    expected_central = 500.0 * c1 * np.exp(-LAM * t)
    np.testing.assert_allclose(res.activity("central"), expected_central, rtol=1e-7, atol=500e-9)
    # TIA(central) = A0 (k21 + lam) / ((a + lam)(b + lam)) (Laplace transform at s = lam);
    # by 1000 h the remaining activity (< 1e-20 of A0) leaves the decay tail negligible
    tia = 500.0 * (k21 + LAM) / ((a + LAM) * (b + LAM))
    np.testing.assert_allclose(res.tia("central"), tia, rtol=1e-7)


def test_tia_tail_is_physical_decay_when_stopped_early():
    """Stopping at 1 h: TIA = integral to 1 h + A(1 h)/lambda (exact for the definition)."""
    model = one_compartment(0.1)
    res = pbpk.simulate(model, pbpk.Schedule.single(1000.0), [1.0], rtol=1e-9, atol=1e-12)
    kk = 0.1 + LAM
    expected = 1000.0 * (1 - math.exp(-kk)) / kk + 1000.0 * math.exp(-kk) / LAM
    np.testing.assert_allclose(res.tia("plasma"), expected, rtol=1e-8)


def test_hot_total_decays_exactly_and_ligand_is_conserved():
    model = pbpk.psma_model()
    t = np.array([0.5, 6.0, 24.0, 168.0, 700.0, 2000.0])
    res = pbpk.simulate(model, pbpk.Schedule.single(7400.0, ligand_nmol=90.0), t, rtol=1e-9, atol=1e-12)
    total_act = np.asarray(res.activity_mbq).sum(1)
    # sum of hot over all compartments (urine and released included) = A0 exp(-lambda t),
    # to 1e-9 of the injected activity
    expected = 7400.0 * np.exp(-LU.decay_constant_per_h * t)
    np.testing.assert_allclose(total_act, expected, rtol=0, atol=1e-9 * 7400.0)
    assert np.max(np.abs(res.mass_balance_residual)) < 1e-9
    np.testing.assert_allclose(np.asarray(res.ligand_nmol).sum(1), 90.0, rtol=1e-9)


def test_multiple_cycles_and_infusion_conserve_mass():
    model = pbpk.psma_model()
    sched = pbpk.Schedule((
        pbpk.Administration(7400.0, time_h=0.0, infusion_h=0.5),
        pbpk.Administration(6000.0, time_h=1008.0, ligand_nmol=80.0),
    ))
    t = np.array([0.25, 0.5, 1.0, 500.0, 1008.0, 1010.0, 2000.0])
    res = pbpk.simulate(model, sched, t, rtol=1e-10, atol=1e-13)
    assert np.max(np.abs(res.mass_balance_residual)) < 1e-9
    # during the infusion, half the ligand has entered at 0.25 h
    first_total = 7400.0 / model.default_molar_activity_mbq_per_nmol
    np.testing.assert_allclose(np.asarray(res.ligand_nmol)[0].sum(), first_total / 2, rtol=1e-9)
    # hot: infusion delivers A0 e^{-lam (t - t0)} per unit time / T (activity calibrated at start),
    # so the body holds A0/T * t * e^{-lam t} at time t <= T (exact), then decays
    lam = LU.decay_constant_per_h
    np.testing.assert_allclose(np.asarray(res.activity_mbq)[0].sum(), 7400.0 / 0.5 * 0.25 * math.exp(-lam * 0.25), rtol=1e-9)
    expect_hot = 7400.0 * math.exp(-lam * 2000.0) + 6000.0 * math.exp(-lam * (2000.0 - 1008.0))
    np.testing.assert_allclose(np.asarray(res.activity_mbq)[-1].sum(), expect_hot, rtol=1e-9)
    # the injected activity counts the infused part: half of 7400 MBq at 0.25 h of a 0.5 h infusion
    np.testing.assert_allclose(np.asarray(res.injected_activity_mbq)[:3], [3700.0, 7400.0, 7400.0], rtol=1e-12)
    # the second bolus appears at 1008 h (right-continuous output)
    assert res.injected_activity_mbq[4] == pytest.approx(13400.0)


def test_vmap_matches_single_runs_and_status_is_per_patient():
    model = pbpk.psma_model()
    sched = pbpk.Schedule.single(7400.0)
    t = [1.0, 24.0, 168.0]
    rk = model.parameters["R_kidney"] * jnp.array([0.5, 1.0, 2.0])
    batch = pbpk.simulate_cohort(model, sched, t, {"R_kidney": rk}, chunk_size=2)
    for i in range(3):
        single = pbpk.simulate(model, sched, t, {"R_kidney": float(rk[i])})
        np.testing.assert_allclose(batch.tia_mbq_h[i], single.tia_mbq_h, rtol=1e-10)
    assert np.all(np.asarray(batch.status) == 0)


def test_failed_solve_raises_in_single_run_and_flags_in_batch():
    model = pbpk.psma_model()
    sched = pbpk.Schedule.single(7400.0)
    with pytest.raises(pbpk.SolverError, match="maximum number of solver steps"):
        pbpk.simulate(model, sched, [2000.0], max_steps=5)
    out = pbpk.simulate_cohort(model, sched, [2000.0], {"kint": jnp.array([0.6, 0.6])}, max_steps=5)
    assert np.all(np.asarray(out.status) != 0)


def test_gradients_forward_and_reverse_match_finite_differences():
    model = pbpk.psma_model()
    sched = pbpk.Schedule.single(7400.0)
    r0 = model.parameters["R_kidney"]

    def kidney_tia(log_r, mode):
        res = pbpk.simulate(model, sched, [24.0, 500.0], {"R_kidney": r0 * jnp.exp(log_r)}, mode=mode)
        return res.tia("kidney")

    g_rev = jax.grad(lambda x: kidney_tia(x, "reverse"))(0.0)
    g_fwd = jax.jacfwd(lambda x: kidney_tia(x, "forward"))(0.0)
    h = 1e-4
    fd = (kidney_tia(h, "forward") - kidney_tia(-h, "forward")) / (2 * h)
    np.testing.assert_allclose(g_fwd, fd, rtol=1e-5)
    np.testing.assert_allclose(g_rev, fd, rtol=1e-5)


def test_tia_is_linear_in_activity_at_fixed_ligand_amount():
    """Escalation at fixed total ligand: hot and cold are kinetically identical, so TIA is
    exactly proportional to activity (invariant); checked by a finite difference."""
    model = pbpk.psma_model()

    def tia(act):
        sched = pbpk.Schedule.single(act, ligand_nmol=90.0)
        return float(pbpk.simulate(model, sched, [500.0]).tia("kidney"))

    fd = (tia(7410.0) - tia(7390.0)) / 20.0
    # at fixed total ligand, TIA is linear in activity (hot and cold are kinetically identical)
    assert fd == pytest.approx(tia(7400.0) / 7400.0, rel=1e-6)


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda m: pbpk.Schedule.single(-5.0), pbpk.InvalidInputError, "activity_mbq"),
        (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0], {"V_kidney_vas": 0.0}),
         pbpk.InvalidInputError, "must be > 0"),
        (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0], {"Q_brian": 1.0}),
         pbpk.InvalidInputError, "unknown parameter"),
        (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0), [5.0, 1.0]),
         pbpk.InvalidInputError, "increasing"),
        (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0, ligand_nmol=1.0), [1.0]),
         pbpk.InvalidInputError, "labelled ligand"),
        (lambda m: m.with_nuclide("Lu-178"), pbpk.UnknownNuclideError, "Lu-177"),
        (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0]).activity("kidneys"),
         pbpk.InvalidInputError, "known"),
        (lambda m: pbpk.simulate(m, "7.4 GBq", [1.0]), pbpk.InvalidInputError, "Schedule"),
    ],
)
def test_bad_inputs_raise_typed_errors(call, error, text):
    model = pbpk.psma_model()
    with pytest.raises(error, match=text):
        call(model)


def test_analytic_decay_form_equals_two_species_solve():
    """One bolus is solved in the decay-free form (hot = f exp(-lambda t) total); the general
    two-species system must give the same answer. An infusion of 3.6 us (no longer a bolus)
    forces the general path; it delays the dose by 1.8 us on average, a relative change far
    below the tolerances here."""
    model = pbpk.psma_model()
    t = np.array([0.5, 6.0, 24.0, 168.0, 1000.0])
    one = pbpk.simulate(model, pbpk.Schedule.single(7400.0), t, rtol=1e-10, atol=1e-13)
    general = pbpk.simulate(model, pbpk.Schedule.single(7400.0, infusion_h=1e-9), t,
                            rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(one.activity_mbq, general.activity_mbq, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(one.tia_mbq_h, general.tia_mbq_h, rtol=1e-8)
    np.testing.assert_allclose(one.ligand_nmol, general.ligand_nmol, rtol=1e-7, atol=1e-12)


def test_a_repeated_simulation_reuses_its_compiled_program():
    # the second call with the same structure (other parameter values) must not compile again
    from pbpk._simulate import _jitted

    model = one_compartment()
    sched = pbpk.Schedule.single(100.0)
    pbpk.simulate(model, sched, [1.0, 2.0], {"k_el": 0.1})
    before = _jitted.cache_info()
    pbpk.simulate(model, sched, [1.0, 2.0], {"k_el": 0.2})
    after = _jitted.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
