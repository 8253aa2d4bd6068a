"""Virtual trials: a population, arms and limits, run chunk by chunk by the cohort runner."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pathlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pbpk
from twin.cohort._errors import CohortConfigError
from twin.cohort._kinetics import TIME_GRID_H, chunk_kinetics, endpoint_organs
from twin.cohort._population import COVARIATES, Population, PreparedPopulation, key_data, prepare
from twin.cohort._runner import RunSummary, check_run_folder, run_chunks
from twin.trial._arms import Arm, Limit, default_limits, evaluate_arm

__all__ = ["Trial", "TrialTask", "check_ligand_amounts", "check_limit_organs", "check_reduction",
           "model_organs", "run_trial", "simulated_activity_mbq"]

_MAX_PATIENTS = 10**9


@dataclass(frozen=True)
class Trial:
    """A virtual trial: arms given to every patient of a population (a crossover in silico).

    Parameters
    ----------
    arms: the arms (:class:`Arm`), unique names.
    population: the virtual population (:class:`twin.cohort.Population`).
    n_patients: number of virtual patients (each gets every arm).
    key: integer seed or ``jax.random`` key; the same key gives the same patients and results.
    limits: organ-at-risk limits reported as fractions exceeding (default: ``twin.dose``'s
        shipped limits without risk factors: kidneys 23 Gy, kidney BED 40 Gy, red marrow 2 Gy,
        salivary glands 25 Gy; those on organs the model lacks are left out, e.g. the salivary
        glands of the SSTR models). Given limits, and those of the arms, must name organs of
        the population's model (:func:`model_organs`); ``CohortConfigError`` otherwise.
    name: a label for tables and plots.
    reduction: an MBAM reduction of the population's model (:class:`mbam.PBPKReduction` or the
        path of its JSON file, e.g. from ``twin reduce``): every patient's parameters are mapped
        to the reduced model, which is simulated instead of the full one. Only the endpoint
        organs of its design's regions are reported (the PSMA-617 design has no red marrow:
        reduce with ``red_marrow`` in the design's regions for it); a default limit on another
        organ is left out with a warning, a given one is refused. ``None`` (default): the full
        model.
    """

    arms: tuple[Arm, ...]
    population: Population = field(default_factory=Population)
    n_patients: int = 1000
    key: object = 0
    limits: tuple[Limit, ...] | None = None
    name: str = "virtual trial"
    reduction: Any = None

    def __post_init__(self):
        arms = tuple(self.arms) if isinstance(self.arms, (list, tuple)) else (self.arms,)
        if not arms or not all(isinstance(a, Arm) for a in arms):
            raise CohortConfigError("a trial needs one or more arms (twin.trial.Arm).")
        names = [a.name for a in arms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise CohortConfigError(f"arm names must be unique; repeated: {', '.join(dup)}.")
        object.__setattr__(self, "arms", arms)
        if not isinstance(self.population, Population):
            raise CohortConfigError("population must be a twin.cohort.Population.")
        n = self.n_patients
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= _MAX_PATIENTS:
            raise CohortConfigError(f"n_patients = {n!r} must be a whole number from 1 to {_MAX_PATIENTS}.")
        object.__setattr__(self, "n_patients", int(n))
        object.__setattr__(self, "key", tuple(int(k) for k in key_data(self.key)))
        reduction = check_reduction(self.population, self.reduction)
        object.__setattr__(self, "reduction", reduction)
        if self.limits is None:  # the shipped limits on the organs this model has
            organs = model_organs(self.population, reduction)
            limits = tuple(lim for lim in default_limits() if lim.organ in organs)
            if reduction is not None:
                full = model_organs(self.population)
                left = [str(lim) for lim in default_limits() if lim.organ in full and lim.organ not in organs]
                if left:
                    warnings.warn(
                        f"the reduced model does not predict the organ(s) of the default limit(s) "
                        f"{'; '.join(left)} (outside its design's regions "
                        f"{', '.join(reduction.model.predicted_regions)}); they are left out. Reduce with "
                        "those regions in the design for them.", pbpk.UnpredictedRegionWarning, stacklevel=3)
        else:
            limits = tuple(self.limits)
        if not all(isinstance(lim, Limit) for lim in limits):
            raise CohortConfigError("limits must be twin.trial.Limit objects.")
        check_limit_organs(self.population, arms, limits, reduction)
        check_ligand_amounts(self.population, arms)
        object.__setattr__(self, "limits", limits)


def model_organs(population: Population, reduction=None) -> tuple[str, ...]:
    """The endpoint organs of the population's model, or of its reduced model (those of its
    design's regions): the organs limits may name."""
    if reduction is not None:
        m = reduction.model
        return endpoint_organs(m.graph.body_regions, m.predicted_regions)
    return endpoint_organs(population.reference_model().graph.body_regions)


