"""The shipped PSMA-617 reduction in a virtual cohort: reduced against full model, same patients.

Runs ``twin.cohort.run_cohort`` twice on the default PSMA-617 population (the same key, so the
same virtual patients with their covariates: weight, height, age, eGFR, haematocrit, tumour
volume, and prior residuals): once with the full model and once with the reduction in
``benchmarks/results/bench_mbam_reduced.json`` (``reduction=``). It writes
``benchmarks/results/reduced_cohort.json``:

* ``max_rel_err_by_column``: the largest relative difference, reduced vs full, of each dose
  per GBq and TIA column the two runs share (regions of the reduction's design and others);
* ``wall_s_full``/``wall_s_reduced``: each run in one process (``workers=1``), compilation
  included, and their ratio ``cohort_speedup``.

The reduction was checked on prior draws around the reference physiology; this checks it on
the population's covariate patients. Usage: ``python benchmarks/reduced_cohort.py [--n 256]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
REDUCTION = ROOT / "benchmarks" / "results" / "bench_mbam_reduced.json"
OUT = ROOT / "benchmarks" / "results" / "reduced_cohort.json"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="virtual patients (default 256)")
    ap.add_argument("--key", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    import pbpk
    from twin.cohort import read_results, run_cohort

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="reduced_cohort_"))
    try:
        kw = dict(workers=1, progress=False, chunk_size=128, key=args.key)
        t0 = time.perf_counter()
        run_cohort(tmp / "full", args.n, **kw)
        t_full = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pbpk.UnpredictedRegionWarning)  # red marrow limit left out
            t0 = time.perf_counter()
            run_cohort(tmp / "reduced", args.n, reduction=REDUCTION, **kw)
            t_red = time.perf_counter() - t0
        a, b = read_results(tmp / "full"), read_results(tmp / "reduced")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = (a.status.to_numpy() == 0) & (b.status.to_numpy() == 0)
    cols = [c for c in b.columns if c in a.columns
            and (c.endswith("_dose_gy_per_gbq") or (c.startswith("tia_") and c.endswith("_per_cycle")))]
    err = {c: float(np.max(np.abs(b[c].to_numpy()[ok] / a[c].to_numpy()[ok] - 1.0))) for c in cols}
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/reduced_cohort.py", *(sys.argv[1:] if argv is None else argv)]),
        "n_patients": args.n,
        "n_ok_both": int(ok.sum()),
        "reduction": str(REDUCTION.relative_to(ROOT)),
        "max_rel_err_by_column": dict(sorted(err.items(), key=lambda kv: -kv[1])),
        "only_in_full": sorted(set(a.columns) - set(b.columns)),
        "wall_s_full": round(t_full, 2),
        "wall_s_reduced": round(t_red, 2),
        "cohort_speedup": round(t_full / t_red, 3),
        "cpu_count": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


if __name__ == "__main__":
    res = main()
    for k, v in res["max_rel_err_by_column"].items():
        print(f"{k:45s} {100 * v:8.2f} %")
    print(f"full {res['wall_s_full']} s, reduced {res['wall_s_reduced']} s: x{res['cohort_speedup']}")
