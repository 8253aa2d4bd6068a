"""The generic chunk runner with a cheap deterministic task (no model): engines, manifest, reading."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from twin.cohort import (
    CohortConfigError,
    ResumeError,
    iter_results,
    load_manifest,
    read_results,
    run_chunks,
)


@dataclass(frozen=True)
class SquaresTask:
    """Row i holds i and i**2 (an analytic reference for every row)."""

    n_patients: int = 50
    chunk_size: int = 8
    salt: int = 0

    @property
    def n_chunks(self):
        return math.ceil(self.n_patients / self.chunk_size)

    def rows_in_chunk(self, c):
        return min(self.chunk_size, self.n_patients - c * self.chunk_size)

    def fingerprint(self):
        return {"kind": "squares", "n": self.n_patients, "chunk": self.chunk_size, "salt": self.salt}

    def run_chunk(self, c):
        import pyarrow as pa

        i = np.arange(c * self.chunk_size, c * self.chunk_size + self.rows_in_chunk(c))
        return pa.table({"patient_id": i, "square": (i**2).astype(float), "status": np.zeros(i.size, int)})


def _check(out, n):
    df = read_results(out)
    assert df["patient_id"].tolist() == list(range(n))
    assert np.array_equal(df["square"].to_numpy(), np.arange(n, dtype=float) ** 2)


def test_in_process_run_writes_parts_and_manifest(tmp_path):
    s = run_chunks(SquaresTask(), tmp_path, workers=1, progress=False)
    assert (s.chunks_run, s.rows, s.n_failed) == (7, 50, 0)
    _check(tmp_path, 50)
    m = load_manifest(tmp_path)
    assert m["complete"] and m["n_chunks"] == 7 and m["fingerprint"]["kind"] == "squares"
    assert json.loads((tmp_path / "manifest.json").read_text())["rows"] == 50
    sizes = [len(part) for part in iter_results(tmp_path)]
    assert sizes == [8] * 6 + [2]


def test_process_pool_of_two_workers(tmp_path):
    s = run_chunks(SquaresTask(n_patients=40, chunk_size=10), tmp_path, workers=2, progress=False)
    assert s.workers == 2 and s.chunks_run == 4
    _check(tmp_path, 40)


def test_resume_runs_only_missing_chunks(tmp_path):
    run_chunks(SquaresTask(), tmp_path, workers=1, progress=False)
    for c in (2, 5):
        (tmp_path / "parts" / f"part-{c:06d}.parquet").unlink()
    (tmp_path / "parts" / "part-000003.parquet").write_bytes(b"corrupt")  # not a parquet file
    s = run_chunks(SquaresTask(), tmp_path, workers=1, progress=False, resume=True)
    assert s.chunks_run == 3 and s.chunks_skipped == 4
    _check(tmp_path, 50)


def test_folder_errors(tmp_path):
    run_chunks(SquaresTask(), tmp_path / "a", workers=1, progress=False)
    with pytest.raises(ResumeError, match="already holds"):
        run_chunks(SquaresTask(), tmp_path / "a", workers=1, progress=False)
    with pytest.raises(ResumeError, match="salt"):
        run_chunks(SquaresTask(salt=1), tmp_path / "a", workers=1, progress=False, resume=True)
    (tmp_path / "b" / "parts").mkdir(parents=True)
    (tmp_path / "b" / "parts" / "stray.txt").write_text("x")
    with pytest.raises(ResumeError, match="no manifest"):
        run_chunks(SquaresTask(), tmp_path / "b", workers=1, progress=False)
    with pytest.raises(ResumeError, match="no cohort run"):
        read_results(tmp_path / "nothing")


def test_bad_engine_settings(tmp_path):
    with pytest.raises(CohortConfigError, match="engine"):
        run_chunks(SquaresTask(), tmp_path, engine="spark", progress=False)
    with pytest.raises(CohortConfigError, match="scheduler"):
        run_chunks(SquaresTask(), tmp_path, engine="dask", progress=False)
    with pytest.raises(CohortConfigError, match="workers"):
        run_chunks(SquaresTask(), tmp_path, workers=0, progress=False)


def test_folder_with_other_files_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for resume in (False, True):
        with pytest.raises(ResumeError, match=r"not a cohort run \(notes\.txt\)"):
            run_chunks(SquaresTask(), out, workers=1, progress=False, resume=resume)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written
    assert (out / "notes.txt").read_text() == "my notes"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ResumeError, match="not a folder"):
        run_chunks(SquaresTask(), a_file, workers=1, progress=False)


def test_missing_empty_and_bare_parts_folders_are_accepted(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bare" / "parts").mkdir(parents=True)  # a start interrupted before the manifest
    # files every OS or tool puts in folders, and the temporary manifest of a killed first write
    (tmp_path / "osfiles").mkdir()
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini", ".gitkeep", ".manifest.json.0a1b.tmp"):
        (tmp_path / "osfiles" / junk).write_text("x")
    for name in ("missing", "empty", "bare", "osfiles"):
        s = run_chunks(SquaresTask(n_patients=10, chunk_size=5), tmp_path / name, workers=1, progress=False)
        assert s.chunks_run == 2
        _check(tmp_path / name, 10)


def test_different_run_message_names_nested_keys_with_both_values(tmp_path):
    from twin.cohort._runner import _diff

    run = {"arms": [{"name": "s", "cycles": 6}], "key": [0, 0], "n": 5}
    now = {"arms": [{"name": "s", "cycles": 1}], "key": [0, 0], "n": 5, "extra": True}
    assert _diff(run, now) == ["arms[0].cycles: 6 in the run, 1 now", "extra: absent in the run, true now"]
    assert _diff({"a": [1, 2]}, {"a": [1]}) == ["a[1]: 2 in the run, absent now"]
    assert _diff({"a": [1]}, {"a": [1, 3]}) == ["a[1]: absent in the run, 3 now"]
    run_chunks(SquaresTask(), tmp_path, workers=1, progress=False)
    with pytest.raises(ResumeError, match="salt: 0 in the run, 1 now"):
        run_chunks(SquaresTask(salt=1), tmp_path, workers=1, progress=False, resume=True)


@dataclass(frozen=True)
class NamedSquaresTask(SquaresTask):
    name: str = "my trial"


def test_progress_bar_is_labelled_with_the_task_name(tmp_path, capsys):
    """A trial's progress bar says the trial's name (it said "cohort" for every run)."""
    run_chunks(NamedSquaresTask(n_patients=8), tmp_path / "a", workers=1, progress=True)
    assert "my trial" in capsys.readouterr().err
    run_chunks(SquaresTask(n_patients=8), tmp_path / "b", workers=1, progress=True)
    assert "cohort" in capsys.readouterr().err
