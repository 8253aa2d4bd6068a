"""Imaging-schedule design: which PET/SPECT time points pin down the therapy doses best.

For a candidate set of scan times, the posterior of the patient-specific parameters is
approximated by Laplace/Fisher at the prior-median patient (standardised log space ``z``,
prior ``N(0, I)``)::

    F = I + J^T diag(1 / s^2) J,       J = d log(prediction) / dz  (observed regions and times)

with ``s`` the log-scale noise of each observation (``calibration.NoiseModel``, one for all
regions or a mapping region -> NoiseModel as in ``calibrate``: its proportional CV; the
partial-volume term of small structures and the additive floor are not included, so a noise
model needs cv > 0).
The relative standard deviation of a therapy dose ``D`` is then ``sqrt(g^T F^-1 g)`` with
``g = d log D / dz``. Jacobians come from forward-mode differentiation through
``pbpk.simulate``, once per agent on the union of the candidate times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import pbpk
from calibration import NoiseModel, Prior
from twin._errors import TwinInputError

__all__ = ["ScanSet", "rank_imaging_schedules"]


@dataclass(frozen=True)
class ScanSet:
    """A candidate imaging schedule: PET time points (h after the PET injection) and SPECT time
    points (h after the first therapy cycle), with a cost (default: PET 1 per scan, SPECT 0.5)."""

    pet_times_h: tuple[float, ...] = ()
    spect_times_h: tuple[float, ...] = ()
    name: str = ""
    cost: float | None = None

    def __post_init__(self) -> None:
        for attr in ("pet_times_h", "spect_times_h"):
            vals = tuple(float(t) for t in getattr(self, attr))
            if any(not (math.isfinite(t) and t > 0) for t in vals) or len(set(vals)) != len(vals):
                raise TwinInputError(f"{attr} = {vals!r}: scan times must be distinct and > 0 h.")
            object.__setattr__(self, attr, tuple(sorted(vals)))
        if not self.pet_times_h and not self.spect_times_h:
            raise TwinInputError("a scan set needs at least one PET or SPECT time point.")
        if not self.name:
            parts = []
            if self.pet_times_h:
                parts.append("PET " + ", ".join(f"{t:g}" for t in self.pet_times_h) + " h")
            if self.spect_times_h:
                parts.append("SPECT " + ", ".join(f"{t:g}" for t in self.spect_times_h) + " h")
            object.__setattr__(self, "name", " + ".join(parts))

    def total_cost(self, pet_cost: float, spect_cost: float) -> float:
        if self.cost is not None:
            return float(self.cost)
        return pet_cost * len(self.pet_times_h) + spect_cost * len(self.spect_times_h)


def _as_scanset(c) -> ScanSet:
    if isinstance(c, ScanSet):
        return c
    if isinstance(c, Mapping):
        return ScanSet(tuple(c.get("pet_times_h", ())), tuple(c.get("spect_times_h", ())),
                       str(c.get("name", "")), c.get("cost"))
    raise TwinInputError(f"candidate {c!r} must be a ScanSet or a dict with pet_times_h / spect_times_h.")


def _real(value) -> bool:
    """Whether ``value`` is a finite real number (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _log_jacobian(model, schedule, times, params0, names, scale, region_idx, with_tia=False):
    """log activity at (time, region) [and log TIA per body region] and the Jacobian d/dz at
    the prior median (one forward-mode pass)."""
    import jax
    import jax.numpy as jnp

    mu = jnp.asarray([math.log(params0[n]) for n in names])
    sig = jnp.asarray(scale)

    def f(z):
        p = {n: jnp.exp(mu[i] + sig[i] * z[i]) for i, n in enumerate(names)}
        r = pbpk.simulate(model, schedule, times, p, check=False, rtol=1e-7, atol=1e-12)
        out = jnp.log(jnp.maximum(r.activity_mbq[:, region_idx], 1e-300)).reshape(-1)
        if with_tia:
            out = jnp.concatenate([out, jnp.log(jnp.maximum(r.tia_mbq_h, 1e-300))])
        return out

    z0 = jnp.zeros(len(names))
    return np.asarray(f(z0)), np.asarray(jax.jacfwd(f)(z0))


def rank_imaging_schedules(imaging_model: pbpk.PBPKModel, candidates: Sequence, *,
                           therapy_agent: str = "PSMA-617", prior: Prior | None = None,
                           therapy_activity_gbq: float = 7.4, pet_activity_mbq: float = 150.0,
                           regions: Sequence[str] | None = None, dose_regions: Sequence[str] | None = None,
                           noise: NoiseModel | Mapping[str, NoiseModel] | None = None,
                           target_rel_sd: float = 0.2,
                           pet_cost: float = 1.0, spect_cost: float = 0.5):
    """Rank candidate imaging schedules by the therapy-dose uncertainty they would leave.

    imaging_model: the patient's imaging model (e.g. ``twin.imaging_model``); the prior
    (default ``Prior.default(imaging_model)``) gives the prior-median patient and the prior
    covariance. regions: observed regions (default kidney, liver, spleen, salivary glands and
    lesions). dose_regions: therapy doses whose precision counts (default kidney and lesions).
    Returns ``(table, recommended)``: a pandas table sorted by cost then by the worst relative
    sd, with one column ``rel_sd_<region>`` per dose region, ``max_rel_sd``, ``cost`` and
    ``meets_target``; ``recommended`` is the name of the cheapest set whose worst relative sd
    is at most ``target_rel_sd`` (None if none does; then the most precise one is first in
    the table's ``max_rel_sd`` order). noise: a NoiseModel or a mapping region -> NoiseModel
    (keys: regions, ``'tumour'``, ``'default'``); only its cv is used, which must be > 0.
    pet_cost, spect_cost: cost per scan, >= 0. SPECT times may lie at any time after the
    therapy injection (the TIA is integrated past the last one).
    """
    import pandas as pd

    from twin._twin import _dose_operator

    if not isinstance(imaging_model, pbpk.PBPKModel):
        raise TwinInputError("imaging_model must be a pbpk.PBPKModel (e.g. twin.imaging_model).")
    cands = [_as_scanset(c) for c in candidates]
    if not cands:
        raise TwinInputError("give at least one candidate imaging schedule.")
    if not 0 < target_rel_sd:
        raise TwinInputError("target_rel_sd must be > 0 (e.g. 0.2 for 20 %).")
    for label, value in (("pet_cost", pet_cost), ("spect_cost", spect_cost)):
        if not (_real(value) and value >= 0):
            raise TwinInputError(f"{label} = {value!r}: a scan's cost must be a finite number >= 0.")
    for label, value in (("therapy_activity_gbq", therapy_activity_gbq), ("pet_activity_mbq", pet_activity_mbq)):
        if not (_real(value) and value > 0):
            raise TwinInputError(f"{label} = {value!r}: give a finite activity > 0.")
    noise = NoiseModel() if noise is None else noise
    if not isinstance(noise, (NoiseModel, Mapping)):
        raise TwinInputError(f"noise must be a calibration.NoiseModel or a mapping region -> NoiseModel, "
                             f"got {type(noise).__name__}.")
    prior = prior if prior is not None else Prior.default(imaging_model)
    prior.check_model(imaging_model)
    names = prior.names
    med = {e.name: e.median for e in prior.entries}
    scale = prior.log_scale
    therapy = pbpk.theranostic_pair(imaging_model.with_parameters(**med), therapy_agent)
    lesions = [r for r in imaging_model.regions if r.startswith("tumour")
               and imaging_model.organ_volumes_l.get(r, 0) > 0]
    regions = list(regions) if regions is not None else [
        r for r in ("kidney", "liver", "spleen", "salivary", *lesions) if r in imaging_model.regions]
    dose_regions = list(dose_regions) if dose_regions is not None else ["kidney", *lesions]
    bad = [r for r in regions if r not in imaging_model.regions]
    if bad:
        raise TwinInputError(f"region(s) {', '.join(bad)} not in the model; regions: {', '.join(imaging_model.regions)}.")
    r_idx = np.array([imaging_model.regions.index(r) for r in regions])
    from calibration import ObservationError
    from calibration._observations import _check_noise_keys, _noise_for

    try:
        _check_noise_keys(noise, regions)
        region_noise = [_noise_for(noise, r) for r in regions]
    except ObservationError as exc:
        raise TwinInputError(f"noise: {exc}") from None
    zero = [r for r, nm in zip(regions, region_noise) if not nm.cv > 0]
    if zero:
        raise TwinInputError(
            f"the noise model of {', '.join(zero)} has cv = 0: the design uses the proportional "
            "noise (cv) only, not the additive floor, so a cv of 0 would mean noiseless scans. "
            "Give cv > 0 (e.g. NoiseModel(cv=0.1)).")
    s2 = np.array([math.log1p(nm.cv**2) for nm in region_noise])  # per observed region
    therapy_sched = pbpk.Schedule.single(therapy_activity_gbq * 1000.0)
    pet_times = sorted({t for c in cands for t in c.pet_times_h})
    spect_times = sorted({t for c in cands for t in c.spect_times_h})
    body = list(therapy.compiled.body_regions)
    op = _dose_operator(therapy, body, "male")
    miss = [r for r in dose_regions if r not in op.targets]
    if miss:
        raise TwinInputError(f"no dose for {', '.join(miss)}; dose regions: {', '.join(op.targets)}.")
    # therapy: log activity at the SPECT times and log TIA (dose gradient), one pass
    # the TIA is integrated to a time past every SPECT time (plus the exact decay tail)
    t_end = max(2000.0, 2.0 * spect_times[-1]) if spect_times else 2000.0
    t_ther = np.asarray([*spect_times, t_end])
    val_t, jac_t = _log_jacobian(therapy, therapy_sched, t_ther, med, names, scale, r_idx, with_tia=True)
    nb = len(body)
    tia0, j_log_tia = np.exp(val_t[-nb:]), jac_t[-nb:]
    j_tia = tia0[:, None] * j_log_tia  # d TIA / dz
    dose0 = op.matrix @ tia0
    g = {r: (op.matrix[op.targets.index(r)] @ j_tia) / dose0[op.targets.index(r)] for r in dose_regions}
    jac_pet = None
    if pet_times:
        _, jac_pet = _log_jacobian(imaging_model.with_parameters(**med), pbpk.Schedule.single(pet_activity_mbq),
                                        np.asarray(pet_times), med, names, scale, r_idx)
    nr = len(regions)
    rows = []
    for c in cands:
        blocks = []
        for t in c.pet_times_h:
            i = pet_times.index(t)
            blocks.append(jac_pet[i * nr:(i + 1) * nr])
        for t in c.spect_times_h:
            i = spect_times.index(t)
            blocks.append(jac_t[i * nr:(i + 1) * nr])
        J = np.concatenate(blocks)
        w = np.tile(1.0 / s2, len(blocks))  # one block of the observed regions per scan
        F = np.eye(len(names)) + J.T @ (w[:, None] * J)
        cov = np.linalg.inv(F)
        row = {"schedule": c.name, "n_pet": len(c.pet_times_h), "n_spect": len(c.spect_times_h),
               "cost": c.total_cost(pet_cost, spect_cost)}
        for r in dose_regions:
            row[f"rel_sd_{r}"] = float(math.sqrt(max(g[r] @ cov @ g[r], 0.0)))
        row["prior_max_rel_sd"] = max(float(math.sqrt(g[r] @ g[r])) for r in dose_regions)
        rows.append(row)
    table = pd.DataFrame(rows)
    cols = [f"rel_sd_{r}" for r in dose_regions]
    table["max_rel_sd"] = table[cols].max(axis=1)
    table["meets_target"] = table["max_rel_sd"] <= target_rel_sd
    table = table.sort_values(["cost", "max_rel_sd"]).reset_index(drop=True)
    ok = table[table["meets_target"]]
    recommended = None if ok.empty else str(ok.iloc[0]["schedule"])
    return table, recommended
