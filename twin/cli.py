"""The ``twin`` command line: demo, plan, phantom (and cohort, trial, reduce when installed).

Exit codes: 0 success, 1 bad input or a failed computation (the message on stderr, in plain
words, without a traceback), 2 usage errors (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from twin._cli_types import positive_float as _positive_float
from twin._cli_types import positive_int as _positive_int

log = logging.getLogger("twin")




def _probability(text: str) -> float:
    v = _positive_float(text)
    if not v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1 (e.g. 0.95)")
    return v


def _print_summary(pred, esc, report_dir) -> None:
    import pandas as pd

    table = pred.dose_table()
    cols = [c for c in table.columns if c.startswith("dose_q") or c in ("dose_median_gy_per_gbq",)]
    cols += [c for c in table.columns if c.startswith("bed_q50")]
    regions = [r for r in ("kidney", "salivary", "lacrimal", "red_marrow", "liver", "spleen")
               if r in table.index] + [r for r in table.index if r.startswith("tumour")]
    with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 140):
        adm = pred.schedule.administrations
        every = (f" every {(adm[1].time_h - adm[0].time_h) / 168.0:g} weeks" if len(adm) > 1 else "")
        print(f"Predicted doses, {pred.schedule.total_activity_mbq / 1000:g} GBq in "
              f"{len(adm)} cycle(s){every} ({pred.n_draws} posterior draws; Gy, "
              "Gy per GBq administered, BED summed over cycles):")
        print(table.loc[regions, cols].to_string())
        if esc is not None:
            print(f"\nPersonalised activity: {esc.activity_gbq_per_cycle:.2f} GBq per cycle x {esc.n_cycles} = "
                  f"{esc.cumulative_activity_gbq:.1f} GBq ({esc.ligand}); binding limit: {esc.binding} "
                  f"with probability {esc.probability:g}"
                  + (" (upper search bound reached)" if esc.at_upper_bound else ""))
            if esc.activity_mc_interval_gbq is not None:
                lo, hi = esc.activity_mc_interval_gbq
                print(f"Monte Carlo 95 % interval of the activity per cycle from {esc.n_draws} posterior draws: "
                      f"{lo:.2f}-{hi:.2f} GBq (--draws narrows it)")
            print(f"Fixed protocol {esc.fixed_activity_gbq:g} GBq x {esc.fixed_n_cycles}: the limits allow "
                  f"{esc.fixed_cycles_allowed} of its cycles.")
            print(esc.summary().T.to_string())
    print(f"\nreport written to {report_dir}")


# ---------------------------------------------------------------------------- commands
def _too_few_draws(args) -> str | None:
    """Why the escalation's probability statement cannot be made with these options (None: it can)."""
    from twin._scenarios import min_draws

    need = min_draws(args.probability)
    if args.method == "map":
        return (f"--method map gives one posterior draw (the MAP point estimate), too few for a limit that "
                f"holds with probability {args.probability:g}")
    if args.draws < need:
        return (f"--draws {args.draws} is too few for a limit that holds with probability "
                f"{args.probability:g} (at least {need})")
    return None


def _warn_missing_draws(n_got: int, args) -> None:
    if args.method != "map" and n_got < args.draws:
        warnings.warn(f"the posterior holds {n_got} draws; --draws {args.draws} asked for more (the results "
                      f"use {n_got})", stacklevel=2)


