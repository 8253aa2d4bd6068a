"""Virtual patients: anatomy, labs and PET/SPECT frames driven by a pbpk ground truth.

The anatomy is built from ellipsoids and cylinders in millimetres (x: right->left, y:
anterior->posterior, z: feet->head), rasterised on the chosen grid. The measured voxel
volumes of kidneys, liver, spleen, salivary and lacrimal glands (painted at the ICRP-89
reference mass over the ICRU-46 density, and converted back by ``pbpk.model_volume_l``) and
tumours are passed to the pbpk physiology, so the activity the model puts in a region is
exactly the activity painted into its mask. Red marrow is a partial region (lumbar spine): it gets the model's red-marrow
concentration. The rest of the model's body activity is spread uniformly over the body
remainder (and over structures the model has no region for, e.g. the salivary glands in the
SSTR model); urine fills the bladder (no voiding).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import pbpk
from pbpk._errors import InvalidInputError, UnknownNameError
from twin.patient._errors import PhantomParameterError
from twin.patient._io import ActivityImage, Geometry, Masks
from twin.patient._labs import Labs, read_labs
from twin.patient._uptake import FWHM_TO_SIGMA, region_of

__all__ = ["AGENTS", "Phantom", "default_patient", "make_phantom"]

#: Agents the phantom can be imaged with: name -> (model family, ligand).
AGENTS = {"PSMA-11": ("psma", "PSMA-11"), "DCFPyL": ("psma", "DCFPyL"),
          "PSMA-617": ("psma", "PSMA-617"), "PSMA-I&T": ("psma", "PSMA-I&T"),
          "DOTATATE": ("sstr", "DOTATATE"), "Ga-DOTATATE": ("sstr", "Ga-DOTATATE")}

_BODY_HEIGHT_MM = 900.0
_HU = {"body": 40.0, "kidney": 30.0, "liver": 55.0, "spleen": 45.0, "salivary": 25.0,
       "lacrimal": 30.0, "red_marrow": 300.0, "bladder": 5.0, "tumour": 40.0, "air": -1000.0}
# fixed organ layout: centre (x, y, z) mm and relative semi-axes
_LAYOUT = {
    "kidney_right": ((-75.0, 55.0, 390.0), (0.55, 0.5, 1.0)),
    "kidney_left": ((75.0, 55.0, 400.0), (0.55, 0.5, 1.0)),
    "liver": ((-75.0, -5.0, 500.0), (1.4, 1.0, 0.85)),
    "spleen": ((95.0, 45.0, 500.0), (0.6, 0.9, 1.0)),
    "parotid_right": ((-62.0, 15.0, 775.0), (0.6, 0.8, 1.0)),
    "parotid_left": ((62.0, 15.0, 775.0), (0.6, 0.8, 1.0)),
    "submandibular_right": ((-42.0, -25.0, 730.0), (1.0, 1.0, 0.8)),
    "submandibular_left": ((42.0, -25.0, 730.0), (1.0, 1.0, 0.8)),
    "lacrimal_right": ((-35.0, -65.0, 835.0), (1.0, 0.7, 0.7)),
    "lacrimal_left": ((35.0, -65.0, 835.0), (1.0, 0.7, 0.7)),
    "bladder": ((0.0, -40.0, 90.0), (1.2, 1.0, 0.9)),
}
_BLADDER_ML = 150.0
_PAROTID_FRACTION = 0.6  # of the salivary volume (the rest submandibular)


def _labs_draw(rng: np.random.Generator) -> Labs:
    sex = "male" if rng.random() < 0.5 else "female"
    male = sex == "male"
    height = float(np.clip(rng.normal(176 if male else 163, 7), 150, 200))
    bmi = float(np.clip(rng.normal(26, 3.5), 18, 38))
    weight = round(bmi * (height / 100) ** 2, 1)
    return Labs(sex=sex, age_y=round(float(np.clip(rng.normal(68, 8), 40, 90)), 0), weight_kg=weight,
                height_cm=round(height, 1),
                creatinine_mg_dl=round(float(np.clip(rng.lognormal(math.log(1.0 if male else 0.8), 0.25),
                                                     0.4, 3.0)), 2),
                haematocrit=round(float(np.clip(rng.normal(0.42 if male else 0.39, 0.03), 0.3, 0.52)), 3),
                albumin_g_l=round(float(np.clip(rng.normal(41, 4), 28, 52)), 1))


def _real(name: str, value, *, low: float, low_open: bool = False, high: float = math.inf,
          hint: str) -> float:
    """``value`` as a finite float in [low, high] (``(low, high]`` with ``low_open``), else
    :class:`PhantomParameterError` whose message says what is wrong and ``hint``."""
    if isinstance(value, (bool, np.bool_)):
        raise PhantomParameterError(f"{name} = {value!r} is a boolean, not a number; {hint}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PhantomParameterError(f"{name} = {value!r} is not a number; {hint}") from None
    if not math.isfinite(v):
        raise PhantomParameterError(f"{name} = {value!r} is not a finite number; {hint}")
    if v < low or (low_open and v == low) or v > high:
        raise PhantomParameterError(f"{name} = {value!r} is out of range; {hint}")
    return v


def _count(name: str, value, *, low: int, hint: str) -> int:
    """``value`` as an integer >= ``low`` (bool and non-integral numbers refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise PhantomParameterError(f"{name} = {value!r} is not an integer; {hint}")
    if value < low:
        raise PhantomParameterError(f"{name} = {value!r} is out of range; {hint}")
    return int(value)


def _semi_axes(volume_ml: float, rel) -> np.ndarray:
    rel = np.asarray(rel, float)
    k = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi * np.prod(rel))) ** (1.0 / 3.0)
    return k * rel


