"""The bad-input catalogue: each bad input raises a typed error that says what to fix."""

import numpy as np
import pytest
import SimpleITK as sitk
from patient_helpers import image

import pbpk
from twin import patient as P

LABS = {"sex": "female", "age_y": 60, "weight_kg": 65, "height_cm": 165, "creatinine": 0.8,
        "creatinine_unit": "mg/dL"}


def act(arr, **kw):
    kw.setdefault("hours_after_injection", 1.0)
    return P.load_activity_image(np.asarray(arr, np.float32), nuclide="68Ga", **kw)


def test_nan_voxels():
    a = np.ones((4, 4, 4))
    a[1, 2, 3] = np.nan
    with pytest.raises(P.NonFiniteVoxelError, match=r"NaN.*\(1, 2, 3\).*nan_to_num"):
        act(a)


def test_negative_activity():
    a = np.ones((4, 4, 4))
    a[0, 0, 0] = -5
    with pytest.raises(P.NegativeActivityError, match="allow_negative=True"):
        act(a)
    assert act(a, allow_negative=True).bq_per_ml.min() == 0


def test_empty_mask():
    with pytest.raises(P.EmptyMaskError, match="'liver'"):
        P.load_masks({"liver": image(np.zeros((4, 4, 4), np.uint8))})
    lab = np.zeros((4, 4, 4), np.int16)
    lab[0, 0, 0] = 1
    with pytest.raises(P.EmptyMaskError, match=r"'spleen' \(label 2\)"):
        P.load_masks(image(lab), {1: "liver", 2: "spleen"})


def test_overlapping_labels():
    a = np.zeros((4, 4, 4), np.uint8)
    a[:2] = 1
    b = np.zeros_like(a)
    b[1:3] = 1
    with pytest.raises(P.OverlappingLabelsError, match="overlaps 'liver' in 16 voxel"):
        P.load_masks({"liver": image(a), "tumour1": image(b)})


def test_mask_on_another_grid():
    ref = P.Geometry.of(image(np.zeros((4, 4, 4), np.float32)))
    lab = np.ones((4, 4, 4), np.int16)
    with pytest.raises(P.GeometryMismatchError, match="spacing"):
        P.load_masks(image(lab, spacing=(2.0, 2.0, 2.0)), {1: "liver"}, reference=ref)
    with pytest.raises(P.GeometryMismatchError, match="origin"):
        P.load_masks({"liver": image(lab, origin=(0.0, 0.0, 8.0))}, reference=ref)
    m = P.load_masks(image(np.ones((5, 4, 4), np.int16)), {1: "liver"})
    with pytest.raises(P.GeometryMismatchError, match="size"):
        P.organ_uptake(act(np.ones((4, 4, 4))), m)


def test_two_d_image(tmp_path):
    with pytest.raises(P.ImageDimensionError, match="3-D"):
        act(np.ones((4, 4)))
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 4), np.float32)), str(tmp_path / "slice.nii"))
    with pytest.raises(P.ImageDimensionError, match="not one slice"):
        P.read_image(tmp_path / "slice.nii")


def test_missing_injected_activity_for_suv():
    with pytest.raises(P.MissingInjectedActivityError, match="injected_activity_mbq"):
        act(np.ones((3, 3, 3)), unit="SUV", weight_kg=70.0)
    with pytest.raises(P.MissingInjectedActivityError, match="injected activity"):
        act(np.ones((3, 3, 3))).suv()


@pytest.mark.parametrize("value", [0, -5, "abc"])
def test_injected_activity_must_be_positive(value):
    m = P.load_masks(image(np.ones((4, 4, 4), np.int16), spacing=(1.0, 1.0, 1.0)), {1: "liver"})
    with pytest.raises(P.MissingInjectedActivityError, match="positive number of MBq"):
        P.organ_uptake(act(np.ones((4, 4, 4))), m, injected_activity_mbq=value)


def test_default_patient_refuses_an_unknown_modality():
    with pytest.raises(pbpk.InvalidInputError, match="'PET'"):
        P.default_patient("CT")


