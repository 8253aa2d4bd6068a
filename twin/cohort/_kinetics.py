"""Per-cycle kinetics and dosimetry of a chunk of virtual patients.

One therapy cycle (a bolus of ``activity_mbq`` with ``ligand_nmol`` of ligand) is simulated for
every patient with :func:`pbpk.simulate_cohort` on a fixed output grid. From it come, per
patient and endpoint organ:

* the absorbed dose per cycle: ICRP-89 177Lu S-values (other nuclides: local deposition of the
  non-penetrating energy) with the self-dose mass-scaled to the patient's organ volume (1 kg/L,
  the models' volumes being ICRP-89 masses; not for red marrow), other body regions as remainder
  of body, the lacrimal glands by local deposition and the tumours by the sphere model
  (mass-weighted mean over tumour compartments, mass = volume x 1.04 kg/L),
  exactly as :func:`twin.dose.organ_dose` computes them (the coefficients are taken from it);
* the Lea-Catcheside G-factor of the cycle from the organ's own time-activity curve
  (:func:`twin.dose.g_factor_numerical` on the curve refined by log-linear interpolation), so that
  ``BED = D + G D^2 / (alpha/beta)`` per cycle.

Cycles are assumed independent and identical (activity carried over from the previous cycle
is neglected: after 6 weeks 1.25 % of a 177Lu activity is left before biological clearance),
and repair is complete between cycles, as in :func:`twin.dose.bed_multicycle`. At a fixed
ligand amount the kinetics of total ligand do not depend on the activity (hot and cold ligand
are kinetically identical), so doses scale exactly linearly with the activity per cycle and
the G-factor does not change.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

import pbpk
from pbpk._compile import DECAY_PARAMETER
from twin.cohort._population import PreparedPopulation
from twin.dose._organ import PBPK_SOURCE_REGIONS

__all__ = [
    "ENDPOINT_ORGANS",
    "TIME_GRID_H",
    "CycleKinetics",
    "DoseCoefficients",
    "chunk_kinetics",
    "dose_coefficients",
    "endpoint_organs",
]

#: Output grid (h) of the per-cycle simulation: 0 and 31 log-spaced times to 6 weeks.
TIME_GRID_H = tuple(float(t) for t in np.r_[0.0, np.geomspace(0.25, 1008.0, 31)])

# pbpk body region -> ICRP-89 S-value source (the remaining body regions are remainder of body)
_MIRD_SOURCES = PBPK_SOURCE_REGIONS
#: Endpoint organ -> (pbpk region, radiobiology tissue of twin.dose)
ENDPOINT_ORGANS = {
    "kidneys": ("kidney", "kidneys"),
    "salivary_glands": ("salivary", "normal_tissue"),
    "lacrimal_glands": ("lacrimal", "normal_tissue"),
    "red_marrow": ("red_marrow", "normal_tissue"),
    "liver": ("liver", "liver"),
    "spleen": ("spleen", "normal_tissue"),
    "tumour": ("tumour", "tumour"),
}


@dataclass(frozen=True)
class DoseCoefficients:
    """Linear map from body-region TIA (MBq h) to endpoint-organ dose (Gy) for one sex."""

    organs: tuple[str, ...]           # endpoint organs present
    matrix: np.ndarray                # (organs, body regions), Gy per MBq h at reference masses
    self_region: tuple[int, ...]      # body-region index of each organ's self-dose (-1: none)
    reference_mass_kg: tuple[float, ...]
    mass_scaled: tuple[bool, ...]
    volume_name: tuple[str, ...]      # organ-volume name giving the patient mass
    tumour_regions: tuple[int, ...]
    tumour_k: float                   # sphere model: S = tumour_k / mass
    lacrimal_k: float                 # local deposition: S = lacrimal_k / mass


def endpoint_organs(body_regions: tuple[str, ...], predicted: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The endpoint organs (keys of :data:`ENDPOINT_ORGANS`) a model with these body regions has.

    ``predicted``: the model's ``predicted_regions`` (a reduced model's design regions; empty:
    all); an organ whose region the model does not predict is left out (the tumour endpoint
    needs every tumour region)."""
    tumours = [r for r in body_regions if r.startswith("tumour")]

    def ok(r):
        return not predicted or r in predicted

    return tuple(o for o, (reg, _) in ENDPOINT_ORGANS.items()
                 if (reg == "tumour" and tumours and all(ok(t) for t in tumours))
                 or (reg in body_regions and ok(reg)))


