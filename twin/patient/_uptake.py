"""Organ uptake from an activity image and masks; partial-volume recovery of compact structures.

Recovery coefficient (RC): a structure is taken as a sphere of its volume, uniformly filled,
imaged with an isotropic Gaussian PSF of the scanner FWHM. RC is the fraction of its activity
that stays inside the sphere after blurring (= measured mean / true mean). For a point at
radius r in a sphere of radius R, the chance that the blurred position stays inside is the
non-central chi-square CDF P(chi2_3(nc=(r/s)^2) <= (R/s)^2); RC averages it over the sphere
(density 3 r^2 / R^3).

Which structures get it (:func:`organ_uptake`): the rule depends on what a structure is, never on
a volume cut-off, so the recovered activity has no jump with size. Tumours, glands (salivary,
lacrimal) and structures without a pbpk region get the sphere RC at every size; the large
organs (:data:`LARGE_ORGAN_REGIONS`: kidney, liver, spleen, bladder, red marrow, body
remainder) keep RC 1 unless ``recover_organs=True``: they are far from spherical and sit among
active tissue whose spill-in offsets much of their spill-out (on ``default_patient()``, FWHM
5 mm, the sphere RC turns kidneys, liver and spleen from 0-4 % low into 3.5-5 % high).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from twin.patient._errors import MissingInjectedActivityError, PatientParameterError
from twin.patient._io import ActivityImage, GeometryMismatchError, Masks

if TYPE_CHECKING:
    import pandas

__all__ = ["LARGE_ORGAN_REGIONS", "STRUCTURE_REGIONS", "intra_organ_distribution", "organ_uptake",
           "recovery_coefficient", "region_of", "region_uptake"]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

#: Structure names -> pbpk region names (tumourN maps to itself; tumour_rest is the PSMA
#: model's lumped tumour compartment).
STRUCTURE_REGIONS = {
    "kidney_left": "kidney", "kidney_right": "kidney", "kidney": "kidney", "liver": "liver",
    "spleen": "spleen", "parotid_left": "salivary", "parotid_right": "salivary",
    "submandibular_left": "salivary", "submandibular_right": "salivary", "salivary": "salivary",
    "lacrimal_left": "lacrimal", "lacrimal_right": "lacrimal", "lacrimal": "lacrimal",
    "red_marrow": "red_marrow", "bladder": "urine", "body": "remainder_of_body",
    "tumour_rest": "tumour_rest",
    # common segmentation-tool names (e.g. TotalSegmentator) and plurals
    "kidneys": "kidney", "urinary_bladder": "urine", "salivary_glands": "salivary",
    "parotid_gland_left": "salivary", "parotid_gland_right": "salivary",
    "submandibular_gland_left": "salivary", "submandibular_gland_right": "salivary",
    "lacrimal_glands": "lacrimal", "lacrimal_gland_left": "lacrimal", "lacrimal_gland_right": "lacrimal",
}


#: pbpk regions of the large organs that keep RC 1 in :func:`organ_uptake` unless
#: ``recover_organs=True`` (non-spherical, surrounded by active tissue).
LARGE_ORGAN_REGIONS = frozenset({"kidney", "liver", "spleen", "urine", "red_marrow", "remainder_of_body"})


def _normalised_name(structure: str) -> str:
    """A structure name as compared by :func:`region_of`: lower case, spaces and hyphens as ``_``."""
    return re.sub(r"[\s\-]+", "_", str(structure).strip().lower())


def region_of(structure: str) -> str | None:
    """pbpk region of a structure name (``None`` if it has none). Case, spaces and hyphens do
    not matter (``"Kidney Left"`` is ``kidney_left``); ``tumor1``, ``"Tumour 1"``,
    ``tumour_01`` and ``lesion1`` are ``tumour1``."""
    key = _normalised_name(structure)
    m = re.fullmatch(r"(?:tumou?r|lesion)_?(\d+)", key)
    if m:
        return f"tumour{int(m.group(1))}"
    return STRUCTURE_REGIONS.get(key)


def _fwhm(fwhm_mm) -> float:
    """``fwhm_mm`` as a finite float >= 0, or :class:`PatientParameterError`."""
    hint = "give the scanner resolution (FWHM) in mm, a finite number >= 0 (e.g. 5.0; 0 for none)."
    if isinstance(fwhm_mm, (bool, np.bool_)):
        raise PatientParameterError(f"fwhm_mm = {fwhm_mm!r} is a boolean; {hint}")
    try:
        f = float(fwhm_mm)
    except (TypeError, ValueError):
        raise PatientParameterError(f"fwhm_mm = {fwhm_mm!r} is not a number; {hint}") from None
    if not math.isfinite(f) or f < 0:
        raise PatientParameterError(f"fwhm_mm = {fwhm_mm!r}; {hint}")
    return f


def recovery_coefficient(volume_ml, fwhm_mm: float, n_points: int = 64):
    """RC of a uniform sphere of ``volume_ml`` imaged with an isotropic Gaussian PSF (FWHM, mm).

    ``volume_ml``: a number or an array of finite volumes > 0 (mL); ``fwhm_mm``: finite, >= 0
    (0 gives RC 1). Anything else raises :class:`twin.patient.PatientParameterError`.
    """
    from scipy.stats import ncx2

    fwhm_mm = _fwhm(fwhm_mm)
    try:
        v = np.atleast_1d(np.asarray(volume_ml, dtype=float))
    except (TypeError, ValueError):
        raise PatientParameterError(f"volume_ml = {volume_ml!r} is not numeric; give the structure "
                                    "volume(s) in mL (finite, > 0).") from None
    if isinstance(volume_ml, (bool, np.bool_)) or v.size == 0 or not np.all(np.isfinite(v) & (v > 0)):
        raise PatientParameterError(f"volume_ml = {volume_ml!r}; give the structure volume(s) in mL as "
                                    "finite numbers > 0.")
    if fwhm_mm == 0:
        return np.ones_like(v) if np.ndim(volume_ml) else 1.0
    s = fwhm_mm * FWHM_TO_SIGMA
    radius = (3.0 * v * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    # Gauss-Legendre in u = (r/R)^3 (uniform in volume)
    x, w = np.polynomial.legendre.leggauss(n_points)
    u = 0.5 * (x + 1.0)
    out = np.empty_like(v)
    for i, big_r in enumerate(radius):
        r = big_r * np.cbrt(u)
        p = ncx2.cdf((big_r / s) ** 2, 3, (r / s) ** 2)
        out[i] = 0.5 * np.sum(w * p)
    return out if np.ndim(volume_ml) else float(out[0])


def organ_uptake(
    image: ActivityImage,
    masks: Masks,
    *,
    fwhm_mm: float | None = None,
    structures=None,
    injected_activity_mbq: float | None = None,
    recover_organs: bool = False,
) -> pandas.DataFrame:
    """Per-structure uptake table (pandas, units in the column names).

    Columns: ``region`` (pbpk), ``volume_ml``, ``activity_mbq`` (at scan time, in the mask),
    ``percent_ia`` (decay-corrected to injection), ``suv_mean``, ``suv_max``,
    ``recovery_coefficient``, ``activity_recovered_mbq`` and ``percent_ia_recovered``
    (divided by the RC). A last row ``whole_body`` sums every labelled voxel.

    ``recovery_coefficient`` (with ``fwhm_mm`` > 0, else 1): the sphere model
    (:func:`recovery_coefficient`) for tumours, glands and structures without a pbpk region, at
    every volume (no size cut-off, so no jump); RC 1 for the large organs of
    :data:`LARGE_ORGAN_REGIONS` (kidneys, liver, spleen, bladder, red marrow, body) and the
    ``whole_body`` row, unless ``recover_organs=True`` gives the organs the sphere RC too.
    ``fwhm_mm`` must be None or a finite number >= 0.
    """
    import pandas as pd

    if fwhm_mm is not None:
        fwhm_mm = _fwhm(fwhm_mm)

    if image.geometry.differences(masks.geometry):
        raise GeometryMismatchError(
            f"masks are not on the image grid ({'; '.join(image.geometry.differences(masks.geometry))});"
            " load them with reference=the image geometry and resample=True."
        )
    if injected_activity_mbq is not None:
        try:
            ok = math.isfinite(float(injected_activity_mbq)) and float(injected_activity_mbq) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MissingInjectedActivityError(
                f"injected_activity_mbq = {injected_activity_mbq!r} must be a positive number of MBq "
                "(e.g. 150 for a 68Ga PET), or None to use the image's own value.")
        injected_activity_mbq = float(injected_activity_mbq)
    a_inj = injected_activity_mbq if injected_activity_mbq is not None else image.injected_activity_mbq
    names = list(masks.names) if structures is None else [str(s) for s in structures]
    for n in names:
        masks.label_of(n)  # UnknownLabelError with the known names
    vv = image.geometry.voxel_volume_ml
    act = image.bq_per_ml.astype(np.float64)
    decay = image.decay_factor
    suv_scale = None
    if a_inj is not None and image.weight_kg is not None:
        suv_scale = a_inj * 1e6 / (image.weight_kg * 1000.0) * decay
    rows = []
    for name in [*names, "whole_body"]:
        m = masks.labels > 0 if name == "whole_body" else masks.mask(name)
        vals = act[m]
        vol = float(m.sum()) * vv
        a_mbq = float(vals.sum()) * vv / 1e6
        region = region_of(name) if name != "whole_body" else None
        rc = 1.0
        if (fwhm_mm and vol > 0 and name != "whole_body"
                and (recover_organs or region not in LARGE_ORGAN_REGIONS)):
            rc = float(recovery_coefficient(vol, fwhm_mm))
        row = {"structure": name, "region": region,
               "volume_ml": vol, "activity_mbq": a_mbq,
               "percent_ia": np.nan, "suv_mean": np.nan, "suv_max": np.nan,
               "recovery_coefficient": rc, "activity_recovered_mbq": a_mbq / rc,
               "percent_ia_recovered": np.nan}
        if a_inj is not None:
            row["percent_ia"] = 100.0 * a_mbq / decay / a_inj
            row["percent_ia_recovered"] = row["percent_ia"] / rc
        if suv_scale is not None:
            row["suv_mean"] = float(vals.mean()) / suv_scale
            row["suv_max"] = float(vals.max()) / suv_scale
        rows.append(row)
    return pd.DataFrame(rows).set_index("structure")


def region_uptake(table) -> pandas.DataFrame:
    """Sum an :func:`organ_uptake` table by pbpk region (volumes, activities, %IA)."""
    cols = ["volume_ml", "activity_mbq", "activity_recovered_mbq", "percent_ia", "percent_ia_recovered"]
    t = table[table["region"].notna()]
    return t.groupby("region")[cols].sum(min_count=1)


def intra_organ_distribution(image: ActivityImage, masks: Masks, structure: str) -> np.ndarray:
    """Normalised distribution inside a structure: activity / structure total (float32, sums to 1).

    Zero outside the structure. Used to spread a region's TIA over voxels.
    """
    m = masks.mask(structure)
    w = np.where(m, image.bq_per_ml, 0).astype(np.float64)
    total = w.sum()
    if total <= 0:
        w = m.astype(np.float64)
        total = w.sum()
    return (w / total).astype(np.float32)