def _demo(args: argparse.Namespace) -> int:
    from twin._demo import run_demo
    from twin._errors import TwinInputError
    from twin._scenarios import min_draws

    why = _too_few_draws(args)
    if why:  # the demo always escalates: refuse before the work
        raise TwinInputError(f"{why}; the demo plans the activity at that probability: use --method laplace "
                             f"(default), laplace_is, svi or nuts, and --draws >= {min_draws(args.probability)} "
                             "(400 by default).")
    out = run_demo(args.out, activity_gbq=args.activity_gbq, n_cycles=args.cycles, n_draws=args.draws,
                   n_voxel_draws=args.voxel_draws, probability=args.probability, method=args.method,
                   progress=not args.quiet)
    pred = out["prediction"]
    _warn_missing_draws(pred.n_draws + pred.n_failed, args)
    if not args.quiet:
        _print_summary(out["prediction"], out["escalation"], out["report_dir"])
        total = sum(out["timings_s"].values())
        print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in out["timings_s"].items())
              + f"; total {total:.1f}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from twin import patient
    from twin._errors import InfeasibleError
    from twin._scenarios import TooFewDrawsError, max_activity
    from twin._twin import Twin, therapy_schedule
    from twin.report import check_report_folder, write_report

    pets = args.pet
    hours = args.hours
    if len(hours) != len(pets):
        raise _UsageError(f"give one --hours per --pet image ({len(pets)} image(s), {len(hours)} time(s)).")
    check_report_folder(args.out)  # refuse a folder holding other files before any work
    # the schedule's own checks (an activity in MBq typed as GBq ...) before the calibration; the
    # number of cycles and the interval may still follow the therapy agent's label
    therapy_schedule(args.activity_gbq, args.cycles or 1, interval_weeks=args.interval_weeks or 6.0,
                     ligand_nmol=args.ligand_nmol)
    escalate = not args.no_escalation
    if args.method == "map":  # one line, before the work
        warnings.warn("--method map gives one posterior draw (the MAP point estimate): the doses carry no "
                      "posterior uncertainty and --draws is ignored"
                      + (f"; escalation skipped, a limit cannot hold with probability {args.probability:g} on "
                         "one draw (use --method laplace, laplace_is, svi or nuts)" if escalate else ""),
                      stacklevel=2)
        escalate = False
    why = _too_few_draws(args) if escalate else None
    if why:
        warnings.warn(f"{why}: escalation skipped, the report has the fixed protocol only (give more --draws, "
                      "or --no-escalation)", stacklevel=2)
        escalate = False
    from twin.patient._io import ACTIVITY_UNITS

    unit = {u.lower(): u for u in ACTIVITY_UNITS}.get(args.unit.strip().lower(), args.unit)
    p = patient.load_patient(pets if len(pets) > 1 else pets[0], nuclide=args.nuclide, masks=args.masks,
                             label_table=args.label_table, ct=args.ct, labs=args.labs,
                             hours_after_injection=hours if len(hours) > 1 else hours[0], unit=unit,
                             injected_activity_mbq=args.injected_mbq, resample=args.resample,
                             decay_corrected=args.decay_corrected)
    steps = 5 if escalate else 4
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="twin plan", unit="stage")
    try:
        # as many posterior draws as --draws asks for (400 at least, as the API's default)
        tw = Twin.from_patient(p, imaging_agent=args.agent, therapy_agent=args.therapy, method=args.method,
                               fwhm_mm=args.fwhm_mm, num_samples=max(400, args.draws))
        bar and bar.update(1)
        # the labelled protocol of the therapy agent unless given: 177Lu-PSMA-617 6 x every 6 weeks
        # (VISION), 177Lu-DOTATATE 4 x every 8 weeks (NETTER-1)
        sstr = tw.therapy_model.ligand in ("DOTATATE", "DOTATOC")
        if args.cycles is None:
            args.cycles = 4 if sstr else 6
        if args.interval_weeks is None:
            args.interval_weeks = 8.0 if sstr else 6.0
        sched = therapy_schedule(args.activity_gbq, args.cycles, interval_weeks=args.interval_weeks,
                                 ligand_nmol=args.ligand_nmol)
        pred = tw.predict(sched, n_draws=args.draws)
        _warn_missing_draws(pred.n_draws + pred.n_failed, args)
        bar and bar.update(1)
        esc = None
        if escalate:
            try:
                esc = max_activity(tw, probability=args.probability, n_cycles=args.cycles,
                                   interval_weeks=args.interval_weeks, ligand_nmol=args.ligand_nmol,
                                   fixed_activity_gbq=args.activity_gbq, fixed_n_cycles=args.cycles,
                                   n_draws=args.draws)
            except InfeasibleError as exc:
                warnings.warn(f"no activity per cycle meets the limits: {getattr(exc, 'reason', exc)}; report "
                              f"written without escalation (fewer --cycles may allow one; --no-escalation "
                              "skips the search)", stacklevel=2)
            except TooFewDrawsError as exc:
                warnings.warn(f"escalation skipped: {exc}", stacklevel=2)
            bar and bar.update(1)
        vox = None if args.no_voxel else pred.voxel_dose(n_draws=args.voxel_draws)
        bar and bar.update(1)
        report_dir = Path(args.out)
        write_report(report_dir, pred, escalation=esc, voxel=vox, probability=args.probability,
                     title=f"{tw.therapy_model.ligand} {args.activity_gbq:g} GBq x {args.cycles}",
                     extra={"pet": [str(x) for x in pets], "hours_after_injection": hours})
        bar and bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        _print_summary(pred, esc, report_dir)
    return 0


