"""Input checks of mbam: parameter maps, reduction files, NumPy scalars, strings where a
sequence is expected, and sigma shapes.

The reduction used here is built by hand (one exchange merged: ``V = V_v + V_i``, no refit),
so mapped values have the closed form written out in the tests; nothing is reduced by MBAM.
"""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from organ_graph import organ_graph

import mbam
import pbpk
from pbpk import PBPKModel


def organ_model():
    graph = organ_graph("organ_model")
    return PBPKModel(graph, "Lu-177", {"V_p": 3.0, "V_v": 0.1, "V_i": 0.4, "Q": 2.0, "PS": 1e4,
                                       "CL": 1.5, "kt": 0.05})


def design():
    return mbam.ReductionDesign(agent="none", pet_times_h=(1.0,), spect_times_h=(4.0, 24.0, 96.0),
                                regions=("plasma", "organ"), activity_mbq=100.0, floor_mbq=0.01)


@pytest.fixture(scope="module")
def merged():
    """The exchange limit PS -> inf applied by hand, recorded as one accepted step."""
    full = organ_model()
    reduced, rec = mbam.merge_exchange(full, "organ.vascular", "organ.interstitial")
    (v_new,) = rec.new_parameters
    names = tuple(n for n in reduced.parameter_names if n != "lambda_phys_per_h")
    step = mbam.PBPKReductionStep(
        iteration=0, description="merge", limits=({"name": "PS", "direction": "inf", "how": "axis"},),
        geodesic=None, rewrites=(rec,),
        definitions=((v_new, ((1.0, (("V_v", 1),)), (1.0, (("V_i", 1),)))),),
        scale={}, n_params=len(names), n_patient_params=len(names), n_states=3, chi2=0.0,
        chi2_unrefitted=0.0, population_max_rel_err=None, accepted=True, wall_s=0.0, names=names)
    return mbam.PBPKReduction(full, reduced, design(), (step,), "max_iter", 0.0), v_new


# ----------------------------------------------------------------------------- finding 5
def test_map_parameters_closed_form(merged):
    red, v_new = merged
    out = red.map_parameters({"V_v": np.array([0.1, 0.2]), "V_i": np.float32(0.5)})
    np.testing.assert_allclose(out[v_new], [0.6, 0.7], rtol=1e-7)  # V = V_v + V_i
    assert out["Q"].shape == (2,) and np.all(out["Q"] == 2.0)


@pytest.mark.parametrize("value, match", [
    (math.nan, "finite"), (-0.1, "> 0"), (0.0, "> 0"), (math.inf, "finite"),
    (np.array([0.1, -0.2]), "> 0"), ("0.1", "number"), (True, "number"), (None, "number"),
    ([0.1, "a"], "number"),
])
def test_map_parameters_checks_values(merged, value, match):
    red, _ = merged
    with pytest.raises(pbpk.InvalidInputError, match=match):
        red.map_parameters({"V_v": value})


def test_map_parameters_checks_shapes_and_names(merged):
    red, _ = merged
    with pytest.raises(pbpk.InvalidInputError, match=r"V_i: \(2,\), V_v: \(3,\)"):
        red.map_parameters({"V_v": np.full(3, 0.1), "V_i": np.full(2, 0.4)})
    with pytest.raises(pbpk.UnknownNameError, match="V_x") as info:
        red.map_parameters({"V_x": 1.0})
    assert "V_v" in str(info.value)  # the known names are listed
    with pytest.raises(pbpk.InvalidInputError, match="nuclide"):
        red.map_parameters({"lambda_phys_per_h": 0.1})
    with pytest.raises(pbpk.InvalidInputError, match="mapping"):
        red.map_parameters([("V_v", 0.1)])


def test_map_parameters_takes_what_simulate_takes(merged):
    red, v_new = merged
    # a patient's whole parameter map, decay constant included (pbpk.simulate accepts it too)
    out = red.map_parameters(dict(red.full_model.parameters))
    assert out[v_new] == pytest.approx(0.5)  # V_v + V_i = 0.1 + 0.4
    # a rate or flow of 0 is a valid patient (no excretion), as in pbpk.simulate
    out = red.map_parameters({"CL": 0.0, "kt": np.array([0.0, 0.05])})
    assert np.all(out["CL"] == 0.0) and out["kt"].tolist() == [0.0, 0.05]


