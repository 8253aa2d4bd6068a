"""The ``twin cohort`` and ``twin trial`` sub-commands.

Exit codes: 0 success, 1 bad input or a failed run (a plain-words message on stderr, no
traceback), 2 usage errors (argparse), 130 interrupted (resume with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys

from twin._cli_types import positive_float as _positive_float
from twin._cli_types import positive_int as _positive_int

_EPILOG_COHORT = """examples:
  twin cohort --n 2000 --out out/cohort
  twin cohort --n 100000 --agent PSMA-617 --activity-gbq 7.4 --cycles 6 --chunk-size 128 --out out/big
  twin cohort --n 100000 --out out/big --resume            # continue after an interruption
                                                           # (other settings from the run)
  twin cohort --n 1000000 --engine dask --scheduler-address tcp://10.0.0.1:8786 --out /shared/run1
"""

_EPILOG_TRIAL = """examples:
  twin trial twin/trial/data/psma_kidney_limit.toml --out out/trial
  twin trial my_trial.toml --out out/trial --resume         # --n/--chunk-size come from the run
writes summary.csv, exceedance.csv and trial.png next to the parquet parts.
"""


#: ``twin cohort`` options that define the run (its fingerprint): with ``--resume``, those not
#: given on the command line are taken from the run being resumed.
_RUN_OPTIONS = ("n", "agent", "activity_gbq", "cycles", "interval_weeks", "ligand_nmol",
                "female_fraction", "seed", "chunk_size")


class _Given(argparse.Action):
    """Store the value and remember that the option was given (``args.given``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = frozenset(getattr(namespace, "given", frozenset())) | {self.dest}


def _engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--chunk-size", type=_positive_int, default=None, action=_Given,
                   help="patients per chunk (one parquet part each; default 128)")
    g.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="local: a process pool on this machine (default); dask: a Dask cluster")
    g.add_argument("--workers", type=_positive_int, default=None,
                   help="local engine: worker processes (default: one per CPU core)")
    g.add_argument("--scheduler-address", default=None,
                   help="dask engine: scheduler address, e.g. tcp://10.0.0.1:8786")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (same settings required; twin cohort "
                        "takes the settings not given from the run)")
    g.add_argument("--no-progress", dest="no_progress", action="store_true",
                   help="no progress bar (the summary is still printed)")
    g.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar and no summary, as the other commands (errors and warnings "
                        "still go to stderr)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cohort`` and ``trial`` sub-commands to the ``twin`` parser."""
    c = subparsers.add_parser(
        "cohort", help="simulate a virtual cohort under one schedule (parquet output)",
        description="Simulate a virtual population (covariates + prior) under one fixed schedule: "
                    "per patient TIA per region, organ and tumour doses, BED and limit flags, "
                    "written as parquet chunk by chunk with a manifest; resumable.",
        epilog=_EPILOG_COHORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--n", type=_positive_int, default=1000, action=_Given,
                   help="number of patients (default 1000)")
    c.add_argument("--agent", default="PSMA-617", action=_Given,
                   help="therapy ligand: PSMA-617, PSMA-I&T, DOTATATE, DOTATOC (default PSMA-617)")
    c.add_argument("--activity-gbq", type=_positive_float, default=7.4, action=_Given,
                   help="activity per cycle, GBq (7.4)")
    c.add_argument("--cycles", type=_positive_int, default=1, action=_Given,
                   help="number of cycles (1)")
    c.add_argument("--interval-weeks", type=_positive_float, default=6.0, action=_Given,
                   help="weeks between cycles (6)")
    c.add_argument("--ligand-nmol", type=_positive_float, default=None, action=_Given,
                   help="ligand per cycle, nmol (default: from the ligand's molar activity)")
    c.add_argument("--female-fraction", type=float, default=0.0, action=_Given,
                   help="fraction of women (SSTR agents only; default 0)")
    c.add_argument("--seed", type=int, default=0, action=_Given,
                   help="random seed of the population (0)")
    c.add_argument("--out", default="out/cohort", help="output folder (default out/cohort)")
    c.add_argument("--reduced", default=None, metavar="FILE",
                   help="simulate this MBAM-reduced model (twin reduce --out FILE) instead of the full "
                        "one; only the organs of its design's regions are dosed")
    _engine_args(c)
    c.set_defaults(func=_cohort)

    t = subparsers.add_parser(
        "trial", help="run a virtual trial from a TOML configuration",
        description="Run a virtual trial (population, arms, limits) described in a TOML file; "
                    "write the per-patient rows (parquet), summary tables (CSV) and plots (PNG).",
        epilog=_EPILOG_TRIAL, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", help="trial configuration (TOML)")
    t.add_argument("--out", default="out/trial", help="output folder (default out/trial)")
    t.add_argument("--n", type=_positive_int, default=None, help="override [trial] n_patients")
    t.add_argument("--reduced", default=None, metavar="FILE",
                   help="simulate this MBAM-reduced model (twin reduce --out FILE) instead of the full one")
    _engine_args(t)
    t.set_defaults(func=_trial)


def _fail(message: str) -> int:
    print(f"twin: error: {message}", file=sys.stderr)
    return 1


def _run_guarded(fn) -> int:
    import pbpk

    try:
        return fn()
    except KeyboardInterrupt:
        print("twin: interrupted; finished chunks are kept, continue with --resume", file=sys.stderr)
        return 130
    except pbpk.PBPKError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})".strip())


