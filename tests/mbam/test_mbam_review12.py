"""Review 12 of mbam: linear coordinates survive a reduction step, ``push`` must be finite and
> 0, reduction files whose numbers disagree with their own steps are refused, and numeric
options are checked where they enter.

The limits here are built by hand (no geodesic is integrated), so every test is cheap; the
fitted values are compared with a direct scipy fit of the closed-form reduced model.
"""

from __future__ import annotations

import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from organ_graph import organ_graph

import mbam
import pbpk
from mbam import FiniteCombination, Fold, LimitReport, ParameterLimit
from pbpk import InvalidInputError

T = np.array([0.5, 1.0, 2.0, 4.0])


def offset_model():
    """exp(-k1 t) + exp(-k2 t) + c with k1, k2 log-parameters and c a linear offset."""
    t = jnp.asarray(T)

    def predict(x):
        return jnp.exp(-jnp.exp(x[0]) * t) + jnp.exp(-jnp.exp(x[1]) * t) + x[2]

    model = mbam.Model(predict, ("k1", "k2", "c"), log_params=(True, True, False))
    return model, np.array([0.0, np.log(2.0), -0.3])


def fold_report(i, j, names):
    """The fold theta_i = theta_j as identify_limit reports it."""
    finite = tuple((names[k], 0.0) for k in range(len(names)) if k not in (i, j))
    return LimitReport("fold", "fold", (), (), (Fold((names[i], names[j]), (i, j), 1.0),),
                       finite, np.array([1.0, -1.0, 0.0]) / math.sqrt(2), 1e-8)


# ----------------------------------------------------------------------------- finding 1
def test_fold_keeps_a_linear_offset_linear_and_refits_it_to_the_least_squares_value():
    model, x0 = offset_model()
    target = np.exp(-1.0 * T) + np.exp(-2.0 * T) - 0.3  # the data: k1 = 1, k2 = 2, c = -0.3
    reduced, rep = mbam.apply_limit(model, fold_report(0, 1, model.names), x0)
    assert reduced.names == ("c", "k1=k2")
    assert reduced.log_params == (False, True)
    fit = mbam.refit(reduced, rep.new_from_old(x0), target)
    # independent reference: the closed-form reduced model 2 exp(-k t) + c fitted by scipy
    (k_ref, c_ref), _ = scipy.optimize.curve_fit(lambda t, k, c: 2 * np.exp(-k * t) + c, T, target,
                                                 p0=(1.5, -0.3), xtol=1e-14, ftol=1e-14)
    assert c_ref < 0  # a linear offset: exp(x) could never report it
    assert fit.theta[0] == pytest.approx(c_ref, rel=1e-6) and fit.theta[0] == fit.x[0]
    assert fit.theta[1] == pytest.approx(k_ref, rel=1e-6)
    ssr_ref = np.sum((2 * np.exp(-k_ref * T) + c_ref - target) ** 2)
    assert fit.ssr == pytest.approx(ssr_ref, rel=1e-5)


def test_limit_keeps_surviving_flags_and_makes_the_combination_a_log_parameter():
    model, x0 = offset_model()
    limit = LimitReport(
        "limit", "eigenvalue_collapse",
        (ParameterLimit("k1", 0, "inf", 1.0), ParameterLimit("k2", 1, "inf", 1.0)),
        (FiniteCombination(("k1", "k2"), (0, 1), (1, -1), 0.5, 0.0),), (), (("c", -0.3),),
        np.array([1.0, 1.0, 0.0]) / math.sqrt(2), 1e-8)
    reduced, rep = mbam.apply_limit(model, limit, x0)
    assert reduced.names == ("c", "k1/k2") and reduced.log_params == (False, True)


def test_fold_of_a_log_and_a_linear_coordinate_is_refused():
    model, x0 = offset_model()
    with pytest.raises(InvalidInputError, match="log-parameter k2 with the linear coordinate c"):
        mbam.apply_limit(model, fold_report(1, 2, model.names), x0)
    limit = LimitReport("limit", "eigenvalue_collapse", (ParameterLimit("c", 2, "+inf", 3.0),), (),
                        (), (), np.array([0.0, 0.0, 1.0]), 1e-8)
    with pytest.raises(InvalidInputError, match="c is a linear coordinate"):
        mbam.apply_limit(model, limit, x0)


