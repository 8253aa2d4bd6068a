"""The patient twin: calibrate on the pre-therapy PET and labs, predict any therapy schedule.

A :class:`Twin` holds the imaging model of one patient (physiology from the labs and the
measured organ and lesion volumes), its posterior from :func:`calibration.calibrate`, the
therapy agent of the theranostic pair and, when built from images, the masks, the PET (the
intra-organ distribution of the voxel TIA map) and the CT (density). :meth:`Twin.predict`
simulates a therapy schedule for posterior draws and returns a :class:`TherapyPrediction`:
organ TIA, absorbed dose, BED and EQD2 per draw with quantile tables, the voxel dose map
(mean and quantiles) and DVHs. :meth:`Twin.update` re-calibrates on all data after a
post-therapy measurement (e.g. SPECT after cycle 1) and returns the twin for the next cycle.

Units: activity MBq (arguments named ``_gbq`` take GBq), time h, TIA MBq h, dose Gy.

Two exact properties of the kinetics are used for speed (they are tested):

* Hot and cold ligand are kinetically identical, so at a fixed ligand amount per
  administration the hot activity, and with it TIA and dose, is proportional to the
  injected activity. Schedules whose administrations all have one activity are simulated at a
  reference activity with the same ligand amounts and scaled; the compiled simulation is then
  reused for every activity.
* Organ dose is linear in the source TIAs (MIRD), so the dose of every posterior draw is one
  matrix product with a dose operator built once from ``twin.dose.organ_dose``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pbpk
from calibration import Observations, Posterior, Prior, calibrate
from twin._errors import TwinError, TwinInputError
from twin.dose._organ import PBPK_SOURCE_REGIONS

__all__ = ["DEFAULT_QUANTILES", "TherapyPrediction", "Twin", "VoxelDose", "therapy_schedule"]

log = logging.getLogger(__name__)

DEFAULT_QUANTILES = (0.05, 0.5, 0.95)
#: pbpk region -> ICRP-89 S-value source/target; other body regions are remainder of body
#: (the one map of twin.dose, shared with twin.cohort and the validation)
MIRD_REGIONS = PBPK_SOURCE_REGIONS
#: organ-at-risk table names (twin.dose.oar_limits) -> pbpk region
LIMIT_REGIONS = {"kidneys": "kidney", "red_marrow": "red_marrow", "salivary_glands": "salivary",
                 "liver": "liver", "spleen": "spleen", "lacrimal_glands": "lacrimal"}
#: imaging agent by PET nuclide, when a patient from files does not say which agent it is
_AGENT_BY_NUCLIDE = {"Ga-68": "PSMA-11", "F-18": "DCFPyL"}
_THERAPY_BY_FAMILY = {"psma": "PSMA-617", "sstr": "DOTATATE"}
_FIT_REGIONS = ("kidney", "liver", "spleen", "salivary")
_REF_ACTIVITY_MBQ = 1000.0
#: output grid of one cycle (h after the administration)
_CYCLE_GRID_H = np.unique(np.concatenate([np.geomspace(0.25, 2000.0, 60), [1.0, 4.0, 24.0, 48.0, 96.0, 168.0]]))


# ============================================================================ argument checks
def _check_n_draws(n_draws, minimum: int = 1, name: str = "n_draws") -> int:
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < minimum:
        raise TwinInputError(f"{name} = {n_draws!r} must be an integer >= {minimum}.")
    return int(n_draws)


def _check_probability(p, name: str = "probability") -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 < p < 1:
        raise TwinInputError(f"{name} = {p!r} must lie strictly between 0 and 1 (e.g. 0.95, not 95).")
    return float(p)


def _check_quantiles(quantiles) -> tuple[float, ...]:
    try:
        qs = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise TwinInputError(f"quantiles = {quantiles!r} must be a list of numbers in (0, 1).") from None
    if not qs or not all(0 < q < 1 for q in qs):
        raise TwinInputError(f"quantiles = {quantiles!r} must be a non-empty list of fractions in (0, 1) "
                             "(e.g. (0.05, 0.5, 0.95), not percent).")
    return qs


def _check_times(times_h) -> np.ndarray:
    try:
        t = np.asarray(times_h, dtype=float)
    except (TypeError, ValueError):
        raise TwinInputError(f"times_h = {times_h!r} must be a list of times (h).") from None
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise TwinInputError(f"times_h = {times_h!r} must be a non-empty, strictly increasing list of finite "
                             "times >= 0 (h after the first administration).")
    return t


# ============================================================================ schedules
def therapy_schedule(activity_gbq: float | Sequence[float], n_cycles: int = 1, *,
                     interval_weeks: float = 6.0, ligand_nmol: float | None = None,
                     molar_activity_mbq_per_nmol: float | None = None) -> pbpk.Schedule:
    """A therapy schedule in clinical units: ``n_cycles`` of ``activity_gbq`` every
    ``interval_weeks``. Give the ligand amount per cycle (``ligand_nmol``) or the molar activity;
    with neither the agent's default molar activity applies (ligand scales with activity)."""
    if not isinstance(n_cycles, (int, np.integer)) or isinstance(n_cycles, bool) or n_cycles < 1:
        raise TwinInputError(f"n_cycles = {n_cycles!r} must be a positive integer.")
    try:
        acts = np.atleast_1d(np.asarray(activity_gbq, dtype=float))
    except (TypeError, ValueError):
        acts = np.array([math.nan])
    try:
        interval_weeks = float(interval_weeks)
    except (TypeError, ValueError):
        raise TwinInputError(f"interval_weeks = {interval_weeks!r} must be a number of weeks > 0.") from None
    if acts.size not in (1, n_cycles) or not np.all(np.isfinite(acts)) or np.any(acts <= 0):
        raise TwinInputError(f"activity_gbq = {activity_gbq!r}: give one positive activity (GBq) or one "
                             f"per cycle ({n_cycles}).")
    if np.any(acts > 1000.0):
        raise TwinInputError(f"activity_gbq = {activity_gbq!r} GBq per cycle is implausible (177Lu "
                             "therapy: about 7.4 GBq); did you give MBq? Divide by 1000.")
    if not (math.isfinite(interval_weeks) and interval_weeks > 0):
        raise TwinInputError(f"interval_weeks = {interval_weeks!r} must be > 0.")
    if ligand_nmol is not None and molar_activity_mbq_per_nmol is not None:
        raise TwinInputError("give ligand_nmol or molar_activity_mbq_per_nmol, not both.")
    acts = np.broadcast_to(acts, (int(n_cycles),)) * 1000.0
    kw = {}
    if ligand_nmol is not None:
        kw["ligand_nmol"] = float(ligand_nmol)
    if molar_activity_mbq_per_nmol is not None:
        kw["molar_activity_mbq_per_nmol"] = float(molar_activity_mbq_per_nmol)
    return pbpk.Schedule(tuple(pbpk.Administration(float(a), time_h=i * interval_weeks * 168.0, **kw)
                               for i, a in enumerate(acts)))


def _ligand_per_admin(schedule: pbpk.Schedule, model: pbpk.PBPKModel) -> np.ndarray:
    """Total ligand (nmol) of each administration, as pbpk.simulate doses it."""
    out = []
    for a in schedule.administrations:
        if a.ligand_nmol is not None:
            out.append(a.ligand_nmol)
        else:
            ma = a.molar_activity_mbq_per_nmol or model.default_molar_activity_mbq_per_nmol
            out.append(a.activity_mbq / ma)
    return np.asarray(out, dtype=float)


