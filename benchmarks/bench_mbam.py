"""MBAM reduction of the 177Lu-PSMA-617 model for the PET (1 h) + SPECT (4, 24, 96, 168 h) design.

Runs ``mbam.reduce_pbpk`` on ``pbpk.psma_model("PSMA-617")`` (reference male, one lesion and
tumour rest) with ``calibration.Prior.default`` as the population, then compares the reduced
model with the full one in the same process:

* ``params_before``/``params_after``: model parameters (decay constant excluded);
  ``patient_params_*``: the patient-specific ones (all but the decay constant and the ligand
  constants kon, koff, kint, as ``pbpk.theranostic_pair`` defines them); ``prior_params_*``: the
  calibrated ones (``Prior.default``) still present; ``states_*``: ODE states of the compiled graph;
* ``wall_s``: the reduction (compilation included); ``reduction_cpu_s``: its CPU time over all
  threads (the machine is shared: compare ``wall_s`` with the load averages recorded);
* ``max_tia_rel_err_over_population``: largest relative TIA error of the design regions over
  ``--draws`` prior draws (full-model values mapped with ``PBPKReduction.map_parameters``);
  ``*_by_region`` gives each region's maximum and 99th percentile;
* ``simulate_speedup``: one patient, warm, median of repeats, full / reduced;
  ``cohort_speedup``: the draws through ``pbpk.simulate_cohort``, warm, median of 3 (blocked on the result);
* ``calibration_speedup``: ``calibration.calibrate(method="map")`` on the same SPECT
  observations (kidney, salivary glands, liver, spleen, lesion at 24 and 96 h, 10 % noise) of a
  prior draw, full / reduced, warm second call (``*_first_call_s`` include compilation).

Targets (issue 6): at most a third of the patient-specific parameters, TIA within 2 % over
1,000 draws, the reduction in <= 10 min, a measured speed-up. Usage:
``python benchmarks/bench_mbam.py [--draws 1000 --max-iter 7 --reuse]``
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

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "bench_mbam.json"
REDUCED = ROOT / "benchmarks" / "results" / "bench_mbam_reduced.json"


def _median_time(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _write(out: dict) -> None:
    """Write what is measured so far (a run cut short still leaves its numbers)."""
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=1, default=float))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--max-iter", type=int, default=7)
    ap.add_argument("--population-draws", type=int, default=32)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--reuse", action="store_true",
                    help="load the reduced model of the last run instead of reducing again")
    ap.add_argument("--quiet", action="store_true", help="no progress log on stderr")
    args = ap.parse_args(argv)
    if not args.quiet:
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("mbam").setLevel(logging.INFO)

    import jax

    import mbam
    import pbpk
    from calibration import NoiseModel, Observations, Prior, calibrate

    full = pbpk.psma_model("PSMA-617")
    prior = Prior.default(full)
    design = mbam.ReductionDesign.psma_pet_spect("PSMA-617")
    out: dict = {"benchmark": "bench_mbam", "date": datetime.datetime.now(datetime.UTC).isoformat(),
                 "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                 "load_1min_start": os.getloadavg()[0], "model": full.name,
                 "design": design.to_dict(), "draws": args.draws,
                 "target": {"patient_params_after": "<= 1/3 of before", "max_tia_rel_err": 0.02,
                            "wall_s": 600.0}}

    if args.reuse and REDUCED.is_file():
        red = mbam.load_reduced(REDUCED)
        out["reused_reduction"] = True
    else:
        t, c = time.perf_counter(), time.process_time()
        red = mbam.reduce_pbpk(full, design, prior, max_iter=args.max_iter,
                               population_draws=args.population_draws, key=args.seed)
        out["wall_s"] = time.perf_counter() - t
        out["reduction_cpu_s"] = time.process_time() - c  # all threads of this process
        out["load_1min_after_reduction"] = os.getloadavg()[0]
        red.save(REDUCED)
        _write({**out, **red.counts()})
    out["wall_s"] = out.get("wall_s", red.wall_s)
    out.update(red.counts())
    out["prior_params_before"] = len(prior.names)
    out["prior_params_after"] = sum(n in red.model.parameters for n in prior.names)
    out["stop_reason"] = red.stop_reason
    out["steps"] = [{"iteration": s.iteration, "accepted": s.accepted, "n_params": s.n_params,
                     "n_states": s.n_states, "chi2": s.chi2,
                     "population_max_rel_err": s.population_max_rel_err, "wall_s": s.wall_s,
                     "limits": [f"{d['name']} -> {d['direction']} ({d['how']})" for d in s.limits]}
                    for s in red.history]
    model = red.model

    # ---- TIA over the population
    sched = pbpk.Schedule.single(design.activity_mbq)
    times = list(design.times_h)
    draws = {k: np.asarray(v) for k, v in prior.sample(jax.random.PRNGKey(args.seed + 1), args.draws).items()}
    mapped = red.map_parameters(draws)
    def cohort(m, p):
        r = pbpk.simulate_cohort(m, sched, times, p, chunk_size=100)
        jax.block_until_ready(r.tia_mbq_h)  # JAX dispatches asynchronously: time the work, not the call
        return r

    rf, rr = cohort(full, draws), cohort(model, mapped)  # compile
    t_full = _median_time(lambda: cohort(full, draws), 3)
    t_red = _median_time(lambda: cohort(model, mapped), 3)
    bi_f = [rf.body_regions.index(r) for r in design.regions]
    bi_r = [rr.body_regions.index(r) for r in design.regions]
    ok = (np.asarray(rf.status) == 0) & (np.asarray(rr.status) == 0)
    rel = np.abs(np.asarray(rr.tia_mbq_h)[:, bi_r] / np.asarray(rf.tia_mbq_h)[:, bi_f] - 1.0)[ok]
    out["failed_solves"] = int((~ok).sum())
    out["max_tia_rel_err_over_population"] = float(rel.max())
    out["max_tia_rel_err_by_region"] = dict(zip(design.regions, rel.max(0).tolist()))
    out["p99_tia_rel_err_by_region"] = dict(zip(design.regions, np.quantile(rel, 0.99, axis=0).tolist()))
    out["cohort_full_s"], out["cohort_reduced_s"] = t_full, t_red
    out["cohort_speedup"] = t_full / t_red
    _write(out)

    # ---- one simulation, warm
    one = lambda m: pbpk.simulate(m, sched, times).tia_mbq_h.block_until_ready()
    one(full), one(model)
    out["simulate_full_s"] = _median_time(lambda: one(full), 30)
    out["simulate_reduced_s"] = _median_time(lambda: one(model), 30)
    out["simulate_speedup"] = out["simulate_full_s"] / out["simulate_reduced_s"]
    _write(out)

    # ---- calibration on the same observations
    truth = {k: float(v[0]) for k, v in prior.sample(args.seed + 2, 1).items()}
    res = pbpk.simulate(full, sched, [24.0, 96.0], truth)
    rng = np.random.default_rng(args.seed)
    s = math.sqrt(math.log1p(0.1**2))
    regions = ("kidney", "salivary", "liver", "spleen", "tumour1")
    recs = [{"region": r, "time_h": t, "value": float(res.activity(r)[k]) * math.exp(s * rng.standard_normal()),
             "unit": "MBq"} for r in regions for k, t in enumerate((24.0, 96.0))]
    obs = Observations.from_records(recs, agent="PSMA-617", noise=NoiseModel(cv=0.1))
    keep = [n for n in prior.names if n in model.parameters]
    prior_red = Prior(tuple(prior[n] for n in keep)).recentred(model)
    prior_full = Prior(tuple(prior[n] for n in keep))
    out["calibration_parameters"] = keep
    timings = {}
    for label, m, pr in (("full", full, prior_full), ("reduced", model, prior_red)):
        t = time.perf_counter(); calibrate(m, sched, obs, pr, method="map"); first = time.perf_counter() - t
        t = time.perf_counter(); post = calibrate(m, sched, obs, pr, method="map"); warm = time.perf_counter() - t
        timings[label] = (first, warm, post.map)
    out["calibration_full_first_call_s"], out["calibration_full_s"], map_full = timings["full"]
    out["calibration_reduced_first_call_s"], out["calibration_reduced_s"], map_red = timings["reduced"]
    out["calibration_speedup"] = out["calibration_full_s"] / out["calibration_reduced_s"]
    out["calibration_map_rel_diff"] = {n: map_red[n] / map_full[n] - 1.0 for n in keep}
    out["load_1min_end"] = os.getloadavg()[0]
    _write(out)
    print(json.dumps({k: out[k] for k in ("params_before", "params_after", "patient_params_before",
                                          "patient_params_after", "states_before", "states_after",
                                          "wall_s", "max_tia_rel_err_over_population",
                                          "simulate_speedup", "cohort_speedup", "calibration_speedup")},
                     indent=1))
    return out


if __name__ == "__main__":
    main()
