"""The ``twin reduce`` sub-command: MBAM reduction of a shipped PBPK model for a scan design.

Exit codes: 0 success, 2 usage error (argparse), 1 input error (unknown agent, unreadable or
invalid design file, output folder missing, reduction failure) with a plain message on stderr.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

from twin._cli_types import positive_float as _positive_float

DESIGN_HELP = (
    "scan design: 'psma-pet-spect' (PET at 1 h and SPECT at 4, 24, 96, 168 h; default) or a JSON "
    "file with fields agent, pet_times_h, spect_times_h, regions, activity_mbq, cv, floor_mbq, tia_cv"
)


def _tolerance(text: str) -> float:
    """A finite number > 0 (a relative error)."""
    v = _positive_float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0 (e.g. 0.01)")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reduce`` sub-command to the ``twin`` parser."""
    p = subparsers.add_parser(
        "reduce",
        help="reduce a PBPK model by MBAM for a PET/SPECT design and save it as JSON",
        description="Reduce the whole-body model of an agent by the Manifold Boundary "
                    "Approximation Method for a scan design, and write the reduced model with its "
                    "history (limits, parameter counts, fit quality, parameter map) as JSON. "
                    "Load it with mbam.load_reduced(path).",
    )
    p.add_argument("--agent", default="PSMA-617",
                   help="ligand of the model to reduce (PSMA-617, PSMA-I&T, PSMA-11, DCFPyL; default PSMA-617)")
    p.add_argument("--design", default="psma-pet-spect", help=DESIGN_HELP)
    p.add_argument("--late-pet-h", type=float, default=None,
                   help="add a late PET frame at this time (h) to the built-in design")
    p.add_argument("--out", required=True, help="output JSON file (e.g. reduced.json)")
    p.add_argument("--chi2-tol", type=float, default=1.0,
                   help="largest accepted chi-square against the full model (default 1)")
    p.add_argument("--max-iter", type=int, default=7,
                   help="most reduction steps (default 7; the PSMA-617 reduction for the built-in "
                        "design stops by itself after 6, in about 8-9 min on 2 cores)")
    p.add_argument("--population-draws", type=int, default=32,
                   help="prior draws each step is checked on (0: no population check; default 32)")
    p.add_argument("--population-tol", type=_tolerance, default=0.01,
                   help="largest relative TIA error over those draws (> 0; default 0.01)")
    p.add_argument("--check-draws", type=int, default=1000,
                   help="after the reduction, compare the reduced and full models' TIAs over this "
                        "many prior draws and print the largest error (0: skip; default 1000, "
                        "about 6 s for the PSMA model)")
    p.add_argument("--no-lump", action="store_true",
                   help="never lump tissues perfused in parallel (default: try it at each step)")
    p.add_argument("--no-transit", action="store_true",
                   help="never eliminate fast flow-through spaces such as tumour blood (V -> 0; "
                        "default: try it when a step finds no other limit)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"twin reduce: error: {msg}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    import mbam
    import pbpk

    out = pathlib.Path(args.out)
    if not out.parent.exists():
        return _fail(f"the output folder {str(out.parent)!r} does not exist; create it first.")
    if args.max_iter < 0 or args.population_draws < 0 or args.check_draws < 0 or not args.chi2_tol > 0:
        return _fail("--max-iter, --population-draws and --check-draws must be >= 0 and --chi2-tol > 0.")
    try:
        if args.design == "psma-pet-spect":
            design = mbam.ReductionDesign.psma_pet_spect(args.agent, late_pet_h=args.late_pet_h)
        else:
            path = pathlib.Path(args.design)
            if not path.is_file():
                return _fail(f"design file {str(path)!r} not found; give a JSON file or 'psma-pet-spect'.")
            design = mbam.ReductionDesign.from_json(path.read_text(encoding="utf-8"))
            if args.late_pet_h is not None:
                return _fail("--late-pet-h only applies to the built-in design; put the frame in "
                             "pet_times_h of the design file.")
        if design.agent != args.agent:
            return _fail(f"the design is for {design.agent!r} but --agent is {args.agent!r}.")
        model = pbpk.psma_model(args.agent)
        from calibration import Prior

        prior = Prior.default(model) if args.population_draws > 0 else None

        def report(step):
            if not args.quiet:
                flag = "accepted" if step.accepted else "rejected"
                print(f"step {step.iteration}: {flag}, {step.n_params} parameters, "
                      f"{step.n_states} states, chi2 {step.chi2:.3g} ({step.wall_s:.0f} s)",
                      file=sys.stderr, flush=True)

        if not args.quiet:
            print(f"reducing {model.name} ({len(model.parameter_names) - 1} parameters) for "
                  f"scans at {', '.join(f'{t:g}' for t in design.times_h)} h ...",
                  file=sys.stderr, flush=True)
        result = mbam.reduce_pbpk(model, design, prior, chi2_tol=args.chi2_tol,
                                  max_iter=args.max_iter, population_draws=max(1, args.population_draws),
                                  population_tol=args.population_tol, lump=not args.no_lump,
                                  transit=not args.no_transit, callback=report)
    except pbpk.PBPKError as exc:
        return _fail(str(exc))
    result.save(out)
    c = result.counts()
    print(f"{c['params_before']} -> {c['params_after']} parameters "
          f"({c['patient_params_before']} -> {c['patient_params_after']} patient-specific), "
          f"{c['states_before']} -> {c['states_after']} states; stopped: {result.stop_reason}")
    print(f"wrote {out}")
    if args.check_draws > 0:
        if not args.quiet:
            print(f"checking against the full model over {args.check_draws} prior draws ...",
                  file=sys.stderr, flush=True)
        try:
            print(result.check_population(Prior.default(model), n_draws=args.check_draws, key=1))
        except pbpk.PBPKError as exc:
            return _fail(f"the reduction was written, but its population check failed: {exc}")
    return 0
