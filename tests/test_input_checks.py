"""pbpk entry points that used to accept input silently and give wrong numbers: prefixed
ligand names of another nuclide, administrations after the last output time, an overridden
decay constant, and schedules whose acceptance depended on the order of their entries."""

import math

import numpy as np
import pytest

import pbpk


def test_a_nuclide_prefix_selects_that_nuclide_s_ligand_or_is_refused():
    assert pbpk.get_ligand("68Ga-DOTATATE").name == "Ga-DOTATATE"
    assert pbpk.get_ligand("68Ga-DOTATATE").default_nuclide == "Ga-68"
    assert pbpk.get_ligand("177Lu-DOTATATE").name == "DOTATATE"
    assert pbpk.get_ligand("177Lu-PSMA-617").name == "PSMA-617"
    assert pbpk.sstr_model("68Ga-DOTATATE").nuclide == "Ga-68"
    with pytest.raises(pbpk.UnknownNameError, match="labelled with Lu-177, not Ga-68"):
        pbpk.get_ligand("68Ga-PSMA-617")


def test_administrations_after_the_last_output_time_are_refused():
    m = pbpk.psma_model()
    sched = pbpk.Schedule.cycles(7400.0, 4, ligand_nmol=90.0)   # every 6 weeks: 0, 1008, 2016, 3024 h
    with pytest.raises(pbpk.InvalidInputError, match="3 administration"):
        pbpk.simulate(m, sched, [1.0, 24.0, 168.0, 1000.0])
    # the whole schedule covered: 4 cycles, 4 x the single-cycle TIA minus the overlap of the
    # slowly cleared pools (linearity at the fixed ligand amount per cycle, 6 weeks apart)
    t_end = 3024.0 + 2000.0
    four = pbpk.simulate(m, sched, [1.0, t_end])
    one = pbpk.simulate(m, pbpk.Schedule.single(7400.0, ligand_nmol=90.0), [1.0, 2000.0])
    assert float(four.tia("kidney")) == pytest.approx(4 * float(one.tia("kidney")), rel=0.02)


def test_the_decay_constant_follows_the_nuclide():
    m = pbpk.psma_model()
    with pytest.raises(pbpk.InvalidInputError, match="follows the model's nuclide"):
        pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0, 24.0], {"lambda_phys_per_h": 1.0})
    # passing the model's own value (e.g. a full parameter dict) is fine
    lam = m.parameters["lambda_phys_per_h"]
    assert lam == pytest.approx(math.log(2) / (6.647 * 24), rel=2e-3)   # 177Lu, ICRP-107
    r = pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0, 24.0], {"lambda_phys_per_h": lam})
    assert np.all(np.isfinite(np.asarray(r.tia_mbq_h)))


def test_schedule_acceptance_does_not_depend_on_entry_order():
    A = pbpk.Administration
    a = pbpk.Schedule((A(100.0, infusion_h=1.0), A(100.0)))
    b = pbpk.Schedule((A(100.0), A(100.0, infusion_h=1.0)))
    assert a.administrations == b.administrations


@pytest.mark.parametrize("kw, match", [
    ({"lesion_receptor_nmol_per_l": (-50.0,)}, "finite density"),
    ({"lesion_receptor_nmol_per_l": (float("nan"),)}, "finite density"),
    ({"tumour_rest_volume_l": float("nan")}, "tumour_rest_volume_l"),
    ({"tumour_rest_volume_l": None}, "tumour_rest_volume_l"),
    ({"lesion_volumes_l": ("abc",)}, "must be numbers"),
])
def test_tumour_arguments_are_checked_where_they_enter(kw, match):
    with pytest.raises(pbpk.InvalidInputError, match=match):
        pbpk.psma_model(**kw)


def test_a_single_lesion_volume_and_a_density_array_are_accepted():
    a = pbpk.psma_model(lesion_volumes_l=0.02)
    b = pbpk.psma_model(lesion_volumes_l=(0.02,))
    assert a.parameters == b.parameters
    c = pbpk.psma_model(lesion_volumes_l=(0.02, 0.01), lesion_receptor_nmol_per_l=np.array([50.0, 60.0]))
    # receptor amount = density x lesion (interstitial) volume: 60 nM in the second lesion
    assert c.parameters["R_tumour2"] / c.parameters["R_tumour1"] == pytest.approx(
        60.0 * c.parameters["V_tumour2_int"] / (50.0 * c.parameters["V_tumour1_int"]), rel=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda m: pbpk.Schedule(5), "sequence of Administration"),
    (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0), None), "times_h"),
    (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0], 5), "params must be a mapping"),
    (lambda m: pbpk.simulate(m, pbpk.Schedule.single(7400.0), [1.0], {"R_kidney": "a"}), "not a number"),
    (lambda m: pbpk.simulate_cohort(m, pbpk.Schedule.single(7400.0), [1.0], 5), "params must be a mapping"),
    (lambda m: pbpk.simulate_cohort(m, pbpk.Schedule.single(7400.0), [1.0], {"R_kidney": ["a", "b"]}),
     "must be numbers"),
    (lambda m: m.with_parameters(R_kidney=None), "not a number"),
    (lambda m: pbpk.psma_model(physiology=5), "pbpk.Physiology"),
    (lambda m: pbpk.sstr_model(physiology="male"), "pbpk.Physiology"),
    (lambda m: pbpk.get_ligand(617), "must be a string"),
])
def test_wrong_types_get_typed_errors(call, match):
    with pytest.raises(pbpk.InvalidInputError, match=match):
        call(pbpk.psma_model())