# ----------------------------------------------------------------------------- finding 2
BAD_PUSH = [0.0, -10.0, math.nan, math.inf, "10", True]


def organ_model():
    return pbpk.PBPKModel(organ_graph("organ_model"), "Lu-177",
                          {"V_p": 3.0, "V_v": 0.1, "V_i": 0.4, "Q": 2.0, "PS": 1e4, "CL": 1.5,
                           "kt": 0.05})


def organ_design():
    return mbam.ReductionDesign(agent="none", pet_times_h=(1.0,), spect_times_h=(4.0, 24.0),
                                regions=("plasma", "organ"), activity_mbq=100.0, floor_mbq=0.01)


@pytest.mark.parametrize("push", BAD_PUSH)
def test_push_must_be_finite_and_positive(push):
    model, x0 = offset_model()
    with pytest.raises(InvalidInputError, match="push.*finite number > 0"):
        mbam.apply_limit(model, fold_report(0, 1, model.names), x0, push=push)
    t1, x1 = mbam.models.two_exponentials()
    with pytest.raises(InvalidInputError, match="push.*finite number > 0"):
        mbam.reduce(t1, x1, max_iter=0, push=push)
    with pytest.raises(InvalidInputError, match="push.*finite number > 0"):
        mbam.reduce_pbpk(organ_model(), organ_design(), max_iter=0, push=push)


# ----------------------------------------------------------------------------- finding 3
@pytest.fixture(scope="module")
def scaled_file():
    """One hand-made step: the exchange merged (V = V_v + V_i) and Q refitted by a factor 2, so
    the reduced model's own values are V = 0.5 and Q = 4.0."""
    full = organ_model()
    reduced, rec = mbam.merge_exchange(full, "organ.vascular", "organ.interstitial")
    reduced = pbpk.PBPKModel(reduced.graph, reduced.nuclide,
                             {**{k: v for k, v in reduced.parameters.items()
                                 if k != "lambda_phys_per_h"}, "Q": 4.0})
    (v_new,) = rec.new_parameters
    names = tuple(n for n in reduced.parameter_names if n != "lambda_phys_per_h")
    step = mbam.PBPKReductionStep(
        iteration=0, description="merge",
        limits=({"name": "PS", "direction": "inf", "how": "axis"},),
        geodesic=None, rewrites=(rec,),
        definitions=((v_new, ((1.0, (("V_v", 1),)), (1.0, (("V_i", 1),)))),),
        scale={"Q": 2.0}, n_params=len(names), n_patient_params=len(names), n_states=3, chi2=0.0,
        chi2_unrefitted=0.0, population_max_rel_err=None, accepted=True, wall_s=0.0, names=names)
    red = mbam.PBPKReduction(full, reduced, organ_design(), (step,), "max_iter", 0.0)
    return red.to_json(), v_new


def _edit(text, edit):
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


def test_consistent_file_loads_and_maps_to_its_own_values(scaled_file):
    text, v_new = scaled_file
    red = mbam.load_reduced(text)
    out = red.map_parameters()
    assert out["Q"] == pytest.approx(4.0, rel=1e-12)  # 2.0 x 2
    assert out[v_new] == pytest.approx(0.5, rel=1e-12)  # 0.1 + 0.4


def _set_param(name, value):
    return lambda d: d["reduced_model"]["parameters"].__setitem__(name, value)


def _set_scale(value):
    return lambda d: d["history"][0]["scale"].__setitem__("Q", value)


@pytest.mark.parametrize("edit, match", [
    (_set_param("Q", 40.0), r"inconsistent.*parameter\(s\) Q = 40\.0 \(the steps give 4\)"),
    (_set_param("CL", math.nan), r"inconsistent.*CL = nan"),
    (_set_param("CL", -1.0), r"inconsistent.*CL = -1\.0"),
    (_set_param("V_organ_vascular_interstitial", 0.5 * (1 + 1e-6)),
     "V_organ_vascular_interstitial"),
    (_set_scale(math.nan), r"inconsistent.*scale\(s\) Q = nan.*finite number > 0"),
    (_set_scale(-3.0), r"inconsistent.*scale\(s\) Q = -3\.0.*finite number > 0"),
    (_set_scale(0.0), r"inconsistent.*scale\(s\) Q = 0\.0"),
    (_set_scale(20.0), r"inconsistent.*Q = 4\.0 \(the steps give 40\)"),
])
def test_load_reduced_refuses_numbers_that_disagree_with_the_steps(scaled_file, edit, match):
    text, _ = scaled_file
    with pytest.raises(InvalidInputError, match=match) as info:
        mbam.load_reduced(_edit(text, edit))
    assert "edited or is corrupt" in str(info.value)


