"""Review 12 findings on twin.patient: numpy geometry, partial-volume rule, bad inputs, messages.

Numbers are checked against hand counts (voxels x voxel volume) and a voxel simulation (a
uniform sphere blurred with scipy's Gaussian filter), never against the code's own output.
"""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

import pbpk
from twin import patient as P

LABS = {"sex": "male", "age_y": 70, "weight_kg": 80.0, "height_cm": 175.0, "creatinine_mg_dl": 1.0}


def _pet_file(tmp_path, arr=None, spacing=4.0, origin=-40.0):
    arr = np.full((20, 20, 20), 1000.0, np.float32) if arr is None else arr
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((spacing,) * 3)
    img.SetOrigin((origin,) * 3)
    path = tmp_path / "pet.mha"
    sitk.WriteImage(img, str(path))
    return path, img


def _cube_labels(shape=(20, 20, 20)):
    lab = np.zeros(shape, np.int16)
    lab[5:15, 5:15, 5:15] = 1  # 1000 voxels
    return lab


# ----------------------------------------------------------------------------- finding 1
@pytest.mark.parametrize("resample", [False, True])
def test_numpy_masks_take_the_pet_grid(tmp_path, resample):
    pet, _ = _pet_file(tmp_path)
    lab = _cube_labels()
    kw = dict(nuclide="Ga-68", hours_after_injection=1.0, injected_activity_mbq=150.0, resample=resample)
    for masks, table in ((lab, {1: "liver"}), ({"liver": lab > 0}, None)):
        p = P.load_patient(pet, masks=masks, label_table=table, **kw)
        # hand count: 1000 voxels of 4 x 4 x 4 mm = 64 mL, nothing resampled
        assert p.masks.volume_ml("liver") == pytest.approx(1000 * 0.064)
        assert p.resampled == ()
        assert p.masks.geometry.origin == (-40.0, -40.0, -40.0)


def test_numpy_mask_of_another_shape_is_refused_not_resampled(tmp_path):
    pet, _ = _pet_file(tmp_path)
    lab = _cube_labels((20, 20, 21))
    for resample in (False, True):
        with pytest.raises(P.GeometryMismatchError, match="numpy array.*SimpleITK image"):
            P.load_patient(pet, nuclide="Ga-68", masks=lab, label_table={1: "liver"},
                           hours_after_injection=1.0, resample=resample)
    with pytest.raises(P.GeometryMismatchError, match=r"shape \(20, 20, 20\)"):
        P.load_masks({"liver": lab > 0}, reference=P.read_image(pet), resample=True)


def test_numpy_ct_takes_the_pet_grid(tmp_path):
    pet, _ = _pet_file(tmp_path)
    ct = np.full((20, 20, 20), 40.0, np.float32)
    ct[0] = -1000.0
    p = P.load_patient(pet, nuclide="Ga-68", masks=_cube_labels(), label_table={1: "liver"},
                       ct=ct, hours_after_injection=1.0)
    np.testing.assert_array_equal(p.ct_hu, ct)  # voxel for voxel, not resampled
    assert p.resampled == ()


def test_numpy_pet_with_spacing_mm():
    pet = np.zeros((20, 20, 20), np.float32)
    pet[5:15, 5:15, 5:15] = 10000.0  # Bq/mL
    a = P.load_activity_image(pet, nuclide="Ga-68", hours_after_injection=0.0, injected_activity_mbq=150.0,
                              spacing_mm=4.0, origin_mm=(-40.0, -30.0, 0.0))
    assert a.geometry.spacing == (4.0, 4.0, 4.0) and a.geometry.origin == (-40.0, -30.0, 0.0)
    t = P.organ_uptake(a, P.load_masks(pet > 0, {1: "liver"}, reference=a.geometry))
    # hand: 1000 voxels x 0.064 mL = 64 mL; 64 mL x 10 kBq/mL = 0.64 MBq
    assert t.loc["liver", "volume_ml"] == pytest.approx(64.0)
    assert t.loc["liver", "activity_mbq"] == pytest.approx(0.64, rel=1e-6)
    b = P.load_activity_image(pet, nuclide="Ga-68", hours_after_injection=0.0, spacing_mm=(2.0, 3.0, 4.0))
    assert b.geometry.voxel_volume_ml == pytest.approx(0.024)  # 2 x 3 x 4 mm3