_PHANTOM_OPTIONS = {"seed": 0, "agent": "PSMA-11", "times": [1.0], "tumours": 2, "spacing_mm": 4.0,
                    "heterogeneity": 0.0}


def _phantom(args: argparse.Namespace) -> int:
    from twin import patient

    given = [k for k in _PHANTOM_OPTIONS if getattr(args, k) is not None]
    if args.default and given:
        raise _UsageError(f"--default writes the embedded patient of `twin demo`; it takes no "
                          f"{', '.join('--' + k.replace('_', '-') for k in given)} (drop --default to "
                          "generate a patient from them).")
    for k, v in _PHANTOM_OPTIONS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.default:
        ph = patient.default_patient(args.modality)
    else:
        _check_phantom_modality(args.agent, args.modality)
        ph = patient.make_phantom(args.seed, agent=args.agent, modality=args.modality, times_h=tuple(args.times),
                                  n_tumours=args.tumours, spacing_mm=args.spacing_mm,
                                  heterogeneity=args.heterogeneity)
    files = ph.write(args.out, overwrite=args.overwrite)
    if not args.quiet:
        print(f"virtual patient written to {args.out}:")
        for name, path in files.items():
            print(f"  {name:>14}: {path}")
    return 0


def _check_phantom_modality(agent: str, modality: str) -> None:
    """PET images a positron emitter, SPECT a single-photon one (e.g. PSMA-617 with 177Lu)."""
    import pbpk
    from twin.patient._phantom import AGENTS

    if agent not in AGENTS:
        return  # make_phantom names the known agents
    nuclide = pbpk.get_nuclide(pbpk.get_ligand(AGENTS[agent][1]).default_nuclide)
    positron = nuclide.energy_per_decay_mev.get("beta_plus", 0.0) > 0
    if (modality == "PET") != positron:
        other = "SPECT" if positron is False else "PET"
        kind = "a positron emitter" if positron else "not a positron emitter"
        raise _UsageError(f"--agent {agent} is labelled with {nuclide.name}, {kind}: it is imaged with "
                          f"{other}, not {modality} (--modality {other}, or a {modality} agent such as "
                          f"{'PSMA-11' if modality == 'PET' else 'PSMA-617'}).")


