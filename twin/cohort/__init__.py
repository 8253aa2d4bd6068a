"""twin.cohort: virtual populations and the chunked cohort runner.

Quick start::

    from twin.cohort import Population, run_cohort, read_results

    if __name__ == "__main__":     # needed in a script: the worker processes import it again
        pop = Population.default("PSMA-617")            # covariates + prior, see Population
        pop.sample(key=0, n=5)                          # look at five virtual patients
        summary = run_cohort("out/cohort", 2000, population=pop, activity_gbq=7.4, cycles=6, key=0)
        rows = read_results("out/cohort")               # one row per patient (pandas)

From 500 patients left to compute on, or with ``workers`` > 1, the local engine runs
chunks in worker processes started with ``spawn``, which import the calling script again: keep
the run under ``if __name__ == "__main__":`` (not needed in notebooks or the ``twin`` command),
or pass ``workers=1``.

Runs are written as parquet chunk by chunk (atomic writes) with a ``manifest.json``; an
interrupted run resumes with ``resume=True`` (``twin cohort --resume``) and gives the same rows,
bit for bit, as an uninterrupted one. ``engine="local"`` uses a process pool over the CPU
cores; ``engine="dask"`` runs the chunks on a ``distributed`` cluster (see docs/cluster.md).
"""

from __future__ import annotations

from twin.cohort._errors import CohortConfigError, CohortError, EngineError, ResumeError
from twin.cohort._kinetics import ENDPOINT_ORGANS, TIME_GRID_H
from twin.cohort._population import (
    COVARIATES,
    MAX_ATTEMPTS,
    Fixed,
    LogNormalDist,
    Normal,
    Population,
    Uniform,
    key_data,
    prepare,
)
from twin.cohort._runner import (
    ENGINES,
    RunSummary,
    iter_results,
    load_manifest,
    read_results,
    run_chunks,
)

__all__ = [
    "COVARIATES", "ENDPOINT_ORGANS", "ENGINES", "MAX_ATTEMPTS", "TIME_GRID_H", "CohortConfigError",
    "CohortError", "EngineError", "Fixed", "LogNormalDist", "Normal", "Population", "ResumeError",
    "RunSummary", "Uniform", "iter_results", "key_data", "load_manifest", "prepare", "read_results",
    "run_chunks", "run_cohort",
]


def run_cohort(out_dir, n_patients, **kwargs):
    """Simulate a cohort under one fixed schedule: one row per patient in ``out_dir``.

    Keyword arguments: ``population`` (default ``Population()``), ``activity_gbq`` (7.4),
    ``cycles`` (1), ``interval_weeks`` (6), ``ligand_nmol``, ``key`` (0), ``chunk_size`` (128),
    ``engine`` ("local" or "dask"), ``workers``, ``scheduler``, ``resume``, ``progress``.
    Rows hold the covariates, ``status``, the per-cycle TIA (MBq h) of every body region,
    per-GBq doses, G-factors, cumulative doses and BEDs and the limit flags. Full description:
    :func:`twin.trial.run_cohort`.
    """
    from twin.trial._trial import run_cohort as _run

    return _run(out_dir, n_patients, **kwargs)