@dataclass(frozen=True, eq=False)
class Phantom:
    """A virtual patient: CT (HU), label map, labs, activity frames and the ground truth.

    ``frames`` are :class:`ActivityImage` s (Bq/mL at scan time, float32); ``true_frames``
    the same before blur, heterogeneity and noise. ``ground_truth`` is JSON-serialisable.
    """

    geometry: Geometry
    ct_hu: np.ndarray = field(repr=False)
    masks: Masks = field(repr=False)
    labs: Labs
    frames: tuple[ActivityImage, ...] = field(repr=False)
    true_frames: tuple[ActivityImage, ...] = field(repr=False)
    ground_truth: dict = field(repr=False)

    def write(self, out_dir, *, overwrite: bool = False) -> dict[str, Path]:
        """Write ``ct.nii.gz``, ``labels.nii.gz``, ``label_table.csv``, ``pet_<t>h.nii.gz`` (or
        spect), ``labs.csv`` and ``ground_truth.json`` into ``out_dir``.

        Everything is written to a temporary folder beside ``out_dir`` and moved into place at
        the end: on error nothing is left behind.
        """
        out = Path(out_dir)
        if out.exists() and not overwrite:
            raise InvalidInputError(f"{str(out)!r} exists; choose another folder or pass overwrite=True "
                                    "(`twin phantom --overwrite`).")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            files = {"ct": "ct.nii.gz", "labels": "labels.nii.gz", "label_table": "label_table.csv",
                     "labs": "labs.csv", "ground_truth": "ground_truth.json"}
            sitk.WriteImage(self.geometry.to_image(self.ct_hu), str(tmp / files["ct"]), True)
            sitk.WriteImage(self.masks.to_sitk(), str(tmp / files["labels"]), True)
            with open(tmp / files["label_table"], "w", encoding="utf-8") as fh:
                fh.write("label,name\n")
                fh.writelines(f"{k},{v}\n" for k, v in self.masks.label_table.items())
            mod = self.ground_truth["modality"].lower()
            for fr in self.frames:
                key = f"{mod}_{fr.hours_after_injection:g}h"
                files[key] = f"{key}.nii.gz"
                sitk.WriteImage(fr.to_sitk(), str(tmp / files[key]), True)
            self.labs.to_csv(tmp / files["labs"])
            (tmp / files["ground_truth"]).write_text(json.dumps(self.ground_truth, indent=1), encoding="utf-8")
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {k: out / v for k, v in files.items()}