def test_numpy_pet_without_spacing_warns():
    with pytest.warns(UserWarning, match="1 mm voxels are assumed.*spacing_mm"):
        a = P.load_activity_image(np.ones((3, 3, 3), np.float32), nuclide="Ga-68", hours_after_injection=0.0)
    assert a.geometry.spacing == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("kw", [{"spacing_mm": 0.0}, {"spacing_mm": float("nan")}, {"spacing_mm": (4.0, 4.0)},
                                {"spacing_mm": "4"}, {"spacing_mm": 4.0, "origin_mm": (0.0, float("inf"), 0.0)}])
def test_bad_spacing_mm_is_refused(kw):
    with pytest.raises(pbpk.InvalidInputError, match="spacing_mm|origin_mm"):
        P.load_activity_image(np.ones((3, 3, 3), np.float32), nuclide="Ga-68", hours_after_injection=0.0, **kw)


def test_spacing_mm_for_an_image_with_geometry_is_refused(tmp_path):
    _, img = _pet_file(tmp_path)
    with pytest.raises(pbpk.InvalidInputError, match="numpy array only.*spacing"):
        P.load_activity_image(img, nuclide="Ga-68", hours_after_injection=0.0, spacing_mm=2.0)


# ----------------------------------------------------------------------------- findings 2 and 7
def _blurred_sphere(volume_ml, fwhm, sp=2.0, n=40):
    """Uniform sphere (1000 Bq/mL, cold background) blurred by a Gaussian of ``fwhm``: the voxel
    simulation that is the reference for the recovered activity."""
    c = (np.arange(n) - (n - 1) / 2) * sp
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r = (3 * volume_ml * 1000 / (4 * math.pi)) ** (1 / 3)
    m = x**2 + y**2 + z**2 <= r * r
    true = np.where(m, 1000.0, 0.0)
    blur = gaussian_filter(true, fwhm / (2 * math.sqrt(2 * math.log(2))) / sp, mode="constant")
    img = sitk.GetImageFromArray(blur.astype(np.float32))
    img.SetSpacing((sp,) * 3)
    a = P.load_activity_image(img, nuclide="Lu-177", hours_after_injection=0.0, injected_activity_mbq=100.0)
    lab = sitk.GetImageFromArray(m.astype(np.int16))
    lab.CopyInformation(img)
    return a, lab, float(true.sum()) * sp**3 / 1e3 / 1e6  # true MBq


def test_recovered_activity_has_no_jump_at_30_ml():
    fwhm = 10.0
    for vol in (29.0, 31.0):
        a, lab, true_mbq = _blurred_sphere(vol, fwhm)
        for name in ("tumour1", "parotid_left", "lesion_a"):
            t = P.organ_uptake(a, P.load_masks(lab, {1: name}, reference=a.geometry), fwhm_mm=fwhm)
            # the voxel simulation: measured / true is the real RC (0.74 here), recovered = true
            assert t.loc[name, "activity_mbq"] / true_mbq == pytest.approx(0.74, abs=0.02)
            assert t.loc[name, "activity_recovered_mbq"] == pytest.approx(true_mbq, rel=0.02)


def test_large_organs_keep_rc_one_unless_asked():
    fwhm = 10.0
    a, lab, true_mbq = _blurred_sphere(31.0, fwhm)
    for vol_name in ("kidney_left", "Liver"):
        m = P.load_masks(lab, {1: vol_name}, reference=a.geometry)
        assert P.organ_uptake(a, m, fwhm_mm=fwhm).loc[vol_name, "recovery_coefficient"] == 1.0
        t = P.organ_uptake(a, m, fwhm_mm=fwhm, recover_organs=True)
        assert t.loc[vol_name, "activity_recovered_mbq"] == pytest.approx(true_mbq, rel=0.02)


@pytest.mark.parametrize("fwhm", [-5.0, float("nan"), float("inf"), "5 mm", True])
def test_bad_fwhm_is_refused(fwhm):
    a, lab, _ = _blurred_sphere(5.0, 5.0, n=12)
    m = P.load_masks(lab, {1: "tumour1"}, reference=a.geometry)
    with pytest.raises(pbpk.InvalidInputError, match="fwhm_mm"):
        P.organ_uptake(a, m, fwhm_mm=fwhm)
    with pytest.raises(pbpk.InvalidInputError, match="fwhm_mm"):
        P.recovery_coefficient(5.0, fwhm)


