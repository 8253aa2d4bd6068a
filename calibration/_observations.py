"""Observations: what was measured in a patient, and how noisy it is.

An :class:`Observations` set is a flat list of measurements (region, time after injection,
value, unit) of one agent, each with its noise model:

* a log-normal proportional error, coefficient of variation ``cv``;
* an additive floor ``floor`` (in the observation's unit) for values near the detection limit;
* for small structures, the uncertainty of the partial-volume (recovery-coefficient, RC)
  correction: the correction factor ``1/RC`` carries a relative error ``rc_cv * (1/RC - 1)``,
  so a structure with RC = 1 adds nothing and one with RC = 0.5 adds ``rc_cv``.

On the log scale the standard deviation of observation *i* with prediction ``m`` is::

    s_i^2 = log(1 + cv_i^2) + (rc_cv_i * (1/RC_i - 1))^2 + (floor_i / m)^2

Units: ``"MBq"`` (activity in the region at the scan time, not decay-corrected, as
``pbpk.simulate`` returns it) or ``"%IA"`` (percent of injected activity, decay-corrected to
injection, as ``twin.patient.organ_uptake`` reports it; after several administrations, of the
most recent one before the scan, decay-corrected to it: ``SimulationResult.percent_injected``).

Clock: ``time_h`` is on the clock of the schedule the observations are calibrated with
(``pbpk.Schedule``; ``pbpk.Schedule.single`` injects at 0 h, so there it is the time after
injection). An observation at or before the schedule's first administration carrying activity
(a cold pre-dose carries none) is refused when it meets the schedule
(:func:`calibration.calibrate`): no activity has been injected yet, so its prediction is 0 and
it has no log-normal likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from calibration._errors import ObservationError
from pbpk._numbers import real_or_none

__all__ = ["UNITS", "NoiseModel", "Observations"]

#: Units an observation can have.
UNITS = ("MBq", "%IA")

_UNIT_ALIASES = {"mbq": "MBq", "%ia": "%IA", "percent_ia": "%IA", "%": "%IA"}
_DEFAULT_EXCLUDE = ("urine", "remainder_of_body", "whole_body")


def _unit(u) -> str:
    key = str(u).strip().lower()
    if key not in _UNIT_ALIASES:
        raise ObservationError(f"unit {u!r} is not known; use one of {', '.join(UNITS)}.")
    return _UNIT_ALIASES[key]


@dataclass(frozen=True)
class NoiseModel:
    """Noise of one kind of measurement.

    cv: coefficient of variation of the log-normal proportional error (0.15 = 15 %).
    floor: additive floor in the observation's unit (MBq or %IA); 0 for none.
    rc_cv: relative uncertainty of the partial-volume correction ``1/RC - 1``.
    """

    cv: float = 0.15
    floor: float = 0.0
    rc_cv: float = 0.3

    def __post_init__(self) -> None:
        for name in ("cv", "floor", "rc_cv"):
            v = getattr(self, name)
            x = real_or_none(v)
            if x is None or not math.isfinite(x) or x < 0:
                raise ObservationError(f"NoiseModel.{name} = {v!r} must be a finite number >= 0 "
                                       "(a real number, not a bool or a string).")
            object.__setattr__(self, name, x)
        if self.cv == 0 and self.floor == 0:
            raise ObservationError("NoiseModel needs cv > 0 or floor > 0: a noiseless observation "
                                   "has no likelihood.")


def _noise_for(noise, region: str) -> NoiseModel:
    """``noise`` is a NoiseModel or a mapping region -> NoiseModel (keys: region, 'tumour', 'default')."""
    if isinstance(noise, NoiseModel):
        return noise
    if isinstance(noise, Mapping):
        for key in (region, "tumour" if region.startswith("tumour") else None, "default"):
            if key is not None and key in noise:
                nm = noise[key]
                if not isinstance(nm, NoiseModel):
                    raise ObservationError(f"noise[{key!r}] must be a NoiseModel, got {type(nm).__name__}.")
                return nm
        return NoiseModel()
    raise ObservationError("noise must be a NoiseModel or a mapping region -> NoiseModel.")


def _check_noise_keys(noise, regions) -> None:
    """Refuse keys of a noise mapping that match no region (a typo would silently fall back
    to the default noise): valid keys are the ``regions`` given, ``'tumour'`` and ``'default'``."""
    if not isinstance(noise, Mapping):
        return
    regions = sorted({str(r) for r in regions})
    valid = {*regions, "tumour", "default"}
    bad = [k for k in noise if k not in valid]
    if bad:
        raise ObservationError(
            f"noise key(s) {', '.join(map(repr, bad))} match no observed region; valid keys: "
            f"{', '.join(regions)}, 'tumour' (every tumour region) and 'default' (the rest). "
            "Check the spelling (e.g. 'kidney', 'tumour').")


@dataclass(frozen=True, eq=False)
class Observations:
    """A validated set of measurements of one agent. Build with :meth:`from_uptake` or
    :meth:`from_records`; combine with :meth:`concat`; inspect with :meth:`table`.

    Arrays are read-only numpy arrays of equal length, one entry per observation.
    """

    region: tuple[str, ...]
    time_h: np.ndarray
    value: np.ndarray
    unit: tuple[str, ...]
    cv: np.ndarray
    floor: np.ndarray
    recovery_coefficient: np.ndarray
    rc_cv: np.ndarray
    agent: str | None = None
    source: tuple[str, ...] = field(default=())
    #: per observation, the index of the data set it belongs to (default: all 0). Observations of
    #: several agents/schedules joined for one joint calibration (``twin.Twin.update``) keep
    #: their data sets apart: duplicates are refused only within one data set.
    dataset: tuple[int, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        n = len(self.region)
        if n == 0:
            raise ObservationError("an observation set needs at least one observation.")
        if not self.dataset:
            object.__setattr__(self, "dataset", (0,) * n)
        else:
            ds = tuple(self.dataset)
            if len(ds) != n or any(real_or_none(d) is None or int(d) != d for d in ds):
                raise ObservationError(f"dataset must give one integer per observation ({n}).")
            object.__setattr__(self, "dataset", tuple(int(d) for d in ds))
        arrays = {}
        for name in ("time_h", "value", "cv", "floor", "recovery_coefficient", "rc_cv"):
            try:
                a = np.array(getattr(self, name), dtype=float).reshape(-1)
            except (TypeError, ValueError):
                raise ObservationError(f"{name} must be numbers.") from None
            if a.size != n:
                raise ObservationError(f"{name} has {a.size} entries for {n} observations.")
            if not np.all(np.isfinite(a)):
                bad = [self.region[i] for i in np.flatnonzero(~np.isfinite(a))]
                raise ObservationError(f"{name} is not finite for region(s) {', '.join(bad)}.")
            a.setflags(write=False)
            arrays[name] = a
        for name, a in arrays.items():
            object.__setattr__(self, name, a)
        if len(self.unit) != n:
            raise ObservationError(f"unit has {len(self.unit)} entries for {n} observations.")
        object.__setattr__(self, "unit", tuple(_unit(u) for u in self.unit))
        if any(not isinstance(r, str) or not r for r in self.region):
            raise ObservationError("every observation needs a region name (a non-empty string).")
        if np.any(self.time_h < 0):
            raise ObservationError("time_h must be >= 0 h after injection.")
        bad = [f"{r} at {t:g} h" for r, t, v in zip(self.region, self.time_h, self.value) if v <= 0]
        if bad:
            raise ObservationError(
                f"values must be > 0 for the log-normal noise model; got <= 0 for {', '.join(bad)}. "
                "Drop those observations (below the detection limit) or give a positive limit value "
                "with a floor."
            )
        if np.any((self.cv == 0) & (self.floor == 0)):
            raise ObservationError("every observation needs cv > 0 or floor > 0.")
        if np.any(self.cv < 0) or np.any(self.floor < 0) or np.any(self.rc_cv < 0):
            raise ObservationError("cv, floor and rc_cv must be >= 0.")
        rc = self.recovery_coefficient
        if np.any((rc <= 0) | (rc > 1)):
            raise ObservationError("recovery coefficients must lie in (0, 1].")
        # one scan of one region counts once, whatever its unit (MBq and %IA of the same scan
        # are the same measurement); data sets of other agents/schedules are kept apart
        keys = list(zip(self.dataset, self.region, self.time_h.tolist()))
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            units = {k: sorted({u for kk, u in zip(keys, self.unit) if kk == k}) for k in dup}
            raise ObservationError(
                "duplicate observations (same region and time): "
                + ", ".join(f"{r} at {t:g} h [{'/'.join(units[(d, r, t)])}]" for d, r, t in dup)
                + "; average them first or give them distinct times (the same scan in MBq and in %IA "
                "is one measurement: keep one unit)."
            )
        if not self.source:
            object.__setattr__(self, "source", ("by hand",) * n)
        elif len(self.source) != n:
            raise ObservationError(f"source has {len(self.source)} entries for {n} observations.")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_records(cls, records, *, agent: str | None = None,
                     noise: NoiseModel | Mapping[str, NoiseModel] = NoiseModel()) -> Observations:
        """Observations given by hand: a pandas DataFrame or an iterable of dicts with keys
        ``region``, ``time_h`` (h on the schedule's clock: after injection for
        ``pbpk.Schedule.single``), ``value``, ``unit`` (``"MBq"``/``"%IA"``) and optionally
        ``cv``, ``floor``, ``recovery_coefficient``, ``rc_cv`` (a missing or blank cell:
        the default from ``noise``, RC 1).

        noise: one NoiseModel, or a mapping with keys region names, ``'tumour'`` (every
        ``tumour*`` region) and ``'default'``; a key that matches no region is refused."""
        rows = _rows(records)
        if not rows:
            raise ObservationError("no observation records were given.")
        cols = {k: [] for k in ("region", "time_h", "value", "unit", "cv", "floor",
                                "recovery_coefficient", "rc_cv")}
        for i, row in enumerate(rows):
            missing = [k for k in ("region", "time_h", "value", "unit") if k not in row or row[k] is None
                       or (k in ("region", "unit") and _blank(row[k]))]
            if missing:
                raise ObservationError(f"observation record {i} lacks {', '.join(missing)}.")
            region = str(row["region"])
            nm = _noise_for(noise, region)
            cols["region"].append(region)
            cols["unit"].append(row["unit"])
            for k in ("time_h", "value"):
                cols[k].append(_number(row[k], k, i))
            # an optional cell left blank (None, NaN from an empty CSV cell, "") takes its default
            for k, default in (("cv", nm.cv), ("floor", nm.floor), ("recovery_coefficient", 1.0),
                               ("rc_cv", nm.rc_cv)):
                v = row.get(k)
                cols[k].append(default if _blank(v) else _number(v, k, i))
        _check_noise_keys(noise, cols["region"])
        return cls(region=tuple(cols["region"]), time_h=cols["time_h"], value=cols["value"],
                   unit=tuple(cols["unit"]), cv=cols["cv"], floor=cols["floor"],
                   recovery_coefficient=cols["recovery_coefficient"], rc_cv=cols["rc_cv"],
                   agent=agent, source=("by hand",) * len(rows))

    @classmethod
    def from_uptake(
        cls,
        tables,
        time_h: float | None = None,
        *,
        unit: str = "MBq",
        agent: str | None = None,
        noise: NoiseModel | Mapping[str, NoiseModel] = NoiseModel(),
        regions: Iterable[str] | None = None,
        exclude: Iterable[str] = _DEFAULT_EXCLUDE,
        recovery_correct: bool = True,
    ) -> Observations:
        """Observations from ``twin.patient`` organ-uptake tables (one per scan time).

        tables: one table with its scan time ``time_h``, a mapping ``{time_h: table}``, or a
            sequence of ``(time_h, table)`` pairs. A table needs the columns ``region``,
            ``activity_mbq`` (or ``percent_ia`` for ``unit="%IA"``) and optionally
            ``recovery_coefficient``; other columns are ignored. Structures of one region
            (left and right kidney) are summed; rows without a region are skipped.
        regions: keep only these regions (default: every region in the table except ``exclude``);
            a region named here is kept even if it is in ``exclude`` (e.g. ``"urine"``).
        recovery_correct: divide each structure by its RC (the value is then the recovered
            activity and the RC uncertainty enters the noise); otherwise the measured value is
            used as is with RC = 1.
        """
        unit = _unit(unit)
        pairs = _time_tables(tables, time_h)
        value_col = "activity_mbq" if unit == "MBq" else "percent_ia"
        keep = None if regions is None else {str(r) for r in regions}
        exclude = set(exclude)
        records = []
        table_regions: set[str] = set()
        for t, tab in pairs:
            missing = [c for c in ("region", value_col) if c not in getattr(tab, "columns", ())]
            if missing:
                raise ObservationError(
                    f"the uptake table at {t:g} h lacks column(s) {', '.join(missing)}; expected a "
                    "table from twin.patient.organ_uptake (columns region, volume_ml, activity_mbq, "
                    "percent_ia, recovery_coefficient)."
                )
            rc_col = tab["recovery_coefficient"] if "recovery_coefficient" in tab.columns else None
            by_region: dict[str, list[float]] = {}
            for i in range(len(tab)):
                reg = tab["region"].iloc[i]
                if reg is None or (isinstance(reg, float) and math.isnan(reg)):
                    continue
                reg = str(reg)
                table_regions.add(reg)
                if (reg not in keep) if keep is not None else (reg in exclude):
                    continue
                v = float(tab[value_col].iloc[i])
                rc = float(rc_col.iloc[i]) if (rc_col is not None and recovery_correct) else 1.0
                if not math.isfinite(v) or v < 0:
                    raise ObservationError(f"{value_col} = {v} for region {reg} at {t:g} h; "
                                           "uptake values must be finite and >= 0.")
                if not (0 < rc <= 1):
                    raise ObservationError(f"recovery_coefficient = {rc} for region {reg} at {t:g} h "
                                           "must lie in (0, 1].")
                acc = by_region.setdefault(reg, [0.0, 0.0])
                acc[0] += v
                acc[1] += v / rc
            if keep is not None:
                absent = sorted(keep - set(by_region))
                if absent:
                    raise ObservationError(f"region(s) {', '.join(absent)} are not in the uptake table at "
                                           f"{t:g} h.")
            for reg, (measured, recovered) in by_region.items():
                nm = _noise_for(noise, reg)
                rc_eff = measured / recovered if recovered > 0 else 1.0
                records.append({"region": reg, "time_h": t, "value": recovered, "unit": unit,
                                "cv": nm.cv, "floor": nm.floor, "recovery_coefficient": rc_eff,
                                "rc_cv": nm.rc_cv})
        if not records:
            raise ObservationError("the uptake table(s) contain no usable region.")
        zero = [f"{r['region']} at {r['time_h']:g} h" for r in records if r["value"] <= 0]
        if zero:
            raise ObservationError(f"zero uptake for {', '.join(zero)}; exclude those regions (regions=...).")
        # a noise key may name any region of the table (also one left out here)
        _check_noise_keys(noise, table_regions)
        # every record carries its noise already
        obs = cls.from_records(records, agent=agent)
        return obs.with_source("uptake table")

    # ------------------------------------------------------------------ helpers
    def __len__(self) -> int:
        return len(self.region)

    @property
    def times_h(self) -> np.ndarray:
        """Sorted unique observation times (h)."""
        return np.unique(self.time_h)

    @property
    def regions(self) -> tuple[str, ...]:
        """Observed regions, in order of first appearance."""
        return tuple(dict.fromkeys(self.region))

    def log_sd_fixed(self) -> np.ndarray:
        """The prediction-independent part of the log-scale standard deviation (per observation)."""
        rc_term = self.rc_cv * (1.0 / self.recovery_coefficient - 1.0)
        return np.sqrt(np.log1p(self.cv**2) + rc_term**2)

    def with_source(self, source: str) -> Observations:
        return _replace(self, source=(str(source),) * len(self))

    def with_noise(self, noise: NoiseModel | Mapping[str, NoiseModel]) -> Observations:
        """The same measurements with another noise model."""
        _check_noise_keys(noise, self.region)
        nms = [_noise_for(noise, r) for r in self.region]
        return _replace(self, cv=[n.cv for n in nms], floor=[n.floor for n in nms],
                        rc_cv=[n.rc_cv for n in nms])

    def select(self, regions=None, times_h=None) -> Observations:
        """A subset by region names and/or times."""
        m = np.ones(len(self), bool)
        if regions is not None:
            m &= np.isin(np.array(self.region, dtype=object), list(regions))
        if times_h is not None:
            m &= np.isin(self.time_h, np.asarray(list(times_h), dtype=float))
        if not m.any():
            raise ObservationError("the selection leaves no observation.")
        idx = np.flatnonzero(m)
        return Observations(
            region=tuple(self.region[i] for i in idx), time_h=self.time_h[idx], value=self.value[idx],
            unit=tuple(self.unit[i] for i in idx), cv=self.cv[idx], floor=self.floor[idx],
            recovery_coefficient=self.recovery_coefficient[idx], rc_cv=self.rc_cv[idx],
            agent=self.agent, source=tuple(self.source[i] for i in idx),
            dataset=tuple(self.dataset[i] for i in idx))

    def concat(self, *others: Observations) -> Observations:
        """All observations of ``self`` and ``others`` (same agent)."""
        sets = [self, *others]
        for o in sets:
            if not isinstance(o, Observations):
                raise ObservationError(f"cannot concatenate a {type(o).__name__} to Observations; build it "
                                       "with Observations.from_records or Observations.from_uptake first.")
        agents = {o.agent for o in sets if o.agent is not None}
        if len(agents) > 1:
            raise ObservationError(f"cannot combine observations of different agents ({', '.join(sorted(agents))}); "
                                   "calibrate on one agent and predict the other with a theranostic pair.")
        cat = lambda name: np.concatenate([getattr(o, name) for o in sets])
        return Observations(
            region=sum((o.region for o in sets), ()), time_h=cat("time_h"), value=cat("value"),
            unit=sum((o.unit for o in sets), ()), cv=cat("cv"), floor=cat("floor"),
            recovery_coefficient=cat("recovery_coefficient"), rc_cv=cat("rc_cv"),
            agent=agents.pop() if agents else None, source=sum((o.source for o in sets), ()),
            dataset=sum((o.dataset for o in sets), ()))

    def table(self):
        """pandas DataFrame, one row per observation, with the log-scale sd (``log_sd``)."""
        import pandas as pd

        return pd.DataFrame({
            "region": list(self.region), "time_h": self.time_h, "value": self.value,
            "unit": list(self.unit), "cv": self.cv, "floor": self.floor,
            "recovery_coefficient": self.recovery_coefficient, "rc_cv": self.rc_cv,
            "log_sd": self.log_sd_fixed(), "source": list(self.source),
        })

    def __repr__(self) -> str:
        return (f"Observations({len(self)} values, agent={self.agent!r}, regions="
                f"{', '.join(self.regions)}, times_h={', '.join(f'{t:g}' for t in self.times_h)})")


def _replace(obs: Observations, **changes) -> Observations:
    kw = {k: getattr(obs, k) for k in ("region", "time_h", "value", "unit", "cv", "floor",
                                       "recovery_coefficient", "rc_cv", "agent", "source", "dataset")}
    kw.update(changes)
    return Observations(**kw)


def _blank(v) -> bool:
    """A missing cell: None, NaN (an empty CSV/DataFrame cell) or an empty string."""
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _number(v, name, i) -> float:
    if isinstance(v, (bool, np.bool_)):
        raise ObservationError(f"observation record {i}: {name} = {v!r} is a bool, not a number.")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ObservationError(f"observation record {i}: {name} = {v!r} is not a number.") from None
    return x


def _rows(records) -> list[dict]:
    if hasattr(records, "to_dict") and hasattr(records, "columns"):
        return records.to_dict(orient="records")
    if isinstance(records, Mapping):
        raise ObservationError("records must be a DataFrame or a list of dicts, not one dict.")
    try:
        rows = [dict(r) for r in records]
    except (TypeError, ValueError):
        raise ObservationError("records must be a DataFrame or an iterable of dicts.") from None
    return rows


def _time_tables(tables, time_h) -> list[tuple[float, object]]:
    if hasattr(tables, "columns"):
        if time_h is None:
            raise ObservationError("give the scan time: from_uptake(table, time_h=1.0).")
        pairs = [(time_h, tables)]
    elif isinstance(tables, Mapping):
        if time_h is not None:
            raise ObservationError("time_h is given by the mapping's keys; do not pass time_h too.")
        pairs = list(tables.items())
    else:
        try:
            pairs = [(t, tab) for t, tab in tables]
        except (TypeError, ValueError):
            raise ObservationError("tables must be a DataFrame, a mapping {time_h: table} or a list of "
                                   "(time_h, table) pairs.") from None
    if not pairs:
        raise ObservationError("no uptake table was given.")
    out = []
    for t, tab in pairs:
        try:
            tf = float(t)
        except (TypeError, ValueError):
            raise ObservationError(f"scan time {t!r} is not a number of hours.") from None
        if not math.isfinite(tf) or tf < 0:
            raise ObservationError(f"scan time {t!r} must be finite and >= 0 h.")
        if not hasattr(tab, "columns"):
            raise ObservationError(f"the uptake table at {tf:g} h is not a pandas DataFrame.")
        out.append((tf, tab))
    return out
