"""Virtual theranostic trial (VTT): does the twin predict 177Lu-PSMA-617 therapy doses from PET?

Virtual patients with known truth
---------------------------------
Patients come in ``--groups`` physiology groups (male; age, height, BMI, creatinine ->
CKD-EPI 2021 eGFR, haematocrit, kidney/salivary/liver/spleen volumes and one lesion of
2-30 mL drawn per group, see ``validation.population.draw_physiology``; default one group,
because every group costs a compilation of each protocol). Within a group every patient gets its
own draw of the ten patient-specific parameters from ``calibration.Prior.default`` of the
group's model (receptor amounts of kidney, salivary glands, liver, spleen and the lesion;
release rates of kidney, salivary glands and lesion; effective filtration; kidney plasma
flow; CVs 30-100 %). The truth is ``pbpk.simulate`` of that patient: 18F-DCFPyL PET (300 MBq)
and 177Lu-PSMA-617 therapy (7.4 GBq, 90 nmol) on the same physiology
(``pbpk.theranostic_pair``: the agent constants are swapped, the patient parameters are shared,
i.e. the identity mapping between the agents holds in the truth: a best case).

Measurements: organ and lesion activities (MBq) at the scan times with log-normal noise and
partial-volume recovery, drawn from the same noise model the calibration assumes
(``calibration.NoiseModel``: CV per modality and time, RC of a sphere of the structure's
volume from ``twin.patient.recovery_coefficient`` at FWHM 5 mm PET / 10 mm SPECT, RC
uncertainty 30 % of ``1/RC - 1``). Observed PET regions: kidney, salivary glands, liver,
spleen, lesion and blood (plasma); SPECT adds red marrow.

Protocols (calibration.calibrate, method "laplace_is": the Laplace Gaussian with a
finite-difference Hessian as the proposal of Pareto-smoothed importance sampling, 1000 draws
resampled; therapy predicted with ``Posterior.predict`` on the therapy agent, 200 posterior
draws; each protocol records the Pareto k of its weights):

* ``pet_1h``: 18F-DCFPyL PET at 1 h;
* ``pet_1_4_8h``: PET at 1, 4 and 8 h (18F; DCFPyL is the 18F agent in ``pbpk.LIGANDS``);
* ``cu64_pet_1_24h``: 64Cu-PSMA-617 PET (200 MBq) at 1 h and 24 h, the issue's "24 h for
  64Cu" late frame (the same ligand as the therapy, labelled with 64Cu, half-life 12.7 h:
  ``pbpk.theranostic_pair(pet_model, "PSMA-617", therapy_nuclide="Cu-64")``); its noise is
  drawn from a generator of its own, so the other protocols see the same measurements as
  without it;
* ``pet_1h_spect_24h``: PET at 1 h plus post-cycle-1 177Lu SPECT at 24 h (one joint
  likelihood over both agents through ``calibrate``'s callable-model interface);
* ``pet_1h_spect_24_96h``: the same with a second SPECT at 96 h (not one of the issue's
  protocols: it shows what a scan that sees the clearance after 24 h adds).

Baselines on the same patients: population-average dose (leave-one-out mean of the other
patients' true doses; 90 % interval from their 5-95 % range), Hänscheid single time point
(``twin.dose.tia_hanscheid``) from post-therapy SPECT at 24, 48 and 96 h, and bi-exponential
fits (``twin.dose.fit_tac``) to SPECT at 4, 24, 48 and 168 h: with an uptake phase (model
"mono_uptake", ``a (exp(-k1 t) - exp(-ku t))``) where the activity rises from the first to the
second scan, else two clearing components (model "bi"); "auto" where that fit fails (see
``biexp_fit``). An information
floor, ``oracle_release_unknown``: the therapy simulated with every true parameter except the
release rates, which stay at the prior median. No imaging that ends before the release phase
can beat it by much: it is the error of knowing everything such a scan could tell.

Doses are self-doses by local deposition (``twin.dose.local_deposition_dose_gy``; the sphere
model for the lesion) with the patient's organ masses: prediction and truth share the
conversion, so a dose error is the TIA error. Reported per method and target (kidney,
salivary glands, lesion, red marrow): percentage error of the point prediction (posterior
median) mean +/- SD, mean |error|, and the coverage of the 90 % interval.

Usage: ``python benchmarks/vtt.py [--n-patients 50] [--groups 1] [--quick]``; writes
``benchmarks/results/vtt.json`` and ``benchmarks/results/validation/vtt_errors.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import sys
import time
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from validation.checks import coverage, error_summary, percent_error
from validation.population import draw_physiology

RESULT = ROOT / "benchmarks" / "results" / "vtt.json"
FIGURE = ROOT / "benchmarks" / "results" / "validation" / "vtt_errors.png"

PET_AGENT = "DCFPyL"
THERAPY_AGENT = "PSMA-617"
PET_MBQ = 300.0
THERAPY_MBQ = 7400.0
PET_TIMES_H = (1.0, 4.0, 8.0)
SPECT_TIMES_H = (4.0, 24.0, 48.0, 96.0, 168.0)
# therapy simulations run to 2000 h (12.5 half-lives of 177Lu): simulate's TIA adds only the
# physical-decay tail after the last time, which would overstate the TIA of regions still
# clearing biologically at 168 h
THERAPY_TIMES_H = (*SPECT_TIMES_H, 2000.0)
PET_REGIONS = ("kidney", "salivary", "liver", "spleen", "tumour1", "plasma")
SPECT_REGIONS = ("kidney", "salivary", "liver", "spleen", "tumour1", "red_marrow")
TARGETS = ("kidney", "salivary", "tumour1", "red_marrow")
TARGET_LABEL = {"kidney": "kidneys", "salivary": "salivary glands", "tumour1": "lesion",
                "red_marrow": "red marrow"}
PET_CV = {1.0: 0.10, 4.0: 0.12, 8.0: 0.20}          # count statistics fall with 18F decay
SPECT_CV = {"default": 0.10, "tumour1": 0.15, "red_marrow": 0.25}
TUMOUR_EXTRA_CV = 0.05
RC_CV = 0.3
PET_FWHM_MM = 5.0
SPECT_FWHM_MM = 10.0
N_PREDICT_DRAWS = 200
# calibration: the Laplace Gaussian corrected by Pareto-smoothed importance sampling, 1000
# proposals (about 600 effective draws), resampled; 200 of them simulate the therapy
METHOD = "laplace_is"
N_POSTERIOR_DRAWS = 1000
PROTOCOLS = ("pet_1h", "pet_1_4_8h", "cu64_pet_1_24h", "pet_1h_spect_24h", "pet_1h_spect_24_96h")
CU_MBQ = 200.0
CU_TIMES_H = (1.0, 24.0)
CU_CV = {1.0: 0.10, 24.0: 0.15}  # 64Cu count statistics at 24 h (two half-lives later)
JOINT_SPECT_TIMES_H = {"pet_1h_spect_24h": (24.0,), "pet_1h_spect_24_96h": (24.0, 96.0)}
BASELINES = ("population_average", "hanscheid_24h", "hanscheid_48h", "hanscheid_96h", "biexp_4tp",
             "oracle_release_unknown")
FIT_TIMES_H = (4.0, 24.0, 48.0, 168.0)
# AAPM 2026 abstract (50 virtual patients, 18F-PSMA; research/pbpk_models.md §4.2)
PUBLISHED = {
    "early_pet_only": {"salivary": (36.3, 26.2), "kidney": (54.7, 40.5), "tumour": (-14.9, 52.2)},
    "pet_plus_4h_8h": {"salivary": (7.5, 13.7), "kidney": (15.0, 15.5), "tumour": (25.7, 34.7)},
    "source": "AAPM 2026 abstract, PBPK digital twins, 50 virtual patients, 18F-PSMA PET "
              "(research/pbpk_models.md §4.2): dose error mean +/- SD, %",
}
TARGET_CRITERIA = {"organ_mean_abs_pct": 5.0, "tumour_mean_abs_pct": 10.0,
                   "coverage_low": 0.85, "coverage_high": 0.95}


# ============================================================================ patients
def structure_volumes_ml(model) -> dict[str, float]:
    """Volume (mL) of one imaged structure per region (kidney and salivary glands are paired
    / four glands), used for the sphere recovery coefficient."""
    v = model.organ_volumes_l
    return {"kidney": v["kidney"] * 500.0, "salivary": v["salivary"] * 250.0,
            "liver": v["liver"] * 1000.0, "spleen": v["spleen"] * 1000.0,
            "tumour1": v["tumour1"] * 1000.0, "plasma": 1e9, "red_marrow": 80.0}


def recovery(model, fwhm_mm: float) -> dict[str, float]:
    from twin.patient import recovery_coefficient

    vols = structure_volumes_ml(model)
    # the 80-mL L2-L4 marrow model has RC 0.78 (EJNMMI Res 2018, research notes §7): use it
    out = {r: float(recovery_coefficient(v, fwhm_mm)) for r, v in vols.items() if r != "red_marrow"}
    out["red_marrow"] = 0.78
    out["plasma"] = 1.0
    return out


def noise_sd(cv: float, rc: float, rc_cv: float = RC_CV) -> float:
    """Log-scale SD of a recovered measurement (the calibration's noise model, no floor)."""
    return math.sqrt(math.log1p(cv * cv) + (rc_cv * (1.0 / rc - 1.0)) ** 2)


def measure(rng, true_mbq: float, cv: float, rc: float) -> float:
    return float(true_mbq * math.exp(rng.normal(0.0, noise_sd(cv, rc))))


# ============================================================================ doses
def doses_gy(tia: dict[str, float], model) -> dict[str, float]:
    """Self-dose (Gy) of the target regions from their TIA (MBq h), patient masses (1 kg/L)."""
    from twin import dose

    out = {}
    for r in TARGETS:
        m = model.organ_volumes_l[r] if r.startswith("tumour") else model.organ_volumes_l.get(r)
        if m is None:
            m = model.parameters["V_red_marrow_vas"] + model.parameters["V_red_marrow_int"]
        if r.startswith("tumour"):
            out[r] = dose.sphere_dose_gy(tia[r], m, "Lu-177")
        else:
            out[r] = dose.local_deposition_dose_gy(tia[r], m, "Lu-177")
    return out


def theranostic_cu64(pet_model):
    """64Cu-PSMA-617 in the same patient (the therapy ligand with the 64Cu nuclide)."""
    import pbpk

    return pbpk.theranostic_pair(pet_model, THERAPY_AGENT, therapy_nuclide="Cu-64")


def dose_per_tia(model) -> dict[str, float]:
    """Gy per MBq h for each target (linear in TIA)."""
    return {r: v for r, v in doses_gy({t: 1.0 for t in TARGETS}, model).items()}


# ============================================================================ observations
def pet_records(rng, truth_act: dict, times, rc: dict, cv_by_time: dict = PET_CV) -> list[dict]:
    recs = []
    for t in times:
        for r in PET_REGIONS:
            cv = cv_by_time[t] + (TUMOUR_EXTRA_CV if r.startswith("tumour") else 0.0)
            recs.append({"region": r, "time_h": t, "value": measure(rng, truth_act[(t, r)], cv, rc[r]),
                         "unit": "MBq", "cv": cv, "recovery_coefficient": rc[r], "rc_cv": RC_CV})
    return recs


def spect_value(rng, true_mbq, region, rc):
    cv = SPECT_CV.get(region, SPECT_CV["default"])
    return measure(rng, true_mbq, cv, rc[region]), cv


def make_joint_predict(pet_model, therapy_model, pet_times, spect_times, order):
    """Callable model for ``calibrate``: PET and SPECT activities in ``order``."""
    import jax.numpy as jnp

    import pbpk

    pet_sched = pbpk.Schedule.single(PET_MBQ)
    th_sched = pbpk.Schedule.single(THERAPY_MBQ)
    pet_t = np.asarray(pet_times, float)
    th_t = np.asarray(spect_times, float)
    regions = pet_model.regions
    pet_idx = [(i, list(pet_t).index(t), regions.index(r)) for i, (kind, t, r) in enumerate(order)
               if kind == "pet"]
    sp_idx = [(i, list(th_t).index(t), regions.index(r)) for i, (kind, t, r) in enumerate(order)
              if kind == "spect"]
    n = len(order)

    def predict(params):
        a = pbpk.simulate(pet_model, pet_sched, pet_t, params, mode="forward", check=False)
        b = pbpk.simulate(therapy_model, th_sched, th_t, params, mode="forward", check=False)
        out = jnp.zeros(n)
        out = out.at[jnp.array([i for i, _, _ in pet_idx])].set(
            a.activity_mbq[jnp.array([ti for _, ti, _ in pet_idx]), jnp.array([ri for _, _, ri in pet_idx])])
        out = out.at[jnp.array([i for i, _, _ in sp_idx])].set(
            b.activity_mbq[jnp.array([ti for _, ti, _ in sp_idx]), jnp.array([ri for _, _, ri in sp_idx])])
        return out, jnp.maximum(a.status, b.status)

    return predict


def _run_protocol(proto, pid, group, key, prior, pet_model, therapy_model, joint_cache, pet_all,
                  spect_meas, rc_spect, dpt, cu_model=None, cu_all=()) -> dict:
    """Calibrate one protocol and return the predicted target doses (median, 5-95 %)."""
    import pbpk
    from calibration import ConvergenceWarning, Observations, calibrate

    pet_sched = pbpk.Schedule.single(PET_MBQ)
    th_sched = pbpk.Schedule.single(THERAPY_MBQ)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if proto == "pet_1h":
            obs = Observations.from_records([r for r in pet_all if r["time_h"] == 1.0], agent=PET_AGENT)
            post = calibrate(pet_model, pet_sched, obs, prior, method=METHOD, hessian="fd",
                             num_samples=N_POSTERIOR_DRAWS, key=key)
        elif proto == "pet_1_4_8h":
            obs = Observations.from_records(pet_all, agent=PET_AGENT)
            post = calibrate(pet_model, pet_sched, obs, prior, method=METHOD, hessian="fd",
                             num_samples=N_POSTERIOR_DRAWS, key=key)
        elif proto == "cu64_pet_1_24h":
            obs = Observations.from_records(list(cu_all), agent=THERAPY_AGENT)
            post = calibrate(cu_model, pbpk.Schedule.single(CU_MBQ), obs, prior, method=METHOD, hessian="fd",
                             num_samples=N_POSTERIOR_DRAWS, key=key)
        else:
            recs = [r for r in pet_all if r["time_h"] == 1.0]
            order = [("pet", r["time_h"], r["region"]) for r in recs]
            spect_times = JOINT_SPECT_TIMES_H[proto]
            for t in spect_times:
                for r in SPECT_REGIONS:
                    val, cv = spect_meas[(t, r)]
                    # PET and SPECT observations of one region differ by their time (1 h vs >= 24 h)
                    recs.append({"region": r, "time_h": t, "value": val, "unit": "MBq", "cv": cv,
                                 "recovery_coefficient": rc_spect[r], "rc_cv": RC_CV})
                    order.append(("spect", t, r))
            obs = Observations.from_records(recs)
            if (group, proto) not in joint_cache:
                if any(k[0] != group for k in joint_cache):
                    joint_cache.clear()
                joint_cache[(group, proto)] = make_joint_predict(pet_model, therapy_model, (1.0,), spect_times,
                                                                 order)
            fn = joint_cache[(group, proto)]
            post = calibrate(fn, None, obs, prior, method=METHOD, hessian="fd", num_samples=N_POSTERIOR_DRAWS,
                             key=key)
        pred = post.predict(th_sched, THERAPY_TIMES_H, model=therapy_model, n_draws=N_PREDICT_DRAWS, key=pid)
        tia_draws = {r: pred.tia(r) for r in TARGETS}
    n_conv = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    entry = {}
    for r in TARGETS:
        d = tia_draws[r] * dpt[r]
        entry[r] = {"median_gy": float(np.median(d)), "q05_gy": float(np.quantile(d, 0.05)),
                    "q95_gy": float(np.quantile(d, 0.95))}
    entry["_convergence_warnings"] = int(n_conv)
    entry["_pareto_k"] = post.diagnostics.get("pareto_k")
    entry["_uninformed"] = list(post.uninformed) if post.log_samples.shape[0] > 1 else None
    return entry


# ============================================================================ one patient
CALIBRATION_KEY_TAG = 0x43414C  # "CAL": folds a patient's key into its calibration key


def calibration_key(key):
    """The key of a patient's calibrations, independent of ``key``, which drew its truth.

    The truth is ``jax.random.normal(key, (1, p))`` (``Prior.sample``); with JAX's
    partitionable threefry (the default since JAX 0.5) the first row of
    ``jax.random.normal(key, (n, p))`` is that same draw, so calibrating with ``key`` itself
    made the first Laplace/importance-sampling proposal the truth's standard score (truth
    leaking into the twin).
    """
    import jax

    return jax.random.fold_in(key, CALIBRATION_KEY_TAG)


def biexp_fit(times_h, activity_mbq):
    """The bi-exponential baseline fit of a few SPECT points (``twin.dose.fit_tac``).

    Where the activity rises from the first to the second scan (kidneys, salivary glands and
    lesions from 4 h to 24 h), the bi-exponential with an uptake phase,
    ``a (exp(-k1 t) - exp(-ku t))`` (model "mono_uptake"); the two-clearance model "bi" cannot
    rise (positive amplitudes) and under-estimated such TIAs by 25-50 %. Otherwise "bi". Where
    that fit fails (no convergence, or every "bi" fit rejected for an implausible extrapolation
    to t = 0), "auto".
    """
    from twin import dose

    y = np.asarray(activity_mbq, dtype=np.float64)
    model = "mono_uptake" if y.size >= 3 and y[1] > y[0] else "bi"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dose.fit_tac(times_h, y, nuclide="Lu-177", model=model)
        except dose.FitError:
            return dose.fit_tac(times_h, y, nuclide="Lu-177", model="auto")


def run_patient(pid, group, rng, key, prior, pet_model, therapy_model, cu_model, joint_cache, timings):
    import pbpk
    from twin import dose

    truth = {k: float(v[0]) for k, v in prior.sample(key, 1).items()}
    pet_sched = pbpk.Schedule.single(PET_MBQ)
    th_sched = pbpk.Schedule.single(THERAPY_MBQ)
    pet_res = pbpk.simulate(pet_model, pet_sched, PET_TIMES_H, truth)
    th_res = pbpk.simulate(therapy_model, th_sched, THERAPY_TIMES_H, truth)
    pet_act = {(t, r): float(pet_res.activity(r)[i]) for i, t in enumerate(PET_TIMES_H) for r in PET_REGIONS}
    sp_act = {(t, r): float(th_res.activity(r)[i]) for i, t in enumerate(SPECT_TIMES_H) for r in SPECT_REGIONS}
    true_tia = {r: float(th_res.tia(r)) for r in TARGETS}
    true_dose = doses_gy(true_tia, therapy_model)
    dpt = dose_per_tia(therapy_model)
    rc_pet = recovery(pet_model, PET_FWHM_MM)
    rc_spect = recovery(therapy_model, SPECT_FWHM_MM)

    cu_res = pbpk.simulate(cu_model, pbpk.Schedule.single(CU_MBQ), CU_TIMES_H, truth)
    cu_act = {(t, r): float(cu_res.activity(r)[i]) for i, t in enumerate(CU_TIMES_H) for r in PET_REGIONS}

    # measurements (one noisy draw per scan); 64Cu from its own generator (see the docstring)
    cu_all = pet_records(np.random.default_rng([pid, 64]), cu_act, CU_TIMES_H, rc_pet, CU_CV)
    pet_all = pet_records(rng, pet_act, PET_TIMES_H, rc_pet)
    spect_meas = {}
    for t in SPECT_TIMES_H:
        for r in SPECT_REGIONS:
            spect_meas[(t, r)] = spect_value(rng, sp_act[(t, r)], r, rc_spect)

    # the truth's standard score under the prior: the coverage of a well-calibrated posterior
    # can only be as nominal as these draws are standard normal
    truth_z = {e.name: (math.log(truth[e.name]) - e.log_loc) / e.log_scale for e in prior.entries}
    rec = {"id": pid, "group": group, "truth_parameters": truth, "truth_z": truth_z, "true_dose_gy": true_dose,
           "true_tia_mbq_h": true_tia, "predictions": {}}
    for proto in PROTOCOLS:
        t0 = time.perf_counter()
        try:
            entry = _run_protocol(proto, pid, group, calibration_key(key), prior, pet_model, therapy_model, joint_cache,
                                  pet_all, spect_meas, rc_spect, dpt, cu_model, cu_all)
        except Exception as exc:  # noqa: BLE001 - a failed protocol is recorded, the trial goes on
            entry = {"_error": f"{type(exc).__name__}: {exc}"}
        entry["_wall_s"] = time.perf_counter() - t0
        rec["predictions"][proto] = entry
        timings.setdefault(proto, []).append(entry["_wall_s"])

    # baselines from post-therapy SPECT
    for t in (24.0, 48.0, 96.0):
        entry = {}
        for r in TARGETS:
            tia = dose.tia_hanscheid(spect_meas[(t, r)][0], t)
            entry[r] = {"median_gy": float(tia * dpt[r])}
        rec["predictions"][f"hanscheid_{t:g}h"] = entry
    entry = {}
    for r in TARGETS:
        fit = biexp_fit(FIT_TIMES_H, [spect_meas[(t, r)][0] for t in FIT_TIMES_H])
        entry[r] = {"median_gy": float(fit.tia_mbq_h * dpt[r]), "model": fit.model}
    rec["predictions"]["biexp_4tp"] = entry

    rec["predictions"]["oracle_release_unknown"] = {
        r: {"median_gy": v} for r, v in release_oracle_dose_gy(therapy_model, truth).items()}
    return rec


def release_oracle_dose_gy(therapy_model, truth: dict) -> dict[str, float]:
    """Information floor of early imaging: the therapy dose with every true parameter except the
    release rates (``krel_*``), which stay at the model's value (the prior median): what a scan
    that ends before the release phase cannot see."""
    import pbpk

    known = {k: v for k, v in truth.items() if not k.startswith("krel_")}
    res = pbpk.simulate(therapy_model, pbpk.Schedule.single(THERAPY_MBQ), THERAPY_TIMES_H, known)
    return {r: float(v) for r, v in doses_gy({r: float(res.tia(r)) for r in TARGETS}, therapy_model).items()}


# ============================================================================ summary
def add_population_average(records) -> None:
    """Leave-one-out population average of the true doses (and its 5-95 % range)."""
    for i, rec in enumerate(records):
        entry = {}
        for r in TARGETS:
            others = np.array([o["true_dose_gy"][r] for j, o in enumerate(records) if j != i])
            if others.size == 0:
                others = np.array([rec["true_dose_gy"][r]])
            entry[r] = {"median_gy": float(others.mean()), "q05_gy": float(np.quantile(others, 0.05)),
                        "q95_gy": float(np.quantile(others, 0.95))}
        rec["predictions"]["population_average"] = entry


def summarise(records) -> dict:
    """Per method and target: error summary over the patients where the method ran, coverage of
    its 90 % interval (None for point methods) and the number of patients where it failed."""
    out = {}
    for method in (*PROTOCOLS, *BASELINES):
        ran = [rec for rec in records if method in rec["predictions"]
               and TARGETS[0] in rec["predictions"][method]]
        per = {}
        for r in TARGETS:
            if not ran:
                per[r] = {"n": 0, "n_failed": len(records)}
                continue
            truth = np.array([rec["true_dose_gy"][r] for rec in ran])
            pred = np.array([rec["predictions"][method][r]["median_gy"] for rec in ran])
            s = error_summary(percent_error(pred, truth))
            if "q05_gy" in ran[0]["predictions"][method][r]:
                lo = np.array([rec["predictions"][method][r]["q05_gy"] for rec in ran])
                hi = np.array([rec["predictions"][method][r]["q95_gy"] for rec in ran])
                s["coverage_90"] = coverage(lo, hi, truth)
            else:
                s["coverage_90"] = None
            s["n_failed"] = len(records) - len(ran)
            per[r] = s
        out[method] = per
    return out


def truth_spread(records) -> dict:
    """Mean and SD of each parameter's standard score under the prior over the virtual patients
    (0 and 1 for an infinite trial). With 50 patients the SD has a standard error of about 0.1;
    a parameter that the data do not inform passes its SD straight into the coverage."""
    names = sorted({n for rec in records for n in rec.get("truth_z", {})})
    out = {}
    for n in names:
        z = np.array([rec["truth_z"][n] for rec in records if n in rec.get("truth_z", {})])
        out[n] = {"mean": float(z.mean()), "sd": float(z.std(ddof=1)) if z.size > 1 else None, "n": int(z.size)}
    return out


def judge(summary: dict) -> dict:
    """Targets of the issue for the late-frame protocol (and every protocol, for the record)."""
    verdicts = {}
    for proto in PROTOCOLS:
        v = {}
        for r in TARGETS:
            s = summary[proto][r]
            if not s.get("n"):
                v[r] = None
                continue
            limit = TARGET_CRITERIA["tumour_mean_abs_pct" if r.startswith("tumour") else "organ_mean_abs_pct"]
            cov = s["coverage_90"]
            v[r] = {"mean_abs_pct": s["mean_abs_pct"], "limit_pct": limit,
                    "error_ok": bool(s["mean_abs_pct"] <= limit), "coverage_90": cov,
                    "coverage_ok": bool(TARGET_CRITERIA["coverage_low"] <= cov <= TARGET_CRITERIA["coverage_high"])}
        verdicts[proto] = v
    return verdicts


def markdown(summary: dict) -> str:
    from validation.checks import markdown_table

    rows = []
    for method in (*PROTOCOLS, *BASELINES):
        for r in TARGETS:
            s = summary[method][r]
            if not s.get("n"):
                rows.append([method, TARGET_LABEL[r], "failed", "–", "–", "–"])
                continue
            cov = "–" if s["coverage_90"] is None else f"{100 * s['coverage_90']:.0f} %"
            rows.append([method, TARGET_LABEL[r], f"{s['mean_pct']:+.3g} ± {s['sd_pct']:.3g}",
                         f"{s['mean_abs_pct']:.3g}", f"{s['median_abs_pct']:.3g}", cov])
    return markdown_table(rows, ["method", "target", "error mean ± SD (%)", "mean abs. error (%)",
                                 "median abs. error (%)", "90 % coverage"])


def figure(records, summary, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = (*PROTOCOLS, *BASELINES)
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(4.2 * len(TARGETS), 4.6), sharey=False)
    for ax, r in zip(axes, TARGETS):
        data = []
        for m in methods:
            ran = [rec for rec in records if r in rec["predictions"].get(m, {})]
            truth = np.array([rec["true_dose_gy"][r] for rec in ran])
            pred = np.array([rec["predictions"][m][r]["median_gy"] for rec in ran])
            data.append(percent_error(pred, truth) if ran else np.zeros(0))
        ax.boxplot(data, showfliers=False)
        for i, d in enumerate(data):
            ax.plot(np.full(d.size, i + 1) + np.random.default_rng(i).uniform(-0.15, 0.15, d.size), d, ".",
                    ms=3, alpha=0.5)
        ax.axhline(0, color="k", lw=0.8)
        top = 300.0  # errors above +300 % (e.g. bi-exponential fits of near-zero late marrow counts)
        ax.set_ylim(-105.0, min(top, max([100.0, *[float(np.max(d)) for d in data if d.size]]) + 10.0))
        for i, d in enumerate(data):
            n_off = int((d > top).sum())
            if n_off:
                ax.annotate(f"{n_off} > {top:.0f}%", (i + 1, top), ha="center", va="top", fontsize=6,
                            color="C3")
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=60, ha="right", fontsize=8)
        ax.set_title(TARGET_LABEL[r], pad=14)
        ax.set_ylabel("dose error (%)")
        for i, m in enumerate(methods):
            cov = summary[m][r].get("coverage_90")
            if cov is not None:
                ax.annotate(f"{100 * cov:.0f}%", (i + 1, 1.0), xycoords=("data", "axes fraction"),
                            ha="center", va="bottom", fontsize=7)
    fig.suptitle(f"VTT: 177Lu-PSMA-617 dose error vs truth, {len(records)} virtual patients "
                 "(numbers: 90 % interval coverage)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ============================================================================ main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-patients", type=int, default=50)
    ap.add_argument("--groups", type=int, default=1,
                    help="physiology groups: patients of a group share demographics, labs and organ "
                         "volumes; each group costs one compilation per protocol (default 1)")
    ap.add_argument("--quick", action="store_true", help="6 patients in 1 group (smoke run)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=pathlib.Path, default=RESULT)
    ap.add_argument("--figure", type=pathlib.Path, default=FIGURE)
    ap.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--report-only", type=pathlib.Path, default=None, metavar="JSON",
                    help="redraw the figure and print the table of an existing (possibly partial) "
                         "vtt.json without running patients")
    args = ap.parse_args(argv)
    if args.report_only is not None:
        result = json.loads(args.report_only.read_text())
        figure(result["patients"], result["summary"], args.figure)
        print(markdown(result["summary"]))
        return result
    if args.quick:
        args.n_patients, args.groups = min(args.n_patients, 6), 1
    if args.n_patients < 2:
        ap.error("--n-patients must be >= 2")
    if args.groups < 1:
        ap.error("--groups must be >= 1")
    groups = min(args.groups, args.n_patients)

    import jax

    import pbpk
    from calibration import Prior

    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    sizes = [args.n_patients // groups + (1 if g < args.n_patients % groups else 0) for g in range(groups)]
    records, group_info, timings, joint_cache = [], [], {}, {}
    pid, interrupted = 0, False
    for g, size in enumerate(sizes):
        tg = time.perf_counter()
        phys, lesion_l, info = draw_physiology(rng)
        pet_model = pbpk.psma_model(PET_AGENT, physiology=phys, lesion_volumes_l=(lesion_l,),
                                    tumour_rest_volume_l=0.0)
        therapy_model = pbpk.theranostic_pair(pet_model, THERAPY_AGENT)
        cu_model = theranostic_cu64(pet_model)
        prior = Prior.default(pet_model)
        for _ in range(size):
            key = jax.random.PRNGKey(args.seed * 1000 + pid)
            tp = time.perf_counter()
            try:
                records.append(run_patient(pid, g, rng, key, prior, pet_model, therapy_model, cu_model, joint_cache,
                                           timings))
            except KeyboardInterrupt:  # stop early: summarise what is done
                interrupted = True
                break
            if not args.silent:
                print(f"patient {pid + 1}/{args.n_patients} (group {g + 1}/{groups}) "
                      f"{time.perf_counter() - tp:.1f} s", file=sys.stderr, flush=True)
            pid += 1
            if len(records) >= 2:  # partial results survive an interrupted run
                write_results(args, records, [*group_info, info], timings, groups, t_start, complete=False)
        info["n_patients"] = size
        info["wall_s"] = time.perf_counter() - tg
        group_info.append(info)
        if interrupted:
            break
    if len(records) < 2:
        raise SystemExit("fewer than two patients completed; nothing to summarise.")
    result = write_results(args, records, group_info, timings, groups, t_start,
                           complete=not interrupted)
    figure(result["patients"], result["summary"], args.figure)
    print(markdown(result["summary"]))
    print(f"\n{len(records)} patients in {groups} groups, {result['timing_s']['total']:.0f} s; wrote "
          f"{args.out} and {args.figure}")
    return result


def write_results(args, records, group_info, timings, groups, t_start, complete: bool) -> dict:
    """Summarise the patients so far and write the JSON (called after every patient)."""
    import pbpk
    from calibration import Prior

    records = [dict(r, predictions=dict(r["predictions"])) for r in records]
    add_population_average(records)
    summary = summarise(records)
    verdicts = judge(summary)
    wall = time.perf_counter() - t_start
    result = {
        "benchmark": "vtt",
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_1min": os.getloadavg()[0],
        "settings": {
            "n_patients": args.n_patients, "completed": len(records), "complete": complete,
            "groups": groups, "seed": args.seed, "quick": args.quick,
            "pet_agent": PET_AGENT, "pet_mbq": PET_MBQ, "therapy_agent": THERAPY_AGENT,
            "therapy_mbq": THERAPY_MBQ, "pet_times_h": PET_TIMES_H, "spect_times_h": SPECT_TIMES_H,
            "pet_regions": PET_REGIONS, "spect_regions": SPECT_REGIONS, "pet_cv": PET_CV,
            "spect_cv": SPECT_CV, "tumour_extra_cv_pet": TUMOUR_EXTRA_CV, "rc_cv": RC_CV,
            "fwhm_mm": {"pet": PET_FWHM_MM, "spect": SPECT_FWHM_MM},
            "calibration": f"calibration.calibrate(method={METHOD!r}, hessian='fd', "
                           f"num_samples={N_POSTERIOR_DRAWS}) and Posterior.predict ({N_PREDICT_DRAWS} "
                           "draws) on the therapy model; PET + SPECT: the same on a joint callable model "
                           "of both agents; point = median of the draws, interval = 5-95 % of the draws",
            "prior": [{"name": e.name, "cv": e.cv} for e in Prior.default(pbpk.psma_model(PET_AGENT)).entries],
            "dose": "self-dose, local deposition (organs, marrow) and sphere model (lesion), "
                    "patient masses; same conversion for truth and prediction",
            "truth_noise": "measurements drawn from the calibration's own noise model (well specified)",
        },
        "groups": group_info,
        "summary": summary,
        "truth_spread_vs_prior": truth_spread(records),
        "targets": TARGET_CRITERIA,
        "verdicts": verdicts,
        "published_reference": PUBLISHED,
        "timing_s": {"total": wall, **{p: {"mean": float(np.mean(v)), "max": float(np.max(v)),
                                           "first": float(v[0])} for p, v in timings.items()}},
        "patients": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
