import json

import numpy as np
import pytest

from twin import patient as P

STRUCTURES = {"body", "red_marrow", "kidney_left", "kidney_right", "liver", "spleen", "parotid_left",
              "parotid_right", "submandibular_left", "submandibular_right", "lacrimal_left",
              "lacrimal_right", "bladder", "tumour1", "tumour2"}


def test_anatomy_labs_ct(phantom_clean):
    ph = phantom_clean
    assert set(ph.masks.names) == STRUCTURES
    assert ph.geometry.spacing == (6.0, 6.0, 6.0)
    gt = ph.ground_truth
    # the pbpk physiology used the segmented volumes x ICRU-46 kidney density 1.05 kg/L
    kid = (gt["structure_volume_ml"]["kidney_left"] + gt["structure_volume_ml"]["kidney_right"]) / 1000
    assert gt["physiology"]["organ_volumes_l"]["kidney"] == pytest.approx(1.05 * kid)
    # CT: air outside, soft tissue ~40 HU in the body, marrow brighter
    ct = ph.ct_hu
    assert ct.dtype == np.float32
    assert ct[ph.masks.labels == 0].mean() == pytest.approx(-1000, abs=1)
    assert ct[ph.masks.mask("body")].mean() == pytest.approx(40, abs=2)
    assert ct[ph.masks.mask("red_marrow")].mean() > 200
    assert ph.frames[0].bq_per_ml.dtype == np.float32
    assert 30 <= ph.labs.weight_kg <= 250 and ph.labs.creatinine_mg_dl is not None
    assert set(gt["tia_mbq_h"]) >= {"kidney", "liver", "tumour1", "salivary", "lacrimal"}
    # 1 h -> 3 h: physical activity in the image falls
    assert ph.frames[1].bq_per_ml.sum() < ph.frames[0].bq_per_ml.sum()


def test_seeded_and_reproducible():
    kw = {"spacing_mm": 8.0, "times_h": (1.0,), "total_counts": 1e6, "heterogeneity": 0.3}
    a = P.make_phantom(11, **kw)
    b = P.make_phantom(11, **kw)
    c = P.make_phantom(12, **kw)
    np.testing.assert_array_equal(a.frames[0].bq_per_ml, b.frames[0].bq_per_ml)
    np.testing.assert_array_equal(a.masks.labels, b.masks.labels)
    assert a.labs == b.labs
    assert a.labs != c.labs or not np.array_equal(a.frames[0].bq_per_ml, c.frames[0].bq_per_ml)


def test_noise_heterogeneity_keep_totals():
    ph = P.make_phantom(3, spacing_mm=8.0, times_h=(1.0,), fwhm_mm=0.0, total_counts=1e7,
                        heterogeneity=0.4, n_tumours=1)
    true = ph.true_frames[0]
    truth = ph.ground_truth["frames"][0]["structure_activity_mbq"]
    t = P.organ_uptake(true, ph.masks)
    for name in ("liver", "kidney_left", "tumour1"):  # texture keeps organ totals
        assert t.loc[name, "activity_mbq"] == pytest.approx(truth[name], rel=1e-4)
    liver = true.bq_per_ml[ph.masks.mask("liver")]
    assert liver.std() / liver.mean() > 0.1
    noisy = ph.frames[0].bq_per_ml
    # Poisson counts: total within 5 sigma of 1e7 counts, voxel noise present
    assert noisy.sum(dtype=np.float64) == pytest.approx(true.bq_per_ml.sum(dtype=np.float64), rel=5 / np.sqrt(1e7))
    assert not np.array_equal(noisy, true.bq_per_ml)


def test_write_and_load_round_trip(tmp_path, phantom_clean):
    files = phantom_clean.write(tmp_path / "ph")
    assert {p.name for p in (tmp_path / "ph").iterdir()} == {
        "ct.nii.gz", "labels.nii.gz", "label_table.csv", "labs.csv", "ground_truth.json",
        "pet_1h.nii.gz", "pet_3h.nii.gz"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    gt = json.loads(files["ground_truth"].read_text())
    assert gt["seed"] == 7 and gt["nuclide"] == "Ga-68"
    pat = P.load_patient([files["pet_3h"], files["pet_1h"]], nuclide="68Ga", hours_after_injection=[3.0, 1.0],
                         injected_activity_mbq=gt["injected_activity_mbq"], masks=files["labels"],
                         label_table=files["label_table"], ct=files["ct"], labs=files["labs"])
    assert [f.hours_after_injection for f in pat.frames] == [1.0, 3.0]
    assert pat.labs == phantom_clean.labs
    np.testing.assert_array_equal(pat.masks.labels, phantom_clean.masks.labels)
    np.testing.assert_allclose(pat.frames[0].bq_per_ml, phantom_clean.frames[0].bq_per_ml, rtol=1e-6)
    t = pat.uptake(0)
    assert t.loc["liver", "activity_mbq"] == pytest.approx(
        gt["frames"][0]["structure_activity_mbq"]["liver"], rel=1e-5)
    # segmented volumes are physical; the model's are mass-equivalent: x ICRU-46 density
    # (kidney 1.05, liver 1.06 kg/L)
    assert gt["physiology"]["organ_volumes_l"]["kidney"] == pytest.approx(1.05 * pat.organ_volumes_l()["kidney"])
    assert len(pat.lesion_volumes_l()) == 2
    assert pat.physiology().organ_volume_l("liver") == pytest.approx(1.06 * pat.organ_volumes_l()["liver"])


def test_write_failure_leaves_nothing(tmp_path, phantom_clean, monkeypatch):
    def boom(self, path):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(P.Labs, "to_csv", boom)
    with pytest.raises(OSError):
        phantom_clean.write(tmp_path / "ph")
    assert list(tmp_path.iterdir()) == []


def test_spect_sstr_and_default_patient():
    ph = P.make_phantom(5, agent="DOTATATE", modality="SPECT", spacing_mm=8.0, times_h=(24.0,),
                        total_counts=None, n_tumours=1)
    gt = ph.ground_truth
    assert gt["nuclide"] == "Lu-177" and gt["fwhm_mm"] == 10.0 and gt["injected_activity_mbq"] == 7400.0
    # the SSTR model has no salivary region: the glands take the remainder-of-body concentration
    sa = gt["frames"][0]["structure_activity_mbq"]
    vol = gt["structure_volume_ml"]
    assert sa["parotid_left"] / vol["parotid_left"] == pytest.approx(sa["body"] / vol["body"], rel=1e-9)
    assert sa["spleen"] / vol["spleen"] > 3 * sa["body"] / vol["body"]
    d = P.default_patient()
    assert d is P.default_patient()  # cached
    assert d.geometry.spacing == (4.0, 4.0, 4.0) and d.labs.patient_id == "default"
    assert d.masks.volume_ml("tumour1") == pytest.approx(12.0, rel=0.15)


def test_given_tumour_volumes_set_the_number_of_tumours():
    # n_tumours is not used when the volumes are given, so None there is no error
    ph = P.make_phantom(3, spacing_mm=8.0, times_h=(1.0,), fwhm_mm=0.0, total_counts=None,
                        tumour_volumes_ml=[12.0], n_tumours=None)
    assert [n for n in ph.masks.names if n.startswith("tumour")] == ["tumour1"]
