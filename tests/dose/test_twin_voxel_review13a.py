"""Review 13A: the twin's voxel dose map (Twin._voxel_operator / _map_tia / _voxel_dose).

A small synthetic twin (no calibration: only the masks, PET, CT and the therapy model are used
by the voxel path) is checked against an independent computation: the region TIAs spread by
hand over the PET inside each mask and convolved with the Lanconelli kernel by
``scipy.signal.fftconvolve``, CT-density corrected with numpy's interpolation of the shipped
Schneider 2000 table.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.signal

import pbpk
from twin import Twin
from twin.patient._io import Geometry, Masks

_BODY, _KIDNEY_L, _KIDNEY_R, _LIVER, _TUMOUR, _BLADDER = 1, 2, 3, 4, 5, 6
# Schneider et al. 2000 HU -> density table (twin/dose/data/ct), g/cm3
_HU = [-1000.0, -98.0, -97.0, 14.0, 23.0, 100.0, 101.0, 1600.0, 3000.0]
_RHO = [1.21e-3, 0.93, 0.930486, 1.03, 1.031, 1.1199, 1.0762, 1.9642, 2.8]


@pytest.fixture(scope="module")
def synthetic_twin():
    nz, ny, nx = 40, 30, 30
    labels = np.zeros((nz, ny, nx), np.int16)
    labels[2:38, 2:28, 2:28] = _BODY
    labels[5:11, 5:11, 5:11] = _KIDNEY_L
    labels[5:11, 5:11, 19:25] = _KIDNEY_R
    labels[20:26, 5:12, 5:12] = _LIVER
    labels[20:24, 18:22, 18:22] = _TUMOUR
    labels[24:37, 14:27, 14:27] = _BLADDER  # 13^3 voxels: its centre is out of the kernel's reach
    table = {_BODY: "body", _KIDNEY_L: "kidney_left", _KIDNEY_R: "kidney_right", _LIVER: "liver",
             _TUMOUR: "tumour1", _BLADDER: "bladder"}
    geometry = Geometry((nx, ny, nz), (4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    rng = np.random.default_rng(3)
    pet = np.where(labels > 0, rng.uniform(0.5, 1.5, labels.shape), 0.0)
    pet[labels == _BLADDER] *= 50.0  # urine in the bladder: the hottest structure of a PSMA PET
    ct_hu = np.where(labels > 0, 40.0, -1000.0)
    ct_hu[labels == _LIVER] = 60.0
    model = pbpk.psma_model("PSMA-617", lesion_volumes_l=(0.064,), tumour_rest_volume_l=0.0)
    return Twin(model, model, None, (), None, sex="male", masks=Masks(labels, table, geometry),
                pet_bq_per_ml=pet, ct_hu=ct_hu)


def _prediction(twin, tia):
    body = twin.therapy_model.compiled.body_regions
    return types.SimpleNamespace(body_regions=body, tia_mbq_h=tia, n_draws=tia.shape[0])


def test_no_body_tia_in_the_urinary_bladder(synthetic_twin):
    # the bladder's PET signal is urine, an excretum ('urine' is a model region but not a body
    # region), so the remainder-of-body TIA (muscle, fat, skin, gut, ...) must not go there; the
    # old map put 1 MBq h of remainder TIA mostly into the hot bladder
    tw = synthetic_twin
    assert "urine" in tw.therapy_model.regions
    assert "urine" not in tw.therapy_model.compiled.body_regions
    vo = tw._voxel_operator()
    unit = vo["units"][vo["regions"].index("remainder_of_body")]  # Gy per MBq h of remainder TIA
    # 6 voxels from the bladder wall: beyond the 11^3 kernel, so only TIA inside it gives dose
    assert abs(float(unit[30, 20, 20])) <= 1e-6 * float(unit.max())  # float32 FFT rounding
    bladder = tw.masks.labels == _BLADDER
    assert float(unit[bladder].sum()) <= 0.01 * float(unit.sum())  # cross-dose at its wall only


def test_mean_map_equals_hand_tia_map_convolved_by_scipy(synthetic_twin):
    from twin import dose

    tw = synthetic_twin
    body = tw.therapy_model.compiled.body_regions
    tia = np.random.default_rng(0).uniform(10.0, 1000.0, size=(12, len(body)))
    vd = tw._voxel_dose(_prediction(tw, tia), n_draws=12, quantiles=(0.5,), key=0)
    labels, pet = tw.masks.labels, tw.pet_bq_per_ml
    mean_tia = dict(zip(body, tia.mean(axis=0)))
    regions = {"kidney": np.isin(labels, (_KIDNEY_L, _KIDNEY_R)), "liver": labels == _LIVER,
               "tumour1": labels == _TUMOUR}
    remainder = labels == _BODY  # body tissue outside the organ masks; not the bladder (urine)
    hand = np.zeros(labels.shape)
    for r, mask in regions.items():
        hand[mask] = mean_tia[r] * pet[mask] / pet[mask].sum()
    rest_tia = sum(mean_tia.values()) - sum(mean_tia[r] for r in regions)
    hand[remainder] = rest_tia * pet[remainder] / pet[remainder].sum()
    assert hand.sum() == pytest.approx(sum(mean_tia.values()), rel=1e-12)  # all body TIA placed
    kernel = dose.lanconelli_kernel("Lu-177", 4.0)  # 1.04 g/cm3 reference density
    rho = np.interp(tw.ct_hu, _HU, _RHO)
    ref = scipy.signal.fftconvolve(hand, kernel.values_gy_per_mbq_h, mode="same") * 1.04 / rho
    inside = labels > 0
    np.testing.assert_allclose(vd.mean_gy[inside], ref[inside], rtol=0, atol=2e-6 * ref[inside].max())


def test_air_gets_no_dose(synthetic_twin):
    # the CT-density correction scales the dose by 1.04 / rho: in air (0.0012 g/cm3) next to the
    # skin the cross-dose was multiplied by 870 (133 Gy in the phantom); dose to air is set to 0,
    # tissue is unchanged (the scipy comparison above covers it)
    from twin import AIR_DENSITY_G_CM3, dose

    tw = synthetic_twin
    body = tw.therapy_model.compiled.body_regions
    tia = np.full((4, len(body)), 100.0)
    vd = tw._voxel_dose(_prediction(tw, tia), n_draws=4, quantiles=(0.5,), key=0)
    air = np.interp(tw.ct_hu, _HU, _RHO) < AIR_DENSITY_G_CM3
    assert air.sum() > 0 and not np.any(air & (tw.masks.labels > 0))
    assert np.all(vd.mean_gy[air] == 0.0) and np.all(vd.quantile_gy[0.5][air] == 0.0)
    # the kernel reaches 5 voxels: the air shell next to the body had dose before
    kernel = dose.lanconelli_kernel("Lu-177", 4.0)
    shell = scipy.signal.fftconvolve((tw.masks.labels > 0).astype(float), np.ones((3, 3, 3)), mode="same") > 0.5
    assert np.any(shell & air) and kernel.values_gy_per_mbq_h[5, 5, 6] > 0