def _reference_schedule(schedule: pbpk.Schedule, model: pbpk.PBPKModel,
                        ligand_nmol: np.ndarray | None = None):
    """The schedule at the reference activity with the same ligand amounts, and the scale
    factor back to the real activity (None when the administrations' activities differ)."""
    acts = np.array([a.activity_mbq for a in schedule.administrations])
    if not np.allclose(acts, acts[0], rtol=1e-12):
        return schedule, 1.0
    lig = _ligand_per_admin(schedule, model) if ligand_nmol is None else np.asarray(ligand_nmol, float)
    acf = model.carrier_free_mbq_per_nmol
    a_ref = min(_REF_ACTIVITY_MBQ, 0.5 * float(lig.min()) * acf)
    adm = tuple(pbpk.Administration(a_ref, time_h=a.time_h, ligand_nmol=float(n), infusion_h=a.infusion_h)
                for a, n in zip(schedule.administrations, lig))
    return pbpk.Schedule(adm), float(acts[0]) / a_ref


# ============================================================================ dose operator
def _tissue_of(region: str) -> str:
    if region.startswith("tumour"):
        return "tumour"
    return {"kidney": "kidneys", "liver": "liver", "lungs": "lungs"}.get(region, "normal_tissue")


@dataclass(frozen=True, eq=False)
class _DoseOperator:
    """dose_gy (targets) = matrix @ tia_mbq_h (body regions); built from twin.dose.organ_dose."""

    targets: tuple[str, ...]
    body_regions: tuple[str, ...]
    matrix: np.ndarray
    methods: Mapping[str, str]


def _dose_operator(model: pbpk.PBPKModel, body_regions: Sequence[str], sex: str) -> _DoseOperator:
    from twin import dose

    body_regions = tuple(body_regions)
    # tumour volumes are physical volumes (mass at the sphere model's 1.04 kg/L); the models'
    # organ volumes are masses at 1 kg/L (ICRP-89 reference masses, or segmented volumes x
    # ICRU-46 density, pbpk.model_volume_l)
    tumours = {r: dose.tumour_mass_kg(model.organ_volumes_l[r]) for r in body_regions
               if r.startswith("tumour") and model.organ_volumes_l.get(r, 0.0) > 0}
    masses = {MIRD_REGIONS[r]: float(model.organ_volumes_l[r])
              for r in ("kidney", "liver", "spleen", "salivary") if model.organ_volumes_l.get(r, 0) > 0}
    phantom = "female" if sex == "female" else "male"
    table_nuclide = pbpk.get_nuclide(model.nuclide).name == "Lu-177"
    s_table = dose.organ_s_values(phantom)
    in_table = set(s_table.columns) & set(s_table.index)  # organs that are source and target
    mird = {r: m for r, m in MIRD_REGIONS.items() if m in in_table}  # e.g. no prostate in the female
    masses = {k: v for k, v in masses.items() if k in in_table}
    src_of = {}
    for r in body_regions:
        if r in tumours:
            src_of[r] = r
        elif r == "lacrimal" or (r.startswith("tumour") and r not in tumours):
            src_of[r] = None
        else:
            src_of[r] = mird.get(r, "remainder_of_body")
    sources = sorted({s for s in src_of.values() if s is not None and s not in tumours})
    targets = ([r for r in mird if r in body_regions] if table_nuclide
               else [r for r in body_regions if src_of[r] in sources and r in mird])
    # a reduced model predicts its design's regions only (PBPKModel.predicted_regions): the other
    # regions stay sources (their activity is there, ligand is conserved), but not targets
    unpredicted = [r for r in body_regions if not model.predicts(r)]
    dropped = [r for r in [*targets, *tumours, "lacrimal"] if r in unpredicted]
    if model.predicted_regions:  # organs whose region a reduction lumped away (e.g. red marrow)
        dropped += [r for r in mird if r not in body_regions and r in model.organ_volumes_l]
    if dropped:
        warnings.warn(
            f"model {model.name!r} predicts the activity of {', '.join(model.predicted_regions)} only "
            f"(a reduced model: the regions of its reduction design); no dose is reported for "
            f"{', '.join(dropped)}. Reduce with those regions in the design "
            "(mbam.ReductionDesign(regions=...)) or use the full model for their doses.",
            pbpk.UnpredictedRegionWarning, stacklevel=3)
    targets = [r for r in targets if model.predicts(r)]
    tumour_targets = [t for t in tumours if model.predicts(t)]
    cols: dict[str, np.ndarray] = {}
    methods: dict[str, str] = {}
    for src in [*sources, *tumours]:
        tia = {s: (1.0 if s == src else 0.0) for s in sources}
        tum = {t: (1.0 if t == src else 0.0) for t in tumours}
        res = dose.organ_dose({**tia, **tum}, nuclide=model.nuclide, phantom=phantom,
                              organ_masses_kg=masses, tumour_masses_kg=tumours,
                              targets=[MIRD_REGIONS[t] for t in targets])
        cols[src] = np.array([res.dose_gy.get(MIRD_REGIONS[t], 0.0) for t in targets]
                             + [res.dose_gy.get(t, 0.0) for t in tumour_targets])
        for t in targets:
            methods.setdefault(t, res.method.get(MIRD_REGIONS[t], ""))
        for t in tumour_targets:
            methods.setdefault(t, res.method.get(t, ""))
    all_targets = [*targets, *tumour_targets]
    lacrimal = "lacrimal" in body_regions and model.predicts("lacrimal")
    matrix = np.zeros((len(all_targets) + lacrimal, len(body_regions)))
    for j, r in enumerate(body_regions):
        s = src_of[r]
        if s is not None:
            matrix[: len(all_targets), j] = cols[s]
    if lacrimal:
        vol = float(model.organ_volumes_l.get("lacrimal", 0.0))
        if vol > 0:
            matrix[-1, body_regions.index("lacrimal")] = dose.local_deposition_dose_gy(1.0, vol, model.nuclide)
        all_targets.append("lacrimal")
        methods["lacrimal"] = "local deposition (ICRP-107 non-penetrating energy), self-dose only"
    return _DoseOperator(tuple(all_targets), body_regions, matrix, methods)


def model_doses(result, model: pbpk.PBPKModel | None = None, *, sex: str = "male"):
    """Absorbed doses (Gy) of a :func:`pbpk.simulate` result, as the twin computes them.

    The model's regions are mapped to ICRP-89 sources and targets (kidney -> kidneys,
    salivary -> salivary_glands, ...; other body regions -> remainder of body; 177Lu S-values
    with the model's organ masses), lesions by the sphere model (volume x 1.04 kg/L) and the
    lacrimal glands by local deposition. ``model`` is the :class:`pbpk.PBPKModel` the result was
    simulated with (required; a result does not carry it). Returns a DataFrame indexed by
    region with ``dose_gy`` (Gy) and ``method``.
    """
    import pandas as pd

    tia = getattr(result, "tia_mbq_h", None)
    body = getattr(result, "body_regions", None)
    if tia is None or body is None:
        raise TwinInputError("model_doses needs a pbpk.simulate result (tia_mbq_h, body_regions); for "
                             "a TIA table by ICRP-89 organ name use twin.dose.organ_dose.")
    if not isinstance(model, pbpk.PBPKModel):
        raise TwinInputError("give the pbpk.PBPKModel the result was simulated with: "
                             "model_doses(result, model).")
    tia = np.asarray(tia, dtype=float)
    if tia.ndim != 1:
        raise TwinInputError(f"model_doses takes one patient's result (TIA shape {tia.shape}); index a "
                             "cohort result per patient.")
    if sex not in ("male", "female"):
        raise TwinInputError(f"sex = {sex!r}; use 'male' or 'female'.")
    op = _dose_operator(model, tuple(body), sex)
    dose_gy = op.matrix @ tia
    return pd.DataFrame({"dose_gy": dose_gy, "method": [op.methods.get(t, "") for t in op.targets]},
                        index=pd.Index(op.targets, name="region"))