@pytest.mark.parametrize("volume", [0.0, -1.0, float("nan"), float("inf"), [2.0, -1.0], "big"])
def test_bad_volume_is_refused(volume):
    with pytest.raises(pbpk.InvalidInputError, match="volume_ml"):
        P.recovery_coefficient(volume, 5.0)


def test_parameter_error_type():
    from twin.patient._errors import PatientDataError, PatientParameterError

    with pytest.raises(PatientParameterError):
        P.recovery_coefficient(-1.0, 5.0)
    assert issubclass(PatientParameterError, PatientDataError)
    assert issubclass(PatientParameterError, ValueError)


# ----------------------------------------------------------------------------- finding 5
def test_ct_with_nan_is_refused(tmp_path):
    pet, img = _pet_file(tmp_path)
    ct = np.zeros((20, 20, 20), np.float32)
    ct[5, 6, 7] = np.nan
    cimg = sitk.GetImageFromArray(ct)
    cimg.CopyInformation(img)
    with pytest.raises(P.NonFiniteVoxelError, match=r"CT has 1 NaN.*\(5, 6, 7\)"):
        P.load_patient(pet, nuclide="Ga-68", masks=_cube_labels(), label_table={1: "liver"}, ct=cimg,
                       hours_after_injection=1.0)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nifti_nan_is_refused(tmp_path, ext, dtype):
    arr = np.full((4, 5, 6), 500.0, dtype)
    ok = tmp_path / f"ok{ext}"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(ok))
    a = P.load_activity_image(ok, nuclide="Ga-68", hours_after_injection=0.0)
    np.testing.assert_array_equal(a.bq_per_ml, arr)  # finite files load unchanged
    arr[1, 2, 3] = np.nan
    arr[3, 4, 5] = -np.inf
    bad = tmp_path / f"bad{ext}"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(bad))
    with pytest.raises(P.NonFiniteVoxelError, match=r"2 NaN/infinite.*\(1, 2, 3\)"):
        P.load_activity_image(bad, nuclide="Ga-68", hours_after_injection=0.0)


# ----------------------------------------------------------------------------- findings 6 and 8
def test_decay_corrected_doc_names_dicom_start_and_admin():
    doc = " ".join(P.load_activity_image.__doc__.split())
    assert "DecayCorrection = START" in doc and "DecayCorrection = ADMIN" in doc
    assert "as most scanners store them); they are converted back" not in doc


def test_suv_without_labs_says_how_to_give_the_weight():
    lab = np.ones((6, 6, 6), np.int16)
    with pytest.raises(P.MissingInjectedActivityError, match=r"labs=.*weight_kg"):
        P.load_patient(np.ones((6, 6, 6), np.float32), nuclide="Ga-68", unit="SUV", masks=lab,
                       label_table={1: "liver"}, hours_after_injection=1.0, injected_activity_mbq=150.0)
    with pytest.raises(P.MissingInjectedActivityError, match=r"^(?!.*labs=)the image is in SUV but weight_kg "):
        P.load_activity_image(np.ones((6, 6, 6), np.float32), nuclide="Ga-68", unit="SUV",
                              hours_after_injection=1.0, injected_activity_mbq=150.0)
    # the route the message names: the weight from the labs. Hand: SUV 2 x 150 MBq / 80 kg
    # = 3750 Bq/mL decay-corrected, x 2^(-1 h / 67.71 min) at the scan
    p = P.load_patient(np.full((6, 6, 6), 2.0, np.float32), nuclide="Ga-68", unit="SUV", masks=lab,
                       label_table={1: "liver"}, hours_after_injection=1.0, injected_activity_mbq=150.0,
                       spacing_mm=4.0, labs=LABS)
    assert p.frames[0].bq_per_ml[0, 0, 0] == pytest.approx(3750.0 * 2 ** (-60 / 67.71), rel=1e-3)


@pytest.mark.parametrize("name, region", [
    ("tumor1", "tumour1"), ("Tumour 2", "tumour2"), ("tumour_03", "tumour3"), ("Lesion-4", "tumour4"),
    ("lesion12", "tumour12"), ("tumour_rest", "tumour_rest"), ("Kidney Left", "kidney"),
    ("lesions", None), ("tumour", None),
])
def test_lesion_names_of_segmentation_tools_map_to_tumour_regions(name, region):
    """Lesion labels as segmentation tools write them ("Tumour 2", "lesion_03") are the model's
    tumourN regions (before, "Tumour 2" matched no region and was left out with a warning)."""
    assert P.region_of(name) == region
