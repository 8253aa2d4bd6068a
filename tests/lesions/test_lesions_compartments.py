"""Segmented lesions as pbpk tumour compartments (largest N individually, the rest lumped)."""

import numpy as np
import pytest
from lesion_helpers import SPACING_MM, make_image

import pbpk
from twin import lesions as L
from twin import patient as P

VV_ML = SPACING_MM**3 / 1000.0
# five spheres of distinct volumes (mL), SUV 8, well apart
SPHERES = tuple(((x, y, z), v, 8.0) for (x, y, z), v in zip(
    ((30.0, 30.0, 30.0), (110.0, 40.0, 40.0), (40.0, 110.0, 50.0), (110.0, 110.0, 100.0),
     (70.0, 70.0, 110.0)), (10.0, 6.0, 3.0, 1.5, 1.0)))


@pytest.fixture(scope="module")
def case():
    organs = (("liver", (70.0, 70.0, 40.0), (14.0, 14.0, 10.0), 2.0),)
    img, masks, truths = make_image(spheres=SPHERES, organs=organs)
    seg = L.segment_lesions(img, masks, method="fixed", min_volume_ml=0.1)
    assert seg.n_lesions == 5
    return img, masks, truths, seg


def test_psma_largest_individually_rest_lumped(case):
    _, _, truths, seg = case
    vols_l = [int(t.sum()) * VV_ML / 1000 for t in truths]  # painted volumes, largest first
    comp = L.tumour_compartments(seg, 2, model="psma")
    assert comp.names == ("tumour1", "tumour2", "tumour_rest")
    assert comp.lesion_volumes_l == pytest.approx(vols_l[:2], rel=1e-12)
    assert comp.tumour_rest_volume_l == pytest.approx(sum(vols_l[2:]), rel=1e-12)
    assert comp.model_kwargs() == {"lesion_volumes_l": comp.lesion_volumes_l,
                                   "tumour_rest_volume_l": comp.tumour_rest_volume_l}
    # masks: one structure per compartment with the painted voxels
    np.testing.assert_array_equal(comp.masks.mask("tumour1"), truths[0])
    np.testing.assert_array_equal(comp.masks.mask("tumour_rest"), truths[2] | truths[3] | truths[4])
    for name, v in zip(comp.names, comp.volumes_l):
        assert comp.masks.volume_ml(name) == pytest.approx(v * 1000)
    assert list(comp.table()["n_lesions"]) == [1, 1, 3]
    model = pbpk.psma_model("PSMA-11", **comp.model_kwargs())
    for name, v in zip(comp.names, comp.volumes_l):
        assert model.organ_volumes_l[name] == pytest.approx(v)
    # the structure names map to the pbpk regions of the same name
    assert [P.region_of(n) for n in comp.names] == list(comp.names)


def test_sstr_rest_is_one_more_tumour(case):
    _, _, truths, seg = case
    comp = L.tumour_compartments(seg, 3, model="sstr")
    assert comp.names == ("tumour1", "tumour2", "tumour3", "tumour4")
    kw = comp.model_kwargs()
    assert set(kw) == {"tumour_volumes_l"} and len(kw["tumour_volumes_l"]) == 4
    assert kw["tumour_volumes_l"][3] == pytest.approx((int(truths[3].sum()) + int(truths[4].sum()))
                                                      * VV_ML / 1000)
    assert sum(kw["tumour_volumes_l"]) == pytest.approx(seg.total_tumour_volume_ml / 1000)
    model = pbpk.sstr_model("Ga-DOTATATE", **kw)
    assert {"tumour1", "tumour4"} <= set(model.regions)


def test_all_individual_when_few_lesions(case):
    _, _, _, seg = case
    comp = L.tumour_compartments(seg, 10)
    assert comp.names == tuple(f"tumour{i}" for i in range(1, 6))
    assert comp.tumour_rest_volume_l == 0.0
    pbpk.psma_model("PSMA-617", **comp.model_kwargs())  # tumour_rest omitted (0 L)


def test_merge_and_uptake(case):
    """Merged masks: organs untouched, body loses exactly the tumour voxels, and organ_uptake
    gives the tumours' activity: SUV 8 x (A/W) x V x decay."""
    img, masks, _, seg = case
    comp = L.tumour_compartments(seg, 2)
    merged = L.merge_tumour_masks(masks, comp)
    assert set(merged.names) == {"body", "liver", "tumour1", "tumour2", "tumour_rest"}
    np.testing.assert_array_equal(merged.mask("liver"), masks.mask("liver"))
    assert merged.volume_ml("body") == pytest.approx(
        masks.volume_ml("body") - seg.total_tumour_volume_ml)
    t = P.organ_uptake(img, merged)
    for name, v in zip(comp.names, comp.volumes_l):
        assert t.loc[name, "region"] == name
        expected = 8.0 * img.injected_activity_mbq / (img.weight_kg * 1000) * v * 1000 * img.decay_factor
        assert t.loc[name, "activity_mbq"] == pytest.approx(expected, rel=1e-4)
        assert t.loc[name, "suv_mean"] == pytest.approx(8.0, rel=1e-4)
    # merging twice needs replace_tumours; then the result is the same
    again = L.merge_tumour_masks(merged, comp, replace_tumours=True)
    for name in comp.names:
        np.testing.assert_array_equal(again.mask(name), merged.mask(name))
