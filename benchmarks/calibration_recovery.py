"""Recovery of virtual patients: calibrate on a 68Ga-PSMA-11 PET at 1 h, predict 177Lu-PSMA-617 therapy.

Every virtual patient's truth is drawn from ``calibration.Prior.default(model)`` (10 parameters:
receptor densities of kidney, salivary glands, liver, spleen and the lesion; release rates of
kidney, salivary glands and lesion; effective filtration; kidney plasma flow). Observations:
PET at 1 h (kidney, salivary glands, liver, spleen, lesion) and a blood sample (plasma), 10 %
log-normal noise. Each patient is calibrated alone; then

* coverage: fraction of (patient, parameter) pairs whose truth lies inside the central 90 %
  credible interval (the issue asks for 80-98 %);
* informed: per parameter, in how many patients the posterior differs from the prior
  (``Posterior.uninformed``; a 1-h PET cannot inform release rates: they are reported);
* therapy TIA: posterior-predictive 177Lu-PSMA-617 (7.4 GBq) TIA of kidneys and lesion against
  the truth simulated on the same physiology: relative error of the posterior median and
  coverage of the 90 % predictive interval;
* population: the hierarchical calibration of all patients (stage 1 reuses the Laplace fits)
  against the true population (shift 0, spread = the prior's log-sd).

Writes ``benchmarks/results/calibration_recovery.json``.

Usage: ``python benchmarks/calibration_recovery.py [--patients 20 --method laplace|nuts]``
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
RESULT = ROOT / "benchmarks" / "results" / "calibration_recovery.json"
REGIONS = ("kidney", "salivary", "liver", "spleen", "tumour1", "plasma")
CV = 0.1


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--method", choices=("laplace", "nuts"), default="laplace")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=pathlib.Path, default=RESULT)
    args = ap.parse_args(argv)

    import jax

    import pbpk
    from calibration import NoiseModel, Observations, Prior, calibrate, calibrate_population

    model = pbpk.psma_model("PSMA-11", lesion_volumes_l=(0.012,), tumour_rest_volume_l=0.0)
    therapy = pbpk.theranostic_pair(model, "PSMA-617")
    prior = Prior.default(model)
    pet = pbpk.Schedule.single(150.0)
    rx = pbpk.Schedule.single(7400.0)
    rx_times = [1.0, 24.0, 168.0]
    n = args.patients
    truth = prior.sample(args.seed, n)
    res = pbpk.simulate_cohort(model, pet, [1.0], truth)
    true_rx = pbpk.simulate_cohort(therapy, rx, rx_times, truth)
    assert np.all(np.asarray(res.status) == 0) and np.all(np.asarray(true_rx.status) == 0)
    act = np.asarray(res.activity_mbq)[:, 0, :]
    true_tia = {r: np.asarray(true_rx.tia_mbq_h)[:, true_rx.body_regions.index(r)] for r in ("kidney", "tumour1")}
    rng = np.random.default_rng(args.seed)
    s = math.sqrt(math.log1p(CV**2))

    names = prior.names
    inside = np.zeros((n, len(names)), bool)
    informed = np.zeros((n, len(names)), bool)
    tia_err = {r: [] for r in true_tia}
    tia_in = {r: [] for r in true_tia}
    fits, walls = [], []
    for k in range(n):
        recs = [{"region": r, "time_h": 1.0, "unit": "MBq",
                 "value": float(act[k, model.regions.index(r)]) * math.exp(s * rng.standard_normal())}
                for r in REGIONS]
        obs = Observations.from_records(recs, agent="PSMA-11", noise=NoiseModel(cv=CV))
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if args.method == "laplace":
                post = calibrate(model, pet, obs, prior, method="laplace", hessian="fd", num_samples=1000, key=k)
            else:
                post = calibrate(model, pet, obs, prior, method="nuts", num_chains=args.chains,
                                 num_warmup=args.warmup, num_samples=args.draws, key=k, init="map")
        walls.append(time.perf_counter() - t)
        fits.append(post)
        iv = post.interval(0.9)
        unin = set(post.uninformed)
        for j, nm in enumerate(names):
            inside[k, j] = iv[nm][0] <= truth[nm][k] <= iv[nm][1]
            informed[k, j] = nm not in unin
        pred = post.predict(rx, rx_times, model=therapy, n_draws=200, key=k)
        for r in true_tia:
            d = pred.tia(r)
            tia_err[r].append(float(np.median(d) / true_tia[r][k] - 1.0))
            lo, hi = np.quantile(d, [0.05, 0.95])
            tia_in[r].append(bool(lo <= true_tia[r][k] <= hi))
        if args.method == "nuts":
            jax.clear_caches()  # each NUTS run keeps its compiled programs otherwise

    out: dict = {"benchmark": "calibration_recovery",
                 "date": datetime.datetime.now(datetime.UTC).isoformat(),
                 "machine": f"{platform.machine()} {os.cpu_count()} cpus", "load_1min": os.getloadavg()[0],
                 "model": model.name, "method": args.method,
                 # the pair keeps the imaging graph (and its name); say what the therapy agent is
                 "therapy_model": f"{therapy.name} graph with {therapy.ligand} ({therapy.nuclide})",
                 "design": "68Ga-PSMA-11 PET at 1 h (kidney, salivary, liver, spleen, lesion) + blood, 10 % noise",
                 "patients": n, "parameters": list(names),
                 "pairs_inside_90": int(inside.sum()), "pairs_total": int(inside.size),
                 "coverage_90": float(inside.mean()), "coverage_target": [0.8, 0.98],
                 "coverage_by_parameter": {nm: float(inside[:, j].mean()) for j, nm in enumerate(names)},
                 "informed_patients_by_parameter": {nm: int(informed[:, j].sum()) for j, nm in enumerate(names)},
                 "calibration_wall_s_median": float(np.median(walls)),
                 "calibration_wall_s_total": float(np.sum(walls))}
    if args.method == "nuts":
        out.update({"chains": args.chains, "warmup": args.warmup, "draws": args.draws,
                    "rhat_max_over_patients": float(max(f.diagnostics["rhat_max"] for f in fits)),
                    "ess_min_over_patients": float(min(f.diagnostics["ess_min"] for f in fits)),
                    "divergences_total": int(sum(f.diagnostics["divergences"] for f in fits))})
    out["therapy_tia"] = {}
    for r, e in tia_err.items():
        e = np.asarray(e)
        out["therapy_tia"][r] = {"relative_error_of_posterior_median": e.tolist(),
                                 "median_error": float(np.median(e)), "median_abs_error": float(np.median(np.abs(e))),
                                 "p90_abs_error": float(np.quantile(np.abs(e), 0.9)),
                                 "max_abs_error": float(np.max(np.abs(e))),
                                 "inside_90_predictive": int(np.sum(tia_in[r]))}
    # hierarchical calibration on the same patients (reuses Laplace fits; NUTS fits are refitted)
    obs_all = [f.observations for f in fits]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pop = calibrate_population(model, pet, obs_all, prior,
                                   patient_posteriors=fits if args.method == "laplace" else None, key=1)
    iv = pop.interval(0.9)
    out["population"] = {
        "wall_s": time.perf_counter() - t,
        "truth": "shift 0 (medians = model values), spread = prior log-sd",
        "median_inside_90": {nm: bool(iv["median"][nm][0] <= prior[nm].median <= iv["median"][nm][1]) for nm in names},
        "spread_inside_90": {nm: bool(iv["spread"][nm][0] <= prior[nm].log_scale <= iv["spread"][nm][1])
                             for nm in names},
        "spread_mean": pop.spread, "spread_true": {nm: prior[nm].log_scale for nm in names},
        "median_ratio_to_true": {nm: pop.median[nm] / prior[nm].median for nm in names},
        "rhat_max": pop.diagnostics["rhat_max"], "divergences": pop.diagnostics["divergences"],
    }
    out["load_1min_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps({k: out[k] for k in ("patients", "method", "pairs_inside_90", "pairs_total", "coverage_90",
                                          "informed_patients_by_parameter", "calibration_wall_s_median")}, indent=1))
    for r, v in out["therapy_tia"].items():
        print(f"therapy TIA {r}: median error {v['median_error']:+.3f}, median |error| {v['median_abs_error']:.3f}, "
              f"max |error| {v['max_abs_error']:.3f}, truth inside 90 % predictive {v['inside_90_predictive']}/{n}")
    return out


if __name__ == "__main__":
    main()
