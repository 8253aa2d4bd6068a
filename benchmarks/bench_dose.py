"""Voxel dose surrogate: our JAX FFT convolution against scipy.signal.fftconvolve.

Times a 256^3 float32 TIA map (and, as an extra, a 128^3 one) convolved with an 11^3 kernel (the 177Lu Lanconelli table,
4.42 mm) and a 21^3 kernel (a symmetric dose-point-like kernel; the convolution cost depends
only on the kernel size), 'same' output, in one run:

* ``ours_s``: :func:`twin.dose.voxel_dose` with a prepared plan (kernel spectrum computed once
  per geometry, as in use; the plan time is reported separately as ``plan_s``);
* ``scipy_s``: ``scipy.signal.fftconvolve(tia, kernel, mode="same")`` inside
  ``scipy.fft.set_workers(2)``;
* ``ratio``: ``scipy_s / ours_s`` (> 1: ours is faster); ``ratio_median_of_pairs`` is the
  median over the interleaved (ours, scipy) pairs of their ratio;
* ``grad_s``: ``jax.grad`` of ``0.5 * sum((dose - target)**2)`` with respect to the TIA map,
  jitted (one forward and one adjoint convolution, plus the residual pass over the grid);
* ``grad_linear_s``: ``jax.grad`` of a linear dose objective, ``sum(weights * dose)`` (e.g. the
  mean dose of an organ, ``weights`` = mask / voxel count), jitted: the adjoint convolution
  alone, since the forward dose is not needed;
* ``xla_fft_s``: XLA's forward and inverse 2-D real FFTs of every x-plane at the plan's (y, z)
  lengths, the transforms the convolution cannot avoid (XLA's CPU FFT runs on one thread);
  ``scipy_over_xla_fft`` = ``scipy_s / xla_fft_s`` bounds the ratio any convolution built on
  those transforms can reach;
* ``peak_rss_mb``: peak resident memory of the process during our forward calls (the JAX
  runtime and the input arrays included); ``scipy_peak_rss_mb`` the same for scipy.

Each case runs in a fresh child process; ours, scipy and gradient calls alternate, so that load
from other processes on the machine hits all three alike. Times are medians of ``REPEATS`` warm calls; the
``*_min_s`` fields give the fastest call and ``*_cpu_s`` the median CPU time (user + system, all
threads), which other processes on a shared machine disturb less than wall time.
Writes ``benchmarks/results/bench_dose.json``.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

REPEATS = 15
CASES = (  # name, grid size, kernel size; the 128^3 case (a typical SPECT grid) is extra
    ("256^3 x 11^3", 256, 11),
    ("256^3 x 21^3", 256, 21),
    ("128^3 x 11^3", 128, 11),
)
RESULT = pathlib.Path(__file__).resolve().parent / "results" / "bench_dose.json"


def _rss_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> None:
    try:  # Linux >= 4.0: writing 5 resets the peak RSS (VmHWM) of this process
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def _kernel(size: int):
    import numpy as np

    from twin.dose import DoseKernel, lanconelli_table

    if size == 11:
        return lanconelli_table("Lu-177", 4.42)
    half = size // 2
    idx = np.indices((size,) * 3) - half
    r = np.sqrt(np.sum(idx.astype(float) ** 2, axis=0))
    values = np.exp(-r / 2.0) / (1.0 + r**2)
    return DoseKernel(
        values, (2.0, 2.0, 2.0), "custom", "soft", 1.04, "synthetic 21^3 benchmark kernel"
    )


def run_case(grid: int, size: int) -> dict:
    """Run one case in this process and return its numbers."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.fft
    import scipy.signal

    from twin.dose import make_dose_plan, voxel_dose

    shape = (grid, grid, grid)
    rng = np.random.default_rng(0)
    tia = rng.gamma(2.0, 5.0, size=shape).astype(np.float32)
    kernel = _kernel(size)
    k32 = kernel.values_gy_per_mbq_h.astype(np.float32)
    tia_j = jnp.asarray(tia)
    target = jnp.asarray(rng.random(shape, dtype=np.float32))

    t0 = time.perf_counter()
    plan = make_dose_plan(kernel, shape)
    jax.block_until_ready(plan.spectrum)
    plan_s = time.perf_counter() - t0

    def ours():
        return jax.block_until_ready(voxel_dose(tia_j, plan))

    def scipy_conv():
        with scipy.fft.set_workers(2):
            return scipy.signal.fftconvolve(tia, k32, mode="same")

    @jax.jit
    def grad_fn(x, p, tgt):
        return jax.grad(lambda y: 0.5 * jnp.sum((voxel_dose(y, p) - tgt) ** 2))(x)

    def grad():
        return jax.block_until_ready(grad_fn(tia_j, plan, target))

    @jax.jit
    def grad_linear_fn(x, p, w):
        return jax.grad(lambda y: jnp.sum(w * voxel_dose(y, p)))(x)

    def grad_linear():
        return jax.block_until_ready(grad_linear_fn(tia_j, plan, target))

    # the transforms no FFT convolution of this layout can avoid: 2-D real FFTs of every
    # x-plane at the plan's (y, z) lengths, forward and inverse (XLA's CPU FFT: one thread)
    lengths = tuple(plan.fft_shape[1:])
    fwd_fft = jax.jit(lambda x: jnp.fft.rfft2(x, s=lengths))
    inv_fft = jax.jit(lambda f: jnp.fft.irfft2(f, s=lengths))
    spec_j = jax.block_until_ready(fwd_fft(tia_j))

    def xla_fft():
        jax.block_until_ready(fwd_fft(tia_j))
        return jax.block_until_ready(inv_fft(spec_j))

    # warm-up (compilation, first-touch allocations) and an accuracy check
    xla_fft()
    ref = scipy_conv()
    ours_out = np.asarray(ours())
    ours()
    scipy_conv()
    grad()
    grad()
    grad_linear()
    grad_linear()
    rel_err = float(np.max(np.abs(ours_out - ref)) / np.max(np.abs(ref)))
    del ours_out, ref

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    baseline_mb = _rss_mb("VmRSS")
    load_before = os.getloadavg()[0]
    t_ours, t_scipy, t_grad, t_lin, t_fft = [], [], [], [], []
    c_ours, c_scipy, c_grad = [], [], []
    peak_ours, peak_scipy, peak_grad = 0.0, 0.0, 0.0
    for _ in range(REPEATS):
        _reset_peak()
        c = cpu()
        t = time.perf_counter()
        out = ours()
        t_ours.append(time.perf_counter() - t)
        c_ours.append(cpu() - c)
        del out
        peak_ours = max(peak_ours, _rss_mb("VmHWM"))
        _reset_peak()
        c = cpu()
        t = time.perf_counter()
        out = scipy_conv()
        t_scipy.append(time.perf_counter() - t)
        c_scipy.append(cpu() - c)
        del out
        peak_scipy = max(peak_scipy, _rss_mb("VmHWM"))
        _reset_peak()
        c = cpu()
        t = time.perf_counter()
        out = grad()
        t_grad.append(time.perf_counter() - t)
        c_grad.append(cpu() - c)
        del out
        peak_grad = max(peak_grad, _rss_mb("VmHWM"))
        t = time.perf_counter()
        out = grad_linear()
        t_lin.append(time.perf_counter() - t)
        del out
        t = time.perf_counter()
        out = xla_fft()
        t_fft.append(time.perf_counter() - t)
        del out
    ours_s = float(np.median(t_ours))
    scipy_s = float(np.median(t_scipy))
    return {
        "ours_s": round(ours_s, 4),
        "scipy_s": round(scipy_s, 4),
        "ratio": round(scipy_s / ours_s, 3),
        "ratio_median_of_pairs": round(float(np.median(np.array(t_scipy) / np.array(t_ours))), 3),
        "grad_s": round(float(np.median(t_grad)), 4),
        "grad_over_forward": round(float(np.median(t_grad)) / ours_s, 3),
        "grad_linear_s": round(float(np.median(t_lin)), 4),
        "grad_linear_over_forward": round(float(np.median(t_lin)) / ours_s, 3),
        "peak_rss_mb": round(peak_ours, 1),
        "scipy_peak_rss_mb": round(peak_scipy, 1),
        "grad_peak_rss_mb": round(peak_grad, 1),
        "rss_before_timing_mb": round(baseline_mb, 1),
        "ours_min_s": round(min(t_ours), 4),
        "scipy_min_s": round(min(t_scipy), 4),
        "grad_min_s": round(min(t_grad), 4),
        "ours_cpu_s": round(float(np.median(c_ours)), 4),
        "scipy_cpu_s": round(float(np.median(c_scipy)), 4),
        "ratio_cpu": round(float(np.median(c_scipy)) / float(np.median(c_ours)), 3),
        "grad_cpu_s": round(float(np.median(c_grad)), 4),
        "grad_over_forward_cpu": round(float(np.median(c_grad)) / float(np.median(c_ours)), 3),
        "xla_fft_s": round(float(np.median(t_fft)), 4),
        "scipy_over_xla_fft": round(scipy_s / float(np.median(t_fft)), 3),
        "plan_s": round(plan_s, 4),
        "fft_shape": list(plan.fft_shape),
        "kernel_shape": list(kernel.shape),
        "spectrum_dtype": str(plan.spectrum.dtype),
        "max_rel_diff_vs_scipy": rel_err,
        "repeats": REPEATS,
        "load_avg_1min_before": load_before,
        "load_avg_1min_after": os.getloadavg()[0],
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(run_case(int(sys.argv[2]), int(sys.argv[3]))))
        return
    import jax
    import numpy as np
    import scipy

    results = {}
    for name, grid, size in CASES:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", str(grid), str(size)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"case {name} failed:\n{proc.stderr}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, json.dumps(results[name]), flush=True)
    report = {
        "benchmark": "voxel dose: float32 TIA map, FFT convolution, 'same' output",
        "cases": results,
        "targets": {
            "ours_s_21": "<= 0.5 s for 256^3 x 21^3",
            "ratio": ">= 1.5 (scipy.signal.fftconvolve, workers=2)",
            "grad": "grad_s <= 2 x ours_s",
        },
        "environment": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
