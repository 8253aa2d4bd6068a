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