def test_creatinine_without_unit():
    with pytest.raises(P.LabUnitError, match="mg/dL"):
        P.read_labs({**LABS, "creatinine_unit": ""})
    with pytest.raises(pbpk.UnitError):  # also a pbpk.UnitError
        P.read_labs({**LABS, "creatinine_unit": "mmol/dL"})


@pytest.mark.parametrize("weight", [0, 700, "heavy", None])
def test_weight_out_of_range(weight):
    with pytest.raises(P.LabRangeError, match="weight_kg"):
        P.read_labs({**LABS, "weight_kg": weight})


def test_unknown_sex_code():
    with pytest.raises(P.UnknownSexError, match="'female'/'F'"):
        P.read_labs({**LABS, "sex": "X"})


def test_haematocrit_as_percent():
    with pytest.raises(P.LabRangeError, match="percentage"):
        P.read_labs({**LABS, "haematocrit": 42})


def test_corrupt_and_missing_file(tmp_path):
    bad = tmp_path / "pet.nii.gz"
    bad.write_bytes(b"this is not a nifti file" * 10)
    with pytest.raises(P.CorruptFileError, match="NIfTI"):
        P.read_image(bad)
    with pytest.raises(P.CorruptFileError, match="does not exist"):
        P.read_image(tmp_path / "nope.nii.gz")
    good = tmp_path / "good.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8, 8), np.float32)), str(good))
    trunc = tmp_path / "trunc.nii"
    trunc.write_bytes(good.read_bytes()[:600])
    with pytest.raises(P.CorruptFileError):
        P.read_image(trunc)


def test_unknown_label_name():
    m = P.load_masks(np.ones((3, 3, 3), np.int16), {1: "liver"})
    with pytest.raises(P.UnknownLabelError, match="known: liver"):
        m.mask("livr")
    with pytest.raises(KeyError):  # also a KeyError / pbpk.UnknownNameError
        P.organ_uptake(act(np.ones((3, 3, 3))), m, structures=["kidney"])


def test_scan_before_injection():
    with pytest.raises(P.ScanTimeError, match="before injection"):
        act(np.ones((3, 3, 3)), hours_after_injection=None, injection_time="2026-01-31T10:00:00",
            scan_time="2026-01-31T09:00:00")
    with pytest.raises(P.ScanTimeError, match="cannot be before"):
        act(np.ones((3, 3, 3)), hours_after_injection=-0.5)


def test_image_too_large_refused_before_loading(tmp_path, monkeypatch):
    path = tmp_path / "big.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20, 20), np.float32)), str(path))
    calls = []
    monkeypatch.setattr(sitk, "ReadImage", lambda *a, **k: calls.append(a))
    with pytest.raises(P.ImageTooLargeError, match="max_bytes"):
        P.read_image(path, max_bytes=10_000)
    assert calls == []  # voxels never read


def test_mismatched_label_table(tmp_path):
    lab = np.zeros((4, 4, 4), np.int16)
    lab[0] = 1
    lab[1] = 7
    with pytest.raises(P.LabelTableError, match=r"label\(s\) \[7\]"):
        P.load_masks(image(lab), {1: "liver"})
    with pytest.raises(P.LabelTableError, match="twice"):
        P.load_masks(image(lab), {1: "liver", 7: "liver"})
    with pytest.raises(P.LabelTableError, match="needs its label table"):
        P.load_masks(image(lab))
    (tmp_path / "t.csv").write_text("id,structure\n1,liver\n")
    with pytest.raises(P.LabelTableError, match="label,name"):
        P.load_masks(image(lab), tmp_path / "t.csv")


def test_unknown_activity_unit():
    with pytest.raises(pbpk.UnitError, match="kBq/mL"):
        act(np.ones((3, 3, 3)), unit="mCi/mL")


def test_errors_are_pbpk_errors():
    for cls in (P.NonFiniteVoxelError, P.EmptyMaskError, P.GeometryMismatchError, P.LabRangeError):
        assert issubclass(cls, pbpk.InvalidInputError) and issubclass(cls, ValueError)
    assert issubclass(P.UnknownLabelError, pbpk.UnknownNameError)