def check_limit_organs(population: Population, arms=(), limits=(), reduction=None) -> None:
    """Refuse a limit (of the trial or of an arm) on an organ the population's model lacks."""
    organs = model_organs(population, reduction)
    what = f"reduced {population.agent} model" if reduction is not None else f"{population.agent} model"
    named = [(f"arm {a.name!r}: ", a.limit) for a in arms if a.limit is not None]
    named += [(f"limit #{i + 1}: " if len(limits) > 1 else "", lim) for i, lim in enumerate(limits)]
    for where, lim in named:
        if lim.organ not in organs:
            raise CohortConfigError(
                f"{where}the {what} has no {lim.organ} (limit {lim}); limits may name "
                f"its organs: {', '.join(organs)}.")


def check_reduction(population: Population, reduction):
    """The :class:`mbam.PBPKReduction` a trial runs (loaded from a path), checked against the
    population's model: the reduction must have been made from a model with the same graph,
    parameters and nuclide (its parameter values may differ: each patient's are mapped)."""
    if reduction is None:
        return None
    import mbam

    if isinstance(reduction, (str, os.PathLike)):
        reduction = mbam.load_reduced(pathlib.Path(reduction))
    if not isinstance(reduction, mbam.PBPKReduction):
        raise CohortConfigError(
            f"reduction must be an mbam.PBPKReduction or the path of its JSON file (twin reduce "
            f"--out FILE), got {type(reduction).__name__}.")
    ref, full = population.reference_model(), reduction.full_model
    differ = [w for w, bad in (("graphs", full.graph != ref.graph), ("nuclides", full.nuclide != ref.nuclide))
              if bad]
    if differ:
        raise CohortConfigError(
            f"the reduction was made from {full.name!r} ({full.nuclide}, "
            f"{len(full.parameter_names)} parameters), which is not the {population.agent} "
            f"population's model {ref.name!r} ({ref.nuclide}, {len(ref.parameter_names)} parameters; "
            f"{' and '.join(differ)} differ): reduce the population's model (twin reduce --agent "
            f"{population.agent}) or use the population the reduction was made for.")
    return reduction


@functools.lru_cache(maxsize=2)
def _reduction_from_json(text: str):
    import mbam

    return mbam.load_reduced(text)


def _carrier_free_mbq_per_nmol(population: Population) -> tuple[str, float]:
    """The population's nuclide and its carrier-free molar activity (MBq/nmol)."""
    nuclide = pbpk.get_nuclide(population.nuclide or pbpk.get_ligand(population.agent).default_nuclide)
    return nuclide.name, float(nuclide.carrier_free_mbq_per_nmol)


def check_ligand_amounts(population: Population, arms=()) -> None:
    """Refuse an arm whose ``ligand_nmol`` is less than the labelled ligand its activity needs
    (the check of ``pbpk.Administration``: activity / carrier-free molar activity)."""
    nuclide, acf = _carrier_free_mbq_per_nmol(population)
    for arm in arms:
        if arm.ligand_nmol is None:
            continue
        hot = arm.activity_gbq * 1000.0 / acf
        if arm.ligand_nmol < hot * (1 - 1e-12):
            what = "maximum activity" if arm.personalise == "activity" else "activity"
            raise CohortConfigError(
                f"arm {arm.name!r}: ligand_nmol = {arm.ligand_nmol:g} nmol per cycle is less than the "
                f"{hot:.4g} nmol of labelled ligand that its {what} of {arm.activity_gbq:g} GBq "
                f"{nuclide} needs (carrier-free molar activity {acf:.4g} MBq/nmol); give ligand_nmol "
                f">= {hot:.4g}, leave it out (the ligand's default molar activity) or lower activity_gbq.")


