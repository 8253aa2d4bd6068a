"""Trial arms as data, and their per-patient endpoints from one cycle's kinetics.

An :class:`Arm` gives the activity per cycle, the (maximum) number of cycles, the interval and
the ligand amount, and optionally a personalisation rule against an organ-at-risk
:class:`Limit`:

* ``personalise="none"``: every patient gets ``cycles`` x ``activity_gbq``;
* ``personalise="cycles"``: cycles of ``activity_gbq`` are given while the cumulative quantity
  (absorbed dose or BED of the limit's organ) after the next cycle stays within the limit,
  at least ``min_cycles`` and at most ``cycles``;
* ``personalise="activity"``: one activity per cycle for all ``cycles`` cycles, chosen so the
  cumulative quantity reaches the limit, capped at ``activity_gbq``.

Cycles are identical and independent (see :mod:`twin.cohort._kinetics`), so after ``k`` cycles
of ``a`` GBq an organ has ``D = k a d1`` and ``BED = k (a d1 + G (a d1)^2 / (alpha/beta))``,
with ``d1`` its dose per GBq and cycle and ``G`` the cycle's G-factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.cohort._errors import CohortConfigError

__all__ = ["PERSONALISE", "QUANTITIES", "Arm", "Limit", "default_limits", "evaluate_arm"]

PERSONALISE = ("none", "cycles", "activity")
QUANTITIES = ("dose", "bed")
_ORGANS = ("kidneys", "salivary_glands", "lacrimal_glands", "red_marrow", "liver", "spleen", "tumour")


def _positive(owner: str, name: str, value, *, integer: bool = False, allow_zero: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CohortConfigError(f"{owner}: {name} = {value!r} must be a number.")
    if not math.isfinite(float(value)):
        raise CohortConfigError(f"{owner}: {name} = {value!r} must be a finite number.")
    if integer and float(value) != int(value):
        raise CohortConfigError(f"{owner}: {name} = {value!r} must be a whole number.")
    v = int(value) if integer else float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise CohortConfigError(f"{owner}: {name} = {value!r} must be {'>= 0' if allow_zero else '> 0'}.")
    return v


@dataclass(frozen=True)
class Limit:
    """An organ-at-risk limit on a cumulative quantity: ``dose`` (absorbed dose) or ``bed``, in Gy."""

    organ: str
    quantity: str
    limit_gy: float

    def __post_init__(self):
        if self.organ not in _ORGANS:
            raise CohortConfigError(f"limit organ {self.organ!r} is not known; use one of {', '.join(_ORGANS)}.")
        if self.quantity not in QUANTITIES:
            raise CohortConfigError(f"limit quantity {self.quantity!r} is not known; use 'dose' or 'bed'.")
        object.__setattr__(self, "limit_gy", _positive("limit", "limit_gy", self.limit_gy))

    @property
    def label(self) -> str:
        return f"{self.organ}_{self.quantity}_le_{self.limit_gy:g}gy"

    def __str__(self) -> str:
        q = "absorbed dose" if self.quantity == "dose" else "BED"
        return f"{self.organ} {q} <= {self.limit_gy:g} Gy"


def default_limits() -> tuple[Limit, ...]:
    """The organ-at-risk limits shipped with :func:`twin.dose.oar_limits` (sources there)."""
    from twin import dose

    out = []
    for rec in dose.oar_limits().to_dict("records"):
        if rec["organ"] not in _ORGANS:
            continue
        if "with risk factors" in str(rec["condition"]):
            continue
        out.append(Limit(rec["organ"], "dose" if rec["quantity"] == "absorbed_dose" else "bed",
                         float(rec["limit_gy"])))
    return tuple(out)


@dataclass(frozen=True)
class Arm:
    """One arm of a virtual trial. Activities in GBq per cycle; ``ligand_nmol`` per cycle.

    ``ligand_nmol=None`` takes the amount of ``activity_gbq`` at the ligand's default molar
    activity (e.g. 90 nmol for 7.4 GBq of PSMA-617); personalised activities keep that amount
    (the hot fraction changes, the ligand amount does not). A given ``ligand_nmol`` must hold
    at least the labelled ligand of ``activity_gbq`` (7.4 GBq of carrier-free 177Lu: 10.2 nmol);
    :class:`twin.trial.Trial` checks it against the population's nuclide. ``limit`` is only
    for ``personalise="cycles"`` or ``"activity"``.
    """

    name: str
    activity_gbq: float = 7.4
    cycles: int = 6
    interval_weeks: float = 6.0
    ligand_nmol: float | None = None
    personalise: str = "none"
    limit: Limit | None = None
    min_cycles: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise CohortConfigError("an arm needs a non-empty name.")
        owner = f"arm {self.name!r}"
        object.__setattr__(self, "activity_gbq", _positive(owner, "activity_gbq", self.activity_gbq))
        if self.activity_gbq > 50:
            raise CohortConfigError(f"{owner}: activity_gbq = {self.activity_gbq:g} GBq per cycle is "
                                    "implausible; give the activity in GBq (7.4, not 7400).")
        object.__setattr__(self, "cycles", _positive(owner, "cycles", self.cycles, integer=True))
        if self.cycles > 20:
            raise CohortConfigError(f"{owner}: cycles = {self.cycles} is more than 20.")
        object.__setattr__(self, "interval_weeks", _positive(owner, "interval_weeks", self.interval_weeks))
        if self.ligand_nmol is not None:
            object.__setattr__(self, "ligand_nmol", _positive(owner, "ligand_nmol", self.ligand_nmol))
        if self.personalise not in PERSONALISE:
            raise CohortConfigError(f"{owner}: personalise = {self.personalise!r} is not known; use one of "
                                    f"{', '.join(PERSONALISE)}.")
        if self.personalise != "none" and not isinstance(self.limit, Limit):
            raise CohortConfigError(f"{owner}: personalise = {self.personalise!r} needs a limit "
                                    "(e.g. Limit('kidneys', 'bed', 40.0)).")
        if self.limit is not None and not isinstance(self.limit, Limit):
            raise CohortConfigError(f"{owner}: limit must be a Limit.")
        if self.personalise == "none" and self.limit is not None:
            raise CohortConfigError(
                f"{owner}: limit ({self.limit}) has no effect with personalise = 'none' (every patient "
                "gets every cycle); set personalise = 'cycles' or 'activity' to apply it, or drop the "
                "limit (limits that are only reported go in the trial's limits).")
        object.__setattr__(self, "min_cycles", _positive(owner, "min_cycles", self.min_cycles,
                                                         integer=True, allow_zero=True))
        if self.min_cycles > self.cycles:
            raise CohortConfigError(f"{owner}: min_cycles = {self.min_cycles} exceeds cycles = {self.cycles}.")

    def to_dict(self) -> dict:
        d = {"name": self.name, "activity_gbq": self.activity_gbq, "cycles": self.cycles,
             "interval_weeks": self.interval_weeks, "ligand_nmol": self.ligand_nmol,
             "personalise": self.personalise, "min_cycles": self.min_cycles}
        if self.limit is not None:
            d["limit"] = {"organ": self.limit.organ, "quantity": self.limit.quantity,
                          "limit_gy": self.limit.limit_gy}
        return d

    def describe(self) -> str:
        base = f"{self.activity_gbq:g} GBq x {self.cycles} every {self.interval_weeks:g} weeks"
        if self.personalise == "cycles":
            return f"{base}, stop before {self.limit} would be exceeded (>= {self.min_cycles} cycles)"
        if self.personalise == "activity":
            return f"{self.cycles} cycles, activity per cycle to reach {self.limit} (<= {self.activity_gbq:g} GBq)"
        return base


def _cumulative(quantity: str, k, a, d1, g, ab):
    """Cumulative dose or BED after k cycles of a GBq (d1: Gy per GBq and cycle)."""
    d = a * d1
    if quantity == "dose":
        return k * d
    return k * (d + g * d * d / ab)


def evaluate_arm(arm: Arm, organs: tuple[str, ...], dose_gy_per_gbq: np.ndarray,
                 g_factor: np.ndarray, alpha_beta_gy: tuple[float, ...],
                 limits: tuple[Limit, ...]) -> dict[str, np.ndarray]:
    """Per-patient endpoints of one arm.

    ``dose_gy_per_gbq`` and ``g_factor`` are (n, organs) for one cycle. Returns columns
    ``cycles_given``, ``activity_per_cycle_gbq``, ``cumulative_activity_gbq``,
    ``treatment_weeks``, ``{organ}_dose_gy``, ``{organ}_bed_gy`` and one boolean
    ``exceeds_{limit.label}`` per limit (NaN rows stay NaN / False).
    """
    n = dose_gy_per_gbq.shape[0]
    ab = np.asarray(alpha_beta_gy, float)
    a = np.full(n, arm.activity_gbq)
    k = np.full(n, float(arm.cycles))
    if arm.personalise != "none":
        lim = arm.limit
        if lim.organ not in organs:
            raise CohortConfigError(f"arm {arm.name!r}: the model has no {lim.organ} endpoint; "
                                    f"available: {', '.join(organs)}.")
        j = organs.index(lim.organ)
        d1, g = dose_gy_per_gbq[:, j], g_factor[:, j]
        if arm.personalise == "cycles":
            per_cycle = _cumulative(lim.quantity, 1.0, a, d1, g, ab[j])
            with np.errstate(divide="ignore", invalid="ignore"):
                allowed = np.floor(lim.limit_gy / per_cycle * (1 + 1e-12))
            k = np.clip(allowed, arm.min_cycles, arm.cycles)
        else:
            target = lim.limit_gy / arm.cycles  # per-cycle share of the limit
            with np.errstate(divide="ignore", invalid="ignore"):
                if lim.quantity == "dose":
                    x = np.full(n, target)
                else:  # G x^2 / ab + x - target = 0, x = dose per cycle
                    c = g / ab[j]
                    x = np.where(c > 0, (np.sqrt(1.0 + 4.0 * c * target) - 1.0) / (2.0 * np.where(c > 0, c, 1.0)),
                                 target)
                a = np.minimum(x / d1, arm.activity_gbq)
        nan = ~np.isfinite(d1) | ~np.isfinite(g)
        k = np.where(nan, np.nan, k)
        a = np.where(nan, np.nan, a)
    out = {
        "cycles_given": k,
        "activity_per_cycle_gbq": a,
        "cumulative_activity_gbq": k * a,
        "treatment_weeks": np.where(k > 0, (k - 1) * arm.interval_weeks, 0.0),
    }
    for j, o in enumerate(organs):
        out[f"{o}_dose_gy"] = _cumulative("dose", k, a, dose_gy_per_gbq[:, j], g_factor[:, j], ab[j])
        out[f"{o}_bed_gy"] = _cumulative("bed", k, a, dose_gy_per_gbq[:, j], g_factor[:, j], ab[j])
    for lim in limits:
        if lim.organ in organs:
            value = out[f"{lim.organ}_{lim.quantity}_gy"]
            out[f"exceeds_{lim.label}"] = np.where(np.isfinite(value), value > lim.limit_gy * (1 + 1e-9), False)
    return out