def test_phantom_bad_arguments(tmp_path, phantom_clean):
    with pytest.raises(pbpk.UnknownNameError, match="PSMA-11"):
        P.make_phantom(0, agent="PSMA-999")
    with pytest.raises(pbpk.InvalidInputError, match="spacing_mm"):
        P.make_phantom(0, spacing_mm=0.1)
    with pytest.raises(pbpk.InvalidInputError, match="n_tumours >= 1"):
        P.make_phantom(0, n_tumours=0)
    with pytest.raises(P.LabUnitError):
        P.make_phantom(0, labs={**LABS, "creatinine_unit": None})
    (tmp_path / "ph").mkdir()
    with pytest.raises(pbpk.InvalidInputError, match="overwrite=True"):
        phantom_clean.write(tmp_path / "ph")
    assert list((tmp_path / "ph").iterdir()) == []


# ----------------------------------------------------------------------------- review findings
def _slab():
    """4 x 4 x 4 float mask with the first two z-slices set: 32 voxels of 1 mm3 (default grid)."""
    m = np.zeros((4, 4, 4))
    m[:2] = 1
    return m


def test_boolean_masks_are_accepted():
    m = _slab()
    for masks in (P.load_masks({"liver": m > 0}), P.load_masks(m > 0, {1: "liver"})):
        assert masks.volume_ml("liver") == pytest.approx(32 * 1e-3)  # 32 voxels of 1 mm3
    tumour = np.zeros((4, 4, 4), bool)
    tumour[3, 3, 3] = True  # a lesion mask beside an organ mask
    masks = P.load_masks({"liver": m > 0, "tumour1": tumour})
    assert masks.volume_ml("tumour1") == pytest.approx(1e-3)
    pat = P.load_patient(np.ones((4, 4, 4), np.float32), nuclide="68Ga", hours_after_injection=1.0,
                         masks={"liver": m > 0, "tumour1": tumour})
    assert pat.masks.names == ("liver", "tumour1") and pat.lesion_volumes_l() == pytest.approx((1e-6,))
    # Masks built around a boolean array write as a uint8 image
    img = P.Masks(m > 0, {1: "liver"}, pat.geometry).to_sitk()
    assert img.GetPixelID() == sitk.sitkUInt8 and sitk.GetArrayFromImage(img).sum() == 32


def _vector(pixel=sitk.sitkVectorFloat32):
    return sitk.Image([4, 4, 4], pixel, 3)


@pytest.mark.parametrize("load", [
    lambda img: P.load_activity_image(img, nuclide="68Ga", hours_after_injection=1.0),
    lambda img: P.load_masks(img, {1: "liver"}),
    lambda img: P.load_masks({"liver": img}),
    lambda img: P.load_patient(np.ones((4, 4, 4), np.float32), nuclide="68Ga", hours_after_injection=1.0,
                               masks={"liver": _slab() > 0}, ct=img),
], ids=["activity", "label_map", "mask", "ct"])
@pytest.mark.parametrize("make", [
    _vector,
    lambda: sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3),  # RGB
    lambda: np.ones((4, 4, 4, 3), np.float32),
    lambda: sitk.Image([4, 4, 4], sitk.sitkComplexFloat32),
    lambda: np.ones((4, 4, 4), np.complex64),
], ids=["vector", "rgb", "rgb_array", "complex", "complex_array"])
def test_multi_component_images_are_refused(load, make):
    with pytest.raises(P.ImageDimensionError, match="scalar, one (real )?component per voxel"):
        load(make())


def test_multi_component_file_is_refused(tmp_path):
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(_vector(), str(path))
    with pytest.raises(P.ImageDimensionError, match="3 components per voxel.*scalar, one component"):
        P.read_image(path)