# ----------------------------------------------------------------------------- finding 6
def test_load_reduced_round_trip_of_a_consistent_file(merged):
    red, v_new = merged
    again = mbam.load_reduced(red.to_json())
    assert again.model.parameters == red.model.parameters
    assert again.map_parameters({"V_i": 1.0})[v_new] == pytest.approx(1.1)


def _edited(red, edit) -> str:
    data = json.loads(red.to_json())
    edit(data)
    return json.dumps(data)


def test_load_reduced_refuses_an_unknown_design_region(merged):
    red, _ = merged
    text = _edited(red, lambda d: d["design"]["regions"].append("organx"))
    with pytest.raises(mbam.DesignError, match="organx"):
        mbam.load_reduced(text)


def test_load_reduced_refuses_a_design_region_the_reduced_model_lacks(merged):
    red, _ = merged

    def edit(d):  # rename the organ's region in the reduced model only
        for c in d["reduced_model"]["graph"]["compartments"]:
            if c["region"] == "organ":
                c["region"] = "organ2"
    text = _edited(red, edit)
    with pytest.raises(mbam.DesignError, match="organ"):
        mbam.load_reduced(text)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["history"][0]["names"].append("V_ghost"), "V_ghost"),
    (lambda d: d["history"][0]["definitions"][0][1][0][1][0].__setitem__(0, "V_vv"), "V_vv"),
    (lambda d: d["history"][0].__setitem__("names", []), "no parameter names"),
    (lambda d: d["history"][0]["scale"].__setitem__("PSx", 2.0), "PSx"),
    (lambda d: d["history"][0].__setitem__("scale", [1.0]), "malformed"),
])
def test_load_reduced_refuses_inconsistent_steps(merged, edit, match):
    red, _ = merged
    with pytest.raises(pbpk.InvalidInputError, match=match):
        mbam.load_reduced(_edited(red, edit))


def test_load_reduced_refuses_steps_that_do_not_end_in_the_reduced_model(merged):
    red, v_new = merged

    def edit(d):
        d["history"][0]["names"].remove("kt")
    with pytest.raises(pbpk.InvalidInputError, match="kt"):
        mbam.load_reduced(_edited(red, edit))


# ----------------------------------------------------------------------------- finding 7
def test_design_accepts_numpy_scalars():
    d = mbam.ReductionDesign(agent="none", pet_times_h=(np.float32(1.0),),
                             spect_times_h=np.array([4.0, 24.0]), regions=("plasma",),
                             activity_mbq=np.int64(1000), cv=np.float32(0.25), floor_mbq=np.float64(0.5),
                             tia_cv=np.int64(0))
    assert (d.activity_mbq, d.cv, d.floor_mbq, d.tia_cv) == (1000.0, 0.25, 0.5, 0.0)
    assert all(type(getattr(d, f)) is float for f in ("activity_mbq", "cv", "floor_mbq", "tia_cv"))
    assert d.times_h == (1.0, 4.0, 24.0)
    for bad in (True, np.bool_(True), "100", None):
        with pytest.raises(mbam.DesignError, match="activity_mbq"):
            mbam.ReductionDesign(agent="none", activity_mbq=bad)


class _Reached(Exception):
    pass


class _Prior:
    """A prior that records the draw count it is asked for and stops there (no simulation)."""

    names = ("V_i",)

    def __init__(self):
        self.asked = None

    def sample(self, key, n):
        self.asked = n
        raise _Reached


def test_check_population_accepts_numpy_scalars(merged):
    red, _ = merged
    prior = _Prior()
    with pytest.raises(_Reached):  # every argument check passed
        red.check_population(prior, n_draws=np.int64(2), activity_mbq=np.int64(100),
                             chunk_size=np.int64(2))
    assert prior.asked == 2 and type(prior.asked) is int
    with pytest.raises(_Reached):
        red.check_population(prior, n_draws=3, activity_mbq=np.float32(7.4))
    for kw, match in (({"activity_mbq": True}, "activity_mbq"), ({"n_draws": np.bool_(True)}, "n_draws"),
                      ({"chunk_size": 0}, "chunk_size"), ({"activity_mbq": "100"}, "activity_mbq"),
                      ({"activity_mbq": math.nan}, "activity_mbq")):
        with pytest.raises(pbpk.InvalidInputError, match=match):
            red.check_population(prior, **kw)


