"""Review 13C: solver options and cohort parameters that used to give wrong numbers silently
or untyped errors; one-compartment schedules checked against closed forms."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import pbpk
from pbpk import Compartment, ModelGraph, transfer
from pbpk._rodas import rodas4_solve
from pbpk._sparse import SparseLUPlan

K_EL = 0.1


def _one_compartment():
    g = ModelGraph(
        "one13c",
        (Compartment("plasma.c", "plasma", "plasma", "V_p"),
         Compartment("urine.c", "urine", "excreta", None, in_body=False)),
        (transfer("plasma.c", "urine.c", "k_el"),),
        "plasma.c",
    )
    return pbpk.PBPKModel(g, "Lu-177", {"V_p": 3.0, "k_el": K_EL})


LAM = math.log(2) / (6.647 * 24)  # 177Lu, ICRP-107 half-life 6.647 d


@pytest.mark.parametrize("kw", [{"rtol": math.inf}, {"atol": math.inf}, {"rtol": 5.0},
                                {"rtol": 1.0}, {"atol": math.nan}, {"rtol": 0.0}])
def test_tolerances_that_accept_every_step_are_refused(kw):
    """rtol = inf (or atol = inf, rtol >= 1) accepted every step: plasma at 100 h came out as
    0.150 MBq instead of 1000 exp(-(k + lambda) 100 h) = 0.0294 MBq, with status 0."""
    with pytest.raises(pbpk.InvalidInputError, match="rtol|atol"):
        pbpk.simulate(_one_compartment(), pbpk.Schedule.single(1000.0), [1.0, 5.0, 24.0, 100.0],
                      **kw)


def test_rodas_refuses_infinite_tolerance():
    plan = SparseLUPlan.from_pattern(1, [0], [0])

    def rhs(y, k):
        return -k * y

    def jac(y, k):
        return jnp.asarray([-k])

    args = (rhs, jac, plan, jnp.ones(1), 1.0, 0.0, jnp.asarray([1.0, 10.0]))
    for kw in ({"rtol": np.inf}, {"atol": np.inf}, {"rtol": 2.0}):
        with pytest.raises(ValueError, match="rtol|atol"):
            rodas4_solve(*args, **kw)
    sol = rodas4_solve(*args, rtol=1e-8, atol=1e-12)  # finite tolerances still work
    np.testing.assert_allclose(np.asarray(sol.ys)[:, 0], np.exp(-np.array([1.0, 10.0])), rtol=1e-6)


@pytest.mark.parametrize("max_steps", [2.7, 0, True])
def test_fractional_or_bool_max_steps_refused(max_steps):
    with pytest.raises(pbpk.InvalidInputError, match="max_steps"):
        pbpk.simulate(_one_compartment(), pbpk.Schedule.single(1000.0), [1.0], max_steps=max_steps)


def test_cohort_decay_constant_is_checked_for_every_patient():
    """Only the first patient's lambda was checked: patient 2 ran with 2 lambda (plasma at
    100 h 0.0190 MBq instead of 0.0294 MBq) without any error."""
    model = _one_compartment()
    lam = model.parameters["lambda_phys_per_h"]
    with pytest.raises(pbpk.InvalidInputError, match="lambda_phys_per_h"):
        pbpk.simulate_cohort(model, pbpk.Schedule.single(1000.0), [1.0, 100.0],
                             {"lambda_phys_per_h": np.array([lam, 2 * lam])})
    # the nuclide's own value for every patient is still accepted
    out = pbpk.simulate_cohort(model, pbpk.Schedule.single(1000.0), [1.0, 100.0],
                               {"lambda_phys_per_h": np.array([lam, lam])}, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(out.activity("plasma"))[:, -1],
                               1000.0 * math.exp(-(K_EL + LAM) * 100.0), rtol=1e-7)


@pytest.mark.parametrize("value, match", [(np.array([[0.1], [0.2]]), "1-D"),
                                          (np.array([]), "empty"),
                                          (0.1, "1-D")])
def test_cohort_parameter_shapes_give_typed_errors(value, match):
    with pytest.raises(pbpk.InvalidInputError, match=match):
        pbpk.simulate_cohort(_one_compartment(), pbpk.Schedule.single(1000.0), [1.0, 10.0],
                             {"k_el": value})


def test_simulate_with_array_parameter_gives_typed_error():
    with pytest.raises(pbpk.InvalidInputError, match="simulate_cohort"):
        pbpk.simulate(_one_compartment(), pbpk.Schedule.single(1000.0), [1.0, 10.0],
                      {"k_el": np.array([0.1, 0.2])})


def test_infusion_then_bolus_cohort_matches_closed_form():
    """Infusion of A1 over T from 0 (activity calibrated at its start), bolus A2 at t2, outputs
    before, at and after each administration, two patients in chunks of one (padding)."""
    a1, tinf, a2, t2 = 2000.0, 2.0, 1000.0, 30.0
    sched = pbpk.Schedule((pbpk.Administration(a1, infusion_h=tinf),
                           pbpk.Administration(a2, time_h=t2)))
    t = np.array([0.0, 1.0, 2.0, 10.0, 30.0, 31.0, 300.0])
    ks = np.array([0.05, 0.3])
    out = pbpk.simulate_cohort(_one_compartment(), sched, t, {"k_el": ks}, chunk_size=1,
                               rtol=1e-10, atol=1e-13)
    for i, k in enumerate(ks):
        kk = k + LAM
        # hot input rate a1/T exp(-lam s): plasma A(t) = a1/T e^{-lam t} (1 - e^{-k min(t,T)})
        # e^{-k (t - min(t, T))} / k, plus the bolus a2 e^{-kk (t - t2)} from t2 on
        tm = np.minimum(t, tinf)
        inf_part = a1 / tinf * np.exp(-LAM * t) * (1 - np.exp(-k * tm)) / k * np.exp(-k * (t - tm))
        expected = inf_part + a2 * np.exp(-kk * (t - t2)) * (t >= t2)
        np.testing.assert_allclose(np.asarray(out.activity("plasma"))[i], expected,
                                   rtol=1e-7, atol=1e-9)
        # TIA: integral of A(t) to infinity with the physical-decay tail after 300 h
        s = np.linspace(0.0, tinf, 20001)
        during = a1 / tinf * np.exp(-LAM * s) * (1 - np.exp(-k * s)) / k
        tia_inf = np.sum((during[1:] + during[:-1]) / 2) * (s[1] - s[0])  # trapezoid, 2e-9 rel
        a_end = a1 / tinf * math.exp(-LAM * tinf) * (1 - math.exp(-k * tinf)) / k
        t_e = 300.0
        tia_inf += a_end * (1 - math.exp(-kk * (t_e - tinf))) / kk
        tia_inf += a_end * math.exp(-kk * (t_e - tinf)) / LAM
        tia_bol = a2 * (1 - math.exp(-kk * (t_e - t2))) / kk + a2 * math.exp(-kk * (t_e - t2)) / LAM
        np.testing.assert_allclose(float(out.tia("plasma")[i]), tia_inf + tia_bol, rtol=1e-7)
    assert np.all(np.asarray(out.status) == 0)


def test_infusion_too_short_to_resolve_is_refused():
    """1008 h + 1e-14 h == 1008 h in float64: the infusion had no end breakpoint, its rate
    (dose / 1e-14 h) ran over the whole next segment and the solve failed with a misleading
    'check the parameters' SolverError."""
    with pytest.raises(pbpk.InvalidInputError, match="infusion_h"):
        pbpk.Administration(1000.0, time_h=1008.0, infusion_h=1e-14)
    assert pbpk.Administration(1000.0, time_h=1008.0, infusion_h=1e-3).end_h > 1008.0