# ============================================================================ prediction
@dataclass(frozen=True, eq=False)
class TherapyPrediction:
    """Posterior-predictive therapy: per-draw arrays and tables with units.

    activity_mbq: (N, T, R) per draw, time and region. tia_mbq_h: (N, Rb) per body region.
    dose_gy, bed_gy, eqd2_gy: (N, D) per dose region (``dose_regions``), summed over cycles;
    BED/EQD2 add the cycle BEDs (complete repair between cycles), each cycle with the
    Lea-Catcheside G-factor of the dose region's own time-activity curve (uptake phase included):
    its own cycle's in the default ``cycles="independent"`` mode, cycle 1's for every cycle in
    ``"coupled"`` mode (the dose split over cycles by activity). effective_half_life_h: (N, D),
    the late effective half-life (24 h to 168 h after the administration) of cycle 1.
    Failed posterior draws are excluded (``n_failed`` counts them).
    """

    schedule: pbpk.Schedule
    times_h: np.ndarray
    regions: tuple[str, ...]
    body_regions: tuple[str, ...]
    activity_mbq: np.ndarray = field(repr=False)
    tia_mbq_h: np.ndarray = field(repr=False)
    dose_regions: tuple[str, ...] = ()
    dose_gy: np.ndarray = field(default=None, repr=False)
    bed_gy: np.ndarray = field(default=None, repr=False)
    eqd2_gy: np.ndarray = field(default=None, repr=False)
    effective_half_life_h: np.ndarray = field(default=None, repr=False)
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    dose_methods: Mapping[str, str] = field(default_factory=dict, repr=False)
    n_failed: int = 0
    twin: Any = field(default=None, repr=False)
    draw_index: np.ndarray = field(default=None, repr=False)

    @property
    def n_draws(self) -> int:
        return int(self.tia_mbq_h.shape[0])

    @property
    def total_activity_gbq(self) -> float:
        return self.schedule.total_activity_mbq / 1000.0

    def draws(self, quantity: str, region: str) -> np.ndarray:
        """Per-draw values of ``quantity`` (``tia_mbq_h``, ``dose_gy``, ``bed_gy``, ``eqd2_gy``)."""
        if quantity == "tia_mbq_h":
            names, arr = self.body_regions, self.tia_mbq_h
        elif quantity in ("dose_gy", "bed_gy", "eqd2_gy"):
            names, arr = self.dose_regions, getattr(self, quantity)
        else:
            raise TwinInputError(f"quantity {quantity!r}; use tia_mbq_h, dose_gy, bed_gy or eqd2_gy.")
        if region not in names:
            raise TwinInputError(f"no {quantity} for {region!r}; regions: {', '.join(names)}.")
        return arr[:, names.index(region)]

    def _qtable(self, arr, names, unit):
        import pandas as pd

        q = np.quantile(arr, self.quantiles, axis=0)
        data = {f"mean_{unit}": arr.mean(axis=0)}
        data.update({f"q{100 * qq:g}_{unit}": q[k] for k, qq in enumerate(self.quantiles)})
        return pd.DataFrame(data, index=pd.Index(list(names), name="region"))

    def tia_table(self):
        """pandas table per body region: mean and quantiles of TIA (MBq h), injection to infinity."""
        return self._qtable(self.tia_mbq_h, self.body_regions, "mbq_h")

    def dose_table(self):
        """pandas table per dose region: dose (Gy) mean and quantiles, median Gy/GBq (per total
        administered activity), BED and EQD2 (Gy) median and quantiles, the dose method."""
        import pandas as pd

        qs = self.quantiles
        d = np.quantile(self.dose_gy, qs, axis=0)
        b = np.quantile(self.bed_gy, qs, axis=0)
        e = np.quantile(self.eqd2_gy, qs, axis=0)
        data = {"dose_mean_gy": self.dose_gy.mean(axis=0)}
        data.update({f"dose_q{100 * q:g}_gy": d[k] for k, q in enumerate(qs)})
        data["dose_median_gy_per_gbq"] = np.median(self.dose_gy, axis=0) / self.total_activity_gbq
        data.update({f"bed_q{100 * q:g}_gy": b[k] for k, q in enumerate(qs)})
        data.update({f"eqd2_q{100 * q:g}_gy": e[k] for k, q in enumerate(qs)})
        data["method"] = [self.dose_methods.get(r, "") for r in self.dose_regions]
        return pd.DataFrame(data, index=pd.Index(list(self.dose_regions), name="region"))

    def activity_quantiles(self):
        """Long pandas table: time_h, region, mean and quantiles of activity (MBq)."""
        import pandas as pd

        q = np.quantile(self.activity_mbq, self.quantiles, axis=0)
        mean = self.activity_mbq.mean(axis=0)
        t, r = np.meshgrid(self.times_h, np.arange(len(self.regions)), indexing="ij")
        data = {"time_h": t.ravel(), "region": np.asarray(self.regions, dtype=object)[r.ravel()],
                "mean_mbq": mean.ravel()}
        data.update({f"q{100 * qq:g}_mbq": q[k].ravel() for k, qq in enumerate(self.quantiles)})
        return pd.DataFrame(data)

    def limit_table(self, limits=None, probability: float = 0.95):
        """Each organ-at-risk limit (``twin.dose.oar_limits``, those of organs with a dose in
        this prediction, or your table): the value at the ``probability`` quantile (:func:`limit_quantile`, so ``q <= limit`` exactly when
        ``satisfied``), the probability that the limit holds and whether that is at least
        ``probability``."""
        import pandas as pd

        probability = _check_probability(probability)
        rows = []
        recs = _limits(limits)
        if limits is None:  # the shipped table also lists organs a model may lack (SSTR: salivary)
            recs = [r for r in recs if r["region"] in self.dose_regions]
        for rec in recs:
            arr = self.draws("bed_gy" if rec["quantity"] == "bed" else "dose_gy", rec["region"])
            rows.append({"organ": rec["organ"], "region": rec["region"], "quantity": rec["quantity"],
                         "limit_gy": rec["limit_gy"], f"q{100 * probability:g}_gy": limit_quantile(arr, probability),
                         "probability_within": float(np.mean(arr <= rec["limit_gy"])),
                         "satisfied": bool(np.mean(arr <= rec["limit_gy"]) >= probability),
                         "condition": rec["condition"], "source": rec["source"]})
        return pd.DataFrame(rows)

    def voxel_dose(self, *, n_draws: int = 32, quantiles: Sequence[float] | None = None,
                   key: int = 0) -> VoxelDose:
        """Voxel dose map (Gy): exact posterior mean and per-voxel quantiles over ``n_draws``
        draws (the map is linear in the region TIAs). Needs a twin built from images."""
        if self.twin is None or self.twin.masks is None:
            raise TwinError("this twin has no images (masks); the voxel dose map needs a patient with "
                            "masks, e.g. Twin.from_patient(patient).")
        n_draws = _check_n_draws(n_draws, 2)
        quantiles = self.quantiles if quantiles is None else _check_quantiles(quantiles)
        return self.twin._voxel_dose(self, n_draws=n_draws, quantiles=quantiles, key=key)


#: Whole-body uptake (every labelled voxel, % of the injected activity) above which the PET
#: cannot be activity at scan time against that injection: refused above the second value.
_WHOLE_BODY_PCT_WARN, _WHOLE_BODY_PCT_REFUSE = 110.0, 150.0


def _check_uptake_plausible(tables) -> None:
    """Refuse (or warn about) PET frames whose labelled voxels hold more than the injected
    activity, and name the usual causes; warn about structures no model region takes."""
    causes = ("the image is decay-corrected to the injection time (load_patient(decay_corrected=True), "
              "twin plan --decay-corrected), the injected activity is not in MBq (GBq or Bq typed as "
              "MBq), the scan time is not in hours after injection (minutes typed as hours), or the "
              "image unit is wrong")
    for hours, table in tables:
        if "whole_body" not in table.index:
            continue
        pct = float(table.loc["whole_body", "percent_ia"])
        where = f"the PET at {hours:g} h holds {pct:.4g} % of the injected activity in its labelled voxels"
        if not math.isfinite(pct) or pct > _WHOLE_BODY_PCT_REFUSE:
            raise TwinInputError(f"{where}, more than was injected. Check whether {causes}.")
        if pct > _WHOLE_BODY_PCT_WARN:
            warnings.warn(f"{where} (over {_WHOLE_BODY_PCT_WARN:g} %). Check whether {causes}.",
                          UserWarning, stacklevel=3)
    table = tables[0][1]
    unknown = [str(s) for s, r in zip(table.index, table["region"]) if s != "whole_body" and not isinstance(r, str)]
    if unknown:
        from twin.patient import STRUCTURE_REGIONS

        warnings.warn(
            f"mask structure(s) {', '.join(unknown)} match no model region and are not used "
            f"(their activity informs nothing). Accepted names: {', '.join(sorted(STRUCTURE_REGIONS))}, "
            "tumour1, tumour2, ...; rename them in the label table.", UserWarning, stacklevel=3)


