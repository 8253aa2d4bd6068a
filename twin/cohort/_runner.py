"""The chunked cohort runner: parquet chunk by chunk, a manifest, resume, local or Dask engines.

A *task* cuts a run into numbered chunks; chunk ``c`` is a pure function of the task and ``c``
(its randomness derives from the task's key and the patient numbers, never from run order).
Each chunk is written by whoever computed it to ``parts/part-{c:06d}.parquet`` through a
temporary file in the same folder and ``os.replace``, so a part file is either complete or
absent, also after ``kill -9``. ``manifest.json`` records what the run is (the task's
fingerprint); which chunks are done is read from the part files themselves. Resuming runs the
missing chunks only. At most ``2 x workers`` chunks are in flight, so memory does not grow
with the cohort size.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from twin.cohort._errors import CohortConfigError, EngineError, ResumeError

__all__ = [
    "ENGINES",
    "ChunkTask",
    "RunSummary",
    "check_run_folder",
    "iter_results",
    "load_manifest",
    "read_results",
    "run_chunks",
]

log = logging.getLogger("twin.cohort")

ENGINES = ("local", "dask")
MANIFEST = "manifest.json"
PARTS = "parts"
FORMAT = "twin-cohort/1"
_PART = re.compile(r"^part-(\d{6})\.parquet$")
#: Below this many patients to compute, the local engine runs in this process by default: a
#: second worker process compiles the model again (tens of CPU seconds), which pays only when
#: there is more work than that to share.
SMALL_RUN_PATIENTS = 500


class ChunkTask(Protocol):
    """What :func:`run_chunks` runs (picklable; a pure function of the chunk number)."""

    n_patients: int
    chunk_size: int

    @property
    def n_chunks(self) -> int: ...

    def fingerprint(self) -> dict: ...

    def rows_in_chunk(self, chunk: int) -> int: ...

    def run_chunk(self, chunk: int): ...  # -> pyarrow.Table


@dataclass(frozen=True)
class RunSummary:
    """What a run did.

    ``n_failed``, ``n_invalid`` and ``patients_per_s`` count only the patients computed in this
    call. ``n_failed``: patients with a failed solve (a ``status`` other than 0 and -1 in any of
    their rows, a trial having one row per patient and arm); ``n_invalid``: patients whose
    covariates gave no valid parameter set (``status`` -1; not simulated).
    """

    out_dir: Path
    n_patients: int
    n_chunks: int
    chunks_run: int
    chunks_skipped: int
    rows: int
    n_failed: int
    wall_s: float
    patients_per_s: float
    engine: str
    workers: int
    n_invalid: int = 0


def _part_path(out: Path, chunk: int) -> Path:
    return out / PARTS / f"part-{chunk:06d}.parquet"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_part(table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


#: ``status`` of a patient whose covariates gave no valid parameter set (not simulated).
STATUS_INVALID = -1


def _failed_patients(table) -> tuple[int, int]:
    """(patients with a failed solve, patients with invalid covariates) of one chunk's rows.

    Patients are told apart by ``patient_id`` (a trial has one row per patient and arm); a
    table without it counts rows."""
    if "status" not in table.column_names:
        return 0, 0
    import numpy as np

    status = np.asarray(table["status"].to_numpy(zero_copy_only=False))
    ids = (np.asarray(table["patient_id"].to_numpy(zero_copy_only=False))
           if "patient_id" in table.column_names else np.arange(status.size))
    failed = (status != 0) & (status != STATUS_INVALID)
    return int(np.unique(ids[failed]).size), int(np.unique(ids[status == STATUS_INVALID]).size)


def run_one_chunk(task: ChunkTask, chunk: int, out_dir: str) -> tuple[int, int, int, int, float, float]:
    """Compute chunk ``chunk`` and write its part file.

    Returns (chunk, rows, patients with a failed solve, patients with invalid covariates, wall
    seconds, CPU seconds of this process).
    """
    t0 = time.perf_counter()
    c0 = time.process_time()
    table = task.run_chunk(chunk)
    expected = task.rows_in_chunk(chunk)
    if table.num_rows != expected:
        raise EngineError(f"chunk {chunk} produced {table.num_rows} rows, expected {expected}.")
    _write_part(table, _part_path(Path(out_dir), chunk))
    failed, invalid = _failed_patients(table)
    return chunk, table.num_rows, failed, invalid, time.perf_counter() - t0, time.process_time() - c0


def load_manifest(out_dir: str | os.PathLike) -> dict:
    """The manifest of a run folder (``ResumeError`` if there is none or it is unreadable)."""
    path = Path(out_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResumeError(f"{out_dir} holds no cohort run (no {MANIFEST}).") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ResumeError(f"{path} could not be read ({exc}); the folder is not a usable run.") from None
    if data.get("format") != FORMAT:
        raise ResumeError(f"{path} is not a twin cohort manifest (format {data.get('format')!r}).")
    return data


def _write_manifest(out: Path, data: dict) -> None:
    _atomic_write_bytes(out / MANIFEST, json.dumps(data, indent=1, sort_keys=True).encode())


def _done_chunks(task: ChunkTask, out: Path) -> set[int]:
    import pyarrow.parquet as pq

    done = set()
    parts = out / PARTS
    for p in parts.iterdir():
        if p.name.endswith(".tmp"):  # an interrupted write: never renamed, never counted
            p.unlink(missing_ok=True)
            continue
        m = _PART.match(p.name)
        if not m:
            continue
        c = int(m.group(1))
        try:
            ok = c < task.n_chunks and pq.read_metadata(p).num_rows == task.rows_in_chunk(c)
        except Exception:  # noqa: BLE001 - any unreadable part is recomputed
            ok = False
        if ok:
            done.add(c)
        else:
            log.warning("removing part %s (unreadable or wrong size); it will be recomputed", p.name)
            p.unlink(missing_ok=True)
    return done


_ABSENT = object()


def _show(value) -> str:
    if value is _ABSENT:
        return "absent"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 48 else text[:45] + "..."


def _diff(run, now, prefix: str = "") -> list[str]:
    """Where two fingerprints differ: ``dotted.key[index]: <run value> in the run, <value> now``.

    Nested tables are followed down to the differing leaves; lists are compared item by item,
    and the items one of them has beyond the other's length are named.
    """
    if isinstance(run, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(run) | set(now), key=str):
            out += _diff(run.get(k, _ABSENT), now.get(k, _ABSENT), f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(run, list) and isinstance(now, list):
        out = []
        for i, (x, y) in enumerate(zip(run, now)):
            out += _diff(x, y, f"{prefix}[{i}]")
        for i in range(len(now), len(run)):
            out.append(f"{prefix}[{i}]: {_show(run[i])} in the run, absent now")
        for i in range(len(run), len(now)):
            out.append(f"{prefix}[{i}]: absent in the run, {_show(now[i])} now")
        return out
    if run == now:
        return []
    return [f"{prefix or 'the run'}: {_show(run)} in the run, {_show(now)} now"]


#: Files that operating systems and tools put in any folder; they do not make it "used".
_OS_FILES = frozenset({"Thumbs.db", "desktop.ini", "Icon\r"})


def _ignorable(name: str) -> bool:
    # hidden files (.DS_Store, .gitkeep, and the manifest's own .manifest.json.<id>.tmp left by a
    # start killed while writing it) and the files operating systems add to every folder
    return name.startswith(".") or name in _OS_FILES


def check_run_folder(out_dir: str | os.PathLike) -> Path:
    """Check that ``out_dir`` can take a run before anything is computed or written.

    Accepted: a missing folder, an empty one, one holding only an empty ``parts`` folder (a
    start interrupted before its manifest) and a previous run (with ``manifest.json``; whether
    it may be resumed is checked by :func:`run_chunks`). A folder holding anything else, a
    path that is a file and a ``parts`` folder with files but no manifest are refused with
    :class:`ResumeError`, and nothing in them is touched.
    """
    out = Path(out_dir)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ResumeError(f"{str(parent)!r} exists and is not a folder; choose another output folder.")
    if not out.exists() or (out / MANIFEST).exists():
        return out
    other = sorted(p.name for p in out.iterdir()
                   if not _ignorable(p.name) and (p.name != PARTS or not p.is_dir()))
    if other:
        shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        raise ResumeError(f"{str(out)!r} holds files that are not a cohort run ({shown}); choose a new "
                          "or empty output folder (or the folder of a previous run, with resume).")
    if (out / PARTS).is_dir() and any((out / PARTS).iterdir()):
        raise ResumeError(f"{out}/{PARTS} holds files but no {MANIFEST}; choose an empty folder.")
    return out


def run_chunks(task: ChunkTask, out_dir: str | os.PathLike, *, engine: str = "local",
               workers: int | None = None, scheduler=None, resume: bool = False,
               progress: bool = True) -> RunSummary:
    """Run every chunk of ``task`` not yet in ``out_dir``; see the module docstring.

    engine: ``"local"`` (a process pool of ``workers`` processes, default one per CPU core, or
        this process alone when fewer than ``SMALL_RUN_PATIENTS`` patients are left to compute;
        ``workers=1`` always runs in this process) or ``"dask"`` (``scheduler``: a
        ``distributed.Client`` or a scheduler address such as ``"tcp://10.0.0.1:8786"``).
    resume: continue a run in ``out_dir`` (same fingerprint required); without it the folder
        must not hold a run. A folder holding files that are not a run is always refused
        (:func:`check_run_folder`).
    """
    if engine not in ENGINES:
        raise CohortConfigError(f"engine {engine!r} is not known; use one of {', '.join(ENGINES)}.")
    if engine == "dask" and scheduler is None:
        raise CohortConfigError("engine 'dask' needs a scheduler: a distributed.Client or its "
                                "address (e.g. 'tcp://127.0.0.1:8786').")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise CohortConfigError(f"workers = {workers!r} must be a positive integer.")
    _refuse_in_starting_worker()
    out = check_run_folder(out_dir)
    fingerprint = json.loads(json.dumps(task.fingerprint()))
    if (out / MANIFEST).exists():
        manifest = load_manifest(out)
        if not resume:
            raise ResumeError(
                f"{out} already holds a cohort run; resume it (resume=True, --resume) or choose an "
                "empty folder.")
        if manifest["fingerprint"] != fingerprint:
            diffs = _diff(manifest["fingerprint"], fingerprint)
            shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
            raise ResumeError(
                f"{out} holds a different run ({shown}); resume with the run's settings or choose "
                "another folder.")
    new_run = not (out / MANIFEST).exists()
    if new_run:
        (out / PARTS).mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "fingerprint": fingerprint, "n_patients": task.n_patients,
                    "chunk_size": task.chunk_size, "n_chunks": task.n_chunks, "complete": False,
                    "created_utc": _now()}
        _write_manifest(out, manifest)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    done = _done_chunks(task, out)
    todo = [c for c in range(task.n_chunks) if c not in done]
    log.info("%d of %d chunks done; running %d", len(done), task.n_chunks, len(todo))
    from tqdm.auto import tqdm

    bar = tqdm(total=task.n_patients, initial=sum(task.rows_in_chunk(c) for c in done) // _rows_per_patient(task),
               unit="patient", desc=str(getattr(task, "name", "cohort")), disable=not progress, leave=False)
    t0 = time.perf_counter()
    n_failed = n_invalid = 0
    patients_run = 0
    timings = []  # (patients, wall s, cpu s) per chunk

    def finished(result):
        nonlocal n_failed, n_invalid, patients_run
        _, rows, failed, invalid, wall_s, cpu_s = result
        n_failed += failed
        n_invalid += invalid
        k = rows // _rows_per_patient(task)
        patients_run += k
        timings.append((k, wall_s, cpu_s))
        bar.update(k)

    try:
        if not todo:
            nw = 0
        elif engine == "dask":
            nw = _run_dask(task, todo, out, scheduler, finished)
        else:
            pending = sum(task.rows_in_chunk(c) for c in todo) // _rows_per_patient(task)
            default = 1 if pending < SMALL_RUN_PATIENTS else (os.cpu_count() or 1)
            nw = min(workers or default, len(todo))
            if nw <= 1:
                for c in todo:
                    finished(run_one_chunk(task, c, str(out)))
            else:
                _run_pool(task, todo, out, nw, finished)
    except BaseException:
        if new_run and not timings:
            _forget_new_run(out)  # nothing computed: leave no run behind to block a corrected rerun
        raise
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    rows = sum(task.rows_in_chunk(c) for c in range(task.n_chunks))
    manifest = {**manifest, "complete": True, "completed_utc": _now(), "rows": rows,
                "last_run": {"engine": engine, "workers": nw, "chunks_run": len(todo),
                             "wall_s": round(wall, 3),
                             "patients_per_s": round(patients_run / wall, 3) if wall > 0 and todo else None,
                             **_chunk_stats(timings, nw)}}
    _write_manifest(out, manifest)
    return RunSummary(out, task.n_patients, task.n_chunks, len(todo), len(done), rows, n_failed, wall,
                      patients_run / wall if wall > 0 and todo else 0.0, engine, nw, n_invalid)


def _forget_new_run(out: Path) -> None:
    """Remove the manifest (and the empty ``parts`` folder) of a run started by this call that
    failed before any chunk was written, so the same folder takes the next run; a run with
    part files is kept for ``resume``."""
    parts = out / PARTS
    try:
        if parts.is_dir() and any(_PART.match(p.name) for p in parts.iterdir()):
            return
        (out / MANIFEST).unlink(missing_ok=True)
        for p in parts.iterdir() if parts.is_dir() else ():
            if p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
        if parts.is_dir() and not any(parts.iterdir()):
            parts.rmdir()
    except OSError:  # pragma: no cover - best effort; the original error is what matters
        log.warning("could not remove the manifest of the failed run in %s", out)


def _chunk_stats(timings, nw) -> dict:
    """Per-chunk costs after compilation: the first ``nw`` chunks finished include each worker's
    compilation and are left out; with no more chunks than that, there is no steady-state
    figure (``chunks_timed`` 0, the per-patient figures None)."""
    if not timings:
        return {}
    steady = timings[nw:]
    if not steady:
        return {"chunks_timed": 0, "median_chunk_cpu_s_per_patient": None,
                "median_chunk_wall_s_per_patient": None, "patients_per_cpu_s_steady": None,
                "first_chunk_wall_s": timings[0][1]}
    cpu = sorted(t[2] / max(t[0], 1) for t in steady)
    wall = sorted(t[1] / max(t[0], 1) for t in steady)
    return {"chunks_timed": len(steady),
            "median_chunk_cpu_s_per_patient": cpu[len(cpu) // 2],
            "median_chunk_wall_s_per_patient": wall[len(wall) // 2],
            "patients_per_cpu_s_steady": 1.0 / cpu[len(cpu) // 2] if cpu[len(cpu) // 2] > 0 else None,
            "first_chunk_wall_s": timings[0][1]}


_MAIN_GUARD_HINT = (
    "The local engine starts its worker processes with 'spawn': each one imports the script that "
    "started the run again, so a script must start the run under `if __name__ == \"__main__\":` "
    "(see the twin.cohort quick start), or run in this process with workers=1 (twin cohort/trial: "
    "--workers 1).")


def _refuse_in_starting_worker() -> None:
    """Refuse a run started while a spawned worker process imports the main script (a script
    without the ``__main__`` guard), before that copy writes anything."""
    import multiprocessing as mp

    if getattr(mp.process.current_process(), "_inheriting", False):
        raise EngineError("a cohort run was started while a worker process was starting (the script "
                          "that started the run is being imported again in the worker). " + _MAIN_GUARD_HINT)


def _rows_per_patient(task) -> int:
    return getattr(task, "rows_per_patient", 1)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _run_pool(task, todo, out: Path, nw: int, finished) -> None:
    import concurrent.futures as cf
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    pending = list(todo)
    try:
        with cf.ProcessPoolExecutor(max_workers=nw, mp_context=mp.get_context("spawn")) as pool:
            running = set()
            try:
                while pending or running:
                    while pending and len(running) < 2 * nw:
                        running.add(pool.submit(run_one_chunk, task, pending.pop(0), str(out)))
                    done, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for f in done:
                        finished(f.result())
            except BaseException:
                for f in running:
                    f.cancel()
                raise
    except BrokenProcessPool:
        raise EngineError(
            f"a worker process of the local engine ({nw} workers) stopped before its chunk was "
            "finished. " + _MAIN_GUARD_HINT + " A worker may also have been killed, e.g. for lack "
            "of memory: use fewer workers or a smaller chunk_size. Finished chunks are kept; "
            "continue with resume=True (--resume).") from None


def _run_dask(task, todo, out: Path, scheduler, finished) -> int:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - dask is a declared dependency
        raise EngineError("engine 'dask' needs dask[distributed]; pip install 'dask[distributed]'.") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, set_as_default=False) if own else scheduler
    except (OSError, TimeoutError, ValueError) as exc:
        raise EngineError(f"could not connect to the Dask scheduler {scheduler!r}: {exc}") from None
    try:
        nw = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values()))
        remote_task = client.scatter(task, broadcast=True)
        pending = list(todo)
        ac = as_completed()
        for _ in range(min(len(pending), 2 * nw)):
            ac.add(client.submit(run_one_chunk, remote_task, pending.pop(0), str(out), pure=False))
        for fut in ac:
            finished(fut.result())
            fut.release()
            if pending:
                ac.add(client.submit(run_one_chunk, remote_task, pending.pop(0), str(out), pure=False))
        return nw
    finally:
        if own:
            client.close()


def _parts(out_dir, allow_incomplete: bool) -> list[Path]:
    out = Path(out_dir)
    manifest = load_manifest(out)
    parts = sorted(p for p in (out / PARTS).iterdir() if _PART.match(p.name))
    n = manifest["n_chunks"]
    if not allow_incomplete and len(parts) != n:
        raise ResumeError(f"{out} holds {len(parts)} of {n} chunks; resume the run first "
                          "(or pass allow_incomplete=True).")
    return parts


def iter_results(out_dir: str | os.PathLike, columns: list[str] | None = None, *,
                 allow_incomplete: bool = False) -> Iterator:
    """Chunk by chunk (pandas DataFrames, in chunk order): memory of one chunk at a time."""
    import pyarrow.parquet as pq

    for p in _parts(out_dir, allow_incomplete):
        yield pq.read_table(p, columns=columns).to_pandas()


def read_results(out_dir: str | os.PathLike, columns: list[str] | None = None, *,
                 allow_incomplete: bool = False):
    """All rows of a run as one pandas DataFrame (select ``columns`` for large runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, columns=columns) for p in _parts(out_dir, allow_incomplete)]
    return pa.concat_tables(tables).to_pandas()

