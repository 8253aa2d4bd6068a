"""Review 12 findings on twin.lesions: physiological-uptake names and tumour spellings are
compared as twin.patient.region_of compares them."""

import numpy as np
import pytest
import SimpleITK as sitk

from twin import lesions, patient

A0, W = 100.0, 100.0  # MBq, kg: SUV 1 = 1000 Bq/mL at t = 0


def _image(suv, spacing=4.0):
    img = sitk.GetImageFromArray((suv * 1000.0).astype(np.float32))
    img.SetSpacing((spacing,) * 3)
    return img, patient.load_activity_image(img, nuclide="Lu-177", hours_after_injection=0.0,
                                            injected_activity_mbq=A0, weight_kg=W)


def _masks(img, ai, labels, table):
    limg = sitk.GetImageFromArray(labels.astype(np.int16))
    limg.CopyInformation(img)
    return patient.load_masks(limg, table, reference=ai.geometry)


@pytest.mark.parametrize("name", ["Kidney Left", "Kidney_Left", "kidney-left", "KIDNEYS",
                                  "Urinary Bladder", "parotid gland left", "Spleen"])
def test_physiological_names_in_any_spelling_are_excluded(name):
    suv = np.full((30, 30, 30), 0.5, np.float32)
    suv[5:15, 5:15, 5:15] = 30.0      # hot organ, 1000 voxels
    suv[20:24, 20:24, 20:24] = 8.0    # the lesion: 4 x 4 x 4 = 64 voxels of SUV 8
    img, ai = _image(suv)
    lab = np.zeros(suv.shape, np.int16)
    lab[5:15, 5:15, 5:15] = 1
    seg = lesions.segment_lesions(ai, _masks(img, ai, lab, {1: name}), min_volume_ml=0.0)
    assert seg.excluded_structures == (name,)
    assert [(les.n_voxels, les.suv_max) for les in seg.lesions] == [(64, pytest.approx(8.0))]
    assert seg.total_tumour_volume_ml == pytest.approx(64 * 0.064)  # hand: 64 voxels of 64 mm3


def test_unrelated_names_are_not_excluded():
    suv = np.full((20, 20, 20), 0.5, np.float32)
    suv[5:10, 5:10, 5:10] = 8.0
    img, ai = _image(suv)
    lab = np.zeros(suv.shape, np.int16)
    lab[5:10, 5:10, 5:10] = 1
    seg = lesions.segment_lesions(ai, _masks(img, ai, lab, {1: "Prostate"}), min_volume_ml=0.0)
    assert seg.excluded_structures == () and seg.lesions[0].n_voxels == 125


@pytest.mark.parametrize("name", ["tumor1", "Tumour1", "TUMOR2", "Tumour Rest"])
def test_existing_tumours_in_any_spelling_are_replaced(name):
    suv = np.full((30, 30, 30), 0.5, np.float32)
    suv[10:15, 10:15, 10:15] = 8.0
    img, ai = _image(suv)
    lab = np.ones(suv.shape, np.int16)
    lab[10:15, 10:15, 10:15] = 2
    m = _masks(img, ai, lab, {1: "body", 2: name})
    comp = lesions.tumour_compartments(lesions.segment_lesions(ai, m, min_volume_ml=0.0), 3)
    with pytest.raises(patient.LabelTableError, match="replace_tumours=True"):
        lesions.merge_tumour_masks(m, comp)
    merged = lesions.merge_tumour_masks(m, comp, replace_tumours=True)
    assert merged.names == ("body", "tumour1")
    assert merged.volume_ml("tumour1") == pytest.approx(125 * 0.064)  # hand: 5^3 voxels of 64 mm3
    assert merged.volume_ml("body") == pytest.approx((30**3 - 125) * 0.064)