def _limits(limits=None) -> list[dict]:
    """OAR limits as records with the pbpk region; unknown organs are skipped with a log line."""
    import pandas as pd

    from twin import dose

    if limits is None:
        table = dose.oar_limits()
        # the shipped table lists kidney BED 40 Gy (no risk factors) and 28 Gy (risk factors);
        # use the first of each organ and quantity unless a table is given
        table = table.drop_duplicates(subset=["organ", "quantity"], keep="first")
    elif isinstance(limits, pd.DataFrame):
        table = limits
    elif isinstance(limits, Sequence) and not isinstance(limits, str):
        table = pd.DataFrame([dict(r) for r in limits])
    elif isinstance(limits, (str, os.PathLike)):
        table = dose.oar_limits(limits)
    else:
        raise TwinInputError(
            f"limits must be a table (pandas DataFrame), a CSV path or a list of dicts "
            f"{{'organ', 'quantity', 'limit_gy'}}; got {type(limits).__name__}.")
    need = {"organ", "quantity", "limit_gy"}
    if not need <= set(table.columns):
        raise TwinInputError(f"limits need the columns {sorted(need)}; got {list(table.columns)}.")
    out = []
    for rec in table.to_dict("records"):
        organ = str(rec["organ"])
        region = LIMIT_REGIONS.get(organ, organ)
        q = str(rec["quantity"])
        if q not in ("absorbed_dose", "bed"):
            raise TwinInputError(f"limit quantity {q!r} for {organ}; use 'absorbed_dose' or 'bed'.")
        try:
            lim = float(rec["limit_gy"])
        except (TypeError, ValueError):
            lim = math.nan
        if not (math.isfinite(lim) and lim > 0):
            raise TwinInputError(f"limit_gy = {rec['limit_gy']!r} for {organ} must be > 0.")
        out.append({"organ": organ, "region": region, "quantity": q, "limit_gy": lim,
                    "condition": str(rec.get("condition", "")), "source": str(rec.get("source", ""))})
    return out


#: CT voxels below this density (g/cm3; about -950 HU, below lung) are air: dose 0 in the map.
AIR_DENSITY_G_CM3 = 0.05


@dataclass(frozen=True, eq=False)
class VoxelDose:
    """Voxel absorbed dose (Gy, float32, (z, y, x)) summed over the schedule. With a CT, voxels
    of air (density below :data:`AIR_DENSITY_G_CM3`) have dose 0.

    mean_gy: the posterior mean map (exact: mean region TIAs through the linear dose map).
    quantile_gy: {q: map} per-voxel quantiles over the sampled draws.
    region_masks: {region: bool mask}; spacing_mm in array order (z, y, x).
    """

    mean_gy: np.ndarray = field(repr=False)
    quantile_gy: Mapping[float, np.ndarray] = field(repr=False)
    region_masks: Mapping[str, np.ndarray] = field(repr=False)
    spacing_mm: tuple[float, float, float]
    ct_hu: np.ndarray | None = field(default=None, repr=False)
    _draw_maps: Any = field(default=None, repr=False)  # (region TIA draws (N, K), unit maps (K, ...))

    def statistics(self):
        """pandas table per region of the mean map: mean, max, D2, D50, D98 (Gy), volume (mL)."""
        import pandas as pd

        from twin import dose

        rows = {}
        for r, m in self.region_masks.items():
            s = dose.dose_statistics(self.mean_gy, m, spacing_mm=self.spacing_mm)
            rows[r] = {f"{k}_gy" if not k.endswith(("ml", "voxels", "_gy")) else k: v
                       for k, v in s.as_dict().items()}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("region")

    def dvh(self, region: str, *, n_points: int = 101, quantiles=(0.05, 0.95)):
        """Cumulative DVH of a region: the mean map's curve and a credible band over the draws.

        Returns a pandas table: dose_gy, volume_fraction (mean map) and one column per quantile.
        """
        import pandas as pd

        from twin import dose

        if region not in self.region_masks:
            raise TwinInputError(f"no mask for {region!r}; regions: {', '.join(self.region_masks)}.")
        m = self.region_masks[region]
        tia, unit = self._draw_maps
        vox = unit[:, m]  # (K, V)
        per_draw = tia @ vox  # (N, V)
        top = float(max(per_draw.max(), self.mean_gy[m].max()))
        grid = np.linspace(0.0, top, n_points)
        _, frac = dose.cumulative_dvh(self.mean_gy, m, dose_grid_gy=grid)
        band = np.empty((per_draw.shape[0], n_points))
        for i in range(per_draw.shape[0]):
            band[i] = (per_draw[i][None, :] >= grid[:, None]).mean(axis=1)
        data = {"dose_gy": grid, "volume_fraction": frac}
        for q in quantiles:
            data[f"q{100 * q:g}_volume_fraction"] = np.quantile(band, q, axis=0)
        return pd.DataFrame(data)


# ============================================================================ the twin
def _agent_family(agent: str) -> str:
    from twin.patient import AGENTS

    if agent not in AGENTS:
        raise TwinInputError(f"agent {agent!r} is not known; known agents: {', '.join(AGENTS)}.")
    return AGENTS[agent][0]


def _build_model(agent: str, physiology, lesion_volumes_l):
    from twin.patient import AGENTS

    family, ligand = AGENTS[agent]
    if family == "psma":
        return pbpk.psma_model(ligand, physiology=physiology, lesion_volumes_l=tuple(lesion_volumes_l),
                               tumour_rest_volume_l=0.0)
    return pbpk.sstr_model(ligand, physiology=physiology, tumour_volumes_l=tuple(lesion_volumes_l))


