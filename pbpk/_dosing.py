"""Administrations and schedules: when, how much activity, how much ligand, how fast."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pbpk._errors import InvalidInputError

#: Activity per administration (MBq) above which a unit mix-up (Bq or kBq given as MBq) is
#: likely: therapies are 1-10 GBq (1000-10000 MBq) and PET injections 100-500 MBq.
IMPLAUSIBLE_ACTIVITY_MBQ = 1e6

__all__ = ["Administration", "Schedule"]


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"{name} = {value!r} is not valid: it must be finite and {bound}.")
    return v


@dataclass(frozen=True)
class Administration:
    """One administration of a radioligand.

    Parameters
    ----------
    activity_mbq:
        Injected activity in MBq at the start of the administration (7.4 GBq = 7400 MBq).
        0 is accepted for a cold (unlabelled) pre-dose when ``ligand_nmol`` > 0 is given.
        Above 1e6 MBq (1 TBq) a ``UserWarning`` suggests a Bq/kBq/GBq mix-up.
    time_h:
        Start time in hours after the first administration (0 for a single injection).
    ligand_nmol:
        Total ligand amount (hot + cold) in nmol. Give this *or* ``molar_activity_mbq_per_nmol``;
        with neither the model's default molar activity is used.
    molar_activity_mbq_per_nmol:
        Molar (specific) activity of the preparation; ``ligand_nmol = activity / molar activity``.
    infusion_h:
        Duration of a constant-rate infusion in hours; 0 is a bolus.
    """

    activity_mbq: float
    time_h: float = 0.0
    ligand_nmol: float | None = None
    molar_activity_mbq_per_nmol: float | None = None
    infusion_h: float = 0.0

    def __post_init__(self) -> None:
        cold_dose = self.ligand_nmol is not None and self.molar_activity_mbq_per_nmol is None
        if not cold_dose and _positive("activity_mbq", self.activity_mbq, allow_zero=True) == 0:
            raise InvalidInputError(
                "activity_mbq = 0 administers nothing; give ligand_nmol > 0 (without a molar "
                "activity) for a cold, unlabelled dose, or a positive activity in MBq."
            )
        object.__setattr__(self, "activity_mbq",
                           _positive("activity_mbq", self.activity_mbq, allow_zero=cold_dose))
        if self.activity_mbq > IMPLAUSIBLE_ACTIVITY_MBQ:
            warnings.warn(
                f"activity_mbq = {self.activity_mbq:g} MBq ({self.activity_mbq / 1e6:g} TBq) per "
                "administration is implausible; was it given in Bq or kBq? Give the activity in "
                "MBq (7.4 GBq = 7400 MBq).",
                UserWarning,
                stacklevel=3,
            )
        object.__setattr__(self, "time_h", _positive("time_h", self.time_h, allow_zero=True))
        object.__setattr__(self, "infusion_h", _positive("infusion_h", self.infusion_h, allow_zero=True))
        if self.infusion_h > 0 and self.time_h + self.infusion_h == self.time_h:
            raise InvalidInputError(
                f"infusion_h = {self.infusion_h!r} h is too short to end after time_h = "
                f"{self.time_h!r} h in floating point; give infusion_h = 0 for a bolus."
            )
        if self.ligand_nmol is not None and self.molar_activity_mbq_per_nmol is not None:
            raise InvalidInputError(
                "give either ligand_nmol or molar_activity_mbq_per_nmol for an administration, not both."
            )
        if self.ligand_nmol is not None:
            object.__setattr__(self, "ligand_nmol", _positive("ligand_nmol", self.ligand_nmol))
        if self.molar_activity_mbq_per_nmol is not None:
            object.__setattr__(
                self,
                "molar_activity_mbq_per_nmol",
                _positive("molar_activity_mbq_per_nmol", self.molar_activity_mbq_per_nmol),
            )

    @property
    def end_h(self) -> float:
        return self.time_h + self.infusion_h

    def amounts_nmol(self, carrier_free_mbq_per_nmol: float, default_molar_activity: float) -> tuple[float, float]:
        """Return ``(hot_nmol, cold_nmol)`` for a nuclide with the given carrier-free molar activity."""
        hot = self.activity_mbq / carrier_free_mbq_per_nmol
        if self.ligand_nmol is not None:
            total = self.ligand_nmol
        else:
            ma = self.molar_activity_mbq_per_nmol or default_molar_activity
            total = self.activity_mbq / ma
        if total < hot * (1 - 1e-12):
            raise InvalidInputError(
                f"ligand amount {total:.4g} nmol is less than the {hot:.4g} nmol of labelled ligand "
                f"that {self.activity_mbq:g} MBq needs (carrier-free molar activity "
                f"{carrier_free_mbq_per_nmol:.4g} MBq/nmol); increase ligand_nmol or lower the "
                "molar activity."
            )
        return hot, max(total - hot, 0.0)


@dataclass(frozen=True)
class Schedule:
    """An ordered sequence of administrations (therapy cycles, or one PET injection)."""

    administrations: tuple[Administration, ...]

    def __post_init__(self) -> None:
        if isinstance(self.administrations, Administration):
            adm = (self.administrations,)
        else:
            try:
                adm = tuple(self.administrations)
            except TypeError:
                raise InvalidInputError(
                    "a schedule takes a sequence of Administration objects (e.g. "
                    f"pbpk.Schedule((pbpk.Administration(7400.0),))), got {self.administrations!r}."
                ) from None
        if not adm:
            raise InvalidInputError("a schedule needs at least one administration.")
        for a in adm:
            if not isinstance(a, Administration):
                raise InvalidInputError(f"schedule entries must be Administration objects, got {a!r}.")
        adm = tuple(sorted(adm, key=lambda a: (a.time_h, a.end_h)))  # order-independent
        for prev, nxt in zip(adm, adm[1:]):
            if nxt.time_h < prev.end_h:
                raise InvalidInputError(
                    f"administration at {nxt.time_h} h starts before the infusion at "
                    f"{prev.time_h} h ends ({prev.end_h} h); overlapping infusions are not supported."
                )
        object.__setattr__(self, "administrations", adm)

    @classmethod
    def single(cls, activity_mbq: float, **kwargs) -> Schedule:
        """One administration at t = 0."""
        return cls((Administration(activity_mbq, **kwargs),))

    @classmethod
    def cycles(
        cls,
        activity_mbq: float | Sequence[float],
        n_cycles: int,
        interval_h: float = 6 * 7 * 24.0,
        **kwargs,
    ) -> Schedule:
        """``n_cycles`` administrations every ``interval_h`` hours (default 6 weeks).

        ``activity_mbq`` is one activity for every cycle or one per cycle (a sequence or 1-D
        array); ``n_cycles`` any integer type (``int``, ``numpy.int64``)."""
        if (isinstance(n_cycles, bool) or not isinstance(n_cycles, numbers.Integral)
                or n_cycles < 1):
            raise InvalidInputError(f"n_cycles = {n_cycles!r} must be a positive integer.")
        n_cycles = int(n_cycles)
        _positive("interval_h", interval_h)
        if isinstance(activity_mbq, str):
            raise InvalidInputError(f"activity_mbq must be a number or one number per cycle (MBq), "
                                    f"got {activity_mbq!r}.")
        ndim = np.ndim(activity_mbq)
        if ndim > 1:
            raise InvalidInputError(
                f"activity_mbq must be one number or a 1-D sequence with one activity per cycle "
                f"(MBq), got an array of shape {np.shape(activity_mbq)}."
            )
        acts = [activity_mbq] * n_cycles if ndim == 0 else list(np.asarray(activity_mbq, dtype=object))
        if len(acts) != n_cycles:
            raise InvalidInputError(f"{len(acts)} activities given for {n_cycles} cycles.")
        return cls(tuple(Administration(a, time_h=i * interval_h, **kwargs) for i, a in enumerate(acts)))

    @property
    def breakpoints_h(self) -> tuple[float, ...]:
        """Times where the input changes (bolus, infusion start and end), sorted, unique."""
        pts = set()
        for a in self.administrations:
            pts.add(a.time_h)
            if a.infusion_h > 0:
                pts.add(a.end_h)
        return tuple(sorted(pts))

    @property
    def total_activity_mbq(self) -> float:
        return sum(a.activity_mbq for a in self.administrations)