def test_transit_candidates_and_limits_accept_numpy_scalars():
    model = organ_model()
    assert mbam.transit_candidates(model, np.float32(1.0), np.float64(0.5)) == \
        mbam.transit_candidates(model, 1.0, 0.5)
    reduced, _ = mbam.apply_limit_to_model(model, {"kt": np.int64(0)})
    assert "kt" not in reduced.parameters  # the transfer went to its limit 0
    with pytest.raises(pbpk.InvalidInputError, match="max_transit_h"):
        mbam.transit_candidates(model, True)


# ----------------------------------------------------------------------------- finding 8
@pytest.mark.parametrize("times", ["12", "abc", b"1", {"1.0": 1}])
def test_design_times_must_be_a_sequence(times):
    with pytest.raises(mbam.DesignError, match="sequence"):
        mbam.ReductionDesign(agent="none", pet_times_h=times)


def test_design_times_must_be_numbers():
    with pytest.raises(mbam.DesignError, match="numbers"):
        mbam.ReductionDesign(agent="none", pet_times_h=["1", "4"])
    with pytest.raises(mbam.DesignError, match="numbers"):
        mbam.ReductionDesign(agent="none", pet_times_h=[True])


@pytest.mark.parametrize("names", ["abc", "k1"])
def test_model_names_must_be_a_sequence(names):
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.Model(lambda x: x, names)
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.Model.from_theta(lambda th: th, names)


def test_model_names_must_be_strings():
    with pytest.raises(pbpk.InvalidInputError, match="strings"):
        mbam.Model(lambda x: x, ["k1", 2])


def test_model_log_params_must_be_a_sequence_of_flags():
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.Model(lambda x: x, ["a", "b"], log_params="k1")
    with pytest.raises(pbpk.InvalidInputError, match="flags"):
        mbam.Model(lambda x: x, ["a", "b"], log_params=["a", "b"])
    m = mbam.Model(lambda x: x, ["a", "b"], log_params=[np.True_, 0])
    assert m.log_params == (True, False)
    import jax.numpy as jnp

    for flags in (jnp.array([True, False]), np.array([1, 0])):  # arrays of flags, items 0-d
        assert mbam.Model(lambda x: x, ["a", "b"], log_params=flags).log_params == (True, False)


def test_reduction_name_lists_must_be_sequences():
    model = organ_model()
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.reduce_pbpk(model, design(), fixed="PS", max_iter=0)
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.reduce_pbpk(model, design(), parameters="Q", max_iter=0)
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.reducible_parameters(model, fixed="Q")
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.design_model(model, design(), parameters="Q")
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.prune_unreachable(model, keep="organ")
    with pytest.raises(pbpk.InvalidInputError, match="sequence"):
        mbam.parallel_groups(model, exclude_regions="organ")
    # the reference: what a one-element list gives
    assert set(mbam.reducible_parameters(model, fixed=["Q"])) == {"PS", "CL", "kt"}


# ----------------------------------------------------------------------------- finding 9
def test_sigma_shape_mismatch_is_a_typed_error():
    m = mbam.Model(lambda x: jnp.concatenate([x, x]), ["a", "b"], sigma=np.ones(3))
    with pytest.raises(pbpk.InvalidInputError, match=r"\(3,\).*\(4,\)"):
        mbam.fisher_spectrum(m, np.zeros(2))
    with pytest.raises(pbpk.InvalidInputError, match=r"\(3,\).*\(4,\)"):
        mbam.jacobian(m, np.zeros(2))


def test_sigma_of_matching_size_weights_each_prediction():
    m = mbam.Model(lambda x: jnp.concatenate([x, 2 * x]), ["a"], sigma=np.array([1.0, 4.0]))
    # r = (a, 2a / 4): J = [[1], [0.5]], J^T J = 1.25
    np.testing.assert_allclose(mbam.fisher_spectrum(m, np.zeros(1)).eigenvalues, [1.25])


def test_sigma_must_be_numbers():
    with pytest.raises(pbpk.InvalidInputError, match="sigma"):
        mbam.Model(lambda x: x, ["a"], sigma="abc")
    with pytest.raises(pbpk.InvalidInputError, match="sigma"):
        mbam.Model(lambda x: x, ["a"], sigma=True)
