"""Calibration of a virtual patient from a 68Ga-PSMA-11 PET at 1 h (plus labs): MAP, Laplace, SVI, NUTS.

Patient: 7 patient-specific parameters (receptor densities of kidney, salivary glands, liver,
spleen and one lesion, effective filtration, kidney release rate) drawn from
``calibration.Prior.default``; the labs enter as fixed model inputs (GFR from the reference
physiology). Observations: PET at 1 h (kidney, salivary glands, liver, spleen, lesion, blood
pool), 10 % log-normal noise. Model: ``pbpk.psma_model("PSMA-11")`` with one lesion.

Reported (``benchmarks/results/bench_calibration.json``):

* ``gradient_s``: one value-and-gradient of the log posterior as calibrate() computes it
  (forward mode, solver rtol 1e-4, window 0-1 h; warm, median of 20);
  ``gradient_reverse_rtol1e-6_s``: the previous configuration (reverse mode, rtol 1e-6) in the
  same process, for the before/after ratio; ``forward_s``: one simulation of the design (warm);
* ``tolerance_check``: log posterior and gradient at 8 prior draws with the likelihood's
  default tolerance against rtol 1e-9 (max absolute differences), and the MAP at both;
* ``map_wall_s`` (warm; ``map_first_call_s`` includes compilation), ``laplace_fd_wall_s`` and
  ``laplace_autodiff_wall_s`` (first call, i.e. with the ``jax.hessian`` compilation);
* ``svi_wall_s``: SVI with a multivariate-normal guide, ``svi_steps`` Adam steps, compilation
  included;
* ``nuts_wall_s``: ``calibrate(method="nuts", init="map")`` with ``chains`` x (``warmup`` +
  ``draws``), compilation and the (warm) MAP included; chains run as ``nuts_chain_method``
  (default ``"auto"``: ``"processes"`` on >= 2 cores, i.e. this process plus
  ``nuts_workers - 1`` worker processes, ``nuts_worker_wall_s`` each, each group of chains
  vectorised) and warmup starts from the Laplace covariance at the MAP
  (``nuts_initial_mass``); ``rhat_max``, ``ess_min``, ``divergences``;
* with ``--compare-previous``: ``nuts_previous``, the same run as before this change (all
  chains vectorised in this process, identity initial mass), for the before/after ratio;
* ``model_states``: ODE states of the full model (the decay-free single-bolus solve uses fewer).

The issue's target (4 chains x (500 + 500) in <= 60 s, SVI <= 10 s) is recorded next to the
measurement; there is no peer in this benchmark.

Usage: ``python benchmarks/bench_calibration.py [--chains 4 --warmup 500 --draws 500 --svi-steps 1000
--chain-method auto --compare-previous]``
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
RESULT = ROOT / "benchmarks" / "results" / "bench_calibration.json"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--svi-steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--chain-method", default="auto", choices=("auto", "processes", "vectorized", "sequential"))
    ap.add_argument("--compare-previous", action="store_true",
                    help="also run NUTS as before (vectorised chains in one process, identity initial mass)")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import pbpk
    from calibration import NoiseModel, Observations, Prior, calibrate, log_posterior

    model = pbpk.psma_model("PSMA-11", lesion_volumes_l=(0.012,), tumour_rest_volume_l=0.0)
    names = ("R_kidney", "R_salivary", "R_liver", "R_spleen", "R_tumour1", "gfr_eff", "krel_kidney")
    prior = Prior.default(model, names)
    schedule = pbpk.Schedule.single(150.0)
    truth = {k: float(v[0]) for k, v in prior.sample(args.seed, 1).items()}
    regions = ("kidney", "salivary", "liver", "spleen", "tumour1", "plasma")
    res = pbpk.simulate(model, schedule, [1.0], truth)
    rng = np.random.default_rng(args.seed)
    s = math.sqrt(math.log1p(0.1**2))
    recs = [{"region": r, "time_h": 1.0, "value": float(res.activity(r)[0]) * math.exp(s * rng.standard_normal()),
             "unit": "MBq"} for r in regions]
    obs = Observations.from_records(recs, agent="PSMA-11", noise=NoiseModel(cv=0.1))
    out: dict = {"benchmark": "bench_calibration", "date": datetime.datetime.now(datetime.UTC).isoformat(),
                 "machine": f"{platform.machine()} {os.cpu_count()} cpus", "load_1min": os.getloadavg()[0],
                 "model": model.name, "model_states": int(model.compiled.n_states),
                 "solved_states_single_bolus": int(pbpk._compile.compile_graph(model.graph, decay_free=True).n_states),
                 "parameters": list(names), "observations": len(obs), "truth": truth,
                 "target": {"nuts": "4 chains x (500 warmup + 500 draws) <= 60 s, rhat < 1.01", "svi_wall_s": 10.0}}

    lp = log_posterior(model, schedule, obs, prior)
    x0 = prior.log_loc
    t = time.perf_counter(); lp.value_and_grad(x0); out["gradient_compile_s"] = time.perf_counter() - t
    ts = []
    for i in range(20):
        t = time.perf_counter(); lp.value_and_grad(x0 + 0.01 * i); ts.append(time.perf_counter() - t)
    out["gradient_s"] = float(np.median(ts))
    fwd = jax.jit(lambda p: pbpk.simulate(model, schedule, [1.0], p, check=False).activity_mbq)
    p0 = {k: jnp.asarray(prior[k].median) for k in names}
    fwd(p0).block_until_ready()
    ts = []
    for _ in range(20):
        t = time.perf_counter(); fwd(p0).block_until_ready(); ts.append(time.perf_counter() - t)
    out["forward_s"] = float(np.median(ts))

    # before/after: the previous likelihood gradient (reverse mode through the solver, rtol 1e-6)
    from calibration._inference import _loglik, _Problem

    old = _Problem(model, schedule, obs, prior, {"rtol": 1e-6, "atol": 1e-9})

    def old_nlp(z, data):
        def pred_rev(logp):
            params = {n: jnp.exp(logp[i]) for i, n in enumerate(names)}
            r = pbpk.simulate(model, schedule, old.times, params, mode="reverse", check=False, rtol=1e-6, atol=1e-9)
            return r.activity_mbq[old.t_idx, old.r_idx], r.status
        old.predict = pred_rev
        return 0.5 * jnp.sum(z * z) - _loglik(old, z, data)[0]

    g_old = jax.jit(jax.value_and_grad(old_nlp))
    z0 = jnp.zeros(len(names))
    jax.block_until_ready(g_old(z0, old.data))
    ts = []
    for i in range(20):
        t = time.perf_counter(); jax.block_until_ready(g_old(z0 + 0.01 * i, old.data)); ts.append(time.perf_counter() - t)
    out["gradient_reverse_rtol1e-6_s"] = float(np.median(ts))
    out["gradient_speedup"] = out["gradient_reverse_rtol1e-6_s"] / out["gradient_s"]

    # the likelihood's loose tolerance against a tight solve
    tight = log_posterior(model, schedule, obs, prior, simulate_options={"rtol": 1e-9, "atol": 1e-13})
    draws = prior.sample(99, 8)
    dv, dg = [], []
    for k in range(8):
        x = np.log([draws[n][k] for n in names])
        v1, g1 = lp.value_and_grad(x)
        v2, g2 = tight.value_and_grad(x)
        dv.append(abs(v1 - v2))
        dg.append(float(np.max(np.abs(g1 - g2)) / max(1.0, float(np.max(np.abs(g2))))))
    map_tight = calibrate(model, schedule, obs, prior, method="map",
                          simulate_options={"rtol": 1e-9, "atol": 1e-13})

    t = time.perf_counter(); calibrate(model, schedule, obs, prior, method="map"); out["map_first_call_s"] = time.perf_counter() - t
    t = time.perf_counter(); post = calibrate(model, schedule, obs, prior, method="map")
    out["map_wall_s"] = time.perf_counter() - t
    out["map_iterations"] = post.diagnostics["map_iterations"]
    out["map"] = post.map
    out["tolerance_check"] = {"likelihood_rtol": 1e-4, "reference_rtol": 1e-9,
                              "max_abs_log_posterior_diff": float(max(dv)),
                              "max_rel_gradient_diff": float(max(dg)),
                              "max_abs_map_log_diff": float(np.max(np.abs(post.map_log - map_tight.map_log)))}
    t = time.perf_counter()
    lap = calibrate(model, schedule, obs, prior, method="laplace", hessian="fd", num_samples=500)
    out["laplace_fd_wall_s"] = time.perf_counter() - t
    t = time.perf_counter()
    calibrate(model, schedule, obs, prior, method="laplace", hessian="autodiff", num_samples=500)
    out["laplace_autodiff_wall_s"] = time.perf_counter() - t
    out["laplace_uninformed"] = list(lap.uninformed)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        svi = calibrate(model, schedule, obs, prior, method="svi", svi_steps=args.svi_steps, num_samples=500,
                        learning_rate=0.02)
        out["svi_wall_s"] = time.perf_counter() - t
        out["svi_steps"] = args.svi_steps
        t = time.perf_counter()
        out["load_1min_before_nuts"] = os.getloadavg()[0]
        nuts = calibrate(model, schedule, obs, prior, method="nuts", num_chains=args.chains,
                         num_warmup=args.warmup, num_samples=args.draws, chain_method=args.chain_method, key=1,
                         init="map")
        out["nuts_wall_s"] = time.perf_counter() - t
        out["load_1min_after_nuts"] = os.getloadavg()[0]
        if args.compare_previous:
            import calibration._inference as inference

            inference._LAPLACE_INIT_MASS = False
            try:
                t = time.perf_counter()
                prev = calibrate(model, schedule, obs, prior, method="nuts", num_chains=args.chains,
                                 num_warmup=args.warmup, num_samples=args.draws, chain_method="vectorized", key=1,
                                 init="map")
                dp = prev.diagnostics
                out["nuts_previous"] = {"chain_method": "vectorized", "initial_mass": "identity",
                                        "nuts_wall_s": time.perf_counter() - t, "rhat_max": dp["rhat_max"],
                                        "ess_min": dp["ess_min"], "divergences": dp["divergences"],
                                        "leapfrogs_sampling": dp["num_steps_total_sampling"],
                                        "load_1min_after": os.getloadavg()[0]}
            finally:
                inference._LAPLACE_INIT_MASS = True
    d = nuts.diagnostics
    out.update({"chains": args.chains, "warmup": args.warmup, "draws": args.draws, "rhat_max": d["rhat_max"],
                "ess_min": d["ess_min"], "divergences": d["divergences"],
                "nuts_leapfrogs_sampling": d["num_steps_total_sampling"],
                "nuts_chain_method": d["chain_method"], "nuts_workers": d.get("nuts_workers", 1),
                "nuts_worker_wall_s": d.get("nuts_worker_wall_s"), "nuts_initial_mass": d["nuts_initial_mass"],
                "nuts_in_calibrate_s": d["nuts_wall_s"], "nuts_map_s": d.get("map_wall_s"),
                "nuts_uninformed": list(nuts.uninformed), "svi_uninformed": list(svi.uninformed)})
    post_log_mean = {n: float(np.mean(nuts.log_samples[:, i])) for i, n in enumerate(nuts.names)}
    out["nuts_vs_laplace_log_mean_diff"] = {n: post_log_mean[n] - float(np.mean(lap.log_samples[:, i]))
                                            for i, n in enumerate(nuts.names)}
    # SVI against NUTS (the reference posterior): posterior means (log space) and SD ratios
    nuts_sd = np.std(nuts.log_samples, axis=0)
    out["svi_vs_nuts_log_mean_diff_in_nuts_sd"] = {
        n: (float(np.mean(svi.log_samples[:, i])) - post_log_mean[n]) / float(nuts_sd[i])
        for i, n in enumerate(nuts.names)}
    out["svi_over_nuts_sd"] = {n: float(np.std(svi.log_samples[:, i]) / nuts_sd[i]) for i, n in enumerate(nuts.names)}
    out["load_1min_end"] = os.getloadavg()[0]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps({k: out[k] for k in ("gradient_s", "gradient_reverse_rtol1e-6_s", "forward_s", "map_wall_s", "laplace_fd_wall_s",
                                          "laplace_autodiff_wall_s", "svi_wall_s", "nuts_wall_s", "rhat_max",
                                          "ess_min", "divergences", "nuts_chain_method", "nuts_worker_wall_s",
                                          "load_1min", "load_1min_before_nuts", "tolerance_check")}, indent=1))
    return out


if __name__ == "__main__":
    main()
