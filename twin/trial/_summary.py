"""Summary tables and plots of a virtual-trial run folder (reads only the columns it needs)."""

from __future__ import annotations

import math
import os
import re
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


_LIMIT_LABEL = re.compile(r"^(?P<organ>.+)_(?P<quantity>dose|bed)_le_(?P<gy>[0-9.eE+-]+)gy$")


def _plot_limits(fingerprint, limit_labels) -> list[tuple[str, float, str]]:
    """(endpoint column, limit in Gy, legend text) of every limit of the trial and of its arms."""
    found = []
    recs = list(fingerprint.get("limits") or [])
    recs += [a["limit"] for a in fingerprint.get("arms", []) if isinstance(a.get("limit"), dict)]
    for r in recs:
        try:
            found.append((str(r["organ"]), str(r["quantity"]), float(r["limit_gy"])))
        except (KeyError, TypeError, ValueError):
            continue
    for lab in limit_labels:  # exceedance columns name every trial limit, fingerprint or not
        m = _LIMIT_LABEL.match(lab)
        if m:
            try:
                found.append((m["organ"], m["quantity"], float(m["gy"])))
            except ValueError:
                continue
    out = []
    for organ, quantity, gy in dict.fromkeys(found):
        q = "BED" if quantity == "bed" else "dose"
        out.append((f"{organ}_{quantity}_gy", gy, f"limit: {organ.replace('_', ' ')} {q} {gy:g} Gy"))
    return out


def _limit_tick(label: str) -> str:
    m = _LIMIT_LABEL.match(label)
    if not m:
        return label
    q = "BED" if m["quantity"] == "bed" else "dose"
    return f"{m['organ'].replace('_', ' ')} {q} > {m['gy']} Gy"


def plot_trial(out_dir: str | os.PathLike, endpoints=("kidneys_bed_gy", "tumour_dose_gy")):
    """A matplotlib figure: endpoint distributions per arm (box plots, with each limit on the
    endpoint it bounds drawn as a dashed line), cycles given and fractions exceeding the limits
    (that panel is left out for a trial without limits); titled with the trial's name.
    Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    arms = _arms(out_dir)
    manifest = load_manifest(out_dir)
    fingerprint = manifest.get("fingerprint", {})
    meta = read_results(out_dir, columns=["arm", "status", "cycles_given"])
    ok = meta["status"].to_numpy() == 0
    arm_col = meta["arm"].to_numpy()
    ex = exceedance_table(out_dir)
    limits = _plot_limits(fingerprint, list(dict.fromkeys(ex["limit"])))
    colours = [f"C{i % 10}" for i in range(len(arms))]
    panels = len(endpoints) + 1 + (len(ex) > 0)  # no exceedance panel for a trial without limits
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.9), squeeze=False)
    axes = axes[0]
    for ax, col in zip(axes, endpoints):
        v = read_results(out_dir, columns=[col])[col].to_numpy()
        data = [v[(arm_col == a) & ok & np.isfinite(v)] for a in arms]
        box = ax.boxplot(data, showfliers=False, patch_artist=True)
        for patch, c in zip(box["boxes"], colours):
            patch.set_facecolor(c)
            patch.set_alpha(0.35)
        for med in box["medians"]:
            med.set_color("k")
        ax.set_xticks(range(1, len(arms) + 1), arms, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(col.replace("_gy", " (Gy)").replace("_", " "))
        ax.grid(alpha=0.3)
        mine = [(gy, text) for c, gy, text in limits if c == col]
        for gy, text in mine:
            ax.axhline(gy, color="tab:red", ls="--", lw=1.2, label=text, zorder=3)
            ax.text(0.99, gy, text, transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    fontsize=7, color="tab:red")
        if mine:
            top = max(gy for gy, _ in mine)
            lo, hi = ax.get_ylim()
            if hi < 1.1 * top:
                ax.set_ylim(lo, 1.12 * top)
    ax = axes[len(endpoints)]
    cyc = meta["cycles_given"].to_numpy()
    top = int(np.nanmax(cyc)) if np.isfinite(cyc).any() else 1
    bins = np.arange(-0.5, top + 1.5)
    for a, c in zip(arms, colours):
        sel = (arm_col == a) & ok & np.isfinite(cyc)
        ax.hist(cyc[sel], bins=bins, histtype="step", color=c, lw=1.5, density=True)
    ax.set_xlabel("cycles given")
    ax.set_ylabel("fraction of patients")
    ax.grid(alpha=0.3)
    if not ex.empty:
        ax = axes[-1]
        names = list(dict.fromkeys(ex["limit"]))
        width = 0.8 / max(len(arms), 1)
        for i, (a, c) in enumerate(zip(arms, colours)):
            sub = ex[ex["arm"] == a].set_index("limit").reindex(names)
            ax.bar(np.arange(len(names)) + i * width, sub["fraction"], width, color=c,
                   yerr=[np.clip(sub["fraction"] - sub["ci95_low"], 0, None),
                         np.clip(sub["ci95_high"] - sub["fraction"], 0, None)],
                   error_kw={"ecolor": "0.3", "lw": 1, "capsize": 2})
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, [_limit_tick(n) for n in names],
                      rotation=25, ha="right", fontsize=7)
        ax.set_ylabel("fraction exceeding (95 % CI)")
        ax.set_ylim(0.0, min(1.05, max(0.1, float(np.nanmax(ex["ci95_high"].to_numpy(float), initial=0.0)) * 1.1)))
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor=c, edgecolor=c, alpha=0.6, label=a) for a, c in zip(arms, colours)]
    if limits:
        handles.append(Line2D([], [], color="tab:red", ls="--", label="limit"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    n = manifest.get("n_patients")
    name = fingerprint.get("name") or Path(out_dir).name
    fig.suptitle(f"{name}" + (f" ({n} virtual patients per arm)" if n else ""), fontsize=11)
    rows = math.ceil(len(handles) / 4)
    fig.tight_layout(rect=(0.0, 0.05 * rows + 0.02, 1.0, 0.95))
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