def _engine_kwargs(args) -> dict:
    from twin.cohort import CohortConfigError

    if args.engine == "dask" and not args.scheduler_address:
        raise CohortConfigError("--engine dask needs --scheduler-address (e.g. tcp://10.0.0.1:8786).")
    if args.engine == "local" and args.scheduler_address:
        raise CohortConfigError("--scheduler-address is only used with --engine dask.")
    return {"engine": args.engine, "workers": args.workers, "scheduler": args.scheduler_address,
            "resume": args.resume, "progress": not (args.no_progress or args.quiet)}


def _rate(x: float) -> str:
    """A speed with 3 significant figures, without an exponent: 0.0123, 4.56, 789, 12,345."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _patients(n: int) -> str:
    return f"{n} patient" + ("" if n == 1 else "s")


def _report(summary) -> None:
    failed = f"{_patients(summary.n_failed)} with a failed solve"
    invalid = getattr(summary, "n_invalid", 0)
    if invalid:
        failed += f", {_patients(invalid)} with covariates outside the model (status -1, not simulated)"
    if summary.chunks_skipped:
        failed += " in the chunks run now"
    print(f"{summary.n_patients} patients in {summary.n_chunks} chunks: {summary.chunks_run} run now, "
          f"{summary.chunks_skipped} already done; {failed}")
    if summary.chunks_run:
        print(f"wall time {summary.wall_s:.1f} s, {_rate(summary.patients_per_s)} patients/s "
              f"({summary.engine}, {summary.workers} worker(s); includes start-up and compilation)")
        from twin.cohort import load_manifest

        last = load_manifest(summary.out_dir).get("last_run", {})
        if last.get("patients_per_cpu_s_steady") and last.get("chunks_timed"):
            print(f"after compilation: {_rate(last['patients_per_cpu_s_steady'])} patients per CPU-second "
                  f"(median over {last['chunks_timed']} chunks)")
    print(f"results: {summary.out_dir}/parts/*.parquet, manifest: {summary.out_dir}/manifest.json")


def _seed_of(key) -> int | list:
    """The integer seed whose key is ``key`` (the manifest's two words), else ``key`` itself."""
    from twin.cohort import key_data

    try:
        seed = (int(key[0]) << 32) + int(key[1])
        if [int(k) for k in key_data(seed)] == [int(k) for k in key]:
            return seed
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    return key


def _settings_of_run(args: argparse.Namespace) -> list[str]:
    """With ``--resume``, set the run-defining options not given on the command line to those
    of the cohort run in ``--out``; returns them as ``--option value`` (those that changed)."""
    from pathlib import Path

    from twin.cohort import load_manifest

    if not args.resume or not (Path(args.out) / "manifest.json").exists():
        return []
    fp = load_manifest(args.out).get("fingerprint", {})
    arms = fp.get("arms")
    if (fp.get("kind") != "trial/1" or fp.get("name") != "cohort" or not isinstance(arms, list)
            or len(arms) != 1):
        return []  # not a `twin cohort` run: run_cohort refuses it, naming the differences
    pop, arm = fp.get("population") or {}, arms[0]
    from_run = {"n": fp.get("n_patients"), "agent": pop.get("agent"),
                "activity_gbq": arm.get("activity_gbq"), "cycles": arm.get("cycles"),
                "interval_weeks": arm.get("interval_weeks"), "ligand_nmol": arm.get("ligand_nmol"),
                "female_fraction": pop.get("female_fraction"), "seed": _seed_of(fp.get("key")),
                "chunk_size": fp.get("chunk_size")}
    given = getattr(args, "given", frozenset())
    taken = []
    for dest in _RUN_OPTIONS:
        value = from_run[dest]
        if dest in given or (value is None and dest != "ligand_nmol") or getattr(args, dest) == value:
            continue
        setattr(args, dest, value)
        shown = "from the ligand" if value is None else (f"{value:g}" if isinstance(value, float) else value)
        taken.append(f"--{dest.replace('_', '-')} {shown}")
    return taken


def _trial_settings_of_run(args: argparse.Namespace, cfg) -> tuple[int, int, list[str]]:
    """``(n_patients, chunk_size, taken)`` for ``twin trial``: the command line's, else, with
    ``--resume`` of a run of the same trial, the run's (the TOML defines everything else, so a
    run made with ``--n 500`` resumes without repeating it), else the TOML's."""
    from pathlib import Path

    from twin.cohort import load_manifest

    n = cfg.trial.n_patients if args.n is None else args.n
    chunk = cfg.chunk_size if args.chunk_size is None else args.chunk_size
    if not args.resume or not (Path(args.out) / "manifest.json").exists():
        return n, chunk, []
    fp = load_manifest(args.out).get("fingerprint", {})
    if fp.get("kind") != "trial/1" or fp.get("name") != cfg.trial.name:
        return n, chunk, []  # another run: run_trial refuses it, naming the differences
    taken = []
    run_n, run_chunk = fp.get("n_patients"), fp.get("chunk_size")
    if args.n is None and isinstance(run_n, int) and run_n > 0 and run_n != n:
        n = run_n
        taken.append(f"--n {n}")
    if args.chunk_size is None and isinstance(run_chunk, int) and run_chunk > 0 and run_chunk != chunk:
        chunk = run_chunk
        taken.append(f"--chunk-size {chunk}")
    return n, chunk, taken


def _cohort(args: argparse.Namespace) -> int:
    def go():
        from twin.cohort import Population, run_cohort

        taken = _settings_of_run(args)
        if taken and not args.quiet:
            print(f"resuming {args.out} with the run's settings: {', '.join(taken)}")
        pop = Population(agent=args.agent, female_fraction=args.female_fraction)
        summary = run_cohort(args.out, args.n, population=pop, activity_gbq=args.activity_gbq,
                             cycles=args.cycles, interval_weeks=args.interval_weeks,
                             ligand_nmol=args.ligand_nmol, key=args.seed,
                             chunk_size=args.chunk_size or 128, reduction=args.reduced,
                             **_engine_kwargs(args))
        if not args.quiet:
            _report(summary)
        return 0

    return _run_guarded(go)


def _trial(args: argparse.Namespace) -> int:
    def go():
        import dataclasses

        from twin.trial import load_trial_config, run_trial, write_trial_report

        cfg = load_trial_config(args.config)
        n, chunk, taken = _trial_settings_of_run(args, cfg)
        if taken and not args.quiet:
            print(f"resuming {args.out} with the run's settings: {', '.join(taken)}")
        trial = cfg.trial if args.reduced is None else cfg.with_reduction(args.reduced)
        trial = trial if n == trial.n_patients else dataclasses.replace(trial, n_patients=n)
        summary = run_trial(trial, args.out, chunk_size=chunk, **_engine_kwargs(args))
        if not args.quiet:
            _report(summary)
        paths = write_trial_report(args.out)
        if not args.quiet:
            print("wrote " + ", ".join(str(p) for p in paths.values()))
        return 0

    return _run_guarded(go)
