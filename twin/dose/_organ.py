"""Organ-level (MIRD) dosimetry: S-value tables, mass scaling, local deposition, sphere model.

``D(target) = sum over sources of TIA(source) * S(target <- source)``.

Data
----
* 177Lu S-values for the ICRP-89 adult male and female phantoms, 25 and 26 targets x 27
  sources, mGy/(MBq·s) (OLINDA-type tables as distributed in qurit/PyTheranostics, with the
  phantom organ masses); stored here in Gy/(MBq·h) (x 3.6). See ``data/svalues_icrp89_lu177``.
* OpenDose S-values on the ICRP-110 adult male/female voxel phantoms for the sources liver,
  spleen, left and right kidney (``data/svalues_opendose_icrp110``), shipped as an independent
  cross-check (:func:`opendose_s_values`).

Patient-specific masses
-----------------------
Self-dose S-values (source = target) are scaled by ``m_reference / m_patient``. This is exact
for the non-penetrating part, which dominates 177Lu self-dose (``S_self * m`` = 0.149-0.154 MeV
for kidney, liver, spleen and salivary glands against 0.148 MeV of electrons per decay), and
slightly overcorrects the few-keV photon part (which scales as ``m**(-2/3)``). Cross-dose
S-values (photons) are not scaled. **Red marrow and osteogenic cells are never scaled**: the
marrow self-dose includes the escape of electrons into trabecular bone (``S * m`` is only
0.084 MeV), which a mass ratio does not describe.

Nuclides without tables
-----------------------
Self-dose by local deposition of the non-penetrating energy, ``D = TIA * E / m`` (ICRP-107;
chain daughters in equilibrium), no cross-dose; the result says so per target.

Tumours: sphere model
---------------------
A tumour is a uniformly active sphere of soft tissue (1.04 g/cm3) of the given mass whose
non-penetrating energy (electrons, alphas) is absorbed inside it and whose photons escape:
``S = E_np / m``. This is the usual model for 177Lu lesions of more than a few mL: the mean
beta range (well under 1 mm) is small against the radius, so electron escape is a surface
effect of a few per cent at most, and the self-absorbed photon energy adds about 1-2 % of the
dose for spheres under 100 g (photons carry 0.035 of 0.183 MeV per decay and mostly escape).
For small spheres of long-range emitters (90Y below about 11 mm radius) electron escape is not
negligible; a warning says so. The kernel tables cannot correct this: their smallest voxel
(2.21 mm) is coarser than the 177Lu electron range.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from pbpk._errors import InvalidInputError
from pbpk._nuclides import chain_nonpenetrating_mev, get_nuclide
from twin.dose._errors import UnknownOrganError
from twin.dose._kernels import DECAYS_PER_MBQ_H, MEV_TO_J, TISSUE_DENSITY_G_CM3

__all__ = [
    "PBPK_SOURCE_REGIONS",
    "tumour_mass_kg",
    "NOT_MASS_SCALED",
    "PHANTOMS",
    "REMAINDER_SOURCE",
    "OrganDoseResult",
    "local_deposition_dose_gy",
    "opendose_s_values",
    "organ_dose",
    "organ_mass_kg",
    "organ_s_values",
    "reference_organ_masses_kg",
    "sphere_dose_gy",
    "sphere_s_value",
]

PHANTOMS: tuple[str, ...] = ("male", "female")
#: Targets whose self-dose S-value is never mass-scaled (see module docstring).
NOT_MASS_SCALED = frozenset({"red_marrow", "osteogenic_cells"})
#: Source name for the TIA of the rest of the body (derived from the total-body S-values).
REMAINDER_SOURCE = "remainder_of_body"
#: pbpk body region -> ICRP-89 S-value source/target. One map for the twin, the cohorts and the
#: validation; other body regions (muscle, gi, ...) are remainder of body, tumours spheres.
PBPK_SOURCE_REGIONS = MappingProxyType({"kidney": "kidneys", "liver": "liver", "spleen": "spleen",
                       "salivary": "salivary_glands", "red_marrow": "red_marrow", "lungs": "lungs",
                       "brain": "brain", "prostate": "prostate", "heart": "heart_wall",
                       "adrenals": "adrenals", "thyroid": "thyroid"})

_MGY_PER_MBQ_S_TO_GY_PER_MBQ_H = 3.6
_S_TABLE_NUCLIDE = "Lu-177"

_SOURCE_COLUMNS = {
    "Adrenals": "adrenals",
    "Brain": "brain",
    "Breasts": "breasts",
    "Esophagus": "esophagus",
    "Eyes": "eyes",
    "GB Cont": "gallbladder_contents",
    "LLI Cont": "lli_contents",
    "SI Cont": "small_intestine_contents",
    "StomCont": "stomach_contents",
    "ULI Cont": "uli_contents",
    "Rectum": "rectum",
    "HeartCon": "heart_contents",
    "Hrt Wall": "heart_wall",
    "Kidneys": "kidneys",
    "Liver": "liver",
    "Lungs": "lungs",
    "Ovaries": "ovaries",
    "Pancreas": "pancreas",
    "Prostate": "prostate",
    "Salivary": "salivary_glands",
    "Red Mar.": "red_marrow",
    "CortBone": "cortical_bone",
    "TrabBone": "trabecular_bone",
    "Spleen": "spleen",
    "Testes": "testes",
    "Thymus": "thymus",
    "Thyroid": "thyroid",
    "UB Cont": "urinary_bladder_contents",
    "Uterus": "uterus",
    "Tot Body": "total_body",
}
_TARGET_ROWS = {
    "Adrenals": "adrenals",
    "Brain": "brain",
    "Breasts": "breasts",
    "Esophagus": "esophagus",
    "Eyes": "eyes",
    "Gallbladder Wall": "gallbladder_wall",
    "LLI Wall": "lli_wall",
    "Small Intestine": "small_intestine",
    "Stomach Wall": "stomach_wall",
    "ULI Wall": "uli_wall",
    "Rectum": "rectum",
    "Heart Wall": "heart_wall",
    "Kidneys": "kidneys",
    "Liver": "liver",
    "Lungs": "lungs",
    "Ovaries": "ovaries",
    "Pancreas": "pancreas",
    "Prostate": "prostate",
    "Salivary Glands": "salivary_glands",
    "Red Marrow": "red_marrow",
    "Osteogenic Cells": "osteogenic_cells",
    "Spleen": "spleen",
    "Testes": "testes",
    "Thymus": "thymus",
    "Thyroid": "thyroid",
    "Urinary Bladder Wall": "urinary_bladder_wall",
    "Uterus": "uterus",
    "Total Body": "total_body",
}
_MASS_ROWS = {
    "Adrenals": "adrenals",
    "Brain": "brain",
    "Breasts": "breasts",
    "Esophagus": "esophagus",
    "Eyes": "eyes",
    "Gallbladder": "gallbladder_wall",
    "Left Colon": "lli_wall",
    "Small Intestine": "small_intestine",
    "Stomach": "stomach_wall",
    "Right Colon": "uli_wall",
    "Heart": "heart_wall",
    "Heart Contents": "heart_contents",
    "Kidneys": "kidneys",
    "Liver": "liver",
    "Lungs": "lungs",
    "Ovaries": "ovaries",
    "Pancreas": "pancreas",
    "Prostate": "prostate",
    "Rectum": "rectum",
    "Salivary Glands": "salivary_glands",
    "Red Marrow": "red_marrow",
    "Bone Surfaces": "osteogenic_cells",
    "Spleen": "spleen",
    "Testes": "testes",
    "Thymus": "thymus",
    "Thyroid": "thyroid",
    "Bladder": "urinary_bladder_wall",
    "Uterus": "uterus",
    "Body": "total_body",
}
_ALIASES = {
    "kidney": "kidneys",
    "salivary": "salivary_glands",
    "salivary_gland": "salivary_glands",
    "marrow": "red_marrow",
    "bone_marrow": "red_marrow",
    "red_bone_marrow": "red_marrow",
    "heart": "heart_wall",
    "lung": "lungs",
    "adrenal": "adrenals",
    "body": "total_body",
    "whole_body": "total_body",
    "remainder": REMAINDER_SOURCE,
    "rest_of_body": REMAINDER_SOURCE,
    "remainder_body": REMAINDER_SOURCE,
}
#: Below these sphere radii (mm) a warning says that electron escape is not negligible. Indicative
#: values of the order of the maximum beta range in soft tissue, not a validated threshold.
_SPHERE_MIN_RADIUS_MM = {"Lu-177": 2.0, "Y-90": 11.0, "I-131": 2.5, "Tb-161": 2.0}
_OPENDOSE_SOURCES = {
    "liver": "lu-177_liver.json",
    "spleen": "lu-177_spleen.json",
    "left_kidney": "lu-177_left kidney c+m+p.json",
    "right_kidney": "lu-177_right kidney c+m+p.json",
}


def _canonical_organ(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    while "__" in key:
        key = key.replace("__", "_")
    return _ALIASES.get(key, key)


def _phantom(phantom: str) -> str:
    key = str(phantom).strip().lower()
    key = {"m": "male", "f": "female", "adult_male": "male", "adult_female": "female"}.get(key, key)
    if key not in PHANTOMS:
        raise UnknownOrganError(f"unknown phantom {phantom!r}; known phantoms: {list(PHANTOMS)}")
    return key


def _data_text(*parts: str) -> str:
    return importlib.resources.files("twin.dose").joinpath("data", *parts).read_text("utf-8")


@functools.cache
def _s_table(phantom: str) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    fname = f"Lu177-{phantom.capitalize()}-Svalues.csv"
    rows = list(csv.reader(_data_text("svalues_icrp89_lu177", fname).splitlines()))
    header = [h.strip() for h in rows[0]]
    sources = tuple(_SOURCE_COLUMNS[h] for h in header[1:])
    targets, values = [], []
    for row in rows[1:]:
        if not row or not row[0].strip():
            continue
        targets.append(_TARGET_ROWS[row[0].strip()])
        values.append([float(v) for v in row[1:]])
    matrix = np.array(values) * _MGY_PER_MBQ_S_TO_GY_PER_MBQ_H
    matrix.setflags(write=False)
    return tuple(targets), sources, matrix


@functools.cache
def _masses(phantom: str) -> dict[str, float]:
    rows = csv.DictReader(
        _data_text("svalues_icrp89_lu177", "human_phantom_masses.csv").splitlines()
    )
    out = {}
    for row in rows:
        grams = float(row[phantom.capitalize()])
        if grams > 0:
            out[_MASS_ROWS[row["Organ"].strip()]] = grams * 1e-3
    return out


def organ_s_values(phantom: str = "male"):
    """177Lu S-values of an ICRP-89 adult phantom as a table, Gy/(MBq·h).

    Returns
    -------
    pandas.DataFrame
        Rows: targets, columns: sources (canonical snake_case names).
    """
    import pandas as pd

    targets, sources, matrix = _s_table(_phantom(phantom))
    return pd.DataFrame(np.array(matrix), index=list(targets), columns=list(sources))


def reference_organ_masses_kg(phantom: str = "male") -> dict[str, float]:
    """Organ masses of the ICRP-89 adult phantom used by the S-value table, kg."""
    return dict(_masses(_phantom(phantom)))


def opendose_s_values(phantom: str = "male", source: str = "liver"):
    """OpenDose 177Lu S-values on the ICRP-110 adult phantom (cross-check data).

    Parameters
    ----------
    phantom : "male" or "female"
    source : "liver", "spleen", "left_kidney" or "right_kidney"

    Returns
    -------
    pandas.DataFrame
        Index: OpenDose target names; columns ``s_gy_per_mbq_h``, ``uncertainty_gy_per_mbq_h``
        (OpenDose's second value, read as the absolute uncertainty) and ``mass_kg``.
    """
    import pandas as pd

    key = _canonical_organ(source)
    if key not in _OPENDOSE_SOURCES:
        raise UnknownOrganError(
            f"no OpenDose file for source {source!r}; shipped sources: {sorted(_OPENDOSE_SOURCES)}"
        )
    folder = "ICRP_110_AM" if _phantom(phantom) == "male" else "ICRP_110_AF"
    rows = json.loads(_data_text("svalues_opendose_icrp110", folder, _OPENDOSE_SOURCES[key]))
    frame = pd.DataFrame(
        {
            "s_gy_per_mbq_h": [float(r[1]) * _MGY_PER_MBQ_S_TO_GY_PER_MBQ_H for r in rows],
            "uncertainty_gy_per_mbq_h": [
                float(r[2]) * _MGY_PER_MBQ_S_TO_GY_PER_MBQ_H for r in rows
            ],
            "mass_kg": [float(r[3]) * 1e-3 for r in rows],
        },
        index=[r[0] for r in rows],
    )
    return frame


def organ_mass_kg(
    mask, spacing_mm: float | Sequence[float], density_g_cm3=TISSUE_DENSITY_G_CM3["soft"]
) -> float:
    """Organ mass from a mask: sum over the mask of voxel volume x density, kg.

    ``density_g_cm3`` is a number or a density map on the mask grid (e.g. from
    :func:`twin.dose.hu_to_density`).
    """
    from twin.dose._kernels import _spacing3

    sel = np.asarray(mask).astype(bool)
    sp = _spacing3(spacing_mm)
    voxel_ml = math.prod(sp) * 1e-3
    rho = np.asarray(density_g_cm3, dtype=np.float64)
    if rho.ndim == 0:
        grams = float(rho) * voxel_ml * int(np.count_nonzero(sel))
    else:
        if rho.shape != sel.shape:
            from twin.dose._errors import GridMismatchError

            raise GridMismatchError(
                f"density map shape {rho.shape} differs from mask shape {sel.shape}"
            )
        grams = float(np.sum(rho[sel])) * voxel_ml
    if not grams > 0:
        raise InvalidInputError("organ mass is zero: the mask is empty or the density is zero")
    return grams * 1e-3


def local_deposition_dose_gy(
    tia_mbq_h: float, mass_kg: float, nuclide: str = "Lu-177", *, include_daughters: bool = True
) -> float:
    """Self-dose by local deposition of the non-penetrating energy, ``D = TIA * E / m``, Gy."""
    _check_positive(mass_kg, "mass_kg")
    _check_tia(tia_mbq_h, "tia_mbq_h")
    energy = _np_energy(nuclide, include_daughters)
    return float(tia_mbq_h) * energy * MEV_TO_J * DECAYS_PER_MBQ_H / float(mass_kg)


def _np_energy(nuclide: str, include_daughters: bool) -> float:
    nuc = get_nuclide(nuclide)
    return chain_nonpenetrating_mev(nuc.name) if include_daughters else nuc.nonpenetrating_mev


def _check_positive(value, name: str) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise InvalidInputError(f"{name} must be positive and finite, got {value!r}")


def _check_tia(value, name: str) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number (MBq·h), got {value!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise InvalidInputError(
            f"{name} must be finite and non-negative (MBq·h), got {value!r}; time-integrated "
            "activity cannot be negative"
        )


def tumour_mass_kg(volume_l: float) -> float:
    """Mass of a tumour from its segmented volume: ``V x 1.04 kg/L``, the soft-tissue density
    of the sphere model and the voxel kernels (:data:`TISSUE_DENSITY_G_CM3` ``["soft"]``).

    Organ volumes of the pbpk models are ICRP-89 reference masses at 1 kg/L, so an organ's mass
    is its model volume; tumour volumes have no reference mass and are physical volumes."""
    _check_positive(volume_l, "tumour volume_l")
    return float(volume_l) * TISSUE_DENSITY_G_CM3["soft"]


def sphere_s_value(
    mass_kg: float,
    nuclide: str = "Lu-177",
    *,
    density_g_cm3: float = TISSUE_DENSITY_G_CM3["soft"],
    include_daughters: bool = True,
) -> tuple[float, str]:
    """Self-dose S-value of a uniformly active sphere (tumour), Gy/(MBq·h), and the method.

    ``S = E_np / m``: the non-penetrating energy is absorbed in the sphere, the photons escape
    (see the module docstring for the validity range). Returns ``(s_value, description)``.
    """
    _check_positive(mass_kg, "mass_kg")
    _check_positive(density_g_cm3, "density_g_cm3")
    name = get_nuclide(nuclide).name
    energy = _np_energy(name, include_daughters)
    volume_ml = float(mass_kg) * 1e3 / float(density_g_cm3)
    radius_mm = (3.0 * volume_ml * 1e3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    limit = _SPHERE_MIN_RADIUS_MM.get(name)
    if limit is not None and radius_mm < limit:
        warnings.warn(
            f"sphere model for {name}: a {volume_ml:.3g} mL sphere (radius {radius_mm:.2g} mm) is "
            f"not much larger than the electron range; local absorption overestimates its dose",
            stacklevel=2,
        )
    method = (
        f"sphere model: {volume_ml:.4g} mL sphere of {float(mass_kg):.4g} kg "
        f"({float(density_g_cm3):g} g/cm3), "
        f"{energy:.5g} MeV non-penetrating energy per decay absorbed (ICRP-107"
        f"{', daughters in equilibrium' if include_daughters else ''}), photons escape"
    )
    return energy * MEV_TO_J * DECAYS_PER_MBQ_H / float(mass_kg), method


def sphere_dose_gy(tia_mbq_h: float, mass_kg: float, nuclide: str = "Lu-177", **kwargs) -> float:
    """Tumour self-dose by the sphere model, Gy (``TIA * sphere_s_value(mass)``)."""
    _check_tia(tia_mbq_h, "tia_mbq_h")
    s_value, _ = sphere_s_value(mass_kg, nuclide, **kwargs)
    return float(tia_mbq_h) * s_value


@dataclass(frozen=True)
class OrganDoseResult:
    """Organ absorbed doses with the method used for each target.

    Attributes
    ----------
    nuclide : str
    phantom : str or None
        ICRP-89 phantom of the S-values (None when only local deposition / sphere models ran).
    dose_gy : mapping target -> Gy
    method : mapping target -> description of how its dose was computed
    contributions_gy : mapping target -> (mapping source -> Gy)
    """

    nuclide: str
    phantom: str | None
    dose_gy: Mapping[str, float]
    method: Mapping[str, str]
    contributions_gy: Mapping[str, Mapping[str, float]] = field(repr=False)

    def to_frame(self):
        """One row per target: ``dose_gy`` and ``method`` (pandas.DataFrame)."""
        import pandas as pd

        return pd.DataFrame(
            {"dose_gy": dict(self.dose_gy), "method": dict(self.method)}
        ).rename_axis("target")


def _source_mass_kg(source: str, phantom: str) -> float:
    masses = _masses(phantom)
    if source in masses:
        return masses[source]
    raise InvalidInputError(
        f"the remainder-of-body S-value needs the reference mass of every other source, but "
        f"{source!r} has none in the phantom mass table; give its TIA as part of the remainder "
        "instead"
    )


def organ_dose(
    tia_mbq_h: Mapping[str, float],
    *,
    nuclide: str = "Lu-177",
    phantom: str = "male",
    organ_masses_kg: Mapping[str, float] | None = None,
    tumour_masses_kg: Mapping[str, float] | None = None,
    targets: Sequence[str] | None = None,
    method: str = "auto",
) -> OrganDoseResult:
    """Organ absorbed doses from source-organ TIAs (MIRD schema).

    Parameters
    ----------
    tia_mbq_h : mapping source -> TIA (MBq·h)
        Source regions by canonical name (``kidneys``, ``liver``, ``spleen``,
        ``salivary_glands``, ``red_marrow``, ``urinary_bladder_contents``, ``total_body``,
        ``remainder_of_body`` ...; see :func:`organ_s_values` for the list) and tumour names
        listed in ``tumour_masses_kg``.
    nuclide : str
        With 177Lu (and ``method`` ``"auto"`` or ``"s_values"``) the ICRP-89 S-value table is
        used; other nuclides get local deposition (self-dose only).
    phantom : "male" or "female"
    organ_masses_kg : mapping target -> kg, optional
        Patient organ masses (e.g. :func:`organ_mass_kg` of the masks). Self-dose S-values are
        scaled by reference / patient mass, except red marrow and osteogenic cells. With local
        deposition these masses are used directly (reference masses otherwise).
    tumour_masses_kg : mapping tumour -> kg, optional
        Tumours (sources not in the phantom): self-dose by the sphere model.
    targets : sequence of str, optional
        Targets to report (default: all phantom targets with S-values, or the sources for local
        deposition), plus the tumours.
    method : "auto", "s_values" or "local_deposition"

    Returns
    -------
    OrganDoseResult

    Notes
    -----
    ``remainder_of_body`` uses the usual remainder S-value,
    ``S(T <- RB) = (S(T <- TB) m_TB - sum_S S(T <- S) m_S) / (m_TB - sum_S m_S)`` over the other
    phantom sources given (reference masses; tumours are not subtracted).
    """
    if not isinstance(tia_mbq_h, Mapping) or not tia_mbq_h:
        raise InvalidInputError("tia_mbq_h must be a non-empty mapping of source name -> MBq·h")
    name = get_nuclide(nuclide).name
    ph = _phantom(phantom)
    tumours = {str(k): float(v) for k, v in (tumour_masses_kg or {}).items()}
    for tname, mass in tumours.items():
        _check_positive(mass, f"tumour mass of {tname!r}")
    sources: dict[str, float] = {}
    tumour_tia: dict[str, float] = {}
    for key, value in tia_mbq_h.items():
        _check_tia(value, f"TIA of {key!r}")
        if str(key) in tumours:
            tumour_tia[str(key)] = float(value)
            continue
        canon = _canonical_organ(key)
        if canon in sources:
            raise InvalidInputError(f"source {key!r} given twice (as {canon!r})")
        sources[canon] = float(value)
    masses_in = {}
    for key, value in (organ_masses_kg or {}).items():
        _check_positive(value, f"mass of {key!r}")
        masses_in[_canonical_organ(key)] = float(value)

    if method not in ("auto", "s_values", "local_deposition"):
        raise InvalidInputError(
            f"method must be 'auto', 's_values' or 'local_deposition', got {method!r}"
        )
    use_table = method == "s_values" or (method == "auto" and name == _S_TABLE_NUCLIDE)
    if use_table and name != _S_TABLE_NUCLIDE:
        raise InvalidInputError(
            f"S-value tables are shipped for {_S_TABLE_NUCLIDE} only; use method='auto' or "
            f"'local_deposition' for {name}"
        )
    dose: dict[str, float] = {}
    how: dict[str, str] = {}
    contrib: dict[str, dict[str, float]] = {}
    if sources and use_table:
        t_names, s_names, matrix = _s_table(ph)
        ref_mass = _masses(ph)
        unknown = [s for s in sources if s not in s_names and s != REMAINDER_SOURCE]
        if unknown:
            raise UnknownOrganError(
                f"sources {unknown} are not in the ICRP-89 {ph} S-value table; known sources: "
                f"{[*s_names, REMAINDER_SOURCE]} (tumours go in tumour_masses_kg). For the regions of a "
                "pbpk.simulate result use twin.model_doses(result, model), which maps them."
            )
        columns = {}
        for src in sources:
            if src == REMAINDER_SOURCE:
                others = [s for s in sources if s != REMAINDER_SOURCE]
                if "total_body" in others:
                    raise InvalidInputError(
                        "give either total_body or remainder_of_body as a source, not both"
                    )
                m_tb = ref_mass["total_body"]
                m_others = [_source_mass_kg(s, ph) for s in others]
                col = matrix[:, s_names.index("total_body")] * m_tb
                for s, m in zip(others, m_others):
                    col = col - matrix[:, s_names.index(s)] * m
                columns[src] = col / (m_tb - sum(m_others))
            else:
                columns[src] = matrix[:, s_names.index(src)]
        wanted = list(t_names) if targets is None else [_canonical_organ(t) for t in targets]
        for tgt in wanted:
            if tgt in tumours:
                continue
            if tgt not in t_names:
                raise UnknownOrganError(
                    f"target {tgt!r} is not in the ICRP-89 {ph} S-value table; known targets: "
                    f"{list(t_names)}"
                )
            row = t_names.index(tgt)
            parts = {}
            scaled = False
            for src, col in columns.items():
                s_val = float(col[row])
                if src == tgt and tgt in masses_in and tgt not in NOT_MASS_SCALED:
                    s_val *= ref_mass[tgt] / masses_in[tgt]
                    scaled = True
                parts[src] = sources[src] * s_val
            dose[tgt] = math.fsum(parts.values())
            contrib[tgt] = parts
            text = f"MIRD S-values, {_S_TABLE_NUCLIDE} ICRP-89 adult {ph} phantom"
            if scaled:
                text += (
                    f"; self-dose mass-scaled to {masses_in[tgt]:.4g} kg "
                    f"(reference {ref_mass[tgt]:.4g} kg)"
                )
            elif tgt in masses_in and tgt in NOT_MASS_SCALED and tgt in sources:
                text += "; self-dose not mass-scaled (red marrow / bone: electron escape)"
                warnings.warn(
                    f"{tgt} self-dose is not mass-scaled (see organ_dose notes)", stacklevel=2
                )
            how[tgt] = text
    elif sources:
        ref_mass = _masses(ph)
        energy = _np_energy(name, True)
        wanted = list(sources) if targets is None else [_canonical_organ(t) for t in targets]
        for tgt in wanted:
            if tgt in tumours:
                continue
            if tgt not in sources:
                raise InvalidInputError(
                    f"local deposition gives self-dose only; target {tgt!r} is not a source"
                )
            if tgt in masses_in:
                mass, origin = masses_in[tgt], "patient"
            elif tgt in ref_mass:
                mass, origin = ref_mass[tgt], f"ICRP-89 adult {ph} reference"
            else:
                raise InvalidInputError(
                    f"no mass for {tgt!r}: give it in organ_masses_kg (kg) for local deposition"
                )
            dose[tgt] = sources[tgt] * energy * MEV_TO_J * DECAYS_PER_MBQ_H / mass
            contrib[tgt] = {tgt: dose[tgt]}
            how[tgt] = (
                f"local deposition of {energy:.5g} MeV per decay (ICRP-107 non-penetrating, "
                f"daughters in equilibrium), {origin} mass {mass:.4g} kg, no cross-dose"
            )
    for tname, tia in tumour_tia.items():
        s_value, text = sphere_s_value(tumours[tname], name)
        dose[tname] = tia * s_value
        contrib[tname] = {tname: dose[tname]}
        how[tname] = text
    missing_tumours = sorted(set(tumours) - set(tumour_tia))
    if missing_tumours:
        raise InvalidInputError(f"tumours {missing_tumours} have a mass but no TIA")
    return OrganDoseResult(
        nuclide=name,
        phantom=ph if (sources and use_table) else None,
        dose_gy=dose,
        method=how,
        contributions_gy=contrib,
    )
