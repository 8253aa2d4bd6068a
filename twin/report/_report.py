"""The patient report: figures (PNG and PDF), tables (CSV) and a JSON summary with units.

Files written to the report folder:

* ``tac.png/pdf`` and ``tac.csv``: time-activity curves of the main regions in the first
  cycle, median and credible band (MBq, not decay-corrected, h after the administration);
* ``organ_doses.csv``: per region dose (Gy) quantiles, Gy/GBq, BED and EQD2 (Gy), TIA (MBq h);
* ``limits.csv``: organ-at-risk limits, quantile values and probabilities that they hold;
* ``dose_map.png/pdf``: slices of the mean voxel dose over the CT (when a voxel map is given);
* ``dvh.png/pdf`` and ``dvh.csv``: cumulative DVHs with credible bands per region;
* ``escalation.png/pdf`` and ``escalation.csv``: the escalation curve with the limits;
* ``report.pdf``: every figure in one file; ``report.json``: schedule (with the ligand amount per
  administration the prediction used), units, how each quantile column is computed
  (``quantile_method``: interpolated in organ_doses.csv, order statistic in limits.csv), tables,
  files.

Everything is written to a temporary folder next to the target and moved into place at the
end, so a failed report leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from twin._errors import TwinInputError

__all__ = ["QUANTILE_METHOD", "UNITS", "write_report"]

log = logging.getLogger(__name__)

#: Units of the columns written to the CSV files (also stored in report.json).
UNITS = {"time_h": "h after the first administration", "_mbq": "MBq (not decay-corrected)",
         "_mbq_h": "MBq h (injection to infinity)", "_gy": "Gy", "_gy_per_gbq": "Gy per GBq administered",
         "activity_gbq": "GBq", "volume_fraction": "fraction of the region volume (0-1)",
         "probability": "fraction of posterior draws (0-1)"}
#: How each table's quantile columns are computed (also stored in report.json): two definitions
#: meet in one report, e.g. organ_doses.csv ``bed_q95_gy`` and limits.csv ``q95_gy`` of the
#: kidney can differ by a fraction of the gap between neighbouring draws.
QUANTILE_METHOD = {
    "organ_doses.csv, tac.csv, dvh.csv and the tumour-dose and q50 columns of escalation.csv":
        "interpolated: numpy.quantile(draws, q) (method 'linear', between neighbouring draws)",
    "limits.csv, the escalation constraints and the limit-quantile columns of escalation.csv":
        "order statistic: the smallest draw with at least the fraction q of the draws <= it "
        "(numpy 'inverted_cdf', twin.limit_quantile), so q <= limit exactly when the limit holds "
        "with that probability",
}
_TAC_REGIONS = ("kidney", "salivary", "liver", "spleen", "red_marrow", "plasma")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, stem: str, pages: list) -> list[str]:
    # tight bounding box: long axis labels and legends are never cut off
    fig.savefig(folder / f"{stem}.png", dpi=110, bbox_inches="tight", pad_inches=0.1)
    fig.savefig(folder / f"{stem}.pdf", bbox_inches="tight", pad_inches=0.1)
    pages.append(fig)
    return [f"{stem}.png", f"{stem}.pdf"]


def _tac(pred, folder, pages, title):
    plt = _plt()
    regions = [r for r in _TAC_REGIONS if r in pred.regions] + [r for r in pred.regions if r.startswith("tumour")]
    lo_q, hi_q = min(pred.quantiles), max(pred.quantiles)
    starts = [a.time_h for a in pred.schedule.administrations]
    keep = pred.times_h < starts[1] if len(starts) > 1 else np.ones(len(pred.times_h), bool)
    act = pred.activity_mbq[:, keep]  # (N, T, R), the first cycle (later cycles repeat it)
    t = pred.times_h[keep]
    fig, ax = plt.subplots(figsize=(8, 5))
    rows = {"time_h": t}
    for r in regions:
        a = act[:, :, pred.regions.index(r)]
        med = np.median(a, axis=0)
        lo, hi = np.quantile(a, [lo_q, hi_q], axis=0)
        (line,) = ax.plot(t, med, label=r)
        ax.fill_between(t, np.maximum(lo, 1e-3), np.maximum(hi, 1e-3), color=line.get_color(), alpha=0.2)
        rows[f"{r}_q50_mbq"] = med
        rows[f"{r}_q{100 * lo_q:g}_mbq"] = lo
        rows[f"{r}_q{100 * hi_q:g}_mbq"] = hi
    ax.set_xscale("log")
    ax.set_yscale("log")
    top = float(max(a.activity_mbq for a in pred.schedule.administrations))
    ax.set_ylim(top * 1e-5, top)
    ax.set_xlabel("time after the first administration (h)" + (", cycle 1" if len(starts) > 1 else ""))
    ax.set_ylabel("activity (MBq)")
    shown = f"cycle 1 of {len(starts)} shown" if len(starts) > 1 else "single administration"
    ax.set_title(f"{title}\ntime-activity curves, {shown} (median, {100 * lo_q:g}-{100 * hi_q:g} % band)",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    import pandas as pd

    table = pd.DataFrame(rows)
    # nine significant digits (%.6g would print the grid's 1007.999 h as 1008)
    table["time_h"] = [f"{v:.9g}" for v in t]
    table.to_csv(folder / "tac.csv", index=False, float_format="%.6g")
    return [*_save(fig, folder, "tac", pages), "tac.csv"]


def _dose_map(voxel, folder, pages, title):
    plt = _plt()
    mean = np.asarray(voxel.mean_gy)
    tum = [r for r in voxel.region_masks if r.startswith("tumour")]
    focus = voxel.region_masks[tum[0]] if tum else mean > 0.5 * mean.max()
    zc, yc = (round(float(c)) for c in np.argwhere(focus).mean(axis=0)[:2])
    sz, sy, sx = voxel.spacing_mm
    ct = voxel.ct_hu
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.5), gridspec_kw={"width_ratios": [1.4, 1.0]})
    from matplotlib.colors import LogNorm

    vmax = float(mean.max()) if np.any(mean > 0) else 1.0
    norm = LogNorm(vmin=vmax * 1e-3, vmax=vmax)
    panels = [("axial", mean[zc], None if ct is None else ct[zc], (0, mean.shape[2] * sx, mean.shape[1] * sy, 0)),
              ("coronal", mean[:, yc, :], None if ct is None else ct[:, yc, :], (0, mean.shape[2] * sx, 0, mean.shape[0] * sz))]
    im = None
    for ax, (name, d, c, ext) in zip(axes, panels):
        origin = "upper" if name == "axial" else "lower"
        if c is not None:
            ax.imshow(c, cmap="gray", vmin=-200, vmax=300, extent=ext, origin=origin)
        masked = np.ma.masked_less(d, 1e-3 * vmax)
        im = ax.imshow(masked, cmap="inferno", alpha=0.75, norm=norm, extent=ext, origin=origin)
        ax.set_title(f"{name} slice through {tum[0] if tum else 'the dose maximum'}", fontsize=9)
        ax.set_xlabel("mm")
    fig.colorbar(im, ax=axes, shrink=0.8, label="mean absorbed dose (Gy)")
    fig.suptitle(f"{title}: voxel dose over CT", fontsize=10)
    return _save(fig, folder, "dose_map", pages)


def _dvh(voxel, folder, pages, title):
    plt = _plt()
    import pandas as pd

    fig, ax = plt.subplots(figsize=(8, 5))
    tables = []
    for r in voxel.region_masks:
        if r == "remainder_of_body":
            continue
        d = voxel.dvh(r)
        cols = [c for c in d.columns if c.startswith("q")]
        (line,) = ax.plot(d["dose_gy"], d["volume_fraction"], label=r)
        if len(cols) == 2:
            ax.fill_between(d["dose_gy"], d[cols[0]], d[cols[1]], color=line.get_color(), alpha=0.15)
        d.insert(0, "region", r)
        tables.append(d)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("absorbed dose (Gy)")
    ax.set_ylabel("volume fraction with dose >= d")
    ax.set_title(f"{title}: cumulative DVH (mean map; band over posterior draws)", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    pd.concat(tables).to_csv(folder / "dvh.csv", index=False, float_format="%.6g")
    return [*_save(fig, folder, "dvh", pages), "dvh.csv"]


def _escalation_window(a, a_star, a_fixed):
    """The activity range shown (GBq): 0 to 1.5 x the personalised activity, widened to keep the
    fixed protocol in view; and, per evaluated point inside it, whether the line from the point
    before reaches it (no line across an unsampled gap or to a point off the scale)."""
    a = np.asarray(a, dtype=float)
    right = 1.5 * a_star
    if np.isfinite(a_fixed) and a_fixed > 0:
        right = max(right, 1.1 * a_fixed)
    shown = a <= right
    xs = a[shown]
    # bisection points halve their log-spacing around the answer; a step of more than a factor 3
    # is a jump over activities never evaluated (e.g. to the upper search bound)
    joined = np.r_[False, (xs[1:] / np.maximum(xs[:-1], 1e-300)) <= 3.0] if xs.size else np.zeros(0, bool)
    return right, shown, joined


def _broken(x, y, joined):
    """x and y with NaN inserted where consecutive points must not be joined."""
    xs, ys = [], []
    for i, (xi, yi) in enumerate(zip(x, y)):
        if i and not joined[i]:
            xs.append(np.nan)
            ys.append(np.nan)
        xs.append(xi)
        ys.append(yi)
    return np.asarray(xs, float), np.asarray(ys, float)


def _escalation(esc, folder, pages, title):
    plt = _plt()
    curve = esc.curve.sort_values("activity_gbq_per_cycle")
    p = esc.probability
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    a_all = curve["activity_gbq_per_cycle"].to_numpy(float)
    right, shown, joined = _escalation_window(a_all, esc.activity_gbq_per_cycle, esc.fixed_activity_gbq)
    a = a_all[shown]
    off = a_all[~shown]
    xlabel = f"activity per cycle (GBq), {esc.n_cycles} cycles; markers: evaluated"
    if off.size:
        xlabel += f"\n(also {', '.join(f'{v:.3g}' for v in off[:3])}{' ...' if off.size > 3 else ''} GBq, off scale)"
    ax = axes[0]
    for c in esc.limits:
        name = f"{c['organ']}_{c['quantity']}"
        col = f"{name}_q{100 * p:g}_gy"
        y = curve[col].to_numpy(float)[shown] / c["limit_gy"]
        (line,) = ax.plot(*_broken(a, y, joined), "-", lw=1.2)
        ax.plot(a, y, "o", ms=4, color=line.get_color(),
                label=f"{c['organ']} {c['quantity']} (q{100 * p:g} / {c['limit_gy']:g} Gy)")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.axvline(esc.activity_gbq_per_cycle, color="tab:green", lw=1.5,
               label=f"personalised {esc.activity_gbq_per_cycle:.3g} GBq")
    ax.axvline(esc.fixed_activity_gbq, color="tab:grey", lw=1, ls=":",
               label=f"fixed protocol {esc.fixed_activity_gbq:.3g} GBq")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("fraction of limit")
    ax.set_title("organ-at-risk constraints", fontsize=10)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    ax = axes[1]
    for t in [c[:-len("_dose_q50_gy")] for c in curve.columns
              if c.startswith("tumour") and c.endswith("_dose_q50_gy")]:
        med = curve[f"{t}_dose_q50_gy"].to_numpy(float)[shown]
        (line,) = ax.plot(*_broken(a, med, joined), "-", lw=1.2)
        ax.plot(a, med, "o", ms=4, color=line.get_color(), label=f"{t} (median)")
        x_lo, lo = _broken(a, curve[f"{t}_dose_q5_gy"].to_numpy(float)[shown], joined)
        _, hi = _broken(a, curve[f"{t}_dose_q95_gy"].to_numpy(float)[shown], joined)
        ax.fill_between(x_lo, lo, hi, color=line.get_color(), alpha=0.2)
    ax.axvline(esc.activity_gbq_per_cycle, color="tab:green", lw=1.5)
    ax.axvline(esc.fixed_activity_gbq, color="tab:grey", lw=1, ls=":")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("tumour absorbed dose, all cycles (Gy)")
    ax.set_title("tumour dose (median, 5-95 %)", fontsize=10)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    for ax in axes:
        ax.set_xlim(0.0, right)
        ax.set_ylim(bottom=0.0)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{title}: escalation ({esc.ligand}); limits hold with probability {p:g}", fontsize=10)
    fig.tight_layout()
    esc.curve.to_csv(folder / "escalation.csv", index=False, float_format="%.6g")
    return [*_save(fig, folder, "escalation", pages), "escalation.csv"]


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _records(df):
    """Rows as dicts; a named index (region, protocol) becomes a field, a plain row number not."""
    import pandas as pd

    plain = isinstance(df.index, pd.RangeIndex) and df.index.name is None
    return _jsonable((df if plain else df.reset_index()).to_dict(orient="records"))


def _schedule_records(schedule, model) -> list[dict]:
    """Administrations with the ligand amount and molar activity the prediction used: as given,
    or resolved from the agent's default molar activity (``ligand_source`` says which)."""
    out = []
    for a in schedule.administrations:
        lig, ma = a.ligand_nmol, a.molar_activity_mbq_per_nmol
        source = "ligand_nmol" if lig is not None else ("molar_activity" if ma is not None else "agent default")
        if lig is None:
            ma = ma or (None if model is None else model.default_molar_activity_mbq_per_nmol)
            lig = None if not ma else a.activity_mbq / ma
        elif ma is None and lig > 0:
            ma = a.activity_mbq / lig
        out.append({"time_h": a.time_h, "activity_mbq": a.activity_mbq, "ligand_nmol": lig,
                    "molar_activity_mbq_per_nmol": ma, "ligand_source": source, "infusion_h": a.infusion_h})
    return out


