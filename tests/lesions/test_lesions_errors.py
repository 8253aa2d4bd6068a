"""Bad inputs to twin.lesions raise typed errors (subclasses of the twin.patient errors)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from lesion_helpers import SPACING_MM, make_image

import pbpk
from twin import lesions as L
from twin import patient as P

SPHERE = (((40.0, 40.0, 40.0), 5.0, 8.0),)


@pytest.fixture(scope="module")
def case():
    organs = (("kidney_left", (100.0, 100.0, 80.0), (15.0, 15.0, 25.0), 15.0),)
    return make_image(spheres=SPHERE, organs=organs)


def test_errors_are_patient_errors():
    for cls in (L.LesionError, L.LesionParameterError, L.NoLesionError):
        assert issubclass(cls, P.PatientDataError)
    assert issubclass(L.LesionParameterError, pbpk.InvalidInputError)


@pytest.mark.parametrize("missing", ["weight_kg", "injected_activity_mbq"])
def test_suv_not_computable(case, missing):
    img, masks, _ = case
    with pytest.raises(P.MissingInjectedActivityError, match=missing):
        L.segment_lesions(replace(img, **{missing: None}), masks)


def test_masks_on_another_grid(case):
    img, masks, _ = case
    lab = sitk.GetImageFromArray(np.asarray(masks.labels))
    lab.SetSpacing((SPACING_MM,) * 3)
    lab.SetOrigin((2.0, 0.0, 0.0))
    shifted = P.load_masks(lab, dict(masks.label_table))
    with pytest.raises(P.GeometryMismatchError, match="resample=True"):
        L.segment_lesions(img, shifted)
    seg = L.segment_lesions(img, masks)
    comp = L.tumour_compartments(seg)
    with pytest.raises(P.GeometryMismatchError, match="grid"):
        L.merge_tumour_masks(shifted, comp)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "otsu"}, "method"),
    ({"min_volume_ml": -1.0}, "min_volume_ml"),
    ({"min_volume_ml": math.nan}, "min_volume_ml"),
    ({"exclude_margin_mm": -2.0}, "exclude_margin_mm"),
    ({"exclude_margin_mm": {"liver": 5.0}}, "not excluded"),
    ({"connectivity": 8}, "connectivity"),
    ({"exclude": 3}, "exclude"),
])
def test_bad_parameters(case, kwargs, match):
    img, masks, _ = case
    with pytest.raises(L.LesionParameterError, match=match):
        L.segment_lesions(img, masks, **kwargs)


@pytest.mark.parametrize("build, match", [
    (lambda: L.FixedThreshold(0.0), "threshold_suv"),
    (lambda: L.FixedThreshold("high"), "threshold_suv"),
    (lambda: L.PercentOfMax(100.0), "percentage"),
    (lambda: L.PercentOfMax(0.41 * math.inf), "percent"),
    (lambda: L.PercentOfMax(41.0, seed_suv=-1.0), "seed_suv"),
    (lambda: L.AdaptiveThreshold(background_shell_mm=(20.0, 10.0)), "inner < outer"),
    (lambda: L.AdaptiveThreshold(background_shell_mm=5.0), "background_shell_mm"),
    (lambda: L.AdaptiveThreshold(background_suv=-1.0), "background_suv"),
])
def test_bad_method_parameters(build, match):
    with pytest.raises(L.LesionParameterError, match=match):
        build()


def test_bad_objects(case):
    img, masks, _ = case
    with pytest.raises(L.LesionParameterError, match="ActivityImage"):
        L.segment_lesions(np.asarray(img.bq_per_ml), masks)
    with pytest.raises(L.LesionParameterError, match="Masks"):
        L.segment_lesions(img, np.asarray(masks.labels))
    with pytest.raises(P.UnknownLabelError, match="kidney_left"):
        L.segment_lesions(img, masks, exclude=("kidneys",))
    with pytest.raises(L.LesionParameterError, match="no masks"):
        L.segment_lesions(img, None, exclude=("kidney_left",))
    seg = L.segment_lesions(img, masks)
    for bad, match in (({"n_individual": 0}, "n_individual"), ({"n_individual": 1.5}, "n_individual"),
                       ({"model": "fap"}, "model")):
        with pytest.raises(L.LesionParameterError, match=match):
            L.tumour_compartments(seg, **bad)
    with pytest.raises(L.LesionParameterError, match="segment_lesions"):
        L.tumour_compartments(seg.table())


def test_tumours_overlapping_an_organ(case):
    """Segmented with nothing excluded, the hot kidney becomes a 'tumour': merging refuses."""
    img, masks, _ = case
    seg = L.segment_lesions(img, masks, exclude=None)
    comp = L.tumour_compartments(seg)
    with pytest.raises(P.OverlappingLabelsError, match="kidney_left"):
        L.merge_tumour_masks(masks, comp)


@pytest.mark.parametrize("build, meant", [
    (lambda: L.PercentOfMax(0.41), "41"),
    (lambda: L.PercentOfMax(1.0), ""),  # 1 % or 100 %? 100 is out of range too: no guess
    (lambda: L.PercentOfMax(percent=0.5, seed_suv=2.0), "50"),
    (lambda: L.AdaptiveThreshold(0.5), "50"),
    (lambda: L.PercentOfMax(True), None),
])
def test_percent_given_as_a_fraction_is_refused(build, meant):
    with pytest.raises(L.LesionParameterError, match="percent") as err:
        build()
    if meant is not None:
        assert "given in percent (e.g. 41 for 41 %); got" in str(err.value)
        assert (f"did you mean {meant}?" in str(err.value)) if meant else ("did you mean" not in str(err.value))


def test_percent_above_one_is_accepted():
    assert L.PercentOfMax(1.5).percent == 1.5
    assert L.PercentOfMax(41).percent == 41.0
    assert L.AdaptiveThreshold(99.0).percent == 99.0


def test_merge_refuses_unknown_overwrite_names(case):
    img, masks, _ = case
    comp = L.tumour_compartments(L.segment_lesions(img, masks))
    for bad in (("bdy",), "bdy", ("body", "kidney-left")):
        with pytest.raises(P.UnknownLabelError, match="not a structure of the masks; valid names: "
                                                      "body, kidney_left") as err:
            L.merge_tumour_masks(masks, comp, overwrite=bad)
        assert isinstance(err.value, pbpk.UnknownNameError) and isinstance(err.value, KeyError)
    with pytest.raises(L.LesionParameterError, match="overwrite"):
        L.merge_tumour_masks(masks, comp, overwrite=3)
    merged = L.merge_tumour_masks(masks, comp, overwrite=("body", "kidney_left"))
    assert merged.names == ("body", "kidney_left", "tumour1")
    # the default ('body',) needs no 'body' structure
    kidney = P.Masks(np.where(masks.labels == masks.label_of("kidney_left"), 1, 0).astype(np.int16),
                     {1: "kidney_left"}, masks.geometry)
    assert L.merge_tumour_masks(kidney, comp).names == ("kidney_left", "tumour1")
    for same in (("body",), "body", ["body"]):  # naming the default behaves as the default
        assert L.merge_tumour_masks(kidney, comp, overwrite=same).names == ("kidney_left", "tumour1")


def test_boolean_masks_for_lesions(case):
    """Organ masks given as `mask > 0` arrays (on the default 1 mm grid of an array image)."""
    img, masks, _ = case
    arr = P.load_activity_image(np.asarray(img.bq_per_ml), nuclide=img.nuclide,
                                hours_after_injection=img.hours_after_injection,
                                injected_activity_mbq=img.injected_activity_mbq, weight_kg=img.weight_kg)
    bool_masks = P.load_masks({name: np.asarray(masks.labels) == k for k, name in masks.label_table.items()},
                              reference=arr.geometry)
    seg = L.segment_lesions(arr, bool_masks, min_volume_ml=0.0)
    assert seg.n_lesions == 1  # the one sphere of SPHERE; the kidney is excluded
    merged = L.merge_tumour_masks(bool_masks, L.tumour_compartments(seg))
    assert merged.names == ("body", "kidney_left", "tumour1")