@dataclass(frozen=True, eq=False)
class Twin:
    """A calibrated patient twin. Build it with :meth:`from_patient`; it is immutable:
    :meth:`update` returns a new twin.

    imaging_model / therapy_model: the patient's pbpk models (one physiology, agent constants
    swapped). posterior: :class:`calibration.Posterior` of the patient-specific parameters.
    data: the (model, schedule, observations) sets the posterior was calibrated on, in order.
    """

    imaging_model: pbpk.PBPKModel
    therapy_model: pbpk.PBPKModel
    posterior: Posterior
    data: tuple = field(repr=False)
    prior: Prior = field(repr=False)
    sex: str = "male"
    masks: Any = field(default=None, repr=False)
    pet_bq_per_ml: np.ndarray | None = field(default=None, repr=False)
    ct_hu: np.ndarray | None = field(default=None, repr=False)
    calibrate_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_patient(cls, patient, *, imaging_agent: str | None = None, therapy_agent: str | None = None,
                     injected_activity_mbq: float | None = None, regions: Sequence[str] | None = None,
                     fwhm_mm: float | None = 5.0, method: str = "laplace", prior: Prior | None = None,
                     num_samples: int = 400, key: int = 0, calibrate_options: Mapping | None = None) -> Twin:
        """Calibrate a twin on a patient's pre-therapy PET frames and labs.

        patient: a ``twin.patient.Patient`` (from files) or a ``twin.patient.Phantom``.
        imaging_agent: e.g. ``"PSMA-11"``; default from a phantom's ground truth, else from the
            PET nuclide (68Ga -> PSMA-11, 18F -> DCFPyL).
        therapy_agent: default PSMA-617 (PSMA family) or DOTATATE (SSTR).
        injected_activity_mbq: PET activity; default from the frames.
        regions: observed regions; default kidney, liver, spleen, salivary glands and lesions.
        fwhm_mm: PET resolution for the partial-volume recovery of small structures.
        method: ``calibration.calibrate`` method (``"laplace"`` default, ``"laplace_is"``, ``"map"``, ``"svi"``,
            ``"nuts"``); ``calibrate_options`` are passed on (Laplace defaults to finite-
            difference Hessians, which compile in seconds).
        """
        from twin import patient as tp

        frames = getattr(patient, "frames", None)
        masks = getattr(patient, "masks", None)
        labs = getattr(patient, "labs", None)
        if not frames or masks is None:
            raise TwinInputError("the patient needs PET frames and masks (a twin.patient.Patient from "
                                 "load_patient or a Phantom from make_phantom).")
        if labs is None:
            raise TwinInputError("the patient has no labs; load them with load_patient(..., labs='labs.csv').")
        if imaging_agent is None:
            gt = getattr(patient, "ground_truth", None) or {}
            imaging_agent = gt.get("agent") or _AGENT_BY_NUCLIDE.get(frames[0].nuclide)
            if imaging_agent is None:
                raise TwinInputError(f"cannot tell the imaging agent from nuclide {frames[0].nuclide}; "
                                     "give imaging_agent='PSMA-11' (or another agent).")
        family = _agent_family(imaging_agent)
        therapy_agent = therapy_agent or _THERAPY_BY_FAMILY[family]
        if _agent_family(therapy_agent) != family:
            raise TwinInputError(f"{imaging_agent} and {therapy_agent} do not share a target.")
        a_inj = injected_activity_mbq if injected_activity_mbq is not None else frames[0].injected_activity_mbq
        if a_inj is None or not a_inj > 0:
            raise TwinInputError("the injected PET activity is unknown; pass injected_activity_mbq=... (MBq).")
        tables = [(float(f.hours_after_injection), tp.organ_uptake(f, masks, fwhm_mm=fwhm_mm,
                                                                   injected_activity_mbq=a_inj))
                  for f in frames]
        _check_uptake_plausible(tables)
        vol_l = tp.region_uptake(tables[0][1])["volume_ml"] / 1000.0
        lesions = sorted((r for r in vol_l.index if re.fullmatch(r"tumour\d+", str(r))),
                         key=lambda r: int(r[6:]))
        if not lesions:
            raise TwinInputError("the masks have no lesion (structures named tumour1, tumour2, ...); the "
                                 "twin needs at least one to plan a therapy.")
        organs = {r: float(vol_l[r]) for r in ("kidney", "liver", "spleen", "salivary", "lacrimal")
                  if r in vol_l.index}
        phys = labs.physiology(measured_volumes_l=organs)  # x tissue density: model volumes
        model = _build_model(imaging_agent, phys, [float(vol_l[r]) for r in lesions])
        if regions is None:
            regions = [r for r in (*_FIT_REGIONS, *lesions) if r in vol_l.index and r in model.regions]
        obs = Observations.from_uptake(tables, agent=model.ligand, regions=list(regions))
        prior = prior if prior is not None else Prior.default(model)
        schedule = pbpk.Schedule.single(float(a_inj))
        therapy = pbpk.theranostic_pair(model, therapy_agent)
        opts = _calibrate_defaults(method, calibrate_options, num_samples, key)
        log.info("calibrating %s on %d observations (%s)", model.name, len(obs), method)
        post = calibrate(model, schedule, obs, prior, method=method, **opts)
        ct = getattr(patient, "ct_hu", None)
        return cls(model, therapy, post, ((model, schedule, obs),), prior, sex=labs.sex, masks=masks,
                   pet_bq_per_ml=np.asarray(frames[0].bq_per_ml), ct_hu=None if ct is None else np.asarray(ct),
                   calibrate_options=opts)

    @classmethod
    def from_posterior(cls, posterior: Posterior, therapy_agent: str = "PSMA-617", *, sex: str = "male") -> Twin:
        """A twin (without images) from a posterior already calibrated on a pbpk imaging model."""
        model = posterior.model
        if not isinstance(model, pbpk.PBPKModel):
            raise TwinInputError("from_posterior needs a posterior calibrated on a pbpk.PBPKModel.")
        therapy = pbpk.theranostic_pair(model, therapy_agent)
        return cls(model, therapy, posterior, ((model, posterior.schedule, posterior.observations),),
                   posterior.prior, sex=sex)

    # ------------------------------------------------------------------ update
    def update(self, observations: Observations, schedule: pbpk.Schedule, *, method: str | None = None,
               key: int = 1) -> Twin:
        """The twin for the next cycle: the posterior re-calibrated on all data so far plus
        ``observations`` of the therapy agent after ``schedule`` (e.g. SPECT after cycle 1:
        ``Observations.from_records([...], agent="PSMA-617")`` in MBq at scan time, and the
        therapy schedule given so far)."""
        if not isinstance(observations, Observations):
            raise TwinInputError("observations must be a calibration.Observations (e.g. from_records or "
                                 "from_uptake of the post-therapy SPECT).")
        schedule = pbpk._simulate._as_schedule(schedule)
        if observations.agent not in (None, self.therapy_model.ligand):
            raise TwinInputError(f"post-therapy observations are of {observations.agent!r}; this twin's therapy "
                                 f"agent is {self.therapy_model.ligand!r}.")
        unknown = sorted(set(observations.region) - set(self.therapy_model.regions))
        if unknown:
            raise TwinInputError(f"observed region(s) {', '.join(unknown)} are not in the model; regions: "
                                 f"{', '.join(self.therapy_model.regions)}.")
        unpredicted = sorted({r for r in observations.region if not self.therapy_model.predicts(r)})
        if unpredicted:
            raise TwinInputError(
                f"observed region(s) {', '.join(unpredicted)} are not predicted by this twin's reduced "
                f"model (it predicts {', '.join(self.therapy_model.predicted_regions)}); drop those "
                "observations or build the twin on the full model.")
        from calibration._inference import early_observations

        t0, early = early_observations(observations, schedule)
        if early:
            raise TwinInputError(
                f"post-therapy observation(s) {', '.join(early)} are at or before the therapy's first "
                f"administration carrying activity ({t0:g} h on the schedule's clock): no activity is "
                "injected yet (a cold pre-dose carries none). Give scan times after the injection "
                "(hours since the schedule's 0 h).")
        data = (*self.data, (self.therapy_model, schedule, observations))
        all_obs = _combine([d[2] for d in data])
        fn = _joint_model(data)
        method = method or self.posterior.method
        opts = dict(self.calibrate_options)
        opts["key"] = key
        if method in ("laplace", "laplace_is"):
            opts.setdefault("hessian", "fd")
        opts.pop("simulate_options", None)
        post = calibrate(fn, None, all_obs, self.prior, method=method, **opts)
        post = dataclasses.replace(post, model=self.imaging_model)
        return dataclasses.replace(self, posterior=post, data=data, _cache={})

    # ------------------------------------------------------------------ prediction
    def _draw_params(self, n_draws: int, key: int):
        post = self.posterior
        n = post.log_samples.shape[0]
        if n > n_draws:
            idx = np.sort(np.random.default_rng(key).choice(n, n_draws, replace=False))
        else:
            idx = np.arange(n)
        return idx, {nm: np.exp(post.log_samples[idx, i]) for i, nm in enumerate(post.names)}

    def simulate_draws(self, schedule: pbpk.Schedule, times_h, *, n_draws: int = 200, key: int = 0,
                       ligand_nmol: Sequence[float] | None = None):
        """Simulate the therapy agent for posterior draws: ``(draw indices, result, activity_mbq
        (N, T, R), tia_mbq_h (N, Rb), ok (N,))``. Equal-activity schedules run at the reference
        activity and are scaled (exact: see the module notes), so the compiled simulation is
        reused across activities. ``ligand_nmol`` overrides the ligand amount per administration.
        """
        idx, params = self._draw_params(n_draws, key)
        ref, scale = _reference_schedule(schedule, self.therapy_model, ligand_nmol)
        times = np.asarray(times_h, dtype=float)
        ckey = ("sim", ref, tuple(times.tolist()), int(n_draws), int(key))
        if ckey not in self._cache:
            res = pbpk.simulate_cohort(self.therapy_model, ref, times, params, chunk_size=min(64, len(idx)))
            act0, tia0 = np.asarray(res.activity_mbq), np.asarray(res.tia_mbq_h)
            ok0 = (np.asarray(res.status) == 0) & np.all(np.isfinite(tia0), axis=1)
            sims = [k for k in self._cache if k[0] == "sim"]
            if len(sims) >= 32:
                del self._cache[sims[0]]
            self._cache[ckey] = (res, act0, tia0, ok0)
        res, act0, tia0, ok0 = self._cache[ckey]
        return idx, res, act0 * scale, tia0 * scale, ok0

    def _arrays(self, schedule: pbpk.Schedule, n_draws: int, key: int, cycles: str,
                times_h=None) -> dict:
        """Per-draw activity, TIA, dose, BED and EQD2 of a schedule (see :meth:`predict`)."""
        if cycles not in ("independent", "coupled"):
            raise TwinInputError(f"cycles = {cycles!r}; use 'independent' or 'coupled'.")
        model = self.therapy_model
        adm = schedule.administrations
        if cycles == "coupled" or len(adm) == 1:
            if len(adm) == 1 and adm[0].time_h == 0:
                times = _CYCLE_GRID_H  # shared with the independent-cycle path (one compilation)
            else:
                times = self._times(schedule)
            if times_h is not None:
                # the user's times only add output points: TIA integrates to the end of the
                # internal grid (then physical decay), and the half-lives read its points
                times = np.union1d(times, np.asarray(times_h, dtype=float))
            idx, res, act, tia, ok = self.simulate_draws(schedule, times, n_draws=n_draws, key=key)
            op = self.dose_operator(res.body_regions)
            dose = tia @ op.matrix.T
            t_eff = _effective_half_life(schedule, times, act, res.regions, op.targets, model)
            s0 = adm[0].time_h
            end = adm[1].time_h if len(adm) > 1 else math.inf
            # cycle 1's curve on the single-cycle grid (on its own clock; output times added by
            # the user do not change the integration)
            first = np.isin(times, [s0 + g for g in _CYCLE_GRID_H if s0 + g < end])
            # the grid itself, not times - s0 (not bitwise equal: a new compilation per start)
            grid1 = np.asarray(_CYCLE_GRID_H, dtype=float)[: int(first.sum())]
            g = _g_factors(grid1, act[:, first, :], res.regions, op.targets, model)
            if times_h is not None:
                user = np.asarray(times_h, dtype=float)
                act, times = act[:, np.searchsorted(times, user), :], user
            frac = np.array([a.activity_mbq for a in adm]) / schedule.total_activity_mbq
            dose_c = dose[:, None, :] * frac[None, :, None]
            g_c = np.repeat(g[:, None, :], len(adm), axis=1)
        else:
            lig = _ligand_per_admin(schedule, model)
            grid = _CYCLE_GRID_H
            acts, tias, oks, idx = [], [], [], None
            for a, n in zip(adm, lig):
                single = pbpk.Schedule((pbpk.Administration(a.activity_mbq, ligand_nmol=float(n),
                                                            infusion_h=a.infusion_h),))
                idx, res, act_i, tia_i, ok_i = self.simulate_draws(single, grid, n_draws=n_draws, key=key)
                acts.append(act_i)
                tias.append(tia_i)
                oks.append(ok_i)
            ok = np.logical_and.reduce(oks)
            tia = np.sum(tias, axis=0)
            op = self.dose_operator(res.body_regions)
            dose_c = np.stack([t @ op.matrix.T for t in tias], axis=1)  # (N, C, D)
            dose = dose_c.sum(axis=1)
            # each cycle's curve is on the grid after its own administration: read it as a
            # schedule that starts at t = 0 (adm[0] may start later, e.g. after update())
            t_eff = _effective_half_life(single, grid, acts[0], res.regions, op.targets, model)
            # G depends on the curve's shape only, not on the activity: one per ligand amount
            g_c = []
            for a, n, a_i in zip(adm, lig, acts):
                gkey = ("g", float(n), a.infusion_h, int(n_draws), int(key), op.targets)
                if gkey not in self._cache:
                    old = [k for k in self._cache if k[0] == "g"]
                    if len(old) >= 64:
                        del self._cache[old[0]]
                    self._cache[gkey] = _g_factors(grid, a_i, res.regions, op.targets, model)
                g_c.append(self._cache[gkey])
            g_c = np.stack(g_c, axis=1)
            times = self._times(schedule) if times_h is None else np.asarray(times_h, dtype=float)
            act = _superpose([a.time_h for a in adm], grid, acts, times, model)
        # failed draws (excluded through ``ok``) have NaN doses: give them finite placeholders so
        # that the BED of the others can be computed, and NaN BED/EQD2 so they cannot be used
        bed, eqd = _bed_eqd2(np.where(ok[:, None, None], dose_c, 0.0),
                             np.where(ok[:, None, None], g_c, 0.0), op.targets)
        bed[~ok], eqd[~ok] = np.nan, np.nan
        return {"idx": idx, "ok": ok, "times": times, "regions": res.regions, "body_regions": res.body_regions,
                "act": act, "tia": tia, "dose": dose, "bed": bed, "eqd": eqd, "t_eff": t_eff,
                "op": op}

    def predict(self, schedule: pbpk.Schedule | None = None, *, activity_gbq: float | None = None,
                n_cycles: int = 1, interval_weeks: float = 6.0, ligand_nmol: float | None = None,
                n_draws: int = 200, times_h: Sequence[float] | None = None,
                quantiles: Sequence[float] = DEFAULT_QUANTILES, key: int = 0,
                cycles: str = "independent") -> TherapyPrediction:
        """Predict a therapy schedule: give a ``pbpk.Schedule`` or ``activity_gbq`` with
        ``n_cycles``, ``interval_weeks`` and ``ligand_nmol`` (see :func:`therapy_schedule`).

        cycles: ``"independent"`` (default) simulates every administration on its own (one
        compiled single-injection simulation serves every schedule, activity and ligand amount)
        and adds them up: exact when the previous cycles' ligand has left the receptors, which
        holds for the usual 4-8 week intervals (the tests compare both at 6 weeks).
        ``"coupled"`` simulates the whole schedule at once (carry-over of receptor occupancy
        and activity between cycles; compiles once per schedule structure, slower); BED then
        splits the dose over cycles by activity.

        TIA and dose are for the whole schedule (injection to infinity). BED/EQD2 sum the cycle
        BEDs (complete repair between cycles), each with the Lea-Catcheside G-factor of its
        cycle's time-activity curve of the region (``twin.dose.g_factor_numerical``, as
        ``twin.cohort``; a mono-exponential G of the late effective half-life ignores the uptake
        phase and overstated the kidney G by 10-30 % for the test patients).
        """
        n_draws = _check_n_draws(n_draws)
        quantiles = _check_quantiles(quantiles)
        times_h = None if times_h is None else _check_times(times_h)
        schedule = self._schedule(schedule, activity_gbq, n_cycles, interval_weeks, ligand_nmol)
        r = self._arrays(schedule, n_draws, key, cycles, times_h)
        ok = r["ok"]
        n_failed = int((~ok).sum())
        if n_failed:
            warnings.warn(f"{n_failed} of {len(ok)} posterior draws failed to simulate; they are excluded.",
                          stacklevel=2)
        if not ok.any():
            raise TwinError("every posterior draw failed to simulate this schedule; check the schedule.")
        op = r["op"]
        return TherapyPrediction(schedule=schedule, times_h=r["times"], regions=r["regions"],
                                 body_regions=r["body_regions"], activity_mbq=r["act"][ok],
                                 tia_mbq_h=r["tia"][ok], dose_regions=op.targets, dose_gy=r["dose"][ok],
                                 bed_gy=r["bed"][ok], eqd2_gy=r["eqd"][ok],
                                 effective_half_life_h=r["t_eff"][ok],
                                 quantiles=tuple(float(q) for q in quantiles),
                                 dose_methods=dict(op.methods), n_failed=n_failed, twin=self,
                                 draw_index=r["idx"][ok])

    def dose_operator(self, body_regions=None) -> _DoseOperator:
        body_regions = tuple(body_regions or self._body_regions())
        key = ("dose", body_regions)
        if key not in self._cache:
            self._cache[key] = _dose_operator(self.therapy_model, body_regions, self.sex)
        return self._cache[key]

    def _body_regions(self):
        return self.therapy_model.compiled.body_regions

    def _schedule(self, schedule, activity_gbq, n_cycles, interval_weeks, ligand_nmol) -> pbpk.Schedule:
        if schedule is not None and activity_gbq is not None:
            raise TwinInputError("give a schedule or activity_gbq (with n_cycles ...), not both.")
        if schedule is None:
            if activity_gbq is None:
                raise TwinInputError("give a schedule (pbpk.Schedule) or activity_gbq=7.4 (GBq per cycle).")
            return self._check_ligand(therapy_schedule(activity_gbq, n_cycles, interval_weeks=interval_weeks,
                                                       ligand_nmol=ligand_nmol))
        try:
            schedule = pbpk._simulate._as_schedule(schedule)
        except pbpk.InvalidInputError as exc:
            raise TwinInputError(str(exc)) from None
        return self._check_ligand(schedule)

    def _check_ligand(self, schedule: pbpk.Schedule) -> pbpk.Schedule:
        """The schedule, if each administration carries at least the ligand its activity needs
        (the simulation runs at a reference activity and is scaled, so pbpk's own check at the
        real activity would not run)."""
        m = self.therapy_model
        for a in schedule.administrations:
            try:
                a.amounts_nmol(m.carrier_free_mbq_per_nmol, m.default_molar_activity_mbq_per_nmol)
            except pbpk.InvalidInputError as exc:
                raise TwinInputError(str(exc)) from None
        return schedule

    @staticmethod
    def _times(schedule: pbpk.Schedule) -> np.ndarray:
        starts = [a.time_h for a in schedule.administrations]
        end = starts[-1] + 2000.0
        grid = np.geomspace(0.25, end, 80)
        pts = {1.0, 4.0, 24.0, 48.0, 96.0, 168.0, end}
        for s in starts:
            pts.update({s - 1e-3, s + 1.0, s + 24.0, s + 168.0})
        # cycle 1 on the single-cycle grid: coupled mode reads its G-factor from that curve as a
        # cycle starting at t = 0 does (the coarse log grid misses the uptake phase)
        nxt = starts[1] if len(starts) > 1 else math.inf
        pts.update(float(starts[0] + g) for g in _CYCLE_GRID_H if starts[0] + g < nxt)
        return np.unique(np.concatenate([grid, [p for p in pts if 0 < p <= end]]))

    # ------------------------------------------------------------------ voxel dose
    def _voxel_operator(self):
        """Region masks, the TIA distribution and unit dose maps (Gy per MBq h) per map region."""
        if "voxel" in self._cache:
            return self._cache["voxel"]
        from twin import dose
        from twin.patient import region_of

        m = self.masks
        body_regions = self._body_regions()
        # structures of excreta (the bladder: 'urine') hold activity that has left the body: the
        # PET there is urine, not body tissue, so no body TIA (remainder of body) goes there
        excreta = set(self.therapy_model.regions) - set(body_regions)
        groups: dict[str, np.ndarray] = {}
        outside = np.zeros(m.labels.shape, bool)
        for name in m.names:
            reg = region_of(name)
            if reg in body_regions and reg != "remainder_of_body":
                groups[reg] = groups.get(reg, np.zeros(m.labels.shape, bool)) | m.mask(name)
            elif reg in excreta:
                outside |= m.mask(name)
        dist = dose.tia_distribution(groups, self.pet_bq_per_ml, body_mask=(m.labels > 0) & ~outside)
        spacing = tuple(float(s) for s in reversed(m.geometry.spacing))
        kernel = dose.dose_kernel(self.therapy_model.nuclide, spacing)
        plan = dose.make_dose_plan(kernel, m.labels.shape)
        density = dose.hu_to_density(self.ct_hu) if self.ct_hu is not None else None
        # air (outside the patient, bowel gas): the density correction would multiply the
        # cross-dose there by up to 1.04/0.0012 = 870 (133 Gy next to the phantom's skin); dose
        # to air is not a quantity anyone plans on, so it is 0 in the map
        air = None if density is None else np.asarray(density) < AIR_DENSITY_G_CM3
        units = []
        for r in dist.regions:
            tia_map = dist.tia_map({q: (1.0 if q == r else 0.0) for q in dist.regions})
            unit = np.asarray(dose.voxel_dose(tia_map, plan, density_g_cm3=density), dtype=np.float32)
            units.append(unit if air is None else np.where(air, np.float32(0.0), unit))
        out = {"regions": dist.regions, "masks": groups, "units": np.stack(units), "spacing": spacing}
        self._cache["voxel"] = out
        return out

    def _map_tia(self, pred: TherapyPrediction, tia: np.ndarray) -> np.ndarray:
        """(N, Rb) body-region TIA -> (N, K) TIA of the voxel-map regions (remainder: the rest)."""
        vo = self._voxel_operator()
        out = np.zeros((tia.shape[0], len(vo["regions"])))
        used = np.zeros(tia.shape[0])
        for k, r in enumerate(vo["regions"]):
            if r in pred.body_regions:
                j = pred.body_regions.index(r)
                share = 1.0
                if r == "red_marrow":  # the mask is part of the marrow (model volume: kg ~ L)
                    vol_ml = float(vo["masks"][r].sum()) * float(np.prod(vo["spacing"])) / 1000.0
                    share = min(1.0, vol_ml / 1000.0 * pbpk.TISSUE_DENSITY_KG_PER_L["red_marrow"]
                                / self.therapy_model.organ_volumes_l["red_marrow"])
                out[:, k] = tia[:, j] * share
                used += out[:, k]
        if "remainder_of_body" in vo["regions"]:
            out[:, vo["regions"].index("remainder_of_body")] = tia.sum(axis=1) - used
        return out

    def _voxel_dose(self, pred: TherapyPrediction, *, n_draws: int, quantiles, key: int) -> VoxelDose:
        vo = self._voxel_operator()
        units = vo["units"]
        k_mean = self._map_tia(pred, pred.tia_mbq_h.mean(axis=0, keepdims=True))[0]
        mean = np.tensordot(k_mean, units, axes=1).astype(np.float32)
        rng = np.random.default_rng(key)
        sel = rng.choice(pred.n_draws, min(n_draws, pred.n_draws), replace=False)
        k_draws = self._map_tia(pred, pred.tia_mbq_h[sel])  # (N, K)
        flat = units.reshape(units.shape[0], -1)
        qmaps = {float(q): np.empty(flat.shape[1], np.float32) for q in quantiles}
        step = 65536
        for s in range(0, flat.shape[1], step):
            block = k_draws @ flat[:, s:s + step]  # (N, chunk)
            qs = np.quantile(block, list(qmaps), axis=0)
            for i, q in enumerate(qmaps):
                qmaps[q][s:s + step] = qs[i]
        shape = units.shape[1:]
        return VoxelDose(mean, {q: v.reshape(shape) for q, v in qmaps.items()},
                         dict(vo["masks"]), vo["spacing"], self.ct_hu, (k_draws, units))

    def __repr__(self) -> str:
        return (f"Twin({self.imaging_model.ligand} -> {self.therapy_model.ligand}, "
                f"{len(self.posterior.names)} calibrated parameters, method={self.posterior.method!r}, "
                f"{sum(len(d[2]) for d in self.data)} observations)")


