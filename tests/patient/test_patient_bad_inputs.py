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