@functools.lru_cache(maxsize=8)
def dose_coefficients(body_regions: tuple[str, ...], nuclide: str, sex: str,
                      predicted: tuple[str, ...] = ()) -> DoseCoefficients:
    """Coefficients from :func:`twin.dose.organ_dose` with unit TIAs (linear in the TIA).
    ``predicted``: as in :func:`endpoint_organs`."""
    from twin import dose

    table = dose.organ_s_values(sex)
    tumours = [r for r in body_regions if r.startswith("tumour")]
    sources: dict[str, list[int]] = {}
    for j, r in enumerate(body_regions):
        if r in tumours or r == "lacrimal":
            continue
        src = _MIRD_SOURCES.get(r)
        if src is None or src not in table.columns:
            src = dose.REMAINDER_SOURCE
        sources.setdefault(src, []).append(j)
    organs = list(endpoint_organs(body_regions, predicted))
    mird = [o for o in organs if o not in ("tumour", "lacrimal_glands")]
    matrix = np.zeros((len(organs), len(body_regions)))
    for src, idx in sources.items():
        unit = {s: (1.0 if s == src else 0.0) for s in sources}
        res = dose.organ_dose(unit, nuclide=nuclide, phantom=sex, targets=mird)
        for o in mird:
            for j in idx:
                matrix[organs.index(o), j] = res.dose_gy[o]
    ref = dose.reference_organ_masses_kg(sex)
    self_region, ref_mass, scaled, vol = [], [], [], []
    for o in organs:
        reg = ENDPOINT_ORGANS[o][0]
        if o in mird and o in sources and len(sources[o]) == 1:
            self_region.append(sources[o][0])
            ref_mass.append(float(ref[o]))
            scaled.append(o not in dose.NOT_MASS_SCALED)
        else:
            self_region.append(-1)
            ref_mass.append(math.nan)
            scaled.append(False)
        vol.append(reg)
    tumour_k, _ = dose.sphere_s_value(1.0, nuclide)
    lacrimal_k = dose.local_deposition_dose_gy(1.0, 1.0, nuclide)
    return DoseCoefficients(tuple(organs), matrix, tuple(self_region), tuple(ref_mass),
                            tuple(scaled), tuple(vol),
                            tuple(body_regions.index(t) for t in tumours), tumour_k, lacrimal_k)


def _refine(t, r, k: int = 8):
    """Log-linear interpolation of a sampled curve to k sub-intervals (linear where r <= 0)."""
    import jax.numpy as jnp

    f = jnp.linspace(0.0, 1.0, k + 1)[:-1]
    t0, t1, r0, r1 = t[:-1], t[1:], r[:-1], r[1:]
    tt = t0[:, None] + (t1 - t0)[:, None] * f
    pos = (r0 > 0) & (r1 > 0)
    l0 = jnp.log(jnp.where(r0 > 0, r0, 1.0))
    l1 = jnp.log(jnp.where(r1 > 0, r1, 1.0))
    rr = jnp.where(pos[:, None], jnp.exp(l0[:, None] + (l1 - l0)[:, None] * f),
                   r0[:, None] + (r1 - r0)[:, None] * f)
    return jnp.concatenate([tt.ravel(), t[-1:]]), jnp.concatenate([rr.ravel(), r[-1:]])


@functools.lru_cache(maxsize=16)
def _g_function(times: tuple[float, ...], lam_phys: float):
    """jit(vmap over patients and organs) of the cycle G-factor; one compilation per grid."""
    import jax
    import jax.numpy as jnp

    from twin import dose

    t = jnp.asarray(times)

    def one(r, repair_half_time_h):
        r = jnp.maximum(r, 0.0)
        ratio = jnp.where((r[-1] > 0) & (r[-2] > r[-1]), r[-2] / jnp.where(r[-1] > 0, r[-1], 1.0), 1.0)
        tail = jnp.maximum(jnp.log(ratio) / (t[-1] - t[-2]), lam_phys)
        tf, rf = _refine(t, r)
        g = dose.g_factor_numerical(tf, rf, repair_half_time_h, tail, substeps=4)
        return jnp.where(jnp.sum(r) > 0, g, 0.0)

    per_organ = jax.vmap(one, in_axes=(1, 0))          # curves (T, organs), trep (organs,)
    return jax.jit(jax.vmap(per_organ, in_axes=(0, None)))  # (n, T, organs) -> (n, organs)


@dataclass(frozen=True)
class CycleKinetics:
    """One cycle of every patient in a chunk (arrays with a leading patient axis)."""

    draw: dict                 # covariates, parameters, volumes from PreparedPopulation.draw
    status: np.ndarray         # 0 ok; solver codes (pbpk.STATUS_MESSAGES); -1 invalid covariates
    activity_mbq: float        # simulated activity per cycle
    ligand_nmol: float
    tia_mbq_h: np.ndarray      # (n, body regions) per cycle
    body_regions: tuple[str, ...]
    organs: tuple[str, ...]
    dose_gy: np.ndarray        # (n, organs) per cycle at activity_mbq
    g_factor: np.ndarray       # (n, organs)
    alpha_beta_gy: tuple[float, ...]


