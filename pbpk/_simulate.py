"""``simulate``: organ activities, exact TIA, urinary excretion and mass balance.

The schedule splits time into segments at every bolus and infusion start/end. Each segment is
one call of a stiff solver on the compiled vector field; boluses are added to the state
between segments. The default solver is the project's sparse Rosenbrock method (RODAS4 with
a planned sparse LU, :mod:`pbpk._rodas`); ``solver="diffrax"`` runs the same vector field with
diffrax's Kvaerno5 and is kept as the verification reference.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pbpk._compile import DECAY_PARAMETER, CompiledGraph, check_parameter_values, compile_graph
from pbpk._dosing import Administration, Schedule
from pbpk._errors import InvalidInputError, SolverError
from pbpk._model import PBPKModel, UnpredictedRegionWarning
from pbpk._nuclides import get_nuclide

__all__ = ["simulate", "simulate_cohort", "SimulationResult", "STATUS_MESSAGES"]

STATUS_MESSAGES = {
    0: "success",
    1: "the maximum number of solver steps was reached (raise max_steps or check the parameters)",
    2: "the solution became non-finite or the step size underflowed (check the parameters)",
}


class SimulationResult(eqx.Module):
    """What :func:`simulate` returns. Arrays are JAX arrays; a batch adds a leading axis.

    Attributes
    ----------
    times_h: (T,) output times in hours.
    activity_mbq: (T, R) activity per region (``regions``), not decay-corrected.
    ligand_nmol: (T, R) ligand (hot + cold) per region.
    tia_mbq_h: (Rb,) time-integrated activity per body region (``body_regions``), from the
        first administration to infinity: ODE-integrated to the last output time plus the
        physical-decay tail ``A(t_end) / lambda``.
    urine_fraction: (T,) cumulative ligand (hot + cold, nmol) in the region named ``"urine"``
        as a fraction of the ligand administered so far (by the schedule). It equals the
        decay-corrected fraction of the injected activity when every administration has the
        same molar activity (e.g. one injection); with cycles of different molar activity it
        is the ligand fraction, not the activity fraction. NaN when the model has no
        ``"urine"`` region (e.g. a :func:`~pbpk.from_sbml` model, whose excreta go to
        ``"sink"``): use ``ligand_nmol`` of that region instead.
    mass_balance_residual: (T,) (ligand in all compartments - ligand administered) / administered,
        with the administered ligand taken from the schedule.
    injected_activity_mbq: (T,) activity administered up to each time (an infusion counts in
        proportion to the part already infused).
    compartment_activity_mbq: (T, C) activity per compartment, or ``None`` unless requested.
    ia_reference_mbq: (T,) for schedules of several administrations, the activity of the most
        recent administration carrying activity at or before each time, decay-corrected to
        that time (``A_k exp(-lambda (t - t_k))``; an infusion counts in proportion to the part
        already infused); 0 before the first one. ``None`` for a single administration. It is
        the denominator of :meth:`percent_injected` (``decay_corrected=True``).
    status: solver status, 0 on success (see ``STATUS_MESSAGES``).
    n_steps: accepted solver steps (summed over segments).
    predicted_regions: the model's ``PBPKModel.predicted_regions`` (empty: all regions). A
        reduced model (:func:`mbam.reduce_pbpk`) predicts its design's regions only; its other
        regions carry activity (ligand is conserved) that was never checked against the full
        model. :meth:`activity` and :meth:`tia` warn
        (:class:`~pbpk.UnpredictedRegionWarning`) when asked for such a region, and
        :meth:`tia_table` and :meth:`to_dataframe` leave them out with that warning; the
        arrays keep every region.
    """

    times_h: jax.Array
    activity_mbq: jax.Array
    ligand_nmol: jax.Array
    tia_mbq_h: jax.Array
    urine_fraction: jax.Array
    mass_balance_residual: jax.Array
    injected_activity_mbq: jax.Array
    compartment_activity_mbq: jax.Array | None
    status: jax.Array
    n_steps: jax.Array
    regions: tuple[str, ...] = eqx.field(static=True)
    body_regions: tuple[str, ...] = eqx.field(static=True)
    compartments: tuple[str, ...] = eqx.field(static=True)
    ia_reference_mbq: jax.Array | None = None
    predicted_regions: tuple[str, ...] = eqx.field(static=True, default=())

    @property
    def ok(self) -> jax.Array:
        return self.status == 0

    def predicts(self, region: str) -> bool:
        """Whether the model predicts ``region`` (see ``predicted_regions``)."""
        return not self.predicted_regions or region in self.predicted_regions

    def _warn_unpredicted(self, regions, what: str) -> None:
        if regions:
            warnings.warn(
                f"{', '.join(regions)} {'is' if len(regions) == 1 else 'are'} not predicted by "
                f"this model (a reduced model predicts {', '.join(self.predicted_regions)} only; "
                f"the rest was never checked against the full model): {what}. Simulate the full "
                "model for those regions, or reduce with them in the design.",
                UnpredictedRegionWarning, stacklevel=3)

    def activity(self, region: str) -> jax.Array:
        """Activity (MBq) of one region over time (warns for a region the model does not
        predict)."""
        j = self._region_index(region)
        if not self.predicts(region):
            self._warn_unpredicted([region], "its activity is returned unchecked")
        return self.activity_mbq[..., j]

    def tia(self, region: str) -> jax.Array:
        """TIA (MBq h) of one body region (warns for a region the model does not predict)."""
        if region not in self.body_regions:
            raise InvalidInputError(
                f"no TIA for {region!r}; body regions are {', '.join(self.body_regions)}."
            )
        if not self.predicts(region):
            self._warn_unpredicted([region], "its TIA is returned unchecked")
        return self.tia_mbq_h[..., self.body_regions.index(region)]

    def percent_injected(self, decay_corrected: bool = True) -> jax.Array:
        """(T, R) percentage of injected activity per region.

        ``decay_corrected=True`` (the ``"%IA"`` of :class:`calibration.Observations`): percent
        of the injected activity decay-corrected to injection, relative to the most recent
        administration carrying activity at or before each time ``t``:
        ``100 A(t) / (A_k exp(-lambda (t - t_k)))`` with ``A_k`` and ``t_k`` that
        administration's activity and time (``A(t)`` includes what is left of earlier
        administrations; a scan after cycle 2 is read as %IA of the cycle-2 injection). 0 before
        the first administration carrying activity. For a single administration this is
        computed, identically, as the region's share of the ligand administered (hot + cold,
        nmol; the hot fraction is the same in every region).
        ``decay_corrected=False``: activity in the region / ``injected_activity_mbq`` (all the
        activity administered so far, not decay-corrected).
        """
        if decay_corrected:
            if self.ia_reference_mbq is None:  # one administration: ligand share (= %IA)
                total = self.ligand_nmol[..., :, :].sum(-1, keepdims=True)
                return 100.0 * self.ligand_nmol / jnp.where(total > 0, total, 1.0)
            ref = self.ia_reference_mbq[..., :, None]
            return 100.0 * self.activity_mbq / jnp.where(ref > 0, ref, 1.0)
        inj = self.injected_activity_mbq[..., :, None]
        return 100.0 * self.activity_mbq / jnp.where(inj > 0, inj, 1.0)

    def _region_index(self, region: str) -> int:
        if region not in self.regions:
            raise InvalidInputError(f"unknown region {region!r}; known: {', '.join(self.regions)}.")
        return self.regions.index(region)

    def to_dataframe(self):
        """Long-format pandas table: time_h, region, activity_mbq, percent_injected (single run;
        regions the model does not predict are left out, with a warning)."""
        import pandas as pd

        if np.ndim(self.activity_mbq) != 2:
            raise InvalidInputError("to_dataframe() needs a single-patient result; index the batch first.")
        t = np.asarray(self.times_h)
        act = np.asarray(self.activity_mbq)
        pct = np.asarray(self.percent_injected())
        keep = [j for j, r in enumerate(self.regions) if self.predicts(r)]
        self._warn_unpredicted([r for r in self.regions if not self.predicts(r)],
                               "left out of the table")
        rows = [
            {"time_h": t[i], "region": self.regions[j], "activity_mbq": act[i, j],
             "percent_injected": pct[i, j]}
            for i in range(t.size)
            for j in keep
        ]
        return pd.DataFrame(rows)

    def tia_table(self):
        """pandas Series of TIA (MBq h) per body region (single run; regions the model does not
        predict are left out, with a warning)."""
        import pandas as pd

        if np.ndim(self.tia_mbq_h) != 1:
            raise InvalidInputError("tia_table() needs a single-patient result; index the batch first.")
        keep = [j for j, r in enumerate(self.body_regions) if self.predicts(r)]
        self._warn_unpredicted([r for r in self.body_regions if not self.predicts(r)],
                               "left out of the table")
        return pd.Series(np.asarray(self.tia_mbq_h)[keep], index=[self.body_regions[j] for j in keep],
                         name="tia_mbq_h")


# ---------------------------------------------------------------------------- plan (static)
def _describe(a: Administration) -> str:
    kind = f"infusion of {a.infusion_h:g} h (ends at {a.end_h:g} h)" if a.infusion_h > 0 else "bolus"
    return f"{a.activity_mbq:g} MBq {kind} at {a.time_h:g} h"


def _segments(schedule: Schedule, times: np.ndarray):
    """Static integration plan: segments, their save times and where outputs come from.

    Every administration must be complete before the last output time: the TIA after it is
    the physical-decay tail of the state there, which cannot include a later input. An output
    time equal to an administration time reports the state just after it (right-continuous,
    as ``injected_activity_mbq`` counts a bolus from its time on).
    """
    t_end = float(times[-1])
    late = [a for a in schedule.administrations if a.time_h >= t_end or a.end_h > t_end]
    if late:
        need = max(a.end_h for a in late)
        listed = "; ".join(_describe(a) for a in late)
        raise InvalidInputError(
            f"{len(late)} administration(s) ({listed}) are not complete before the last output "
            f"time {t_end:g} h; the TIA after the last output time is the physical decay of the "
            "state there and cannot include them: extend times_h past "
            f"{need:g} h (e.g. to {need + 2000.0:g} h) or drop them from the schedule."
        )
    points = sorted(set(schedule.breakpoints_h) | {t_end})
    t_start = points[0]
    segs = []
    for a, b in zip(points, points[1:]):
        inside = times[(times > a) & (times <= b)]
        save = tuple(sorted(set(inside.tolist()) | {b}))
        segs.append((a, b, save))
    # output map: (segment, index into save), (-1, -1) before the first administration, or
    # (k, -2) exactly at the start of segment k (after its bolus: right-continuous)
    starts = {a: k for k, (a, _, _) in enumerate(segs)}
    out = []
    for t in times.tolist():
        if t < t_start:
            out.append((-1, -1))
        elif t in starts:
            out.append((starts[t], -2))
        else:
            for k, (a, b, save) in enumerate(segs):
                if a < t <= b:
                    out.append((k, save.index(t)))
                    break
    return tuple(segs), tuple(out)


def _administered_nmol(model: PBPKModel, schedule: Schedule, times: np.ndarray) -> np.ndarray:
    """Ligand (hot + cold, nmol) administered up to each time, from the schedule itself: a
    bolus counts from its time on, an infusion in proportion to the part already infused."""
    acf = model.carrier_free_mbq_per_nmol
    ma = model.default_molar_activity_mbq_per_nmol
    out = np.zeros(len(times))
    for a in schedule.administrations:
        total = sum(a.amounts_nmol(acf, ma))
        if a.infusion_h > 0:
            out += total * np.clip((times - a.time_h) / a.infusion_h, 0.0, 1.0)
        else:
            out += total * (times >= a.time_h)
    return out


def _dose_inputs(model: PBPKModel, schedule: Schedule, segs):
    """Per segment: bolus (hot, cold) added at its start; infusion (hot rate, total rate)."""
    acf = model.carrier_free_mbq_per_nmol
    ma = model.default_molar_activity_mbq_per_nmol
    bolus = np.zeros((len(segs), 2))
    infusion = np.zeros((len(segs), 2))
    for adm in schedule.administrations:
        hot, cold = adm.amounts_nmol(acf, ma)
        for k, (a, b, _) in enumerate(segs):
            if adm.infusion_h == 0 and adm.time_h == a:
                bolus[k] += (hot, cold)
            elif adm.infusion_h > 0 and adm.time_h == a:
                infusion[k] = (hot / adm.infusion_h, (hot + cold) / adm.infusion_h)
            elif adm.infusion_h > 0 and adm.time_h < a < adm.end_h:
                infusion[k, 1] = (hot + cold) / adm.infusion_h
                infusion[k, 0] = np.nan  # continue the decaying hot rate from the state
    return bolus, infusion


# ---------------------------------------------------------------------------- solvers
def _solve_rodas(compiled: CompiledGraph, y0, args, t0, t_save, opts):
    from pbpk._rodas import rodas4_solve

    plan = _lu_plan(compiled)
    sol = rodas4_solve(
        compiled.rhs, compiled.jac_values, plan, y0, args, t0, jnp.asarray(t_save),
        rtol=opts["rtol"], atol=opts["atol"], max_steps=opts["max_steps"], mode=opts["mode"],
    )
    return sol.ys, sol.status, sol.n_steps


@lru_cache(maxsize=64)
def _lu_plan(compiled: CompiledGraph):
    from pbpk._sparse import SparseLUPlan

    return SparseLUPlan.from_pattern(compiled.n_states, compiled.jac_rows, compiled.jac_cols)


def _solve_diffrax(compiled: CompiledGraph, y0, args, t0, t_save, opts):
    import diffrax

    term = diffrax.ODETerm(lambda t, y, a: compiled.rhs(y, a))
    adjoint = diffrax.ForwardMode() if opts["mode"] == "forward" else diffrax.RecursiveCheckpointAdjoint()
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Kvaerno5(),
        t0=t0,
        t1=t_save[-1],
        dt0=None,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=jnp.asarray(t_save)),
        stepsize_controller=diffrax.PIDController(
            rtol=opts["rtol"], atol=opts["atol"], pcoeff=0.4, icoeff=0.3
        ),
        max_steps=opts["max_steps"],
        throw=False,
        adjoint=adjoint,
    )
    status = jnp.where(
        sol.result == diffrax.RESULTS.successful, 0,
        jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 1, 2),
    ).astype(jnp.int32)
    return sol.ys, status, sol.stats["num_accepted_steps"]


_SOLVERS = {"rodas": _solve_rodas, "diffrax": _solve_diffrax}


# ---------------------------------------------------------------------------- core
def _integrate(cg: CompiledGraph, p, segs, bolus, infusion, continues, opts, batched=False,
               analytic=False):
    """Run the segments. ``p`` is (m,) or, batched, (B, m); states are (..., n).

    With ``analytic`` (one bolus, no infusion) the decay-free form of the graph is solved
    and the hot/cold states are reconstructed exactly: ``hot = f z T``, ``cold = T - hot``.
    """
    full = cg
    if analytic:
        cg = compile_graph(cg.graph, decay_free=True)
    nc = cg.n_compartments
    n = cg.n_states
    coef = cg.coefficients(p.T if batched else p)  # batch axis trailing inside the solver
    lin_jac = cg.linear_jacobian(coef)
    lead = (p.shape[0],) if batched else ()
    y = jnp.zeros((*lead, n))
    starts, seg_ys = [], []
    status = jnp.zeros(lead, jnp.int32)
    n_steps = jnp.zeros(lead, jnp.int32)
    for k, (a, b, save) in enumerate(segs):
        if analytic:
            y = y.at[..., cg.dose_index].add(bolus[k, 0] + bolus[k, 1]).at[..., cg.rate_index].set(1.0)
        else:
            y = y.at[..., cg.dose_index].add(bolus[k, 0]).at[..., cg.dose_index + nc].add(bolus[k, 1])
            if not continues[k]:  # a new infusion starts (or none runs): reset the hot input rate
                y = y.at[..., cg.rate_index].set(infusion[k, 0])
        u = jnp.zeros((*lead, n))
        if not analytic:  # constant total-ligand infusion rate into the cold species
            u = u.at[..., cg.dose_index + nc].set(infusion[k, 1])
        starts.append(y)
        if b > a:
            if batched:
                ys, st, ns = _solve_rodas_batched(cg, y, (coef, lin_jac, u.T), a, save, opts)
            else:
                ys, st, ns = _SOLVERS[opts["solver"]](cg, y, (coef, lin_jac, u), a, save, opts)
            status = jnp.maximum(status, st)
            n_steps = n_steps + ns
            y = ys[..., -1, :]
        else:
            ys = y[..., None, :]
        seg_ys.append(ys)
    if analytic:
        f = bolus[0, 0] / (bolus[0, 0] + bolus[0, 1])
        starts = [_expand(full, s, f) for s in starts]
        seg_ys = [_expand(full, s, f) for s in seg_ys]
    return starts, seg_ys, status, n_steps


def _expand(full: CompiledGraph, yr, f):
    """Decay-free states (T, integrals of z T, z) -> hot, cold, hot integrals, infusion rate."""
    nc = full.n_compartments
    nr = len(full.body_regions)
    total = yr[..., :nc]
    z = yr[..., nc + nr : nc + nr + 1]
    hot = f * z * total
    return jnp.concatenate([hot, total - hot, f * yr[..., nc : nc + nr], jnp.zeros_like(z)], axis=-1)


def _solve_rodas_batched(cg: CompiledGraph, y0, args, t0, t_save, opts):
    from pbpk._rodas import rodas4_solve_batched

    sol = rodas4_solve_batched(
        cg.rhs, cg.jac_values, _lu_plan(cg), y0, args, t0, jnp.asarray(t_save),
        batched_functions=True, rtol=opts["rtol"], atol=opts["atol"], max_steps=opts["max_steps"],
    )
    return sol.ys, sol.status, sol.n_steps


def _assemble(cg: CompiledGraph, acf, lam, starts, seg_ys, status, n_steps, segs, out_map, bolus,
              infusion, injected_mbq, times, subcompartments, expected_nmol,
              ia_ref=None) -> SimulationResult:
    """Outputs of one patient from the segment states; ``expected_nmol`` (T,) is the ligand
    administered up to each time according to the schedule (:func:`_administered_nmol`),
    independent of the segment plan, so a dose the plan dropped would show in the residual."""
    nc = cg.n_compartments
    n = cg.n_states
    rows = [jnp.zeros(n) if k == -1 else (starts[k] if i == -2 else seg_ys[k][i]) for k, i in out_map]
    Y = jnp.stack(rows)
    expected = jnp.asarray(expected_nmol)
    hot = Y[:, :nc]
    cold = Y[:, nc : 2 * nc]
    R = jnp.asarray(cg.region_matrix)
    activity = acf * hot @ R.T
    ligand = (hot + cold) @ R.T
    total = ligand.sum(-1)
    safe = jnp.where(expected > 0, expected, 1.0)
    residual = jnp.where(expected > 0, (total - expected) / safe, total)
    urine = [i for i, r in enumerate(cg.all_regions) if r == "urine"]
    urine_fraction = (ligand[:, urine[0]] / safe) if urine else jnp.full_like(total, jnp.nan)
    # TIA: integral states at the last time + physical-decay tail of the hot amount there
    y_end = Y[-1] if out_map[-1][0] != -1 else jnp.zeros(n)
    tia_states = y_end[2 * nc : 2 * nc + len(cg.body_regions)]
    body_rows = [cg.all_regions.index(r) for r in cg.body_regions]
    hot_end = (y_end[:nc] @ R.T)[jnp.asarray(body_rows)]
    tia = acf * (tia_states + hot_end / lam)
    ia_reference = None
    if ia_ref is not None:  # (A_k so far, t_k) per output time, static
        a_k, t_k = (np.array(c, dtype=float) for c in zip(*ia_ref))
        ia_reference = jnp.asarray(a_k) * jnp.exp(-lam * jnp.asarray(np.asarray(times) - t_k))
    return SimulationResult(
        times_h=jnp.asarray(times),
        activity_mbq=activity,
        ligand_nmol=ligand,
        tia_mbq_h=tia,
        urine_fraction=urine_fraction,
        mass_balance_residual=residual,
        injected_activity_mbq=jnp.asarray(injected_mbq),
        compartment_activity_mbq=acf * hot if subcompartments else None,
        status=status,
        n_steps=n_steps,
        regions=cg.all_regions,
        body_regions=cg.body_regions,
        compartments=cg.graph.compartment_names,
        ia_reference_mbq=ia_reference,
    )


def _injected_mbq(schedule: Schedule, t: float) -> float:
    """Activity administered up to ``t`` (MBq, each administration's activity at its start): a
    bolus counts from its time on, an infusion in proportion to the part already infused."""
    total = 0.0
    for a in schedule.administrations:
        if a.infusion_h > 0:
            total += a.activity_mbq * min(max((t - a.time_h) / a.infusion_h, 0.0), 1.0)
        elif a.time_h <= t:
            total += a.activity_mbq
    return total


def _ia_reference_key(schedule: Schedule, times: np.ndarray):
    """Static ``((A_k, t_k), ...)`` per output time: the most recent administration carrying
    activity at or before the time (an infusion in proportion to the part infused), ``(0, t)``
    before the first one; ``None`` for a single administration (see ``percent_injected``)."""
    if len(schedule.administrations) == 1:
        return None
    out = []
    for t in times.tolist():
        hot = [a for a in schedule.administrations if a.activity_mbq > 0 and a.time_h <= t]
        if not hot:
            out.append((0.0, t))
            continue
        t_k = max(b.time_h for b in hot)
        a_k = sum(b.activity_mbq * (min((t - b.time_h) / b.infusion_h, 1.0) if b.infusion_h > 0 else 1.0)
                  for b in hot if b.time_h == t_k)  # administrations given together count together
        out.append((a_k, t_k))
    return tuple(out)


@lru_cache(maxsize=128)
def _jitted(graph, nuclide, segs, out_map, continues, injected_key, times_key, subcompartments,
            opts_key, batched=False, analytic=False, ia_ref_key=None):
    """The compiled simulation for one graph, nuclide, schedule structure and output grid."""
    cg = compile_graph(graph)
    acf = get_nuclide(nuclide).carrier_free_mbq_per_nmol
    times = np.array(times_key)
    injected = np.array(injected_key)
    opts = dict(opts_key)
    i_lam = cg.param_names.index(DECAY_PARAMETER)

    def assemble(lam, starts, seg_ys, status, n_steps, bolus, infusion, expected):
        return _assemble(cg, acf, lam, starts, seg_ys, status, n_steps, segs, out_map, bolus,
                         infusion, injected, times, subcompartments, expected, ia_ref_key)

    def run(p, bolus, infusion, expected):
        out = _integrate(cg, p, segs, bolus, infusion, continues, opts, batched, analytic)
        if batched:
            return jax.vmap(assemble, in_axes=(0, 0, 0, 0, 0, None, None, None))(
                p[:, i_lam], *out, bolus, infusion, expected)
        return assemble(p[i_lam], *out, bolus, infusion, expected)

    return jax.jit(run)


def _prepare(model, schedule, times_h, params, solver, rtol, atol, max_steps, mode,
             subcompartments, batched=False):
    """Validate inputs; return the compiled function and its array arguments."""
    if not isinstance(model, PBPKModel):
        raise InvalidInputError(
            f"model must be a PBPKModel (e.g. pbpk.psma_model()), got {type(model).__name__}."
        )
    if solver not in _SOLVERS:
        raise InvalidInputError(f"solver {solver!r} is not known; use one of {', '.join(_SOLVERS)}.")
    if mode not in ("forward", "reverse"):
        raise InvalidInputError(f"mode {mode!r} is not known; use 'forward' or 'reverse'.")
    schedule = _as_schedule(schedule)
    times = _as_times(times_h)
    cg = model.compiled
    merged = _merged_parameters(model, params)
    check_parameter_values(cg, merged)
    segs, out_map = _segments(schedule, times)
    bolus, infusion = _dose_inputs(model, schedule, segs)
    opts = (("solver", solver), *_tolerances(rtol, atol, max_steps), ("mode", mode))
    injected = [_injected_mbq(schedule, t) for t in times]
    continues = tuple(bool(c) for c in np.isnan(infusion[:, 0]))
    infusion = np.nan_to_num(infusion)
    # one bolus: hot = f exp(-lambda t) x total exactly, so the decay-free system is solved
    analytic = len(schedule.administrations) == 1 and schedule.administrations[0].infusion_h == 0
    fn = _jitted(model.graph, model.nuclide, segs, out_map, continues, tuple(injected),
                 tuple(times.tolist()), bool(subcompartments), opts, batched, analytic,
                 _ia_reference_key(schedule, times))
    expected = jnp.asarray(_administered_nmol(model, schedule, times))
    return fn, merged, cg, jnp.asarray(bolus), jnp.asarray(infusion), expected


def _tolerances(rtol, atol, max_steps) -> tuple:
    """``(("rtol", r), ("atol", a), ("max_steps", m))`` after checking them: an infinite
    tolerance or ``rtol >= 1`` would accept every step whatever its error (wrong numbers with
    status 0), and a fractional ``max_steps`` would be truncated."""
    try:
        r, a = float(rtol), float(atol)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"rtol and atol must be numbers (e.g. rtol=1e-6, atol=1e-9), got {rtol!r}, {atol!r}."
        ) from None
    if not (math.isfinite(r) and 0.0 < r < 1.0):
        raise InvalidInputError(f"rtol = {rtol!r} must be finite and in (0, 1), e.g. 1e-6.")
    if not (math.isfinite(a) and a >= 0.0):
        raise InvalidInputError(f"atol = {atol!r} (nmol) must be finite and >= 0, e.g. 1e-9.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) or max_steps < 1:
        raise InvalidInputError(f"max_steps = {max_steps!r} must be a positive integer, e.g. 20000.")
    return ("rtol", r), ("atol", a), ("max_steps", int(max_steps))


def _differs(value, reference: float) -> bool:
    """Whether a concrete ``value`` (scalar or per-patient array) differs from ``reference``;
    traced values (inside jit/grad) are not checked."""
    try:
        v = np.asarray(value, dtype=float)
    except Exception:  # a JAX tracer: no concrete value to compare
        return False
    return not np.allclose(v, reference, rtol=1e-12, atol=0.0)


def _merged_parameters(model: PBPKModel, params) -> dict:
    """The model's parameters with ``params`` (a mapping, possibly traced values) on top."""
    merged = dict(model.parameters)
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInputError(
            f"params must be a mapping of parameter name to value (e.g. {{'R_kidney': 20.0}}), "
            f"got {type(params).__name__}."
        )
    if params:
        unknown = [k for k in params if k not in merged]
        if unknown:
            raise InvalidInputError(
                f"unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(model.compiled.param_names)}."
            )
        if DECAY_PARAMETER in params and _differs(params[DECAY_PARAMETER], merged[DECAY_PARAMETER]):
            raise InvalidInputError(
                f"{DECAY_PARAMETER} follows the model's nuclide ({model.nuclide}) and cannot be "
                "overridden; build the model with another nuclide instead."
            )
        merged.update(params)
    return merged


def _as_times(times_h) -> np.ndarray:
    if times_h is None or isinstance(times_h, str):
        raise InvalidInputError(f"times_h must be a sequence of numbers (hours), got {times_h!r}.")
    try:
        t = np.asarray(times_h, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError("times_h must be a sequence of numbers (hours).") from None
    if t.size == 0:
        raise InvalidInputError("times_h is empty; give at least one output time in hours.")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InvalidInputError("times_h must be finite and >= 0 (hours after the first administration).")
    if np.any(np.diff(t) <= 0):
        raise InvalidInputError("times_h must be strictly increasing.")
    return t


def _as_schedule(schedule) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, Administration):
        return Schedule((schedule,))
    if isinstance(schedule, Sequence) and all(isinstance(a, Administration) for a in schedule):
        return Schedule(tuple(schedule))
    raise InvalidInputError(
        "schedule must be a Schedule, an Administration or a list of Administrations "
        "(e.g. pbpk.Schedule.single(7400.0))."
    )


def simulate(
    model: PBPKModel,
    schedule: Schedule | Administration,
    times_h: Sequence[float],
    params: Mapping[str, Any] | None = None,
    *,
    subcompartments: bool = False,
    solver: str = "rodas",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 20_000,
    mode: str = "forward",
    check: bool = True,
) -> SimulationResult:
    """Simulate a radioligand model for a schedule and return activities, TIA and checks.

    Parameters
    ----------
    model:
        A :class:`~pbpk.PBPKModel` (e.g. ``pbpk.psma_model()``).
    schedule:
        Administrations (:class:`~pbpk.Schedule` or one :class:`~pbpk.Administration`).
    times_h:
        Strictly increasing output times in hours after the first administration. The last
        one is where ODE integration of TIA stops and the analytic decay tail begins, so every
        administration must be complete before it (a bolus strictly before it, an infusion
        ended by it); otherwise :class:`~pbpk.InvalidInputError`. An output time equal to a
        bolus time reports the state just after the bolus (as ``injected_activity_mbq``).
    params:
        Overrides of the model's default parameters (floats or JAX arrays: traced values are
        fine, so the function can be ``jit``-ed, ``vmap``-ed and differentiated).
    subcompartments:
        Also return the activity of every compartment (``compartment_activity_mbq``).
    solver:
        ``"rodas"`` (default, fast sparse Rosenbrock) or ``"diffrax"`` (Kvaerno5 reference).
    rtol, atol:
        Solver tolerances (relative; absolute in nmol). The defaults give region activities
        within ~1e-5 relative and TIA within ~1e-8 of a Radau reference at rtol 1e-10
        (``benchmarks/bench_simulate.py``); tighten them for verification work.
    mode:
        ``"forward"`` supports ``jax.jvp``/``jax.jacfwd``; ``"reverse"`` supports ``jax.grad``.
    check:
        Raise :class:`~pbpk.SolverError` when a concrete (not traced) solve fails. Under
        ``vmap``/``jit`` inspect ``result.status`` instead.
    """
    fn, merged, cg, bolus, infusion, expected = _prepare(
        model, schedule, times_h, params, solver, rtol, atol, max_steps, mode, subcompartments)
    shaped = [f"{k} {np.shape(v)}" for k, v in (params or {}).items() if np.ndim(v) != 0]
    if shaped:
        raise InvalidInputError(
            f"simulate takes one value per parameter, got arrays ({', '.join(shaped)}); for "
            "several patients use pbpk.simulate_cohort (or jax.vmap over simulate)."
        )
    p = cg.pack(merged)
    result = fn(p, bolus, infusion, expected)
    if check and not isinstance(result.status, jax.core.Tracer):
        code = int(result.status)
        if code != 0:
            raise SolverError(
                f"simulation of {model.name!r} failed: {STATUS_MESSAGES.get(code, code)}."
            )
    return _with_predicted(result, model)


def _with_predicted(result: SimulationResult, model: PBPKModel) -> SimulationResult:
    """The result, marked with the regions the model predicts (a reduced model's design)."""
    if not model.predicted_regions:
        return result
    return dataclasses.replace(result, predicted_regions=tuple(model.predicted_regions))


def simulate_cohort(
    model: PBPKModel,
    schedule: Schedule | Administration,
    times_h: Sequence[float],
    params: Mapping[str, Any],
    *,
    chunk_size: int = 64,
    progress: bool = False,
    solver: str = "rodas",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 20_000,
    subcompartments: bool = False,
) -> SimulationResult:
    """Simulate a cohort: ``params`` maps parameter names to arrays with a leading patient axis.

    Parameters not in ``params`` keep the model's defaults. Patients run in chunks of
    ``chunk_size`` through the batched sparse Rosenbrock solver (batch axis stored last, one
    compiled program reused for every chunk); a failed solve is reported in the per-patient
    ``status`` and never raised. ``progress=True`` shows a progress bar over chunks. Returns a
    :class:`SimulationResult` whose arrays have a leading patient axis.

    For reverse-mode gradients over patients, ``jax.vmap`` :func:`simulate` with
    ``mode="reverse"`` instead.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size = {chunk_size!r} must be a positive integer.")
    if not isinstance(params, Mapping):
        raise InvalidInputError(
            "params must be a mapping of parameter name to an array with one value per patient "
            f"(e.g. {{'R_kidney': [10.0, 20.0]}}), got {type(params).__name__}."
        )
    batch = {}
    for k, v in params.items():
        try:
            batch[k] = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"params[{k!r}] must be numbers, one per patient; got {v!r}."
            ) from None
    sizes = {v.shape[0] if v.ndim == 1 else None for v in batch.values()}
    if len(sizes) != 1 or None in sizes:
        shapes = ", ".join(f"{k}: {np.shape(v)}" for k, v in batch.items())
        raise InvalidInputError(
            "every cohort parameter needs a 1-D array with one value per patient, all of the "
            f"same length (got shapes {shapes or 'none: params is empty'}); for a value shared "
            "by every patient use model.with_parameters(...)."
        )
    n = sizes.pop()
    if n == 0:
        raise InvalidInputError("the cohort is empty: give at least one value per parameter.")
    if DECAY_PARAMETER in batch:  # every patient's value, not just the first one's
        _merged_parameters(model, {DECAY_PARAMETER: batch[DECAY_PARAMETER]})
    fn, merged, cg, bolus, infusion, expected = _prepare(
        model, schedule, times_h, {k: v[0] for k, v in batch.items()}, solver, rtol, atol,
        max_steps, "forward", subcompartments, batched=(solver == "rodas"))
    for k, v in batch.items():  # validate every patient's values, not just the first
        check_parameter_values(cg, {**merged, k: v})
    if solver != "rodas":
        single = fn
        fn = jax.jit(jax.vmap(single, in_axes=(0, None, None, None)))
    base = np.array([merged[k] for k in cg.param_names], dtype=float)
    cols = {cg.param_names.index(k): v for k, v in batch.items()}
    size = min(chunk_size, n)
    parts = []
    starts = range(0, n, size)
    if progress:
        from pbpk._progress import progress_bar

        starts = progress_bar(starts, total=len(starts), desc=f"{n} patients")
    for s in starts:
        m = min(size, n - s)
        p = np.repeat(base[None, :], size, axis=0)
        for j, v in cols.items():
            p[:m, j] = v[s : s + m]
            p[m:, j] = v[s + m - 1]  # pad the last chunk to reuse the compiled shape
        out = fn(jnp.asarray(p), bolus, infusion, expected)
        parts.append(jax.tree_util.tree_map(lambda x: x[:m], out))
    out = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)
    return _with_predicted(eqx.tree_at(lambda r: r.times_h, out, out.times_h[0]), model)