def _calibrate_defaults(method, options, num_samples, key) -> dict:
    opts = dict(options or {})
    opts.setdefault("num_samples", int(num_samples))
    opts.setdefault("key", key)
    if method in ("laplace", "laplace_is"):
        opts.setdefault("hessian", "fd")
    return opts


def limit_quantile(draws, probability: float) -> float:
    """The ``probability`` quantile of posterior draws as used for limits: the smallest draw
    ``v`` with at least ``probability`` of the draws ``<= v`` (``numpy.quantile(...,
    method="inverted_cdf")``). A limit holds with probability >= ``probability`` exactly when
    this value is <= the limit; the interpolated quantile can exceed the limit while the
    fraction of draws within it is already ``probability``."""
    return float(np.quantile(np.asarray(draws, dtype=float), probability, method="inverted_cdf"))


def _effective_half_life(schedule, times, act, regions, targets, model) -> np.ndarray:
    """(N, D) late effective half-life (h) of cycle 1 per draw and dose region, clipped to
    [0.1 h, physical half-life] (a TAC still rising at the late time gets the physical one)."""
    lam_phys = pbpk.get_nuclide(model.nuclide).decay_constant_per_h
    starts = [a.time_h for a in schedule.administrations]
    s0 = starts[0]  # times after the first administration, which need not be at t = 0
    span = starts[1] - s0 if len(starts) > 1 else np.inf
    t2 = s0 + min(168.0, 0.9 * span)
    t1 = s0 + min(24.0, 0.5 * (t2 - s0))
    i1, i2 = int(np.argmin(np.abs(times - t1))), int(np.argmin(np.abs(times - t2)))
    out = np.full((act.shape[0], len(targets)), math.log(2) / lam_phys)
    for k, r in enumerate(targets):
        if r not in regions or i2 <= i1:
            continue
        a1, a2 = act[:, i1, regions.index(r)], act[:, i2, regions.index(r)]
        good = (a1 > 0) & (a2 > 0)
        lam = np.where(good, np.log(np.where(good, a1 / np.where(a2 > 0, a2, 1.0), 1.0)) / (times[i2] - times[i1]),
                       lam_phys)
        lam = np.maximum(lam, lam_phys)
        out[:, k] = np.clip(math.log(2) / lam, 0.1, math.log(2) / lam_phys)
    return out