def chunk_kinetics(prep: PreparedPopulation, key: np.ndarray, ids: np.ndarray, *,
                   activity_mbq: float, ligand_nmol: float, chunk_size: int,
                   rtol: float = 1e-6, atol: float = 1e-9, reduction=None) -> CycleKinetics:
    """Simulate one cycle for patients ``ids`` (padded to ``chunk_size`` for one compiled shape).

    ``reduction``: an :class:`mbam.PBPKReduction` of the population's model; each patient's
    full-model parameters are then mapped to the reduced model
    (:meth:`mbam.PBPKReduction.map_parameters`) and the reduced model is simulated. Its body
    regions replace the full model's, and only the endpoint organs of the regions it predicts
    (its design's) are dosed."""
    from twin import dose

    ids = np.asarray(ids, np.int64)
    n = ids.size
    draw = prep.draw(key, ids)
    ref = prep.template
    params = draw["params"].copy()
    invalid = ~draw["valid"]
    if invalid.any():  # simulate the reference patient in their place; reported as status -1
        params[invalid] = np.array([ref.parameters[k] for k in prep.varying])
    size = max(int(chunk_size), n)
    if size > n:
        params = np.concatenate([params, np.repeat(params[-1:], size - n, axis=0)])
    batch = {k: params[:, j] for j, k in enumerate(prep.varying)}
    model = ref
    if reduction is not None:
        fixed = {k: v for k, v in ref.parameters.items() if k not in batch and k != DECAY_PARAMETER}
        batch = reduction.map_parameters({**fixed, **batch})
        model = reduction.model
    schedule = pbpk.Schedule.single(float(activity_mbq), ligand_nmol=float(ligand_nmol))
    res = pbpk.simulate_cohort(model, schedule, TIME_GRID_H, batch, chunk_size=size, rtol=rtol,
                               atol=atol)
    status = np.asarray(res.status)[:n].astype(np.int64)
    status[invalid] = -1
    tia = np.array(res.tia_mbq_h)[:n]
    act = np.asarray(res.activity_mbq)  # padded: one compiled shape for the G-factors too
    regions = res.regions
    body = res.body_regions
    volumes = {name: draw["volumes_l"][:, j] for j, name in enumerate(prep.volume_names)}
    female = draw["female"]
    doses = None
    for sex, mask in (("male", ~female), ("female", female)):
        if not mask.any():
            continue
        coef = dose_coefficients(body, ref.nuclide, sex, model.predicted_regions)
        if doses is None:
            doses = np.full((n, len(coef.organs)), np.nan)
            organs = coef.organs
        vol_sel = {k: v[mask] for k, v in volumes.items()}
        doses[mask] = _doses(coef, tia[mask], vol_sel, body)
    lam = float(ref.parameters["lambda_phys_per_h"])
    ab, trep, curves = [], [], []
    for o in organs:
        region, tissue = ENDPOINT_ORGANS[o]
        tp = dose.tissue_parameters(tissue)
        ab.append(tp.alpha_beta_gy)
        trep.append(tp.repair_half_time_h)
        if region == "tumour":
            curves.append(act[:, :, [i for i, r in enumerate(regions) if r.startswith("tumour")]].sum(-1))
        else:
            curves.append(act[:, :, regions.index(region)])
    g = np.array(_g_function(TIME_GRID_H, lam)(np.stack(curves, axis=-1), np.asarray(trep)))[:n]
    bad = status != 0
    doses[bad] = np.nan
    g[bad] = np.nan
    tia = tia.copy()
    tia[bad] = np.nan
    return CycleKinetics(draw=draw, status=status, activity_mbq=float(activity_mbq),
                         ligand_nmol=float(ligand_nmol), tia_mbq_h=tia, body_regions=body,
                         organs=organs, dose_gy=doses, g_factor=g, alpha_beta_gy=tuple(ab))


def _doses(coef: DoseCoefficients, tia: np.ndarray, volumes: dict, body) -> np.ndarray:
    from twin.dose import TISSUE_DENSITY_G_CM3

    d = tia @ coef.matrix.T
    for k, o in enumerate(coef.organs):
        j = coef.self_region[k]
        if j >= 0 and coef.mass_scaled[k]:
            d[:, k] += tia[:, j] * coef.matrix[k, j] * (coef.reference_mass_kg[k] / volumes[coef.volume_name[k]] - 1.0)
        elif o == "tumour":
            # tumour volumes are physical volumes: mass at the sphere model's 1.04 kg/L
            mass = TISSUE_DENSITY_G_CM3["soft"] * sum(volumes[body[t]] for t in coef.tumour_regions)
            d[:, k] = tia[:, list(coef.tumour_regions)].sum(axis=1) * coef.tumour_k / mass
        elif o == "lacrimal_glands":
            d[:, k] = tia[:, body.index("lacrimal")] * coef.lacrimal_k / volumes["lacrimal"]
    return d