# ----------------------------------------------------------------------------- finding 4
def _t1():
    return mbam.models.two_exponentials()


def _geodesic_stub():
    """A two-point path as integrate_geodesic returns it (for identify_limit's option checks)."""
    xs = np.array([[0.0, 0.0], [1.0, 0.0]])
    return mbam.GeodesicResult(("a", "b"), np.array([0.0, 1.0]), np.array([0.0, 1.0]), xs,
                               np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 1e-3]] * 2),
                               np.array([[0.0, 1.0]] * 2), "eigenvalue_collapse", (True, True))


def _geo(**kw):
    m, x0 = _t1()
    return mbam.integrate_geodesic(m, x0, [1.0, 0.0], max_steps=2, **kw)


@pytest.mark.parametrize("call, match", [
    (lambda: mbam.refit(_t1()[0], _t1()[1], [0.9, math.nan, 0.15]),
     r"target .*position\(s\) \[1\]"),
    (lambda: _geo(fold_substeps=0), "fold_substeps = 0 must be an integer >= 1"),
    (lambda: _geo(fold_substeps=2.5), "fold_substeps"),
    (lambda: mbam.integrate_geodesic(_t1()[0], _t1()[1], [1.0, 0.0], max_steps=-1),
     "max_steps = -1 must be an integer >= 1"),
    (lambda: _geo(collapse_drop=math.nan), "collapse_drop = nan must be a finite number > 0"),
    (lambda: _geo(fold_drop=-1.0), "fold_drop"),
    (lambda: _geo(max_dx=math.nan), "max_dx"),
    (lambda: mbam.identify_limit(_geodesic_stub(), max_denominator=0),
     "max_denominator = 0 must be an integer >= 1"),
    (lambda: mbam.identify_limit(_geodesic_stub(), collapse_drop=math.nan), "collapse_drop"),
    (lambda: mbam.identify_limit(_geodesic_stub(), fold_max_separation=-0.1),
     "fold_max_separation"),
    (lambda: mbam.initial_velocity(_t1()[0], _t1()[1], i=1.5), r"i \(which sloppiest.*integer"),
    (lambda: mbam.initial_velocity(_t1()[0], _t1()[1], i=2), r"i \(which sloppiest.*<= 1"),
    (lambda: mbam.reduce(*_t1(), max_iter=-3), "max_iter = -3 must be an integer >= 0"),
    (lambda: mbam.reduce(*_t1(), max_iter=1.5), "max_iter"),
    (lambda: mbam.reduce(*_t1(), max_iter=0, min_params=0), "min_params"),
])
def test_generic_options_are_checked_where_they_enter(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


@pytest.mark.parametrize("option, value, match", [
    ("population_tol", math.nan, "population_tol = nan must be a finite number > 0"),
    ("population_tol", 0.0, "population_tol"),
    ("axis_tol", -1.0, "axis_tol = -1.0 must be a finite number >= 0"),
    ("axis_tol", math.nan, "axis_tol"),
    ("axis_budget", math.inf, "axis_budget"),
    ("n_sub", 1, "n_sub = 1 must be an integer >= 2"),
    ("n_sub", 3.0, "n_sub"),
    ("refit_max_nfev", 0, "refit_max_nfev = 0 must be an integer >= 1"),
    ("population_draws", 0, "population_draws = 0 must be an integer >= 1"),
    ("population_draws", "32", "population_draws"),
])
def test_reduce_pbpk_options_are_checked(option, value, match):
    with pytest.raises(InvalidInputError, match=match):
        mbam.reduce_pbpk(organ_model(), organ_design(), max_iter=0, **{option: value})


def test_shipped_psma_reduction_still_loads_and_is_consistent():
    """The consistency check holds on the real reduction (its refit scales included)."""
    root = pathlib.Path(__file__).resolve().parents[2]
    path = root / "benchmarks" / "results" / "bench_mbam_reduced.json"
    red = mbam.load_reduced(path)
    assert any(s.scale for s in red.accepted)  # the check covers refitted values