@pytest.mark.parametrize("hours, match", [
    ("abc", "not a number"), ([1.0], "not a number"), (None, "give hours_after_injection"),
    (float("nan"), "not a finite number"), (float("inf"), "not a finite number"),
    (-0.5, "cannot be before"), (True, "boolean"), (np.bool_(False), "boolean"),
])
def test_bad_hours_after_injection(hours, match):
    with pytest.raises(P.ScanTimeError, match=match):
        act(np.ones((3, 3, 3)), hours_after_injection=hours)
    assert act(np.ones((3, 3, 3)), hours_after_injection="2.5").hours_after_injection == 2.5


@pytest.mark.parametrize("name", ["injected_activity_mbq", "weight_kg"])
@pytest.mark.parametrize("value", ["abc", True, float("nan"), -1.0])
def test_bad_injected_activity_or_weight(name, value):
    with pytest.raises(P.MissingInjectedActivityError, match=f"{name} .*positive number"):
        act(np.ones((3, 3, 3)), **{name: value})


@pytest.mark.parametrize("kwargs, match", [
    ({"fwhm_mm": -1.0}, "fwhm_mm = -1.0 is out of range"),
    ({"fwhm_mm": float("nan")}, "fwhm_mm = nan is not a finite number"),
    ({"fwhm_mm": float("inf")}, "fwhm_mm = inf is not a finite number"),
    ({"fwhm_mm": True}, "fwhm_mm = True is a boolean"),
    ({"fwhm_mm": "sharp"}, "fwhm_mm = 'sharp' is not a number"),
    ({"total_counts": -1e6}, "total_counts = -1000000.0 is out of range.*None for a noiseless"),
    ({"total_counts": 0}, "total_counts = 0 is out of range"),
    ({"total_counts": float("nan")}, "total_counts = nan is not a finite"),
    ({"total_counts": float("inf")}, "total_counts = inf is not a finite"),
    ({"total_counts": True}, "total_counts = True is a boolean"),
    ({"n_tumours": -1}, "n_tumours = -1 is out of range.*n_tumours >= 1"),
    ({"n_tumours": True}, "n_tumours = True is not an integer"),
    ({"n_tumours": 2.5}, "n_tumours = 2.5 is not an integer"),
    ({"n_tumours": float("nan")}, "n_tumours = nan is not an integer"),
    ({"heterogeneity": float("nan")}, "heterogeneity = nan is not a finite"),
    ({"heterogeneity": "abc"}, "heterogeneity = 'abc' is not a number"),
    ({"injected_activity_mbq": -150.0}, "injected_activity_mbq = -150.0 is out of range"),
    ({"injected_activity_mbq": float("nan")}, "injected_activity_mbq = nan is not a finite"),
    ({"times_h": (1.0, float("nan"))}, "times_h = nan is not a finite"),
    ({"times_h": "soon"}, "times_h = 'soon' is not a number"),
    ({"spacing_mm": "fine"}, "spacing_mm = 'fine' is not a number"),
    ({"spacing_mm": float("nan")}, "spacing_mm = nan is not a finite"),
    ({"tumour_volumes_ml": (5.0, float("nan"))}, "tumour_volumes_ml = nan is not a finite"),
    ({"seed": -1}, "seed = -1 is out of range"),
])
def test_phantom_refuses_bad_numbers(kwargs, match):
    with pytest.raises(P.PhantomParameterError, match=match) as err:
        P.make_phantom(**kwargs)
    assert isinstance(err.value, pbpk.InvalidInputError) and isinstance(err.value, P.PatientDataError)


def test_scan_time_given_twice_is_refused():
    # hours_after_injection and injection/scan times could disagree; neither may win silently
    with pytest.raises(P.ScanTimeError, match="not both"):
        act(np.ones((3, 3, 3)), hours_after_injection=1.0,
            injection_time="2026-01-01T08:00", scan_time="2026-01-01T12:00")
    # an injection time alone cannot disagree (load_patient passes it to every frame)
    assert act(np.ones((3, 3, 3)), hours_after_injection=1.0,
               injection_time="2026-01-01T08:00").hours_after_injection == 1.0
