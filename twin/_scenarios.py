"""What-if scenarios and personalised escalation on a calibrated :class:`~twin.Twin`.

:func:`scenario_table` sweeps activity, number of cycles, interval and ligand amount and
returns a tidy pandas table with uncertainty bands. :func:`max_activity` finds the largest
activity per cycle (and so the largest tumour dose: every draw's tumour dose increases with
activity) for which every organ-at-risk limit holds with a stated probability under the
posterior, and compares it with a fixed-activity protocol.

Solving the escalation: each constraint is "the ``probability`` quantile of the organ's dose
(or BED) over posterior draws is at most the limit", i.e. at least that fraction of the draws
is within the limit (the quantile is :func:`twin.limit_quantile`, the order statistic, so the
reported quantile and the probability within always agree). Per draw, dose and BED increase with
activity, so the set of feasible activities is an interval ``[0, A*]`` and ``A*`` is found by
bisection in log activity. At a fixed ligand amount per cycle, dose is exactly proportional to
activity (hot and cold ligand are kinetically identical), so one simulation serves every
step. When the ligand amount scales with activity (fixed molar activity), receptor saturation
makes dose per GBq fall as activity rises; every step then re-simulates the draws at its own
ligand amount (the compiled simulation is reused).

A probability statement needs enough draws: with N draws the ``probability`` quantile is an
order statistic only when at least one draw may lie beyond it, N (1 - p) >= 1, and
:func:`max_activity` asks for at least :func:`min_draws` ``= max(20, ceil(1 / (1 - p)))``
draws (20 for p = 0.95, 100 for 0.99); fewer (a MAP posterior has one) raise
:class:`TooFewDrawsError`. The Monte Carlo interval of the answer
(``EscalationResult.activity_mc_interval_gbq``) says how far another set of draws could move it.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin._errors import InfeasibleError, TwinInputError
from twin._twin import (
    DEFAULT_QUANTILES,
    TherapyPrediction,
    Twin,
    _check_n_draws,
    _check_probability,
    _check_quantiles,
    _limits,
    limit_quantile,
    therapy_schedule,
)

__all__ = ["EscalationResult", "TooFewDrawsError", "default_escalation_limits", "max_activity", "min_draws",
           "scenario_table"]

log = logging.getLogger(__name__)


class TooFewDrawsError(TwinInputError):
    """The posterior (or ``n_draws``) has too few draws for the requested probability
    (:func:`min_draws`), e.g. a MAP posterior (one draw)."""


def min_draws(probability: float) -> int:
    """Fewest posterior draws for which :func:`max_activity` states that limits hold with
    ``probability``: ``max(20, ceil(1 / (1 - probability)))``, so that at least one draw may lie
    above the limit (with fewer, "all draws within" is the only possible answer) and never
    fewer than 20 (20 at p = 0.95, 100 at 0.99)."""
    p = _check_probability(probability)
    return max(20, math.ceil(1.0 / (1.0 - p) - 1e-9))


def _progress(iterable, total, desc, progress):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def _tumours(pred: TherapyPrediction) -> list[str]:
    return [r for r in pred.dose_regions if r.startswith("tumour")]


# ============================================================================ sweeps
def _check_twin(twin) -> None:
    if not isinstance(twin, Twin):
        raise TwinInputError(f"give a calibrated twin.Twin (Twin.from_patient(...)), got {type(twin).__name__}.")


def scenario_table(twin: Twin, *, activities_gbq: Sequence[float] = (3.7, 5.55, 7.4, 9.25),
                   n_cycles: Sequence[int] = (4,), intervals_weeks: Sequence[float] = (6.0,),
                   ligand_nmol: Sequence[float | None] = (None,), regions: Sequence[str] | None = None,
                   quantiles: Sequence[float] = DEFAULT_QUANTILES, n_draws: int = 100, key: int = 0,
                   limits=None, progress: bool = False):
    """A tidy table of every combination of the swept settings.

    ``ligand_nmol`` entries are nmol per cycle; ``None`` means the agent's default molar
    activity (ligand scales with activity). One row per scenario, region and quantity
    (``dose_gy``, ``bed_gy``, ``eqd2_gy``) with the mean, the quantiles and, for regions with
    an organ-at-risk limit on that quantity, the probability that the limit holds.
    Columns: activity_gbq_per_cycle, n_cycles, interval_weeks, ligand_nmol_per_cycle (NaN:
    scaled), cumulative_activity_gbq, region, quantity, mean, q5, q50, q95 (same unit as
    the quantity), limit_gy, probability_within_limit.
    """
    import pandas as pd

    _check_twin(twin)
    for name, seq in (("activities_gbq", activities_gbq), ("n_cycles", n_cycles),
                      ("intervals_weeks", intervals_weeks), ("ligand_nmol", ligand_nmol)):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, (Sequence, np.ndarray)) or len(seq) == 0:
            raise TwinInputError(f"{name} must be a non-empty list of values.")
    quantiles = _check_quantiles(quantiles)
    lim = _limits(limits)
    combos = list(itertools.product(activities_gbq, n_cycles, intervals_weeks, ligand_nmol))
    rows = []
    for a, n, iw, lig in _progress(combos, len(combos), "scenarios", progress):
        n = n.item() if isinstance(n, np.generic) else n
        sched = therapy_schedule(a, n, interval_weeks=float(iw), ligand_nmol=lig)  # checks n
        pred = twin.predict(sched, n_draws=n_draws, key=key, quantiles=quantiles)
        regs = pred.dose_regions if regions is None else list(regions)
        for r in regs:
            for qty in ("dose_gy", "bed_gy", "eqd2_gy"):
                v = pred.draws(qty, r)
                qv = np.quantile(v, quantiles)
                row = {"activity_gbq_per_cycle": float(a), "n_cycles": int(n), "interval_weeks": float(iw),
                       "ligand_nmol_per_cycle": np.nan if lig is None else float(lig),
                       "cumulative_activity_gbq": float(a) * int(n), "region": r, "quantity": qty,
                       "mean": float(v.mean())}
                row.update({f"q{100 * q:g}": float(x) for q, x in zip(quantiles, qv)})
                match = [c for c in lim if c["region"] == r
                         and {"absorbed_dose": "dose_gy", "bed": "bed_gy"}[c["quantity"]] == qty]
                row["limit_gy"] = min((c["limit_gy"] for c in match), default=np.nan)
                row["probability_within_limit"] = (float(np.mean(v <= row["limit_gy"])) if match else np.nan)
                rows.append(row)
    return pd.DataFrame(rows)


# ============================================================================ escalation
@dataclass(frozen=True, eq=False)
class EscalationResult:
    """The personalised activity and its comparison with a fixed protocol.

    activity_gbq_per_cycle / cumulative_activity_gbq: the largest activity for which every
    limit holds with ``probability`` (``at_upper_bound`` when the search bound was reached).
    binding: the limit that stops the escalation. constraints: per limit at the optimum
    (quantile value, probability within). curve: every activity evaluated during the search
    (and the grid), with constraint quantiles (:func:`twin.limit_quantile`, as in
    constraints) and tumour-dose quantiles (pandas). fixed: the same numbers
    for the fixed protocol. prediction: the TherapyPrediction at the optimum.
    activity_mc_interval_gbq: 95 % Monte Carlo interval of the activity per cycle from the
    ``n_draws`` posterior draws (None at the upper search bound): how much the answer would move
    with another set of draws. Its ends are the activities at which the binomial confidence
    ranks ``N p -/+ z sqrt(N p (1 - p))`` of the draws (instead of rank ``ceil(N p)``) reach the
    limits, found by re-evaluating the draws at trial activities (exact, whatever the dose-activity
    relation; clamped to ``bounds_gbq``). More draws narrow it (about 1/sqrt(n_draws)).
    """

    activity_gbq_per_cycle: float
    cumulative_activity_gbq: float
    n_cycles: int
    interval_weeks: float
    ligand: str
    probability: float
    binding: str
    at_upper_bound: bool
    constraints: Any = field(repr=False)
    curve: Any = field(repr=False)
    fixed: Any = field(repr=False)
    fixed_activity_gbq: float = 7.4
    fixed_n_cycles: int = 6
    fixed_cycles_allowed: int = 0
    prediction: TherapyPrediction | None = field(default=None, repr=False)
    fixed_prediction: TherapyPrediction | None = field(default=None, repr=False)
    limits: tuple = field(default=(), repr=False)
    activity_mc_interval_gbq: tuple[float, float] | None = None
    n_draws: int = 0

    def summary(self):
        """pandas table comparing the personalised and the fixed protocol."""
        import pandas as pd

        def block(pred, name, act, n):
            row = {"protocol": name, "activity_gbq_per_cycle": act, "n_cycles": n,
                   "cumulative_activity_gbq": act * n}
            for t in _tumours(pred):
                d = pred.draws("dose_gy", t)
                row[f"{t}_dose_median_gy"] = float(np.median(d))
                row[f"{t}_dose_q5_gy"] = float(np.quantile(d, 0.05))
            for c in self.limits:
                arr = pred.draws("bed_gy" if c["quantity"] == "bed" else "dose_gy", c["region"])
                row[f"P({c['organ']} {c['quantity']} <= {c['limit_gy']:g} Gy)"] = float(np.mean(arr <= c["limit_gy"]))
            return row

        rows = [block(self.prediction, "personalised", self.activity_gbq_per_cycle, self.n_cycles)]
        if self.fixed_prediction is not None:
            rows.append(block(self.fixed_prediction, "fixed", self.fixed_activity_gbq, self.fixed_n_cycles))
        return pd.DataFrame(rows).set_index("protocol")


def default_escalation_limits():
    """The limits :func:`max_activity` respects by default: kidney BED <= 40 Gy (Bodei et al.
    2008, patients without risk factors) and red-marrow absorbed dose <= 2 Gy (EANM practice
    limit), the rows of ``twin.dose.oar_limits()``."""
    from twin import dose

    t = dose.oar_limits()
    keep = ((t["organ"] == "kidneys") & (t["quantity"] == "bed") & (t["limit_gy"] == 40.0)) | (
        t["organ"] == "red_marrow")
    return t[keep].reset_index(drop=True)


class _Evaluator:
    """Constraint and tumour values per draw at an activity, for one schedule structure."""

    def __init__(self, twin, n_cycles, interval_weeks, ligand, n_draws, key, cycles):
        self.twin, self.n, self.iw, self.cycles = twin, int(n_cycles), float(interval_weeks), cycles
        self.ligand, self.n_draws, self.key = ligand, n_draws, key
        self.fixed_nmol = ligand if isinstance(ligand, (int, float)) else None
        self.ma = twin.therapy_model.default_molar_activity_mbq_per_nmol
        if isinstance(ligand, Mapping):
            self.ma = float(ligand["molar_activity_mbq_per_nmol"])
        self.evaluations: list[tuple[float, dict]] = []

    def schedule(self, a_gbq):
        if self.fixed_nmol is not None:
            return therapy_schedule(a_gbq, self.n, interval_weeks=self.iw, ligand_nmol=self.fixed_nmol)
        return therapy_schedule(a_gbq, self.n, interval_weeks=self.iw, molar_activity_mbq_per_nmol=self.ma)

    def values(self, a_gbq: float) -> dict[str, np.ndarray]:
        """{'dose_gy': (N, D), 'bed_gy': (N, D), 'regions': ...} at ``a_gbq`` per cycle (failed
        draws excluded)."""
        r = self.twin._arrays(self.schedule(a_gbq), self.n_draws, self.key, self.cycles)
        ok = r["ok"]
        if not ok.all():
            log.warning("%d draws failed to simulate at %.3g GBq; excluded", int((~ok).sum()), a_gbq)
        out = {"dose_gy": r["dose"][ok], "bed_gy": r["bed"][ok], "regions": r["op"].targets}
        self.evaluations.append((float(a_gbq), out))
        return out


def _quantity(values, c):
    return values["bed_gy" if c["quantity"] == "bed" else "dose_gy"][:, values["regions"].index(c["region"])]


def activity_mc_interval(values: np.ndarray, probability: float, activity_gbq: float,
                         exponent: float = 1.0, level: float = 0.95) -> tuple[float, float]:
    """Monte Carlo interval of a planned activity that makes ``values`` (per-draw dose or BED
    of the binding limit at ``activity_gbq``) stay within their limit with ``probability``.

    The planned activity puts the empirical ``probability`` quantile of the draws at the limit.
    With N draws the true quantile lies, with confidence ``level``, between the order
    statistics of ranks ``N p -/+ z sqrt(N p (1 - p))`` (normal approximation of the binomial
    count below the quantile; the ranks are clamped to 1..N). The activity that would put
    either of them at the limit follows from the quantity's local power law in the activity,
    ``value ~ activity ** exponent`` (1 for an absorbed dose at a fixed ligand amount, > 1 for a
    BED with its quadratic term, < 1 when receptor saturation makes dose per GBq fall with
    activity). Returns (low, high) in GBq. With few draws (N (1 - p) of order 1) the low end is
    clamped at the largest draw and understates the uncertainty. :func:`max_activity` does not
    assume a power law: it solves for both ends on re-evaluated draws (:func:`_rank_activity`).
    """
    x = np.sort(np.asarray(values, dtype=float).reshape(-1))
    n = x.size
    if n < 2 or not 0 < probability < 1 or exponent <= 0:
        raise TwinInputError("activity_mc_interval needs >= 2 draws, 0 < probability < 1 and exponent > 0.")
    lo_rank, hi_rank = _confidence_ranks(n, probability, level)
    q = limit_quantile(x, probability)
    lo_q, hi_q = x[lo_rank - 1], x[hi_rank - 1]
    if not (q > 0 and lo_q > 0 and hi_q > 0):
        return (float(activity_gbq), float(activity_gbq))
    return (float(activity_gbq * (q / hi_q) ** (1 / exponent)), float(activity_gbq * (q / lo_q) ** (1 / exponent)))


def _confidence_ranks(n: int, probability: float, level: float = 0.95) -> tuple[int, int]:
    """Ranks (1-based) of the order statistics that bracket the ``probability`` quantile of ``n``
    draws with confidence ``level`` (normal approximation of the binomial; clamped to 1..n)."""
    from scipy.stats import norm

    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt(n * probability * (1 - probability))
    return (min(max(int(math.floor(n * probability - half)), 1), n),
            min(max(int(math.ceil(n * probability + half)), 1), n))


def _rank_excess(values, limits, rank: int, n_ref: int) -> float:
    """max over the limits of log(rank-th smallest draw / limit): <= 0 where the rank-th order
    statistic of every constraint is within its limit (``rank`` of ``n_ref`` draws, rescaled
    when some draws failed at this activity)."""
    g = -math.inf
    for c in limits:
        x = np.sort(_quantity(values, c))
        if x.size == 0:
            return math.inf
        r = min(max(math.ceil(rank * x.size / n_ref - 1e-9), 1), x.size)
        v = float(x[r - 1])
        g = max(g, math.log(v / c["limit_gy"]) if v > 0 else -math.inf)
    return g


def _rank_activity(ev, limits, rank: int, n_ref: int, bounds: tuple[float, float], rtol: float,
                   max_evaluations: int = 4) -> float:
    """The largest activity at which the ``rank``-th order statistic of every constraint is
    within its limit (rank ``ceil(N p)`` gives the escalated activity itself). Per draw, dose and
    BED increase with activity, so the order statistics do too: the root is bracketed by the
    activities already evaluated and refined by regula falsi in log-log coordinates (exact for a
    power law, so one or two new evaluations reach ``rtol``); clamped to ``bounds``."""
    pts = {a: _rank_excess(v, limits, rank, n_ref) for a, v in ev.evaluations}
    below = [a for a, g in pts.items() if g <= 0]
    above = [a for a, g in pts.items() if g > 0]
    if not below:
        return float(bounds[0])
    if not above:
        return float(bounds[1])
    a1, a2 = max(below), min(above)
    if a2 <= a1:  # not monotone (failed draws): the bracket closest to the escalated activity
        a1 = max([a for a in below if a < a2], default=bounds[0])
    g1, g2 = pts.get(a1, -math.inf), pts[a2]

    def interpolate() -> float:
        if not math.isfinite(g1):
            return math.sqrt(a1 * a2)
        t = g1 / (g1 - g2)  # g1 <= 0 < g2
        return math.exp(math.log(a1) + t * math.log(a2 / a1))

    estimate = None
    for _ in range(max_evaluations):  # each step re-simulates every draw once
        new = interpolate()
        if a2 / a1 <= 1 + rtol or (estimate is not None and abs(new / estimate - 1) <= rtol / 2):
            return float(new)
        estimate = new
        g = _rank_excess(ev.values(new), limits, rank, n_ref)
        if g <= 0:
            a1, g1 = new, g
        else:
            a2, g2 = new, g
    return float(interpolate())  # the last bracket, without another simulation


def _check_enough_draws(twin, n_draws: int, probability: float, n_used: int | None = None) -> None:
    need = min_draws(probability)
    n_post = int(np.asarray(twin.posterior.log_samples).shape[0])
    n = min(n_draws, n_post) if n_used is None else n_used
    if n >= need:
        return
    if n_post < need:
        how = (f"the posterior holds {n_post} draw(s) (method {twin.posterior.method!r}); calibrate with "
               "method='laplace', 'laplace_is', 'nuts' or 'svi' (Twin.from_patient(..., method=...)) and "
               f"num_samples >= {need}")
    elif n_draws < need:
        how = f"n_draws = {n_draws}; give n_draws >= {need}"
    else:
        how = f"only {n} draws simulated (the others failed); give more draws"
    raise TooFewDrawsError(f"a limit that holds with probability {probability:g} needs at least {need} "
                           f"posterior draws (so that one may lie above it): {how}.")


def _feasible(values, limits, probability) -> tuple[bool, list[float]]:
    probs = [float(np.mean(_quantity(values, c) <= c["limit_gy"])) for c in limits]
    return all(p >= probability for p in probs), probs


def max_activity(twin: Twin, *, limits=None, probability: float = 0.95, n_cycles: int = 6,
                 interval_weeks: float = 6.0, ligand_nmol: float | None = None,
                 molar_activity_mbq_per_nmol: float | None = None,
                 bounds_gbq: tuple[float, float] = (0.5, 30.0), rtol: float = 0.005,
                 fixed_activity_gbq: float = 7.4, fixed_n_cycles: int = 6, n_draws: int = 400,
                 key: int = 0, curve_points: int = 0, cycles: str = "independent",
                 progress: bool = False) -> EscalationResult:
    """The largest activity per cycle for ``n_cycles`` cycles such that every organ-at-risk
    limit holds with at least ``probability`` under the posterior.

    limits: ``twin.dose.oar_limits()`` style table, a CSV path, or a list of dicts
    ``{organ, quantity, limit_gy}``; default :func:`default_escalation_limits` (kidney BED
    40 Gy, red marrow 2 Gy). Pass ``twin.dose.oar_limits()`` to add kidney 23 Gy absorbed
    dose and the salivary-gland surrogate.
    ligand_nmol: fixed ligand amount per cycle (dose then exactly linear in activity);
    default: ligand scales with activity at the agent's molar activity (or
    ``molar_activity_mbq_per_nmol``), which is where receptor saturation matters.
    bounds_gbq: activity search range per cycle; rtol: relative precision of the answer.
    The fixed protocol (``fixed_activity_gbq`` x ``fixed_n_cycles``, same ligand rule and
    interval) is predicted for comparison, with the number of its cycles the limits allow.

    The posterior must hold at least :func:`min_draws` draws and ``n_draws`` must ask for
    them (20 at probability 0.95): a MAP posterior (one draw) or a handful of draws cannot
    support "with probability p"; :class:`TooFewDrawsError` says to calibrate with
    ``method='laplace'`` (or ``'laplace_is'``, ``'nuts'``, ``'svi'``) or to give more draws.
    """
    _check_twin(twin)
    probability = _check_probability(probability)
    n_draws = _check_n_draws(n_draws)
    lo, hi = (float(b) for b in bounds_gbq)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise TwinInputError(f"bounds_gbq = {bounds_gbq!r} must be two activities 0 < low < high (GBq).")
    if not 0 < rtol < 0.5:
        raise TwinInputError(f"rtol = {rtol!r} must be in (0, 0.5).")
    if ligand_nmol is not None and molar_activity_mbq_per_nmol is not None:
        raise TwinInputError("give ligand_nmol or molar_activity_mbq_per_nmol, not both.")
    acf = twin.therapy_model.carrier_free_mbq_per_nmol
    for name, v in (("ligand_nmol", ligand_nmol), ("molar_activity_mbq_per_nmol", molar_activity_mbq_per_nmol)):
        if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)
                              or not math.isfinite(v) or v <= 0):
            raise TwinInputError(f"{name} = {v!r} must be a finite number > 0.")
    if molar_activity_mbq_per_nmol is not None and molar_activity_mbq_per_nmol > acf * (1 + 1e-12):
        raise TwinInputError(f"molar_activity_mbq_per_nmol = {molar_activity_mbq_per_nmol:g} is above the "
                             f"carrier-free {acf:.4g} MBq/nmol of {twin.therapy_model.nuclide}.")
    if ligand_nmol is not None:
        cap = float(ligand_nmol) * acf / 1000.0  # GBq that ligand_nmol can carry
        if lo >= cap:
            raise TwinInputError(f"ligand_nmol = {ligand_nmol:g} nmol carries at most {cap:.3g} GBq "
                                 f"(carrier-free); lower bounds_gbq below that or give more ligand.")
        if hi > cap:
            log.info("upper activity bound lowered from %.3g to %.3g GBq: %g nmol carry no more", hi, cap,
                     ligand_nmol)
            hi = cap
    lim = _limits(default_escalation_limits() if limits is None else limits)
    if not lim:
        raise TwinInputError("no organ-at-risk limit to respect; give limits=[{'organ': 'kidneys', "
                             "'quantity': 'bed', 'limit_gy': 40}].")
    ligand: Any = float(ligand_nmol) if ligand_nmol is not None else (
        {"molar_activity_mbq_per_nmol": molar_activity_mbq_per_nmol}
        if molar_activity_mbq_per_nmol is not None else "scaled")
    ev = _Evaluator(twin, n_cycles, interval_weeks, ligand, n_draws, key, cycles)
    known = set(twin.dose_operator().targets)
    missing = sorted({c["region"] for c in lim} - known)
    if missing:
        raise TwinInputError(f"limits name region(s) {', '.join(missing)} without a dose; dose regions: "
                             f"{', '.join(sorted(known))}.")
    _check_enough_draws(twin, n_draws, probability)
    first = ev.values(lo)
    _check_enough_draws(twin, n_draws, probability, len(_quantity(first, lim[0])))
    ok_lo, probs_lo = _feasible(first, lim, probability)
    if not ok_lo:
        worst = lim[int(np.argmin(probs_lo))]
        reason = (f"even {lo:g} GBq x {n_cycles} violates {worst['organ']} {worst['quantity']} <= "
                  f"{worst['limit_gy']:g} Gy with probability {probability:g} (it holds with "
                  f"{min(probs_lo):.2f})")
        err = InfeasibleError(f"{reason}; lower bounds_gbq or the number of cycles.")
        err.reason = reason  # without the API advice (the CLI gives its own)
        raise err
    hi_bound = hi
    ok_hi, _ = _feasible(ev.values(hi), lim, probability)
    a_star, at_upper = (hi, True) if ok_hi else (None, False)
    if a_star is None:
        steps = math.ceil(math.log2(math.log(hi / lo) / math.log1p(rtol))) + 1
        it = _progress(range(steps), steps, "escalation", progress)
        for _ in it:
            if hi / lo <= 1 + rtol:
                break
            mid = math.sqrt(lo * hi)
            if _feasible(ev.values(mid), lim, probability)[0]:
                lo = mid
            else:
                hi = mid
        a_star = lo
    if curve_points:
        for a in np.geomspace(min(bounds_gbq[0], a_star / 4), a_star * 2, curve_points):
            if all(abs(a / e[0] - 1) > 1e-9 for e in ev.evaluations):
                ev.values(float(a))
    final = twin.predict(ev.schedule(a_star), n_draws=n_draws, key=key, cycles=cycles)
    cons_rows, binding, best_margin, binding_c, binding_arr = [], "", np.inf, None, None
    for c in lim:
        arr = final.draws("bed_gy" if c["quantity"] == "bed" else "dose_gy", c["region"])
        qv = limit_quantile(arr, probability)
        p = float(np.mean(arr <= c["limit_gy"]))
        cons_rows.append({"organ": c["organ"], "region": c["region"], "quantity": c["quantity"],
                          "limit_gy": c["limit_gy"], f"q{100 * probability:g}_gy": qv,
                          "probability_within": p, "source": c["source"]})
        margin = c["limit_gy"] / qv if qv > 0 else np.inf
        if margin < best_margin:
            best_margin, binding = margin, f"{c['organ']} {c['quantity']} <= {c['limit_gy']:g} Gy"
            binding_c, binding_arr = c, arr
    mc_interval = None
    if not at_upper and binding_c is not None and binding_arr.size >= 2:
        # the activities at which the confidence ranks of the draws reach the limits, solved on
        # re-evaluated draws (exact; a local power law misses receptor saturation)
        n_ref = int(binding_arr.size)
        r_lo, r_hi = _confidence_ranks(n_ref, probability)
        bounds = (float(bounds_gbq[0]), float(hi_bound))
        a_lo = _rank_activity(ev, lim, r_hi, n_ref, bounds, rtol)
        a_hi = _rank_activity(ev, lim, r_lo, n_ref, bounds, rtol)
        mc_interval = (min(a_lo, float(a_star)), max(a_hi, float(a_star)))
    import pandas as pd

    curve = _curve(ev, lim, probability)
    fixed_sched = ev.schedule(fixed_activity_gbq) if fixed_n_cycles == n_cycles else (
        therapy_schedule(fixed_activity_gbq, fixed_n_cycles, interval_weeks=interval_weeks,
                         **({"ligand_nmol": ev.fixed_nmol} if ev.fixed_nmol is not None
                            else {"molar_activity_mbq_per_nmol": ev.ma})))
    fixed = twin.predict(fixed_sched, n_draws=n_draws, key=key, cycles=cycles)
    allowed = 0
    for k in range(1, fixed_n_cycles + 1):  # cycles independent: k of n cycles give k/n of the dose
        vals = {"dose_gy": fixed.dose_gy * k / fixed_n_cycles, "bed_gy": fixed.bed_gy * k / fixed_n_cycles,
                "regions": fixed.dose_regions}
        if _feasible(vals, lim, probability)[0]:
            allowed = k
    fixed_rows = []
    for c in lim:
        arr = fixed.draws("bed_gy" if c["quantity"] == "bed" else "dose_gy", c["region"])
        fixed_rows.append({"organ": c["organ"], "quantity": c["quantity"], "limit_gy": c["limit_gy"],
                           f"q{100 * probability:g}_gy": limit_quantile(arr, probability),
                           "probability_within": float(np.mean(arr <= c["limit_gy"]))})
    return EscalationResult(
        activity_gbq_per_cycle=float(a_star), cumulative_activity_gbq=float(a_star) * int(n_cycles),
        n_cycles=int(n_cycles), interval_weeks=float(interval_weeks),
        ligand=(f"{ev.fixed_nmol:g} nmol per cycle" if ev.fixed_nmol is not None
                else f"scaled with activity at {ev.ma:g} MBq/nmol"),
        probability=float(probability), binding=binding, at_upper_bound=at_upper,
        constraints=pd.DataFrame(cons_rows), curve=curve, fixed=pd.DataFrame(fixed_rows),
        fixed_activity_gbq=float(fixed_activity_gbq), fixed_n_cycles=int(fixed_n_cycles),
        fixed_cycles_allowed=allowed, prediction=final, fixed_prediction=fixed, limits=tuple(lim),
        activity_mc_interval_gbq=mc_interval, n_draws=int(np.asarray(final.dose_gy).shape[0]))


def _curve(ev: _Evaluator, lim, probability):
    import pandas as pd

    rows = []
    seen = set()
    for a, vals in sorted(ev.evaluations, key=lambda e: e[0]):
        if a in seen:
            continue
        seen.add(a)
        row = {"activity_gbq_per_cycle": a, "cumulative_activity_gbq": a * ev.n}
        for c in lim:
            v = _quantity(vals, c)
            name = f"{c['organ']}_{c['quantity']}"
            row[f"{name}_q50_gy"] = float(np.median(v))
            # the constraint's quantile (order statistic), so the curve agrees with it at a*
            row[f"{name}_q{100 * probability:g}_gy"] = limit_quantile(v, probability)
            row[f"{name}_limit_gy"] = c["limit_gy"]
        for t in [r for r in vals["regions"] if r.startswith("tumour")]:
            d = vals["dose_gy"][:, vals["regions"].index(t)]
            row[f"{t}_dose_q5_gy"] = float(np.quantile(d, 0.05))
            row[f"{t}_dose_q50_gy"] = float(np.median(d))
            row[f"{t}_dose_q95_gy"] = float(np.quantile(d, 0.95))
        rows.append(row)
    return pd.DataFrame(rows)