def make_phantom(
    seed: int = 0,
    *,
    agent: str = "PSMA-11",
    modality: str = "PET",
    spacing_mm: float = 4.0,
    labs=None,
    n_tumours: int = 2,
    tumour_volumes_ml=None,
    tumour_centres_mm=None,
    injected_activity_mbq: float | None = None,
    times_h=(1.0,),
    fwhm_mm: float | None = None,
    total_counts: float | None = 5e7,
    heterogeneity: float = 0.0,
    model_kwargs: dict | None = None,
) -> Phantom:
    """Make a consistent virtual patient from ``seed``.

    Parameters
    ----------
    agent: imaging/therapy agent (:data:`AGENTS`); its nuclide sets the decay.
    modality: ``"PET"`` (default FWHM 5 mm) or ``"SPECT"`` (default FWHM 10 mm).
    spacing_mm: isotropic voxel size (default 4 mm; the body is 360 x 240 x 900 mm).
    labs: a :class:`Labs`, dict or CSV path; drawn from covariate distributions if None.
    n_tumours, tumour_volumes_ml, tumour_centres_mm: lesions (spheres); volumes drawn
        log-uniform in 2-30 mL and centres in the torso away from organs when not given.
    injected_activity_mbq: default 150 (PET) or 7400 (SPECT).
    times_h: frame times after injection (h).
    fwhm_mm: scanner resolution, FWHM of the Gaussian blur (mm, >= 0; 0: no blur); default 5
        (PET) or 10 (SPECT).
    total_counts: expected counts per frame for Poisson noise (> 0; None: noiseless).
    heterogeneity: coefficient of variation of a smooth log-normal texture inside organs and
        tumours (0: uniform); organ totals are kept.

    Bad arguments raise :class:`twin.patient.PhantomParameterError` (a ``pbpk.InvalidInputError``).
    """
    if agent not in AGENTS:
        raise UnknownNameError(f"agent {agent!r} is not known; known agents: {', '.join(AGENTS)}.")
    if modality not in ("PET", "SPECT"):
        raise PhantomParameterError(f"modality = {modality!r}; use 'PET' or 'SPECT'.")
    seed = _count("seed", seed, low=0, hint="give a non-negative integer seed, e.g. 0.")
    sp = _real("spacing_mm", spacing_mm, low=1.0, high=12.0,
               hint="spacing_mm must be between 1 and 12 mm (isotropic voxel size).")
    try:
        raw_times = [t for t in np.atleast_1d(np.asarray(times_h, dtype=object)).ravel()]
    except (TypeError, ValueError):
        raw_times = [times_h]
    times = tuple(_real("times_h", t, low=0.0, hint="times_h must be one or more times >= 0 h after "
                        "injection, e.g. (1.0, 3.0).") for t in raw_times)
    if not times:
        raise PhantomParameterError("times_h must be one or more times >= 0 h after injection.")
    heterogeneity = _real("heterogeneity", heterogeneity, low=0.0, high=2.0,
                          hint="heterogeneity is a coefficient of variation between 0 and 2 (0: uniform).")
    fwhm = _real("fwhm_mm", fwhm_mm, low=0.0,
                 hint="fwhm_mm is the scanner resolution in mm (>= 0; 0 for no blur, None for the "
                      "modality's default).") if fwhm_mm is not None else (5.0 if modality == "PET" else 10.0)
    if total_counts is not None:
        total_counts = _real("total_counts", total_counts, low=0.0, low_open=True,
                             hint="total_counts is the expected number of counts per frame (> 0, e.g. "
                                  "5e7); use None for a noiseless image.")
    if tumour_volumes_ml is None:  # otherwise the volumes give the number of tumours
        n_tumours = _count("n_tumours", n_tumours, low=1,
                           hint="give an integer n_tumours >= 1: the pbpk models are built around at "
                                "least one lesion.")
    a_inj = _real("injected_activity_mbq", injected_activity_mbq, low=0.0, low_open=True,
                  hint="give the injected activity in MBq (> 0), or None for the modality's default."
                  ) if injected_activity_mbq is not None else (150.0 if modality == "PET" else 7400.0)
    rng = np.random.default_rng(seed)
    lab = read_labs(labs) if labs is not None else _labs_draw(rng)
    if lab.creatinine_mg_dl is None:
        raise InvalidInputError("the phantom's labs need creatinine (for the GFR).")
    ref = pbpk.Physiology.for_patient(lab.sex, lab.weight_kg, lab.height_cm, lab.age_y,
                                      creatinine=lab.creatinine_mg_dl, creatinine_unit="mg/dL",
                                      haematocrit=lab.haematocrit)

    # ---------------------------------------------------------------- grid and body
    nx, ny, nz = (round(d / sp) for d in (380.0, 260.0, _BODY_HEIGHT_MM + 20.0))
    x = (np.arange(nx) + 0.5) * sp - nx * sp / 2
    y = (np.arange(ny) + 0.5) * sp - ny * sp / 2
    z = (np.arange(nz) + 0.5) * sp - 10.0
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    torso = ((X / 175.0) ** 2 + (Y / 115.0) ** 2 <= 1) & (Z >= 0) & (Z <= 640)
    neck = ((X / 60.0) ** 2 + (Y / 60.0) ** 2 <= 1) & (Z > 600) & (Z <= 720)
    head = (X / 80.0) ** 2 + (Y / 95.0) ** 2 + ((Z - 790.0) / 110.0) ** 2 <= 1
    body = torso | neck | head
    labels = np.zeros(body.shape, np.int16)
    table: dict[int, str] = {1: "body"}
    labels[body] = 1

    def paint(name, inside):
        lab_id = len(table) + 1
        sel = inside & body & (labels == 1)
        if not sel.any():
            raise InvalidInputError(f"{name} has no voxel at spacing {sp} mm; use a finer grid.")
        labels[sel] = lab_id
        table[lab_id] = name

    # physical volumes (mL): the reference masses over the ICRU-46 densities, so that the
    # segmented volumes x density (pbpk.model_volume_l) give back the reference masses
    def phys_ml(organ, share=1.0):
        return ref.organ_volume_l(organ) * 1000.0 * share / pbpk.TISSUE_DENSITY_KG_PER_L[organ]

    vols = {"kidney": phys_ml("kidney", 0.5), "liver": phys_ml("liver"), "spleen": phys_ml("spleen"),
            "parotid": phys_ml("salivary", 0.5 * _PAROTID_FRACTION),
            "submandibular": phys_ml("salivary", 0.5 * (1 - _PAROTID_FRACTION)),
            "lacrimal": phys_ml("lacrimal", 0.5), "bladder": _BLADDER_ML}
    # red marrow: lumbar/thoracic spine column behind the kidneys
    marrow = ((X / 16.0) ** 2 + ((Y - 85.0) / 16.0) ** 2 <= 1) & (Z >= 250) & (Z <= 600)
    paint("red_marrow", marrow)
    for name, (c, rel) in _LAYOUT.items():
        key = name.split("_")[0]
        a = _semi_axes(vols[key], rel)
        paint(name, ((X - c[0]) / a[0]) ** 2 + ((Y - c[1]) / a[1]) ** 2 + ((Z - c[2]) / a[2]) ** 2 <= 1)

    # tumours
    if tumour_volumes_ml is None:
        tumour_volumes_ml = np.exp(rng.uniform(math.log(2.0), math.log(30.0), n_tumours))
    tv = [_real("tumour_volumes_ml", v, low=0.05, high=2000.0,
                hint="tumour_volumes_ml must be between 0.05 and 2000 mL each.")
          for v in np.atleast_1d(np.asarray(tumour_volumes_ml, dtype=object)).ravel()]
    if not tv:
        raise PhantomParameterError("the phantom needs at least one tumour (n_tumours >= 1): the pbpk "
                                    "models are built around at least one lesion.")
    if tumour_centres_mm is not None:
        try:
            centres = np.asarray(tumour_centres_mm, dtype=float).reshape(-1, 3)
        except (TypeError, ValueError):
            raise PhantomParameterError(f"tumour_centres_mm = {tumour_centres_mm!r}; give one centre "
                                        "(x, y, z) mm per tumour volume.") from None
        if len(centres) != len(tv) or np.ndim(tumour_centres_mm) != 2:
            raise PhantomParameterError("give one centre (x, y, z) mm per tumour volume.")
        if not np.all(np.isfinite(centres)):
            raise PhantomParameterError("tumour_centres_mm holds NaN or infinite coordinates; give "
                                        "finite (x, y, z) mm.")
    for i, v in enumerate(tv):
        r = (3 * v * 1000 / (4 * math.pi)) ** (1 / 3)
        if tumour_centres_mm is not None:
            c = tuple(float(q) for q in centres[i])
        else:
            for _ in range(500):
                c = (rng.uniform(-140, 140), rng.uniform(-80, 70), rng.uniform(120, 560))
                near = ((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= (r + 2 * sp) ** 2)
                if near.any() and np.all(labels[np.broadcast_to(near, labels.shape)] == 1):
                    break
            else:
                raise InvalidInputError("could not place the tumours; give tumour_centres_mm.")
        paint(f"tumour{i + 1}", (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= r * r)
    vv = sp ** 3 / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(table) + 1)
    vol_ml = {name: float(counts[k]) * vv for k, name in table.items()}

    # ---------------------------------------------------------------- model and simulation
    def region_vol_l(region):
        return sum(v for n, v in vol_ml.items() if region_of(n) == region) / 1000.0

    organ_vols = {o: region_vol_l(o) for o in ("kidney", "liver", "spleen", "salivary", "lacrimal")}
    phys = lab.physiology(measured_volumes_l=organ_vols)
    family, ligand = AGENTS[agent]
    lesion_l = tuple(vol_ml[f"tumour{i + 1}"] / 1000.0 for i in range(len(tv)))
    if family == "psma":
        model = pbpk.psma_model(ligand, physiology=phys, lesion_volumes_l=lesion_l,
                                tumour_rest_volume_l=0.0, **(model_kwargs or {}))
    else:
        model = pbpk.sstr_model(ligand, physiology=phys, tumour_volumes_l=lesion_l, **(model_kwargs or {}))
    result = pbpk.simulate(model, pbpk.Schedule.single(a_inj), np.asarray(times))
    act = np.asarray(result.activity_mbq, dtype=float)  # (T, R)
    regions = list(result.regions)
    nuclide = pbpk.get_nuclide(model.nuclide)
    marrow_model_l = phys.organ_volume_l("red_marrow")

    # region -> structures and per-structure activity at each time
    mask_regions = {n: region_of(n) for n in table.values()}
    structure_mbq = {n: np.zeros(len(times)) for n in table.values()}
    for n, reg in mask_regions.items():
        if n == "body" or reg not in regions:
            continue
        share = vol_ml[n] / 1000.0 / region_vol_l(reg) if reg not in ("red_marrow", "urine") else 1.0
        if reg == "red_marrow":
            share = min(1.0, pbpk.model_volume_l("red_marrow", vol_ml[n] / 1000.0) / marrow_model_l)
        structure_mbq[n] = act[:, regions.index(reg)] * share
    body_total = act[:, [regions.index(r) for r in result.body_regions]].sum(axis=1)
    in_organs = sum(structure_mbq[n] for n, reg in mask_regions.items()
                    if reg in regions and reg != "urine")
    # structures without a model region (e.g. salivary glands in the SSTR model) share the
    # remainder-of-body concentration with the body
    background = ["body", *(n for n, reg in mask_regions.items() if n != "body" and reg not in regions)]
    background_ml = sum(vol_ml[n] for n in background)
    for n in background:
        structure_mbq[n] = (body_total - in_organs) * vol_ml[n] / background_ml

    # ---------------------------------------------------------------- frames
    from scipy.ndimage import gaussian_filter

    lab_idx = labels.astype(np.intp)
    texture = None
    if heterogeneity > 0:
        g = gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), 8.0 / sp * 2)
        g = g / (g.std() + 1e-12)
        s2 = math.log(1 + heterogeneity**2)
        texture = np.exp(math.sqrt(s2) * g - s2 / 2).astype(np.float32)
        texture[labels <= 1] = 1.0
    geom = Geometry(size=(nx, ny, nz), spacing=(sp, sp, sp), origin=(x[0], y[0], z[0]),
                    direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    frames, truths, frame_gt = [], [], []
    for ti, t in enumerate(times):
        conc = np.zeros(len(table) + 1)  # Bq/mL per label
        for k, n in table.items():
            conc[k] = structure_mbq[n][ti] * 1e6 / max(vol_ml[n], 1e-12)
        true = conc[lab_idx].astype(np.float32)
        if texture is not None:
            tex = true * texture
            sums_true = np.bincount(lab_idx.ravel(), weights=true.ravel(), minlength=len(table) + 1)
            sums_tex = np.bincount(lab_idx.ravel(), weights=tex.ravel(), minlength=len(table) + 1)
            fac = np.where(sums_tex > 0, sums_true / np.where(sums_tex > 0, sums_tex, 1), 1.0)
            true = (tex * fac[lab_idx]).astype(np.float32)
        img = gaussian_filter(true, fwhm * FWHM_TO_SIGMA / sp, mode="constant") if fwhm > 0 else true.copy()
        img = np.clip(img, 0, None).astype(np.float32)
        if total_counts:
            lam = img.astype(np.float64) * (float(total_counts) / max(float(img.sum()), 1e-30))
            img = (rng.poisson(lam) * (float(img.sum()) / float(total_counts))).astype(np.float32)
        for arr in (true, img):
            arr.setflags(write=False)
        common = {"geometry": geom, "nuclide": nuclide.name, "hours_after_injection": t,
                  "injected_activity_mbq": a_inj, "weight_kg": lab.weight_kg}
        truths.append(ActivityImage(true, **common))
        frames.append(ActivityImage(img, **common))
        frame_gt.append({"time_h": t, "structure_activity_mbq": {n: float(structure_mbq[n][ti]) for n in table.values()},
                         "region_activity_mbq": {r: float(act[ti, j]) for j, r in enumerate(regions)}})

    ct = np.full(labels.shape, _HU["air"], np.float32)
    for k, n in table.items():
        key = "tumour" if n.startswith("tumour") else (region_of(n) if n not in ("bladder", "body", "red_marrow") else n)
        ct[labels == k] = _HU.get(key, _HU["body"])
    ct = ct + rng.normal(0, 10, ct.shape).astype(np.float32) * (labels > 0)
    ct.setflags(write=False)
    labels.setflags(write=False)
    masks = Masks(labels, table, geom)
    gt = {
        "seed": int(seed), "agent": agent, "ligand": model.ligand, "nuclide": nuclide.name,
        "half_life_h": float(nuclide.half_life_h), "modality": modality,
        "injected_activity_mbq": a_inj, "fwhm_mm": fwhm, "spacing_mm": sp,
        "total_counts": None if not total_counts else float(total_counts),
        "heterogeneity": float(heterogeneity), "labs": lab.to_dict(),
        "physiology": {"gfr_ml_min": phys.gfr_ml_min, "organ_volumes_l": dict(phys.organ_volumes_l),
                       "red_marrow_model_volume_l": marrow_model_l},
        "label_table": {str(k): v for k, v in table.items()},
        "structure_volume_ml": vol_ml,
        "structure_region": mask_regions,
        "tia_mbq_h": {r: float(v) for r, v in zip(result.body_regions, np.asarray(result.tia_mbq_h))},
        "frames": frame_gt,
        "model_parameters": {k: float(v) for k, v in model.parameters.items()},
        "notes": "activities at scan time (not decay-corrected); urine in the bladder (no voiding); "
                 "red_marrow mask gets the model's marrow concentration, the rest of the marrow is in body.",
    }
    return Phantom(geom, ct, masks, lab, tuple(frames), tuple(truths), gt)


@lru_cache(maxsize=2)
def default_patient(modality: str = "PET") -> Phantom:
    """The embedded default patient: seed 0, ICRP-89 reference male labs, two lesions (12, 5 mL).

    68Ga-PSMA-11 PET at 1 h (150 MBq) or 177Lu-PSMA-617 SPECT at 24 h (7.4 GBq); generated on
    the fly in seconds and cached.
    """
    labs = Labs(sex="male", age_y=60.0, weight_kg=73.0, height_cm=176.0, creatinine_mg_dl=0.9,
                haematocrit=0.40, albumin_g_l=42.0, patient_id="default")
    if modality not in ("PET", "SPECT"):
        raise InvalidInputError(f"modality = {modality!r} is not known; use 'PET' (68Ga-PSMA-11 at 1 h) "
                                "or 'SPECT' (177Lu-PSMA-617 at 24 h).")
    if modality == "PET":
        return make_phantom(0, agent="PSMA-11", modality="PET", labs=labs, tumour_volumes_ml=(12.0, 5.0),
                            tumour_centres_mm=((60.0, -40.0, 200.0), (-90.0, 20.0, 300.0)), times_h=(1.0,))
    return make_phantom(0, agent="PSMA-617", modality="SPECT", labs=labs, tumour_volumes_ml=(12.0, 5.0),
                        tumour_centres_mm=((60.0, -40.0, 200.0), (-90.0, 20.0, 300.0)), times_h=(24.0,))