def _previous_report(folder: Path) -> bool:
    """Whether ``folder`` holds only a report written by :func:`write_report` (its report.json
    lists every other file in it)."""
    try:
        meta = json.loads((folder / "report.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("format") != "twin-report/1":
        return False
    listed = set(meta.get("files") or ()) | {"report.json"}
    return all(p.name in listed for p in folder.iterdir())


def check_report_folder(out_dir, *, overwrite: bool = True) -> Path:
    """Check that a report can be written to ``out_dir`` without losing anything, before any
    work is done; returns it as a Path.

    The folder may be missing, empty, or (with ``overwrite=True``) a previous report, which is
    then replaced. A folder holding anything else (the patient's images, other results) is
    refused whatever ``overwrite`` says, as are the working folder and the folders above it.
    """
    out = Path(out_dir)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise TwinInputError(f"{str(parent)!r} exists and is not a folder; choose another report folder.")
    if not out.exists():
        return out
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise TwinInputError(f"{str(out)!r} is the working folder or one above it; give a new "
                             "subfolder for the report (e.g. out/report).")
    if any(out.iterdir()):
        if not _previous_report(out):
            other = sorted(p.name for p in out.iterdir())[:3]
            raise TwinInputError(f"{str(out)!r} holds files that are not a twin report ({', '.join(other)}"
                                 f"{', ...' if len(other) == 3 else ''}); write the report to a new or empty "
                                 "folder (or to a previous report's folder, which is replaced).")
        if not overwrite:
            raise TwinInputError(f"{str(out)!r} holds a previous report; choose another folder or pass "
                                 "overwrite=True.")
    return out


def write_report(out_dir, prediction, *, escalation=None, voxel=None, title: str = "Patient twin",
                 limits=None, probability: float = 0.95, overwrite: bool = True,
                 extra: dict | None = None) -> dict[str, Path]:
    """Write the patient report of a :class:`~twin.TherapyPrediction` to ``out_dir``.

    escalation: an :class:`~twin.EscalationResult` (adds the escalation curve and the
    comparison with the fixed protocol). voxel: a :class:`~twin.VoxelDose` (adds the dose map
    over CT and DVHs); ``None`` skips them. limits/probability: the organ-at-risk table and
    probability of the limits table. extra: JSON-serialisable metadata stored in report.json.
    overwrite: replace a previous report in ``out_dir``; a folder holding anything else is
    never emptied (:func:`check_report_folder`). Returns ``{file name: path}``.
    """
    from twin._twin import TherapyPrediction

    if not isinstance(prediction, TherapyPrediction):
        raise TwinInputError(f"prediction must be a TherapyPrediction (twin.predict(...)), got "
                             f"{type(prediction).__name__}.")
    if not 0 < probability < 1:
        raise TwinInputError(f"probability = {probability!r} must lie strictly between 0 and 1.")
    out = check_report_folder(out_dir, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    plt = _plt()
    pages: list = []
    files: list[str] = []
    try:
        dose = prediction.dose_table()
        tia = prediction.tia_table()
        table = dose.join(tia, how="left")
        table.to_csv(tmp / "organ_doses.csv", float_format="%.6g")
        files.append("organ_doses.csv")
        if limits is None and escalation is not None:
            limits = [dict(c) for c in escalation.limits]
            probability = escalation.probability
        lim = prediction.limit_table(limits, probability)
        lim.to_csv(tmp / "limits.csv", index=False, float_format="%.6g")
        files.append("limits.csv")
        files += _tac(prediction, tmp, pages, title)
        if voxel is not None:
            files += _dose_map(voxel, tmp, pages, title)
            files += _dvh(voxel, tmp, pages, title)
        if escalation is not None:
            files += _escalation(escalation, tmp, pages, title)
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(tmp / "report.pdf") as pdf:
            for fig in pages:
                pdf.savefig(fig)
        files.append("report.pdf")
        twin = prediction.twin
        sched = _schedule_records(prediction.schedule, None if twin is None else twin.therapy_model)
        summary = {
            "format": "twin-report/1",
            "title": title,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "units": UNITS,
            "quantile_method": QUANTILE_METHOD,
            "schedule": sched,
            "total_activity_gbq": prediction.total_activity_gbq,
            "n_draws": prediction.n_draws,
            "quantiles": list(prediction.quantiles),
            "therapy_agent": None if twin is None else twin.therapy_model.ligand,
            "nuclide": None if twin is None else twin.therapy_model.nuclide,
            "imaging_agent": None if twin is None else twin.imaging_model.ligand,
            "calibration": None if twin is None else {
                "method": twin.posterior.method, "parameters": list(twin.posterior.names),
                "observations": int(sum(len(d[2]) for d in twin.data)),
                "converged": bool(twin.posterior.diagnostics.get("converged", True))},
            "radiobiology": "BED/EQD2 summed over cycles (complete repair between cycles), Lea-Catcheside "
                            "G-factor of each cycle's time-activity curve of the organ (cycle 1's for "
                            "every cycle when predicted with cycles='coupled'); alpha/beta and repair half-times from "
                            "twin/dose/data/radiobiology/tissue_parameters.csv",
            "organ_doses": _records(table),
            "limits": {"probability": probability,
                       "quantile": "order statistic (twin.limit_quantile; see quantile_method)",
                       "table": _records(lim)},
        }
        if escalation is not None:
            summary["escalation"] = {
                "activity_gbq_per_cycle": escalation.activity_gbq_per_cycle,
                "cumulative_activity_gbq": escalation.cumulative_activity_gbq,
                "n_cycles": escalation.n_cycles, "interval_weeks": escalation.interval_weeks,
                "ligand": escalation.ligand, "probability": escalation.probability,
                "binding": escalation.binding, "at_upper_bound": escalation.at_upper_bound,
                "activity_mc_interval_gbq": (list(escalation.activity_mc_interval_gbq)
                                             if escalation.activity_mc_interval_gbq is not None else None),
                "n_draws": escalation.n_draws,
                "constraints": _records(escalation.constraints),
                "fixed_protocol": {"activity_gbq_per_cycle": escalation.fixed_activity_gbq,
                                   "n_cycles": escalation.fixed_n_cycles,
                                   "cycles_allowed": escalation.fixed_cycles_allowed,
                                   "constraints": _records(escalation.fixed)},
                "comparison": _records(escalation.summary()),
            }
        if voxel is not None:
            summary["voxel_dose_statistics"] = _records(voxel.statistics())
        if extra:
            summary["extra"] = _jsonable(extra)
        files.append("report.json")
        summary["files"] = sorted(files)
        (tmp / "report.json").write_text(json.dumps(_jsonable(summary), indent=1), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for fig in pages:
            plt.close(fig)
    log.info("report written to %s", out)
    return {f: out / f for f in sorted(files)}