def _ligand_nmol(arm: Arm, population: Population) -> float:
    if arm.ligand_nmol is not None:
        return arm.ligand_nmol
    lig = pbpk.get_ligand(population.agent)
    return arm.activity_gbq * 1000.0 / lig.molar_activity_mbq_per_nmol


#: Activity (MBq) of the simulated cycle; results are per GBq (linear at a fixed ligand amount).
_SIM_ACTIVITY_MBQ = 1000.0


def simulated_activity_mbq(ligand_nmol: float, carrier_free_mbq_per_nmol: float) -> float:
    """The activity one cycle is simulated at: 1000 MBq, or half the carrier-free activity of the
    ligand amount where that is less (a small ligand amount cannot carry 1000 MBq)."""
    return min(_SIM_ACTIVITY_MBQ, 0.5 * float(ligand_nmol) * float(carrier_free_mbq_per_nmol))


@dataclass(frozen=True)
class TrialTask:
    """One trial as chunks for :func:`twin.cohort.run_chunks` (picklable, pure per chunk)."""

    prepared: PreparedPopulation
    arms: tuple[Arm, ...]
    limits: tuple[Limit, ...]
    key: tuple[int, int]
    n_patients: int
    chunk_size: int
    include_tia: bool = False
    rtol: float = 1e-6
    atol: float = 1e-9
    name: str = "virtual trial"
    #: the MBAM reduction as JSON text (picklable, for the workers); "" for the full model
    reduction_json: str = ""

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_patients / self.chunk_size)

    @property
    def rows_per_patient(self) -> int:
        return len(self.arms)

    def rows_in_chunk(self, chunk: int) -> int:
        start = chunk * self.chunk_size
        return (min(start + self.chunk_size, self.n_patients) - start) * len(self.arms)

    def fingerprint(self) -> dict:
        return {
            "kind": "trial/1",
            "name": self.name,
            "population": self.prepared.population.to_dict(),
            "arms": [a.to_dict() for a in self.arms],
            "limits": [{"organ": x.organ, "quantity": x.quantity, "limit_gy": x.limit_gy} for x in self.limits],
            "key": list(self.key),
            "n_patients": self.n_patients,
            "chunk_size": self.chunk_size,
            "include_tia": self.include_tia,
            "rtol": self.rtol,
            "atol": self.atol,
            "time_grid_h": list(TIME_GRID_H),
            # only with a reduction, so that runs of the full model made before it resume
            **({"reduction_sha256": hashlib.sha256(self.reduction_json.encode("utf-8")).hexdigest()}
               if self.reduction_json else {}),
        }

    def run_chunk(self, chunk: int):
        import pyarrow as pa

        if not 0 <= chunk < self.n_chunks:
            raise CohortConfigError(f"chunk {chunk} is outside 0..{self.n_chunks - 1}.")
        start = chunk * self.chunk_size
        ids = np.arange(start, min(start + self.chunk_size, self.n_patients), dtype=np.int64)
        pop = self.prepared.population
        kin = {}
        acf = self.prepared.template.carrier_free_mbq_per_nmol
        extra = {"reduction": _reduction_from_json(self.reduction_json)} if self.reduction_json else {}
        for nmol in sorted({_ligand_nmol(a, pop) for a in self.arms}):
            kin[nmol] = chunk_kinetics(self.prepared, np.asarray(self.key, np.uint32), ids,
                                       activity_mbq=simulated_activity_mbq(nmol, acf), ligand_nmol=nmol,
                                       chunk_size=self.chunk_size, rtol=self.rtol, atol=self.atol, **extra)
        parts = []
        for arm in self.arms:
            k = kin[_ligand_nmol(arm, pop)]
            per_gbq = 1000.0 / k.activity_mbq  # doses and TIA scale linearly with the activity
            d = k.draw
            cols: dict[str, np.ndarray] = {
                "patient_id": ids,
                "arm": np.full(ids.size, arm.name, dtype=object),
                "status": k.status,
                "sex": np.where(d["female"], "female", "male").astype(object),
            }
            for c in COVARIATES:
                cols[c] = d[c]
            cols["gfr_ml_min"] = d["gfr_ml_min"]
            cols["ligand_nmol_per_cycle"] = np.full(ids.size, k.ligand_nmol)
            dose_per_gbq = k.dose_gy * per_gbq
            for j, o in enumerate(k.organs):
                cols[f"{o}_dose_gy_per_gbq"] = dose_per_gbq[:, j]
                cols[f"{o}_g_factor"] = k.g_factor[:, j]
            ends = evaluate_arm(arm, k.organs, dose_per_gbq, k.g_factor, k.alpha_beta_gy, self.limits)
            cols.update(ends)
            if self.include_tia:
                a = ends["activity_per_cycle_gbq"]
                for j, r in enumerate(k.body_regions):
                    # a reduced model's regions outside its design carry unchecked activity
                    if "reduction" in extra and not extra["reduction"].model.predicts(r):
                        continue
                    cols[f"tia_{r}_mbq_h_per_cycle"] = k.tia_mbq_h[:, j] * per_gbq * a
            parts.append(pa.table({c: pa.array(v) for c, v in cols.items()}))
        return pa.concat_tables(parts)