class _UsageError(Exception):
    """A combination of arguments argparse cannot check."""


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twin", description="Theranostic digital twin: calibrate on a pre-therapy PET, predict "
                                 "radioligand therapy doses, plan activities, run virtual trials.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar and no summary (warnings are still printed, one line each)")
    common.add_argument("--draws", type=_positive_int, default=400,
                        help="posterior draws simulated for the prediction (default 400; for the demo patient "
                             "the planned activity's Monte Carlo 95 %% interval is about +/-13 %% at 400 draws, "
                             "twice that at 100; the escalation needs at least 20 at --probability 0.95, "
                             "max(20, ceil(1/(1-p))) in general)")
    common.add_argument("--voxel-draws", type=_positive_int, default=16,
                        help="draws for the voxel dose quantile maps and DVH bands (default 16)")
    common.add_argument("--probability", type=_probability, default=0.95,
                        help="probability with which every organ-at-risk limit must hold (default 0.95)")
    common.add_argument("--method", choices=("laplace", "laplace_is", "map", "svi", "nuts"), default="laplace",
                        help="calibration method (default laplace: fast; laplace_is corrects it by "
                             "importance sampling; map is the point estimate, one draw without "
                             "uncertainty: `plan` then skips the escalation with a warning and `demo` "
                             "refuses it)")

    demo = sub.add_parser("demo", parents=[common], help="embedded virtual patient end to end -> report folder",
                          description="68Ga-PSMA-11 PET of the embedded virtual patient -> calibration -> "
                                      "177Lu-PSMA-617 prediction -> escalation -> OUT/report.")
    demo.add_argument("--out", default="out", help="output folder; the report goes to OUT/report (default out)")
    demo.add_argument("--activity-gbq", type=_positive_float, default=7.4,
                      help="activity per cycle of the fixed protocol, GBq (default 7.4)")
    demo.add_argument("--cycles", type=_positive_int, default=6, help="number of cycles (default 6)")
    demo.set_defaults(func=_demo)

    plan = sub.add_parser("plan", parents=[common], help="a patient's PET, masks and labs -> report folder",
                          description="Calibrate a twin on a patient's pre-therapy PET (one or more time points), "
                                      "masks with a label table, CT and labs, predict a therapy schedule and "
                                      "write the report.")
    plan.add_argument("--pet", action="append", required=True,
                      help="PET image (NIfTI, NRRD, MHA or a DICOM folder); repeat for several time points")
    plan.add_argument("--hours", action="append", type=_positive_float, required=True,
                      help="scan time after injection in hours, one per --pet")
    plan.add_argument("--nuclide", default="Ga-68", help="PET nuclide (default Ga-68)")
    plan.add_argument("--unit", default="Bq/mL", help="PET unit: Bq/mL, kBq/mL, MBq/mL or SUV, in any case "
                      "(default Bq/mL)")
    plan.add_argument("--decay-corrected", action="store_true",
                      help="the PET values are decay-corrected to the injection time (DICOM "
                           "DecayCorrection ADMIN); default: activity at the scan time (DICOM START)")
    plan.add_argument("--injected-mbq", type=_positive_float, required=True, help="injected PET activity, MBq")
    plan.add_argument("--masks", required=True, help="label image of organs and lesions (tumour1, tumour2, ...)")
    plan.add_argument("--label-table", required=True, help="CSV label,name for the mask labels")
    plan.add_argument("--ct", help="CT image (HU) on the PET grid, for the dose map's density")
    plan.add_argument("--labs", required=True, help="labs CSV (sex, age_y, weight_kg, height_cm, creatinine ...)")
    plan.add_argument("--resample", action="store_true", help="resample masks and CT to the PET grid")
    plan.add_argument("--agent", default=None, help="imaging agent (default from the nuclide: PSMA-11 for Ga-68)")
    plan.add_argument("--therapy", default=None, help="therapy agent (default PSMA-617, DOTATATE for SSTR)")
    plan.add_argument("--fwhm-mm", type=_positive_float, default=5.0, help="PET resolution for partial-volume "
                      "recovery of small structures (default 5 mm)")
    plan.add_argument("--activity-gbq", type=_positive_float, default=7.4, help="activity per cycle, GBq (default 7.4)")
    plan.add_argument("--cycles", type=_positive_int, default=None,
                      help="number of cycles (default: the agent's label, 6 for PSMA-617, 4 for DOTATATE)")
    plan.add_argument("--interval-weeks", type=_positive_float, default=None,
                      help="weeks between cycles (default: 6 for PSMA-617, 8 for DOTATATE)")
    plan.add_argument("--ligand-nmol", type=_positive_float, default=None,
                      help="ligand per cycle, nmol (default: the agent's molar activity)")
    plan.add_argument("--no-escalation", action="store_true",
                      help="skip the personalised-activity search (skipped anyway, with a warning, with "
                           "--method map, too few --draws, or when no activity meets the limits)")
    plan.add_argument("--no-voxel", action="store_true", help="skip the voxel dose map and DVHs")
    plan.add_argument("--out", required=True, help="report folder")
    plan.set_defaults(func=_plan)

    ph = sub.add_parser("phantom", help="write a virtual patient (CT, masks, PET, labs, ground truth)",
                        description="Write a virtual patient to a folder: ct, labels (+ label_table.csv), "
                                    "pet_<t>h images, labs.csv and ground_truth.json.")
    ph.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    ph.add_argument("--default", action="store_true",
                    help="the embedded default patient of `twin demo` (only --modality may be combined "
                         "with it; the generator options below are refused)")
    ph.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    ph.add_argument("--agent", default=None,
                    help="agent (default PSMA-11; PET needs a positron emitter such as PSMA-11, DCFPyL or "
                         "Ga-DOTATATE, SPECT a 177Lu agent such as PSMA-617 or DOTATATE)")
    ph.add_argument("--modality", choices=("PET", "SPECT"), default="PET")
    ph.add_argument("--times", type=_positive_float, nargs="+", default=None,
                    help="frame times after injection, h (default 1)")
    ph.add_argument("--tumours", type=_positive_int, default=None, help="number of lesions (default 2)")
    ph.add_argument("--spacing-mm", type=_positive_float, default=None, help="voxel size, mm (default 4)")
    ph.add_argument("--heterogeneity", type=float, default=None, help="intra-organ texture CV (default 0)")
    ph.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    ph.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    ph.set_defaults(func=_phantom)

    for name in ("twin._cli_trial", "twin._cli_reduce"):
        import importlib

        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit with 2
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    import pbpk

    def one_line(message, category, filename, lineno, file=None, line=None):
        # warnings reach the user as one line each, also with --quiet (they concern the result)
        print(f"twin {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return int(args.func(args) or 0)
    except _UsageError as exc:
        parser.error(str(exc))  # exits 2
    except (pbpk.PBPKError, OSError) as exc:
        print(f"twin {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"twin {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
