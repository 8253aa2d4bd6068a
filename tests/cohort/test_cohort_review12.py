"""Review 12 of twin.cohort: failed-patient counts, steady-state speed, seeds, the __main__ guard,
runs that fail before their first chunk, infeasible populations and sex-independent constants.

Cheap tasks (no model) for the runner; models are built with the public pbpk API, never solved.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import pytest

from twin.cohort import (
    CohortConfigError,
    EngineError,
    Fixed,
    Population,
    Uniform,
    key_data,
    load_manifest,
    prepare,
    read_results,
    run_chunks,
)


@dataclass(frozen=True)
class TwoArmTask:
    """Two rows (arms A and B) per patient with the statuses of ``STATUS[patient] = (A, B)``."""

    n_patients: int = 6
    chunk_size: int = 3
    rows_per_patient: int = 2
    fail_chunk: int = -1  # this chunk raises (a task that fails), -1: none

    @property
    def n_chunks(self):
        return math.ceil(self.n_patients / self.chunk_size)

    def rows_in_chunk(self, c):
        return 2 * min(self.chunk_size, self.n_patients - c * self.chunk_size)

    def fingerprint(self):
        return {"kind": "two-arm", "n": self.n_patients, "chunk": self.chunk_size}

    def run_chunk(self, c):
        import pyarrow as pa

        if c == self.fail_chunk:
            raise RuntimeError(f"chunk {c} failed")
        i = np.arange(c * self.chunk_size, c * self.chunk_size + self.rows_in_chunk(c) // 2)
        status = {0: (0, 0), 1: (-1, -1), 2: (0, 0), 3: (1, 0), 4: (2, 2), 5: (0, 0)}
        return pa.concat_tables([
            pa.table({"patient_id": i, "arm": [arm] * i.size,
                      "status": np.array([status[int(p)][k] for p in i], dtype=np.int64)})
            for k, arm in enumerate("AB")])


def test_failed_and_invalid_are_counted_per_patient_not_per_row(tmp_path):
    s = run_chunks(TwoArmTask(), tmp_path, workers=1, progress=False)
    rows = read_results(tmp_path)
    # by hand from the table: distinct patients with a solver status (not 0, not -1) / with -1
    failed = rows.loc[~rows.status.isin([0, -1]), "patient_id"].nunique()
    invalid = rows.loc[rows.status == -1, "patient_id"].nunique()
    assert (failed, invalid) == (2, 1)  # patients 3 (one arm) and 4 (both arms); patient 1
    assert (s.n_failed, s.n_invalid) == (failed, invalid)
    assert s.rows == 12


def test_a_run_that_fails_before_its_first_chunk_leaves_no_run_behind(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="chunk 0 failed"):
        run_chunks(TwoArmTask(fail_chunk=0), out, workers=1, progress=False)
    assert not (out / "manifest.json").exists()
    # the corrected run takes the same folder without resume
    s = run_chunks(TwoArmTask(), out, workers=1, progress=False)
    assert s.chunks_run == 2 and len(read_results(out)) == 12


def test_a_run_that_fails_after_a_chunk_keeps_it_for_resume(tmp_path):
    with pytest.raises(RuntimeError, match="chunk 1 failed"):
        run_chunks(TwoArmTask(fail_chunk=1), tmp_path, workers=1, progress=False)
    assert (tmp_path / "manifest.json").exists()
    s = run_chunks(TwoArmTask(), tmp_path, workers=1, progress=False, resume=True)
    assert (s.chunks_run, s.chunks_skipped) == (1, 1)


@pytest.mark.parametrize("chunk_size, timed", [(6, 0), (2, 2)])
def test_steady_speed_leaves_out_the_compiling_chunks(tmp_path, chunk_size, timed):
    """In this process (1 worker) the first chunk compiles; with one chunk nothing is left."""
    run_chunks(TwoArmTask(chunk_size=chunk_size), tmp_path, workers=1, progress=False)
    last = load_manifest(tmp_path)["last_run"]
    assert last["chunks_timed"] == timed
    assert (last["patients_per_cpu_s_steady"] is None) == (timed == 0)


def test_seed_range():
    assert key_data(2**63 - 1).tolist() == [2**31 - 1, 2**32 - 1]  # hi and lo 32-bit words
    for seed in (2**63, 2**64 + 1, -1):
        with pytest.raises(CohortConfigError, match=r"0 to 2\*\*63 - 1"):
            key_data(seed)


def test_run_started_while_a_spawned_worker_imports_the_script_is_refused(tmp_path, monkeypatch):
    """A script without the __main__ guard starts the run again in every spawned worker."""
    monkeypatch.setattr(multiprocessing.process.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(EngineError, match="__main__"):
        run_chunks(TwoArmTask(), tmp_path / "run", workers=1, progress=False)
    assert not (tmp_path / "run").exists()


class _BrokenPool:
    """Stands in for ProcessPoolExecutor whose workers died (as when they re-run the script)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, *args, **kwargs):
        f = concurrent.futures.Future()
        f.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
        return f


def test_broken_process_pool_names_the_main_guard_and_workers_1(tmp_path, monkeypatch):
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", _BrokenPool)
    with pytest.raises(EngineError, match=r'__name__ == "__main__".*workers=1'):
        run_chunks(TwoArmTask(), tmp_path, workers=2, progress=False)
    assert not (tmp_path / "manifest.json").exists()  # nothing computed: a rerun is accepted


def test_population_whose_centre_patient_is_infeasible_is_refused_naming_covariates():
    # 30 kg with 4 L of tumour: no tissue volume left for the rest of the body
    with pytest.raises(CohortConfigError, match=r"weight_kg = 30.*tumour_volume_l = 4"):
        Population(covariates={"weight_kg": Fixed(30.0), "tumour_volume_l": Fixed(4.0)})
    Population(covariates={"weight_kg": Fixed(30.0), "tumour_volume_l": Fixed(0.5)})  # feasible


def test_mixed_sex_population_varies_only_parameters_that_differ_between_patients():
    """Reference: the parameters that differ between pbpk models of men and women with
    different covariates (relative difference > 1e-9), plus those of the prior."""
    pop = Population.default("DOTATATE", female_fraction=0.5,
                             covariates={"tumour_volume_l": Uniform(0.01, 0.3)})
    covs = [dict(age_y=45.0, weight_kg=60.0, height_cm=160.0, egfr_ml_min_1_73m2=50.0,
                 haematocrit=0.32, tumour_volume_l=0.02),
            dict(age_y=80.0, weight_kg=110.0, height_cm=190.0, egfr_ml_min_1_73m2=110.0,
                 haematocrit=0.45, tumour_volume_l=0.25)]
    models = [pop.model(sex, **c) for sex in ("male", "female") for c in covs]
    names = list(models[0].parameters)
    values = np.array([[m.parameters[p] for p in names] for m in models])
    spread = np.abs(values - values[0]).max(axis=0) / np.abs(values[0])
    expected = {p for p, s in zip(names, spread) if s > 1e-9} | set(pop.default_prior().names)
    varying = set(prepare(pop).varying)
    assert "lambda_phys_per_h" not in varying
    assert varying == expected