def run_trial(trial: Trial, out_dir: str | os.PathLike, *, chunk_size: int = 128,
              engine: str = "local", workers: int | None = None, scheduler=None,
              resume: bool = False, progress: bool = True, include_tia: bool = False,
              rtol: float = 1e-6) -> RunSummary:
    """Run a trial into ``out_dir`` (parquet parts + manifest); see :func:`twin.cohort.run_chunks`.

    Every patient gets every arm; one row per patient and arm. Read the rows with
    :func:`twin.cohort.read_results` and summarise with :func:`twin.trial.summarise`.
    """
    if not isinstance(trial, Trial):
        raise CohortConfigError("run_trial needs a twin.trial.Trial.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or not 1 <= chunk_size <= 100_000:
        raise CohortConfigError(f"chunk_size = {chunk_size!r} must be a whole number from 1 to 100000.")
    if not (isinstance(rtol, float) and 1e-12 <= rtol <= 1e-3):
        raise CohortConfigError(f"rtol = {rtol!r} must be a float between 1e-12 and 1e-3.")
    check_run_folder(out_dir)  # refuse a folder of other files before the population is prepared
    reduction_json = "" if trial.reduction is None else trial.reduction.to_json()
    task = TrialTask(prepare(trial.population), trial.arms, trial.limits, trial.key, trial.n_patients,
                     int(chunk_size), bool(include_tia), rtol, 1e-9, trial.name, reduction_json)
    return run_chunks(task, out_dir, engine=engine, workers=workers, scheduler=scheduler,
                      resume=resume, progress=progress)


def run_cohort(out_dir: str | os.PathLike, n_patients: int, *, population: Population | None = None,
               activity_gbq: float = 7.4, cycles: int = 1, interval_weeks: float = 6.0,
               ligand_nmol: float | None = None, key=0, chunk_size: int = 128,
               engine: str = "local", workers: int | None = None, scheduler=None,
               resume: bool = False, progress: bool = True, reduction=None) -> RunSummary:
    """Simulate a cohort under one fixed schedule: per patient TIA per region, doses and BED.

    One row per patient with the covariates, ``status``, per-cycle TIA (MBq h) of every body
    region (with ``reduction``: of every region the reduced model predicts), per-GBq doses, G-factors and the cumulative doses, BEDs and limit flags of
    ``cycles`` x ``activity_gbq``. A given ``ligand_nmol`` must hold at least the labelled
    ligand of ``activity_gbq`` (7.4 GBq of carrier-free 177Lu: 10.2 nmol; ``CohortConfigError``
    otherwise). ``reduction``: simulate an MBAM-reduced model (see :class:`Trial`). See
    :func:`run_trial` for the engine arguments.
    """
    arm = Arm("schedule", activity_gbq=activity_gbq, cycles=cycles, interval_weeks=interval_weeks,
              ligand_nmol=ligand_nmol)
    trial = Trial((arm,), population or Population(), n_patients, key, name="cohort", reduction=reduction)
    return run_trial(trial, out_dir, chunk_size=chunk_size, engine=engine, workers=workers,
                     scheduler=scheduler, resume=resume, progress=progress, include_tia=True)