def _g_factors(times, act, regions, targets, model) -> np.ndarray:
    """(N, D) Lea-Catcheside G-factor of one cycle per draw and dose region, from the region's
    own activity curve ``act`` (N, T, R) on ``times`` (h after the administration, > 0; the
    curve is taken as 0 at the administration), as ``twin.cohort`` computes it
    (``twin.dose.g_factor_numerical`` on the log-linearly refined curve, tail at the last
    points' rate, at least physical decay). A dose region without a curve of its own gets the
    G-factor of physical decay."""
    from twin import dose
    from twin.cohort._kinetics import _g_function

    lam_phys = pbpk.get_nuclide(model.nuclide).decay_constant_per_h
    trep = np.array([dose.tissue_parameters(_tissue_of(r)).repair_half_time_h for r in targets])
    out = np.asarray(dose.g_factor_monoexponential(math.log(2) / lam_phys, trep))[None, :].repeat(act.shape[0], 0)
    own = [k for k, r in enumerate(targets) if r in regions]
    if own and len(times) >= 2:
        curves = act[:, :, [regions.index(targets[k]) for k in own]]
        curves = np.concatenate([np.zeros((act.shape[0], 1, len(own))), curves], axis=1)
        t = tuple(float(x) for x in np.r_[0.0, np.asarray(times, dtype=float)])
        g = np.asarray(_g_function(t, float(lam_phys))(curves, trep[own]))
        out[:, own] = np.clip(g, 0.0, 1.0)
    return out


