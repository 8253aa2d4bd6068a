"""Summary tables and plots of a virtual-trial run folder (reads only the columns it needs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from twin.cohort._runner import _parts, load_manifest, read_results

__all__ = ["exceedance_table", "plot_trial", "summarise", "write_trial_report"]

_SCALARS = (("cycles_given", "cycles"), ("activity_per_cycle_gbq", "GBq"),
            ("cumulative_activity_gbq", "GBq"))


def _arms(out_dir) -> list[str]:
    return [a["name"] for a in load_manifest(out_dir)["fingerprint"]["arms"]]


_EXCEEDANCE_COLUMNS = ("arm", "limit", "n", "n_exceeding", "fraction", "ci95_low", "ci95_high")


def _columns(out_dir) -> list[str]:
    """The columns of a complete run (``ResumeError`` if ``out_dir`` holds none, or an incomplete one)."""
    import pyarrow.parquet as pq

    parts = _parts(out_dir, allow_incomplete=False)
    return pq.read_schema(parts[0]).names if parts else []


def _endpoint_columns(columns) -> list[tuple[str, str]]:
    out = [(c, u) for c, u in _SCALARS if c in columns]
    out += [(c, "Gy") for c in columns if c.endswith(("_dose_gy", "_bed_gy"))]
    return out


def summarise(out_dir: str | os.PathLike):
    """One row per arm and endpoint: n, mean, sd, 5/25/50/75/95th percentiles (failed solves excluded).

    Endpoints: cycles given, activity per cycle, cumulative activity, and the cumulative
    absorbed dose and BED of every endpoint organ (Gy).
    """
    import pandas as pd

    columns = _columns(out_dir)
    rows = []
    meta = read_results(out_dir, columns=["arm", "status"])
    for col, unit in _endpoint_columns(columns):
        values = read_results(out_dir, columns=[col])[col].to_numpy()
        for arm in _arms(out_dir):
            sel = (meta["arm"].to_numpy() == arm) & (meta["status"].to_numpy() == 0)
            v = values[sel]
            v = v[np.isfinite(v)]
            q = np.percentile(v, [5, 25, 50, 75, 95]) if v.size else [np.nan] * 5
            rows.append({"arm": arm, "endpoint": col, "unit": unit, "n": int(v.size),
                         "mean": float(v.mean()) if v.size else np.nan,
                         "sd": float(v.std(ddof=1)) if v.size > 1 else np.nan,
                         "p5": q[0], "p25": q[1], "median": q[2], "p75": q[3], "p95": q[4]})
    return pd.DataFrame(rows)


def exceedance_table(out_dir: str | os.PathLike):
    """Fraction of patients (with a successful solve) exceeding each limit, per arm, with a 95 % CI.

    The interval is Wilson's score interval for a binomial proportion. Columns: arm, limit, n,
    n_exceeding, fraction, ci95_low, ci95_high (no rows for a trial without limits).
    """
    import pandas as pd

    columns = [c for c in _columns(out_dir) if c.startswith("exceeds_")]
    meta = read_results(out_dir, columns=["arm", "status"])
    rows = []
    for col in columns:
        flags = read_results(out_dir, columns=[col])[col].to_numpy()
        for arm in _arms(out_dir):
            sel = (meta["arm"].to_numpy() == arm) & (meta["status"].to_numpy() == 0)
            n = int(sel.sum())
            k = int(flags[sel].sum())
            p = k / n if n else np.nan
            z = 1.959963984540054
            if n:
                centre = (p + z * z / (2 * n)) / (1 + z * z / n)
                half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
            else:
                centre = half = np.nan
            rows.append({"arm": arm, "limit": col.removeprefix("exceeds_"), "n": n, "n_exceeding": k,
                         "fraction": p, "ci95_low": max(0.0, centre - half) if n else np.nan,
                         "ci95_high": min(1.0, centre + half) if n else np.nan})
    return pd.DataFrame(rows, columns=list(_EXCEEDANCE_COLUMNS))


def plot_trial(out_dir: str | os.PathLike, endpoints=("kidneys_bed_gy", "tumour_dose_gy")):
    """A matplotlib figure: endpoint distributions per arm (box plots), cycles given and
    fractions exceeding the limits (that panel is left out for a trial without limits).
    Returns the figure."""
    import matplotlib.pyplot as plt

    arms = _arms(out_dir)
    meta = read_results(out_dir, columns=["arm", "status", "cycles_given"])
    ok = meta["status"].to_numpy() == 0
    arm_col = meta["arm"].to_numpy()
    ex = exceedance_table(out_dir)
    panels = len(endpoints) + 1 + (len(ex) > 0)  # no exceedance panel for a trial without limits
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.2), squeeze=False)
    axes = axes[0]
    for ax, col in zip(axes, endpoints):
        v = read_results(out_dir, columns=[col])[col].to_numpy()
        data = [v[(arm_col == a) & ok & np.isfinite(v)] for a in arms]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(arms) + 1), arms, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(col.replace("_gy", " (Gy)").replace("_", " "))
        ax.grid(alpha=0.3)
    ax = axes[len(endpoints)]
    cyc = meta["cycles_given"].to_numpy()
    top = int(np.nanmax(cyc)) if np.isfinite(cyc).any() else 1
    bins = np.arange(-0.5, top + 1.5)
    for a in arms:
        sel = (arm_col == a) & ok & np.isfinite(cyc)
        ax.hist(cyc[sel], bins=bins, histtype="step", label=a, density=True)
    ax.set_xlabel("cycles given")
    ax.set_ylabel("fraction of patients")
    ax.legend(fontsize=7)
    if ex.empty:
        fig.tight_layout()
        return fig
    ax = axes[-1]
    limits = list(dict.fromkeys(ex["limit"]))
    width = 0.8 / max(len(arms), 1)
    for i, a in enumerate(arms):
        sub = ex[ex["arm"] == a].set_index("limit").reindex(limits)
        ax.bar(np.arange(len(limits)) + i * width, sub["fraction"], width, label=a,
               yerr=[np.clip(sub["fraction"] - sub["ci95_low"], 0, None),
                     np.clip(sub["ci95_high"] - sub["fraction"], 0, None)])
    ax.set_xticks(np.arange(len(limits)) + 0.4 - width / 2, limits, rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("fraction exceeding (95 % CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_trial_report(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``summary.csv``, ``exceedance.csv`` and ``trial.png`` into ``out_dir``; return the paths."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = {"summary": out / "summary.csv", "exceedance": out / "exceedance.csv", "plot": out / "trial.png"}
    summarise(out).to_csv(paths["summary"], index=False, float_format="%.6g")
    exceedance_table(out).to_csv(paths["exceedance"], index=False, float_format="%.6g")
    fig = plot_trial(out)
    fig.savefig(paths["plot"], dpi=120)
    plt.close(fig)
    return paths
