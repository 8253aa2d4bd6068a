"""Review 13E: building a model for a patient refuses input it used to take silently.

References are hand calculations from the research notes (research/pbpk_models.md §2.1, §3)
and the published equations (CKD-EPI 2021, Inker et al. N Engl J Med 2021;385:1737), never
values computed by the code under test.
"""

import numpy as np
import pytest

import pbpk


def test_red_marrow_that_leaves_no_bone_is_refused():
    # Skeleton (bone + red marrow) = 10.165 L per 71 kg (research notes §2.1): for the 73 kg
    # reference male 10.165 x 73 / 71 = 10.451 L. An 11 L red marrow left bone = -0.549 L and
    # a negative PS_bone (-0.658 L/h) in the model before.
    with pytest.raises(pbpk.InvalidInputError, match=r"red_marrow.*leaves no bone"):
        pbpk.Physiology.reference().with_organ_volumes(red_marrow=11.0)
    with pytest.raises(pbpk.InvalidInputError, match="leaves no bone"):
        pbpk.Physiology.for_patient("male", 73.0, 176.0, 60.0, gfr_ml_min=90.0,
                                    organ_volumes_l={"red_marrow": 10.5})
    # a plausible red marrow still takes its share of the skeleton: 10.451 - 2.0 = 8.451 L
    phys = pbpk.Physiology.reference().with_organ_volumes(red_marrow=2.0)
    assert phys.organ_volume_l("bone") == pytest.approx(10.165 * 73.0 / 71.0 - 2.0, rel=1e-12)
    # giving the bone as well is the documented way out
    both = pbpk.Physiology.reference().with_organ_volumes(red_marrow=11.0, bone=1.0)
    assert both.organ_volume_l("bone") == 1.0


@pytest.mark.parametrize("value", [True, "0.3"])
def test_organ_volume_must_be_a_number_not_a_bool_or_string(value):
    # True was a 1 L kidney pair (3.2 x the ICRP-89 310 g) and '0.3' was parsed; the measured
    # path (model_volume_l) already refuses both.
    with pytest.raises(pbpk.InvalidInputError, match=r"organ_volumes_l\['kidney'\] must be a number"):
        pbpk.Physiology.reference().with_organ_volumes(kidney=value)
    with pytest.raises(pbpk.InvalidInputError, match="must be a number"):
        pbpk.Physiology.for_patient("male", 80.0, 180.0, 60.0, gfr_ml_min=90.0,
                                    organ_volumes_l={"kidney": value})


@pytest.mark.parametrize("build, kwargs", [
    (pbpk.psma_model, dict(lesion_volumes_l=[True])),                       # was a 1 L lesion
    (pbpk.psma_model, dict(lesion_receptor_nmol_per_l=[True])),             # was 1 nmol/L
    (pbpk.psma_model, dict(lesion_volumes_l=(0.01, 0.02), lesion_receptor_nmol_per_l=(50.0, True))),
    (pbpk.sstr_model, dict(tumour_volumes_l=(0.01, True))),                 # was 0.01 and 1 L
    (pbpk.sstr_model, dict(tumour_volumes_l="0.02")),                       # a string was parsed
])
def test_tumour_volumes_and_densities_refuse_bools_and_strings(build, kwargs):
    with pytest.raises(pbpk.InvalidInputError, match="must be numbers"):
        build(**kwargs)


def test_tumour_volumes_still_take_numbers_and_arrays():
    model = pbpk.psma_model(lesion_volumes_l=np.array([0.01, 0.02]), lesion_receptor_nmol_per_l=(40, 60.0))
    # receptor amount = density x volume (research notes §2.3): 60 nmol/L x 0.02 L = 1.2 nmol
    assert model.organ_volumes_l["tumour2"] == 0.02
    assert model.parameters["R_tumour2"] == pytest.approx(60.0 * 0.02, rel=1e-12)
    assert pbpk.psma_model(lesion_volumes_l=0.015).organ_volumes_l["tumour1"] == 0.015


@pytest.mark.parametrize("kwargs", [
    dict(gfr_ml_min=np.array([90.0])),
    dict(creatinine=[1.0, 2.0], creatinine_unit="mg/dL"),
])
def test_for_patient_refuses_arrays_with_a_typed_error(kwargs):
    # was a bare TypeError ("only 0-dimensional arrays can be converted to Python scalars")
    with pytest.raises(pbpk.InvalidInputError):
        pbpk.Physiology.for_patient("male", 80.0, 180.0, 60.0, **kwargs)


def test_out_of_range_egfr_is_blamed_on_the_creatinine():
    # CKD-EPI 2021, male, 20 y, Scr 0.1 mg/dL: 142 x (0.1/0.9)^-0.302 x 0.9938^20
    # = 142 x 1.9418 x 0.88304 = 243.5 mL/min/1.73 m2; Mosteller BSA sqrt(200 x 120 / 3600)
    # = 2.5820 m2 -> 243.5 x 2.5820 / 1.73 = 363 mL/min, above the 250 mL/min accepted. The
    # message named gfr_ml_min, which the caller never gave.
    with pytest.raises(pbpk.InvalidInputError, match=r"creatinine = 0.1 mg/dL.*363 mL/min"):
        pbpk.Physiology.for_patient("male", 120.0, 200.0, 20.0, creatinine=0.1, creatinine_unit="mg/dL")


def test_theranostic_pair_needs_a_model():
    with pytest.raises(pbpk.InvalidInputError, match="PBPKModel"):
        pbpk.theranostic_pair("PSMA-11", "PSMA-617")