def _bed_eqd2(dose_c, g_c, targets):
    """BED and EQD2 (N, D) from per-cycle doses and G-factors (N, C, D)."""
    from twin import dose

    bed = np.empty(dose_c.shape[::2])
    eqd = np.empty_like(bed)
    for k, r in enumerate(targets):
        tp = dose.tissue_parameters(_tissue_of(r))
        g = g_c[:, :, k]
        bed[:, k] = np.asarray(dose.bed(dose_c[:, :, k], g, tp.alpha_beta_gy)).sum(axis=1)
        eqd[:, k] = np.asarray(dose.eqd2(bed[:, k], tp.alpha_beta_gy))
    return bed, eqd


def _superpose(starts, grid, acts, times, model) -> np.ndarray:
    """Activity of a schedule on ``times`` from single-cycle activities on ``grid`` (after each
    administration): log-linear interpolation, physical decay beyond the grid."""
    lam = pbpk.get_nuclide(model.nuclide).decay_constant_per_h
    n, _, r = acts[0].shape
    out = np.zeros((n, len(times), r))
    lg = np.log(grid)
    for t0, a in zip(starts, acts):
        dt = times - t0
        for j, d in enumerate(dt):
            if d <= 0:
                continue
            if d >= grid[-1]:
                out[:, j] += a[:, -1] * math.exp(-lam * (d - grid[-1]))
                continue
            if d <= grid[0]:
                out[:, j] += a[:, 0] * d / grid[0]
                continue
            i = int(np.searchsorted(grid, d)) - 1
            w = (math.log(d) - lg[i]) / (lg[i + 1] - lg[i])
            out[:, j] += (1 - w) * a[:, i] + w * a[:, i + 1]
    return out


# ============================================================================ joint calibration
def _combine(obs_sets: Sequence[Observations]) -> Observations:
    """One Observations of several agents (agent None), in order. Each set keeps its own data
    set index: a scan of one agent/schedule is no duplicate of a scan of another at the same
    hour (each set's times are on its own schedule's clock)."""
    def cat(name):
        return np.concatenate([getattr(o, name) for o in obs_sets])

    try:
        return Observations(region=sum((o.region for o in obs_sets), ()), time_h=cat("time_h"),
                            value=cat("value"), unit=sum((o.unit for o in obs_sets), ()), cv=cat("cv"),
                            floor=cat("floor"), recovery_coefficient=cat("recovery_coefficient"),
                            rc_cv=cat("rc_cv"), agent=None, source=sum((o.source for o in obs_sets), ()),
                            dataset=sum(((k,) * len(o) for k, o in enumerate(obs_sets)), ()))
    except pbpk.InvalidInputError as exc:
        raise TwinInputError(f"the post-therapy observations clash with earlier ones: {exc}") from None


def _joint_model(data):
    """A callable params -> (predictions of every data set in order, status) for calibrate()."""
    import jax.numpy as jnp

    designs = []
    for model, schedule, obs in data:
        times = obs.times_h
        designs.append((model, schedule, times, np.searchsorted(times, obs.time_h),
                        np.array([model.regions.index(r) for r in obs.region]),
                        np.array([u == "%IA" for u in obs.unit])))

    def predict(params):
        preds, status = [], jnp.zeros((), jnp.int32)
        for model, schedule, times, t_idx, r_idx, pct in designs:
            r = pbpk.simulate(model, schedule, times, params, mode="forward", check=False, rtol=1e-5)
            a = r.activity_mbq[t_idx, r_idx]
            if pct.any():
                a = jnp.where(jnp.asarray(pct), r.percent_injected(decay_corrected=True)[t_idx, r_idx], a)
            preds.append(a)
            status = jnp.maximum(status, r.status)
        return jnp.concatenate(preds), status

    return predict
