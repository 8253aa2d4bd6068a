"""Virtual populations for the validation report and the VTT: physiology draws (demographics,
labs, organ volumes) and per-patient parameter draws from ``calibration.Prior.default``.

The covariate distributions are assumptions for an mCRPC / NET population (stated in each
function); the prior CVs are those of ``calibration/_priors.py``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["draw_physiology", "population_parameters"]


def draw_physiology(rng: np.random.Generator, sex: str = "male"):
    """One patient's physiology: age N(70, 8) y, height N(176, 7) cm (female N(163, 7)),
    BMI N(27, 4), creatinine log-normal (median 1.0 mg/dL, log-sd 0.25) -> CKD-EPI 2021 eGFR,
    haematocrit N(0.40, 0.04); kidney, salivary, liver, spleen volumes = ICRP-89 reference
    scaled by weight x log-normal (CV 20, 25, 15, 25 %); one lesion log-uniform 2-30 mL (as
    ``twin.patient.make_phantom``). Returns ``(Physiology, lesion_volume_l, info dict)``."""
    import pbpk

    age = float(np.clip(rng.normal(70.0, 8.0), 50.0, 88.0))
    height = float(np.clip(rng.normal(176.0 if sex == "male" else 163.0, 7.0), 150.0, 200.0))
    bmi = float(np.clip(rng.normal(27.0, 4.0), 18.5, 38.0))
    weight = bmi * (height / 100.0) ** 2
    creat = float(np.clip(rng.lognormal(math.log(1.0 if sex == "male" else 0.8), 0.25), 0.5, 2.5))
    hct = float(np.clip(rng.normal(0.40, 0.04), 0.28, 0.50))
    ref = pbpk.Physiology.reference(sex)
    scale = weight / ref.weight_kg
    cv = {"kidney": 0.2, "salivary": 0.25, "liver": 0.15, "spleen": 0.25}
    vols = {o: ref.organ_volume_l(o) * scale * float(rng.lognormal(0.0, math.sqrt(math.log1p(c * c))))
            for o, c in cv.items()}
    phys = pbpk.Physiology.for_patient(sex, weight, height, age, creatinine=creat,
                                       creatinine_unit="mg/dL", haematocrit=hct,
                                       organ_volumes_l=vols)
    lesion_l = float(np.exp(rng.uniform(math.log(0.002), math.log(0.030))))
    info = {"age_y": age, "height_cm": height, "weight_kg": weight, "creatinine_mg_dl": creat,
            "haematocrit": hct, "gfr_ml_min": phys.gfr_ml_min, "organ_volumes_l": vols,
            "lesion_volume_l": lesion_l}
    return phys, lesion_l, info


def population_parameters(build_model, n: int, seed: int):
    """``n`` patients, each with its own physiology and prior draw.

    build_model(physiology, lesion_volume_l) -> PBPKModel (same graph for every patient).
    Returns ``(params, models)``: ``params`` maps every model parameter to an (n,) array (for
    ``pbpk.simulate_cohort``), ``models`` the per-patient models (masses, volumes). The
    patient-specific parameters are ``median_i * exp(sigma z)`` with ``median_i`` the
    patient's covariate-based model value and ``sigma`` from ``Prior.default`` (i.e. a draw of
    ``Prior.default(model_i)``).
    """
    from calibration import Prior

    rng = np.random.default_rng(seed)
    models = []
    for _ in range(n):
        phys, lesion_l, _info = draw_physiology(rng)
        models.append(build_model(phys, lesion_l))
    graph = models[0].graph
    if any(m.graph != graph for m in models):
        raise ValueError("every patient model must share one graph")
    names = [k for k in models[0].parameters if k != "lambda_phys_per_h"]
    params = {k: np.array([m.parameters[k] for m in models]) for k in names}
    prior = Prior.default(models[0])
    z = rng.standard_normal((n, len(prior)))
    for j, e in enumerate(prior.entries):
        params[e.name] = params[e.name] * np.exp(e.log_scale * z[:, j])
    return params, models
