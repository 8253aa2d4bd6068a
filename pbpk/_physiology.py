"""Reference adult physiology and its scaling to a patient.

Organ volumes of the reference adults are the ICRP Publication 89 reference masses (as
tabulated with the ICRP-89 177Lu S-values shipped in ``twin/dose``; 1 g = 1 mL assumed) where
ICRP-89 gives the organ, and the Kletting/Begum PBPK lineage (coded in PyCNO and the
Bartelink R model, see ``research/pbpk_models.md`` §2.1) for lumped tissues (muscle, skin,
adipose, bone, rest) scaled by body weight / 71 kg. Plasma volume, cardiac plasma output,
vascular and interstitial fractions, and flow fractions follow the same lineage.

A :class:`Physiology` is immutable; :meth:`Physiology.for_patient` builds one from sex,
weight, height, age, haematocrit and serum creatinine (CKD-EPI 2021 eGFR de-indexed by BSA),
and measured organ volumes from the images override the scaled ones.

Volume convention: an organ's model volume is litres at 1 kg/L, i.e. its mass in kg, because
the reference volumes are the ICRP-89 masses and the doses divide by that number. A volume
segmented on CT is physical; :func:`model_volume_l` multiplies it by the organ's ICRU-46 tissue
density (kidney 1.05, liver and spleen 1.06 kg/L), and ``measured_volumes_l`` does this for
you. Tumour volumes stay physical (the sphere model gives their mass at 1.04 kg/L).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pbpk._errors import InvalidInputError, UnknownNameError
from pbpk._frozen import FrozenMap
from pbpk._labs import absolute_gfr_ml_min, bsa_mosteller_m2, egfr_ckd_epi_2021
from pbpk._numbers import real_or_none

__all__ = ["Physiology", "REFERENCE_ORGAN_VOLUMES_L", "ORGANS", "TISSUE_DENSITY_KG_PER_L",
           "model_volume_l"]

# ICRP-89 reference masses (g) of the organs the PSMA/SSTR models resolve
# [human_phantom_masses.csv shipped with the ICRP-89 177Lu S-values, PyTheranostics data
#  folder, Apache-2.0]. GI = stomach + small intestine + left/right colon + rectum + pancreas.
_ICRP89_G = {
    "male": {"kidney": 310, "liver": 1800, "spleen": 150, "salivary": 85, "red_marrow": 1170,
             "brain": 1450, "heart": 330, "lungs": 1200, "prostate": 17, "adrenals": 14,
             "thyroid": 20, "gi": 150 + 650 + 150 + 150 + 70 + 140, "body": 73000},
    "female": {"kidney": 275, "liver": 1400, "spleen": 130, "salivary": 70, "red_marrow": 900,
               "brain": 1300, "heart": 250, "lungs": 950, "prostate": 0, "adrenals": 13,
               "thyroid": 17, "gi": 140 + 600 + 145 + 145 + 70 + 120, "body": 60000},
}
# Lumped tissues per 71 kg of body weight (L) [Kletting/Begum lineage, research notes §2.1].
_LUMPED_PER_71KG_L = {"muscle": 30.078, "skin": 3.408, "adipose": 13.465, "bone_total": 10.165}
# Lacrimal glands: Bartelink R model value (no ICRP reference) [research notes §2.1].
_LACRIMAL_L = 0.000727

ORGANS = ("kidney", "liver", "spleen", "salivary", "lacrimal", "red_marrow", "brain", "heart",
          "lungs", "prostate", "gi", "muscle", "skin", "adipose", "bone", "adrenals", "thyroid")

REFERENCE_ORGAN_VOLUMES_L = {
    sex: {k: v / 1000.0 for k, v in table.items() if k != "body"} for sex, table in _ICRP89_G.items()
}

# Adult tissue densities (kg/L) to turn a segmented (physical) volume into the models'
# mass-equivalent volume [ICRU Report 46 (1992) adult tissues: kidney 1.05, liver 1.06,
# spleen 1.06, heart 1.05, muscle 1.05, brain 1.04, thyroid 1.05, prostate 1.04, skin 1.09,
# adipose 0.95, red marrow 1.03; salivary glands, lacrimal glands, adrenals and GI walls at
# ICRU-46 average soft tissue 1.03, as assigned in the UF hybrid reference phantoms (Lee et al.,
# Health Phys 2012;102(3), Table 2, doi:10.1097/HP.0b013e318235163f, PMC3859249)]. Lungs and bone have none: a CT lung volume holds
# air and depends on inspiration, and bone mixes cortical and trabecular bone with marrow; give
# their masses in kg through ``organ_volumes_l`` instead.
TISSUE_DENSITY_KG_PER_L = {
    "kidney": 1.05, "liver": 1.06, "spleen": 1.06, "salivary": 1.03, "lacrimal": 1.03,
    "red_marrow": 1.03, "brain": 1.04, "heart": 1.05, "prostate": 1.04, "gi": 1.03,
    "muscle": 1.05, "skin": 1.09, "adipose": 0.95, "adrenals": 1.03, "thyroid": 1.05,
}


def model_volume_l(organ: str, measured_volume_l: float) -> float:
    """The models' volume (L at 1 kg/L, i.e. the mass in kg) of an organ segmented on CT.

    ``measured_volume_l`` x the organ's ICRU-46 density (:data:`TISSUE_DENSITY_KG_PER_L`):
    a 0.30 L kidney pair is 0.315 in the model. Pass the result in ``organ_volumes_l``, or
    give the segmented volumes as ``Physiology.for_patient(..., measured_volumes_l=...)``.
    """
    if organ not in ORGANS:
        raise UnknownNameError(
            f"organ {organ!r} has no volume in the physiology; known organs: {', '.join(ORGANS)}."
        )
    if organ not in TISSUE_DENSITY_KG_PER_L:
        raise InvalidInputError(
            f"a segmented volume of {organ!r} cannot be converted (no single tissue density: "
            f"{'a CT lung volume holds air' if organ == 'lungs' else 'bone mixes mineral and marrow'}); "
            f"give its mass in kg as organ_volumes_l={{{organ!r}: ...}} instead."
        )
    v = real_or_none(measured_volume_l)
    if v is None:
        raise InvalidInputError(
            f"the measured volume of {organ!r} must be a number (L), got {measured_volume_l!r}."
        )
    if not math.isfinite(v) or v <= 0:
        raise InvalidInputError(
            f"the measured volume of {organ!r} is {measured_volume_l!r} L; give a positive volume "
            "in litres (a value in mL is 1000 times too large)."
        )
    return v * TISSUE_DENSITY_KG_PER_L[organ]


# Reference anthropometrics: ICRP-89 reference adults (73 kg / 176 cm; 60 kg / 163 cm).
_REFERENCE = {
    "male": dict(weight_kg=73.0, height_cm=176.0),
    "female": dict(weight_kg=60.0, height_cm=163.0),
}
_RANGES = {
    "weight_kg": (30.0, 250.0),
    "height_cm": (120.0, 230.0),
    "age_y": (18.0, 110.0),
    "haematocrit": (0.15, 0.65),
    "gfr_ml_min": (5.0, 250.0),
}

# Fractions of cardiac plasma output [Kletting/Begum lineage; research notes §2.1].
FLOW_FRACTIONS = {"kidney": 0.19, "liver": 0.065, "spleen": 0.03, "gi": 0.16, "muscle": 0.17,
                  "brain": 0.12, "skin": 0.05, "adipose": 0.05, "red_marrow": 0.03, "bone": 0.05,
                  "heart": 0.04}
# Plasma flow per organ volume, mL/min/mL [research notes §2.1]; prostate x (1 - Hct).
FLOW_PER_VOLUME_PER_MIN = {"tumour": 0.5, "salivary": 0.16, "lacrimal": 0.16, "prostate": 0.18,
                           # adrenals and thyroid (SSTR2 model): blood flow ~5-6 and ~4-5
                           # mL/min/g as plasma flow; literature recollection, unverified
                           "adrenals": 3.0, "thyroid": 2.4}
# Vascular (plasma) volume as a fraction of organ volume; x (1 - Hct) where marked.
VASCULAR_FRACTION_OF_ORGAN = {"tumour": (0.05, True), "kidney": (0.055, False),
                              "liver": (0.085, False), "spleen": (0.12, False),
                              "salivary": (0.03, True), "lacrimal": (0.03, True),
                              "prostate": (0.004, True), "adrenals": (0.05, True),
                              "thyroid": (0.05, True)}
# Vascular volume as a fraction of total plasma volume.
VASCULAR_FRACTION_OF_PLASMA = {"lungs": 0.105, "gi": 0.076, "muscle": 0.14, "skin": 0.03,
                               "brain": 0.012, "adipose": 0.05, "heart": 0.01, "red_marrow": 0.04,
                               "bone": 0.03}
ARTERIAL_FRACTION_OF_PLASMA = 0.06 + 0.045
VENOUS_FRACTION_OF_PLASMA = 0.18 + 0.045
# Interstitial volume: fraction of organ volume, or ratio to the vascular volume.
INTERSTITIAL_FRACTION_OF_ORGAN = {"tumour": 0.38, "liver": 0.2, "spleen": 0.2, "salivary": 0.23,
                                  "lacrimal": 0.23, "prostate": 0.25, "adrenals": 0.2,
                                  "thyroid": 0.2}
INTERSTITIAL_TO_VASCULAR = {"lungs": 5.5, "gi": 8.8, "muscle": 5.9, "skin": 8.9, "adipose": 15.5,
                            "heart": 3.7, "red_marrow": 3.7, "bone": 8.4, "rest": 4.1}
# Permeability-surface constants k_PS (1/min), PS = k_PS x organ volume.
K_PS_PER_MIN = {"muscle": 0.02, "liver": 2.0, "spleen": 2.0, "lungs": 2.0, "red_marrow": 2.0,
                "salivary": 2.0, "lacrimal": 2.0, "tumour": 0.6, "prostate": 0.1, "gi": 0.02,
                "skin": 0.02, "adipose": 0.02, "heart": 0.02, "bone": 0.02, "rest": 0.02,
                "brain": 0.0, "adrenals": 2.0, "thyroid": 2.0}
# Kidney sub-compartments as fractions of kidney volume [research notes §1.5].
KIDNEY_TUBULE_FRACTION = 0.15


def _merge_volumes(model_l: Mapping[str, float] | None,
                   measured_l: Mapping[str, float] | None,
                   weight_kg: float = math.inf) -> dict[str, float]:
    """organ_volumes_l (model convention) plus measured_volumes_l converted to it."""
    out = dict(model_l or {})
    for organ, v in dict(measured_l or {}).items():
        if organ in out:
            raise InvalidInputError(
                f"{organ!r} is given both in organ_volumes_l (mass in kg ~ L) and in "
                "measured_volumes_l (segmented litres); give it once."
            )
        out[organ] = model_volume_l(organ, v)
        if out[organ] >= weight_kg:
            raise InvalidInputError(
                f"measured_volumes_l[{organ!r}] = {v!r} L is not valid: it weighs more than the body "
                f"({weight_kg:g} kg); give the segmented volume in litres (a value in mL is 1000 "
                "times too large)."
            )
    return out


def _normalise_sex(sex) -> str:
    """'male' or 'female', case and surrounding blanks ignored (as in :mod:`pbpk._labs`)."""
    norm = sex.strip().lower() if isinstance(sex, str) else sex
    if norm not in ("male", "female"):
        raise InvalidInputError(f"sex = {sex!r} is not accepted; use 'male' or 'female'.")
    return norm


def _check_range(field_name: str, value: float) -> float:
    lo, hi = _RANGES[field_name]
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{field_name} must be a number, got {value!r}.") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise InvalidInputError(
            f"{field_name} = {value!r} is outside the accepted range {lo:g}-{hi:g}; check the value "
            "and its unit."
        )
    return v


@dataclass(frozen=True)
class Physiology:
    """A patient's physiology: anthropometrics, haematocrit, GFR and organ volumes.

    Use :meth:`reference` for the ICRP-89 reference adult or :meth:`for_patient` for a
    patient. ``organ_volumes_l`` holds organ volumes that replace the scaled reference ones,
    in the models' convention: litres at 1 kg/L, i.e. the organ mass in kg (the reference
    volumes are ICRP-89 masses). Volumes segmented on CT are physical: give them as
    ``for_patient(..., measured_volumes_l=...)`` or :meth:`with_measured_volumes`, which
    multiply by the ICRU-46 tissue density (:func:`model_volume_l`; kidney 1.05 kg/L).
    """

    sex: str
    weight_kg: float
    height_cm: float
    age_y: float
    haematocrit: float
    gfr_ml_min: float
    organ_volumes_l: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sex", _normalise_sex(self.sex))
        for name in ("weight_kg", "height_cm", "age_y", "haematocrit", "gfr_ml_min"):
            object.__setattr__(self, name, _check_range(name, getattr(self, name)))
        vols = {}
        for organ, v in dict(self.organ_volumes_l).items():
            if organ not in ORGANS:
                raise UnknownNameError(
                    f"organ {organ!r} has no volume in the physiology; known organs: {', '.join(ORGANS)}."
                )
            if organ == "prostate" and self.sex == "female":
                # the models leave the prostate out of a female patient (ICRP-89: 0 g), so the
                # volume would be kept and never used
                raise InvalidInputError(
                    f"organ_volumes_l['prostate'] = {v!r} was given for a female patient; the "
                    "models have no prostate in a female patient (ICRP-89: 0 g): leave it out, or "
                    "check the patient's sex.")
            fv = real_or_none(v)  # a bool or a string is not a volume (True is not 1 L)
            if fv is None:
                raise InvalidInputError(
                    f"organ_volumes_l[{organ!r}] must be a number (L), got {v!r}."
                )
            if not math.isfinite(fv) or fv <= 0 or fv >= self.weight_kg:
                raise InvalidInputError(
                    f"organ_volumes_l[{organ!r}] = {v!r} L is not valid; give the organ's volume in "
                    f"litres, above 0 and below the body weight ({self.weight_kg:g} kg ~ L) "
                    "(e.g. 0.3 for a kidney pair; a value in mL is 1000 times too large)."
                )
            vols[organ] = fv
        object.__setattr__(self, "organ_volumes_l", FrozenMap(vols))
        if "bone" not in vols:
            self.organ_volume_l("bone")  # refuses a red marrow that leaves no bone

    # --------------------------------------------------------------- constructors
    @classmethod
    def reference(cls, sex: str = "male", age_y: float = 60.0, gfr_ml_min: float = 100.0,
                  haematocrit: float = 0.40) -> Physiology:
        """The ICRP-89 reference adult (male 73 kg/176 cm, female 60 kg/163 cm).

        GFR 100 mL/min and haematocrit 0.40 are the defaults of the PBPK lineage's sanity
        runs (research notes §1.12 and §2.1), not ICRP values.
        """
        sex = _normalise_sex(sex)
        return cls(sex=sex, age_y=age_y, haematocrit=haematocrit, gfr_ml_min=gfr_ml_min,
                   **_REFERENCE[sex])

    @classmethod
    def for_patient(
        cls,
        sex: str,
        weight_kg: float,
        height_cm: float,
        age_y: float,
        *,
        creatinine: float | None = None,
        creatinine_unit: str | None = None,
        gfr_ml_min: float | None = None,
        haematocrit: float = 0.40,
        organ_volumes_l: Mapping[str, float] | None = None,
        measured_volumes_l: Mapping[str, float] | None = None,
    ) -> Physiology:
        """A patient's physiology from demographics and labs.

        GFR comes from ``gfr_ml_min`` (measured, absolute mL/min) or from serum creatinine
        with its unit (CKD-EPI 2021, de-indexed by the Mosteller BSA); giving both is an
        error. ``sex`` is 'male' or 'female' in any case. ``measured_volumes_l`` are organ
        volumes segmented on CT (physical litres, converted by :func:`model_volume_l`);
        ``organ_volumes_l`` are already in the models' convention (mass in kg ~ L).
        """
        sex = _normalise_sex(sex)
        if gfr_ml_min is not None and creatinine is not None:
            raise InvalidInputError(
                "give either gfr_ml_min (measured GFR) or creatinine (to estimate it), not both; "
                "drop creatinine to use the measured GFR, or gfr_ml_min to use the CKD-EPI 2021 "
                "estimate."
            )
        if gfr_ml_min is None:
            if creatinine is None:
                raise InvalidInputError(
                    "give either gfr_ml_min (measured GFR) or creatinine with creatinine_unit "
                    "('mg/dL' or 'umol/L') to estimate it."
                )
            egfr = egfr_ckd_epi_2021(creatinine, creatinine_unit, age_y, sex)
            gfr_ml_min = absolute_gfr_ml_min(egfr, bsa_mosteller_m2(height_cm, weight_kg))
            if np.ndim(gfr_ml_min) != 0:
                raise InvalidInputError(
                    "a Physiology is one patient: give creatinine, age_y, height_cm and weight_kg "
                    "as single numbers (for a cohort, build one Physiology per patient)."
                )
            lo, hi = _RANGES["gfr_ml_min"]
            if not lo <= gfr_ml_min <= hi:
                raise InvalidInputError(
                    f"creatinine = {creatinine!r} {creatinine_unit} gives a CKD-EPI 2021 GFR of "
                    f"{gfr_ml_min:.3g} mL/min (de-indexed by BSA), outside the accepted range "
                    f"{lo:g}-{hi:g} mL/min; check the creatinine value and its unit, or give a "
                    "measured gfr_ml_min."
                )
        return cls(sex=sex, weight_kg=weight_kg, height_cm=height_cm, age_y=age_y,
                   haematocrit=haematocrit, gfr_ml_min=gfr_ml_min,
                   organ_volumes_l=_merge_volumes(organ_volumes_l, measured_volumes_l,
                                                  _check_range("weight_kg", weight_kg)))

    def with_organ_volumes(self, **volumes_l: float) -> Physiology:
        """A copy with organ volumes in the models' convention (mass in kg ~ L)."""
        return dataclasses.replace(self, organ_volumes_l={**self.organ_volumes_l, **volumes_l})

    def with_measured_volumes(self, **volumes_l: float) -> Physiology:
        """A copy with organ volumes segmented on CT (physical L, see :func:`model_volume_l`)."""
        return self.with_organ_volumes(**_merge_volumes(None, volumes_l, self.weight_kg))

    # --------------------------------------------------------------- derived quantities
    @property
    def bsa_m2(self) -> float:
        return bsa_mosteller_m2(self.height_cm, self.weight_kg)

    @property
    def plasma_volume_l(self) -> float:
        """V_p = 2.8 L/m^2 x BSA x (1 - Hct) [PBPK lineage, research notes §2.1]."""
        return 2.8 * self.bsa_m2 * (1.0 - self.haematocrit)

    @property
    def cardiac_plasma_output_l_per_h(self) -> float:
        """F = 1.23 /min x V_p [PBPK lineage, research notes §2.1], in L/h."""
        return 1.23 * 60.0 * self.plasma_volume_l

    @property
    def weight_scale(self) -> float:
        return self.weight_kg / 71.0

    def organ_volume_l(self, organ: str) -> float:
        """Organ volume in L: measured if given, else the reference scaled by weight."""
        if organ in self.organ_volumes_l:
            return self.organ_volumes_l[organ]
        if organ == "lacrimal":
            return _LACRIMAL_L
        ref_weight = _REFERENCE[self.sex]["weight_kg"]
        if organ in ("muscle", "skin", "adipose"):
            return _LUMPED_PER_71KG_L[organ] * self.weight_scale
        if organ == "bone":
            skeleton = _LUMPED_PER_71KG_L["bone_total"] * self.weight_scale
            red_marrow = self.organ_volume_l("red_marrow")
            if red_marrow >= skeleton:
                raise InvalidInputError(
                    f"organ_volumes_l['red_marrow'] = {red_marrow:g} L leaves no bone: the skeleton of "
                    f"a {self.weight_kg:g} kg patient (bone + red marrow, 10.165 L per 71 kg) is "
                    f"{skeleton:.3g} L; check the red marrow mass (kg ~ L), or give "
                    "organ_volumes_l['bone'] as well."
                )
            return skeleton - red_marrow
        if organ in REFERENCE_ORGAN_VOLUMES_L[self.sex]:
            return REFERENCE_ORGAN_VOLUMES_L[self.sex][organ] * self.weight_kg / ref_weight
        raise UnknownNameError(f"organ {organ!r} is not known; known organs: {', '.join(ORGANS)}.")

    def vascular_volume_l(self, organ: str, organ_volume_l: float | None = None) -> float:
        key = "tumour" if organ.startswith("tumour") else organ
        if key in VASCULAR_FRACTION_OF_ORGAN:
            frac, hct = VASCULAR_FRACTION_OF_ORGAN[key]
            vol = self.organ_volume_l(organ) if organ_volume_l is None else organ_volume_l
            return frac * vol * ((1.0 - self.haematocrit) if hct else 1.0)
        return VASCULAR_FRACTION_OF_PLASMA[key] * self.plasma_volume_l

    def interstitial_volume_l(self, organ: str, organ_volume_l: float | None = None) -> float:
        key = "tumour" if organ.startswith("tumour") else organ
        if key in INTERSTITIAL_FRACTION_OF_ORGAN:
            vol = self.organ_volume_l(organ) if organ_volume_l is None else organ_volume_l
            return INTERSTITIAL_FRACTION_OF_ORGAN[key] * vol
        return INTERSTITIAL_TO_VASCULAR[key] * self.vascular_volume_l(organ)

    @property
    def renal_age_factor(self) -> float:
        """Renal perfusion relative to a 60-year-old: (4.3 - 0.026 age) / (4.3 - 0.026 x 60).

        The age dependence of renal blood flow per gram, 4.3 - 0.026 x age mL/min/g, is the
        Bartelink PBPK model's (research notes §2.1/§2.6); the reference patient is 60 y.
        """
        return (4.3 - 0.026 * self.age_y) / (4.3 - 0.026 * 60.0)

    def plasma_flow_l_per_h(self, organ: str, organ_volume_l: float | None = None) -> float:
        """Unscaled plasma flow (L/h): a fraction of the cardiac plasma output (kidney x
        :attr:`renal_age_factor`) or a flow per volume. The shipped models scale the
        fraction-based flows down when they would leave under 1 % of the output to the rest
        of the body (see :func:`pbpk.psma_model`, Notes)."""
        key = "tumour" if organ.startswith("tumour") else organ
        if key == "kidney":
            return FLOW_FRACTIONS[key] * self.cardiac_plasma_output_l_per_h * self.renal_age_factor
        if key in FLOW_FRACTIONS:
            return FLOW_FRACTIONS[key] * self.cardiac_plasma_output_l_per_h
        vol = self.organ_volume_l(organ) if organ_volume_l is None else organ_volume_l
        per_min = FLOW_PER_VOLUME_PER_MIN[key]
        if key == "prostate":
            per_min *= 1.0 - self.haematocrit
        return per_min * 60.0 * vol

    def ps_l_per_h(self, organ: str, organ_volume_l: float | None = None) -> float:
        key = "tumour" if organ.startswith("tumour") else organ
        vol = self.organ_volume_l(organ) if organ_volume_l is None else organ_volume_l
        return K_PS_PER_MIN[key] * 60.0 * vol

    @property
    def gfr_l_per_h(self) -> float:
        return self.gfr_ml_min * 60.0 / 1000.0
