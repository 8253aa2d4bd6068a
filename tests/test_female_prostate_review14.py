"""A prostate volume given for a female patient is refused where it enters.

The shipped models leave the prostate out of a female patient (ICRP-89 reference female:
prostate 0 g, Table 2.8 of ICRP Publication 89), so a volume given for it was stored in the
physiology and never used; the user got no sign that the number they typed had no effect.
"""

from __future__ import annotations

import pytest

import pbpk


@pytest.mark.parametrize("kw", [{"measured_volumes_l": {"prostate": 0.02}},
                                {"organ_volumes_l": {"prostate": 0.02}}])
def test_female_prostate_volume_is_refused(kw):
    with pytest.raises(pbpk.InvalidInputError, match="female.*prostate|prostate.*female"):
        pbpk.Physiology.for_patient("female", 60, 163, 60, gfr_ml_min=90, **kw)


def test_female_prostate_volume_is_refused_on_copies():
    p = pbpk.Physiology.reference("female")
    with pytest.raises(pbpk.InvalidInputError, match="prostate"):
        p.with_organ_volumes(prostate=0.02)
    with pytest.raises(pbpk.InvalidInputError, match="prostate"):
        p.with_measured_volumes(prostate=0.02)


def test_male_prostate_volume_is_used():
    # 20 mL physical x 1.04 kg/L (ICRP-89 soft-tissue density convention) = 0.0208 L-equivalent
    p = pbpk.Physiology.for_patient("male", 60, 175, 75, gfr_ml_min=90,
                                    measured_volumes_l={"prostate": 0.02})
    assert p.organ_volumes_l["prostate"] == pytest.approx(0.02 * 1.04, rel=1e-12)
    m = pbpk.psma_model("PSMA-617", physiology=p)
    assert m.organ_volumes_l["prostate"] == pytest.approx(0.02 * 1.04, rel=1e-12)
    # the reference female has no prostate in the model
    f = pbpk.psma_model("PSMA-617", physiology=pbpk.Physiology.reference("female"))
    assert "prostate" not in f.organ_volumes_l
