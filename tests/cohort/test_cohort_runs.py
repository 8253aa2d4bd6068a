"""Cohort runs with the real model: reproducibility, resume after SIGKILL, Dask equals local.

Every run here uses one population, one ligand amount and one chunk size, so the simulation
compiles once in this process (and once in the killed subprocess).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.cohort import Population, ResumeError, load_manifest, read_results
from twin.trial import Arm, Limit, Trial, run_trial

N, CHUNK = 12, 4
ARMS = (Arm("fixed", 7.4, 4),
        Arm("kidney BED 40", 7.4, 6, personalise="cycles", limit=Limit("kidneys", "bed", 40.0)))


def _trial(key=7):
    return Trial(ARMS, Population.default("PSMA-617"), n_patients=N, key=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    summary = run_trial(_trial(), out, chunk_size=CHUNK, workers=1, progress=False)
    return out, summary, read_results(out)


def _assert_identical(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), c  # bitwise (NaN == NaN)
        else:
            assert (x == y).all(), c


def test_reference_run_is_complete_and_sane(reference):
    out, summary, df = reference
    assert summary.rows == N * len(ARMS) and summary.n_failed == 0
    assert sorted(df["patient_id"].unique()) == list(range(N))  # no row lost or duplicated
    assert df.groupby("arm").size().to_dict() == {"fixed": N, "kidney BED 40": N}
    m = load_manifest(out)
    assert m["complete"] and m["n_chunks"] == 3
    # invariants of the personalised arm: the BED limit holds, and one more cycle would break it
    arm = df[df["arm"] == "kidney BED 40"]
    d = arm["kidneys_dose_gy_per_gbq"] * arm["activity_per_cycle_gbq"]
    per_cycle_bed = d + arm["kidneys_g_factor"] * d**2 / 2.6
    k = arm["cycles_given"]
    assert (arm["kidneys_bed_gy"] <= 40.0 * (1 + 1e-9)).all() | (k == 1).all()
    assert ((k == 6) | ((k + 1) * per_cycle_bed > 40.0)).all()
    # kidney BED sums per-cycle BEDs (complete repair between cycles, Dale's formula)
    fixed = df[df["arm"] == "fixed"]
    d = fixed["kidneys_dose_gy_per_gbq"] * 7.4
    np.testing.assert_allclose(fixed["kidneys_bed_gy"], 4 * (d + fixed["kidneys_g_factor"] * d**2 / 2.6),
                               rtol=1e-12)
    # G-factors lie between 0 and 1 and doses are positive
    assert ((df.filter(like="_g_factor") > 0) & (df.filter(like="_g_factor") < 1)).all().all()
    assert (df.filter(like="_dose_gy_per_gbq") > 0).all().all()


def test_same_key_same_rows_other_key_other_rows(reference, tmp_path):
    _, _, ref = reference
    run_trial(_trial(), tmp_path / "again", chunk_size=CHUNK, workers=1, progress=False)
    _assert_identical(ref, read_results(tmp_path / "again"))
    run_trial(_trial(key=8), tmp_path / "other", chunk_size=CHUNK, workers=1, progress=False)
    other = read_results(tmp_path / "other")
    assert not np.array_equal(other["weight_kg"], ref["weight_kg"])


def test_existing_run_needs_resume_and_same_settings(reference, tmp_path):
    out, _, ref = reference
    with pytest.raises(ResumeError, match="resume"):
        run_trial(_trial(), out, chunk_size=CHUNK, workers=1, progress=False)
    with pytest.raises(ResumeError, match="key"):
        run_trial(_trial(key=9), out, chunk_size=CHUNK, workers=1, progress=False, resume=True)
    again = run_trial(_trial(), out, chunk_size=CHUNK, workers=1, progress=False, resume=True)
    assert again.chunks_run == 0 and again.chunks_skipped == 3
    _assert_identical(ref, read_results(out))


_KILLED_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_cohort_runs import _trial, CHUNK
from twin.cohort import prepare, run_chunks
from twin.trial import TrialTask

class SlowTask(TrialTask):
    def run_chunk(self, chunk):
        table = super().run_chunk(chunk)
        if chunk > 0:
            time.sleep(60)  # never finishes: the test kills us here
        return table

t = _trial()
task = SlowTask(prepare(t.population), t.arms, t.limits, t.key, t.n_patients, CHUNK)
run_chunks(task, {out!r}, workers=1, progress=False)
"""


def test_resume_after_sigkill_gives_identical_rows(reference, tmp_path):
    _, _, ref = reference
    out = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN.format(tests=str(Path(__file__).parent), out=str(out))))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "parts").glob("part-*.parquet")):
            if proc.poll() is not None:
                pytest.fail("the run ended before it was killed:\n" + proc.stdout.read().decode())
            if time.monotonic() > deadline:
                pytest.fail("no chunk was written within 300 s")
            time.sleep(0.2)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 mid-run
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    parts = sorted(p.name for p in (out / "parts").glob("part-*.parquet"))
    assert 1 <= len(parts) < 3
    assert not load_manifest(out)["complete"]
    with pytest.raises(ResumeError, match="resume the run"):
        read_results(out)
    # a write interrupted before its rename leaves only a temporary file: it must be ignored
    (out / "parts" / ".part-000002.parquet.deadbeef.tmp").write_bytes(b"half a parquet file")
    summary = run_trial(_trial(), out, chunk_size=CHUNK, workers=1, progress=False, resume=True)
    assert summary.chunks_skipped == len(parts) and summary.chunks_run == 3 - len(parts)
    assert not list((out / "parts").glob("*.tmp"))
    _assert_identical(ref, read_results(out))


def test_dask_local_cluster_equals_local_run(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, _, ref = reference
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        summary = run_trial(_trial(), tmp_path / "dask", chunk_size=CHUNK, engine="dask",
                            scheduler=client, progress=False)
    assert summary.engine == "dask" and summary.chunks_run == 3
    _assert_identical(ref, read_results(tmp_path / "dask"))
