"""Priors: log-normal population distributions of the patient-specific parameters.

A :class:`Prior` is a readable, editable list of :class:`LogNormal` entries, one per model
parameter (``R_kidney``, ``krel_tumour1``, ``gfr_eff``, ``Q_kidney`` ...), each with its median,
coefficient of variation (CV) and the text of its source. Inference works in the standardised
log space ``z = (log p - log median) / sigma`` with ``sigma = sqrt(log(1 + CV^2))``.

:meth:`Prior.default` centres every entry on the model's own parameter values, so covariate
models already applied when the model was built (eGFR -> GFR, weight/BSA -> volumes and flows,
measured organ volumes; see ``pbpk.Physiology.for_patient``) carry over: the prior describes
the residual between-patient variability around that covariate prediction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from calibration._errors import PriorError, UnknownParameterError
from pbpk._errors import InvalidInputError
from pbpk._numbers import real_or_none

__all__ = ["DEFAULT_CV", "LogNormal", "Prior"]

_SRC_RHO = ("between-patient CV of receptor density (receptor densities are the per-patient quantities a "
            "pre-therapy PET informs, research/pbpk_models.md s2.7); 30 % so that the default population, "
            "with the release, filtration and flow CVs and the physiology, reproduces the published "
            "between-patient spread of 177Lu-PSMA-617 doses: kidney log-SD 0.49 vs 0.36 (VISION dosimetry "
            "sub-study, Herrmann et al., J Nucl Med 2024;65:71, CV 37 %; kidney AD CV 31 % in Zaid's global "
            "sensitivity analysis), salivary 0.51 vs 0.53 (CV 57 %); checked by `make validate`")
_SRC_KREL = ("release rates are not identifiable from an early PET; log-normal prior with CV 50-100 % "
             "around the model value is recommended in research/pbpk_models.md s6; 50 %, the lower end, "
             "because wider priors make the population's dose spread exceed the clinical one (see R_*)")
_SRC_GFR = ("residual variability of the effective filtration around the eGFR-based value "
            "(assumption; CKD-EPI eGFR vs measured GFR typically differ by tens of percent)")
_SRC_QK = ("assumed between-patient CV of kidney plasma flow; global sensitivity analysis finds kidney "
           "flow a main driver of kidney dose (Zaid et al., research/pbpk_models.md s2.7)")
_SRC_TUM = "assumed between-patient CV of tumour perfusion / permeability (research/pbpk_models.md s2.7)"

#: Default CVs by parameter-name pattern (first match wins) with their source text.
DEFAULT_CV: tuple[tuple[str, float, str], ...] = (
    (r"R_tumour.*", 1.0, _SRC_RHO),
    (r"R_.*", 0.3, _SRC_RHO),
    (r"krel_.*", 0.5, _SRC_KREL),
    (r"gfr_eff", 0.3, _SRC_GFR),
    (r"Q_kidney", 0.3, _SRC_QK),
    (r"(Q|PS)_tumour.*", 0.5, _SRC_TUM),
    (r"f_exc", 0.3, "assumed; f_exc is estimated per patient in the AAPM 2026 VTT (research/pbpk_models.md s2.7)"),
)


@dataclass(frozen=True)
class LogNormal:
    """Log-normal prior of one parameter: median (in the model's unit), CV and source text."""

    name: str
    median: float
    cv: float
    source: str = "user"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PriorError("a prior entry needs a parameter name.")
        for attr in ("median", "cv"):
            v = getattr(self, attr)
            x = real_or_none(v)
            if x is None or not math.isfinite(x) or x <= 0:
                raise PriorError(f"prior of {self.name}: {attr} = {v!r} must be a finite number > 0 "
                                 "(a real number, not a bool or a string).")
            object.__setattr__(self, attr, x)

    @property
    def log_loc(self) -> float:
        return math.log(self.median)

    @property
    def log_scale(self) -> float:
        return math.sqrt(math.log1p(self.cv**2))

    def interval(self, level: float = 0.9) -> tuple[float, float]:
        from scipy.stats import norm

        q = norm.ppf(0.5 + check_level(level) / 2)
        return (math.exp(self.log_loc - q * self.log_scale), math.exp(self.log_loc + q * self.log_scale))


@dataclass(frozen=True)
class Prior:
    """An ordered set of independent log-normal priors. Immutable: edits return a new Prior.

    >>> prior = Prior.default(model)                        # doctest: +SKIP
    >>> prior = prior.with_parameter("R_kidney", cv=0.4, source="my cohort")   # doctest: +SKIP
    >>> prior.table()                                       # doctest: +SKIP
    """

    entries: tuple[LogNormal, ...]

    def __post_init__(self) -> None:
        ents = tuple(self.entries)
        if not ents:
            raise PriorError("a prior needs at least one parameter.")
        if any(not isinstance(e, LogNormal) for e in ents):
            raise PriorError("Prior entries must be LogNormal objects.")
        names = [e.name for e in ents]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise PriorError(f"duplicate prior entries for {', '.join(dup)}.")
        object.__setattr__(self, "entries", ents)

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls, model, parameters: Iterable[str] | None = None,
                cv: Mapping[str, float] | None = None) -> Prior:
        """Priors centred on ``model.parameters``.

        parameters: names to include; default: receptor densities of kidney, salivary glands,
            liver, spleen and every tumour with a non-zero volume, release rates of kidney,
            salivary glands and tumours, ``gfr_eff`` and ``Q_kidney`` (those the model has).
        cv: per-name CV overrides; otherwise :data:`DEFAULT_CV`.
        """
        params = dict(model.parameters)
        if parameters is None:
            parameters = _default_names(params)
        parameters = list(parameters)
        if cv is not None and not isinstance(cv, Mapping):
            raise PriorError(
                f"cv must be a mapping of parameter name to CV (e.g. {{'R_kidney': 0.5}}), got "
                f"{type(cv).__name__}.")
        unused = sorted(set(cv or {}) - set(parameters))
        if unused:
            raise UnknownParameterError(
                f"cv gives {', '.join(unused)}, which the prior does not include (it has "
                f"{', '.join(parameters)}); add them to parameters=... or check the spelling.")
        out = []
        for name in parameters:
            if name not in params:
                raise UnknownParameterError(
                    f"the model has no parameter {name!r}; known: {', '.join(sorted(params))}.")
            c, src = _default_cv(name)
            if cv and name in cv:
                try:
                    c = float(cv[name])
                except (TypeError, ValueError):
                    raise PriorError(f"cv[{name!r}] = {cv[name]!r} must be a number (e.g. 0.3 for 30 %).") from None
                src = "user-set CV around the model value"
            value = float(params[name])
            if value <= 0:
                raise PriorError(f"{name} = {value} in the model; a log-normal prior needs a value > 0.")
            out.append(LogNormal(name, value, c, f"median: model value ({model.name}); CV: {src}"))
        return cls(tuple(out))

    @classmethod
    def from_dict(cls, data: Mapping) -> Prior:
        """From ``{"parameters": [{"name", "median", "cv", "source"}, ...]}`` (see :meth:`to_dict`)."""
        try:
            items = data["parameters"]
            return cls(tuple(LogNormal(str(d["name"]), d["median"], d["cv"], str(d.get("source", "user")))
                             for d in items))
        except (KeyError, TypeError) as exc:
            raise PriorError(f"not a prior dictionary ({exc}); expected "
                             "{'parameters': [{'name', 'median', 'cv', 'source'}, ...]}.") from None

    @classmethod
    def from_json(cls, text: str) -> Prior:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PriorError(f"prior JSON could not be parsed: {exc}.") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        return {"parameters": [{"name": e.name, "median": e.median, "cv": e.cv, "source": e.source}
                               for e in self.entries]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    # ------------------------------------------------------------------ editing
    def with_parameter(self, name: str, median: float | None = None, cv: float | None = None,
                       source: str | None = None) -> Prior:
        """Add a parameter or change its median, CV or source."""
        if name in self.names:
            old = self[name]
            new = replace(old, median=old.median if median is None else median,
                          cv=old.cv if cv is None else cv,
                          source=source if source is not None else (old.source if median is None and cv is None
                                                                    else "user"))
            return Prior(tuple(new if e.name == name else e for e in self.entries))
        if median is None or cv is None:
            raise PriorError(f"{name} is not in the prior; give its median and cv to add it.")
        return Prior((*self.entries, LogNormal(name, median, cv, source or "user")))

    def without(self, *names: str) -> Prior:
        """The prior without some parameters (they stay at the model's values)."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise UnknownParameterError(f"{', '.join(unknown)} not in the prior; it has {', '.join(self.names)}.")
        return Prior(tuple(e for e in self.entries if e.name not in names))

    def recentred(self, model) -> Prior:
        """The same CVs and sources, medians taken from ``model.parameters``."""
        self.check_model(model)
        return Prior(tuple(replace(e, median=float(model.parameters[e.name])) for e in self.entries))

    # ------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> LogNormal:
        for e in self.entries:
            if e.name == name:
                return e
        raise UnknownParameterError(f"{name!r} is not in the prior; it has {', '.join(self.names)}.")

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    @property
    def log_loc(self) -> np.ndarray:
        return np.array([e.log_loc for e in self.entries])

    @property
    def log_scale(self) -> np.ndarray:
        return np.array([e.log_scale for e in self.entries])

    def check_model(self, model) -> None:
        """Raise :class:`UnknownParameterError` if a prior parameter is not in ``model``."""
        params = getattr(model, "parameters", None)
        if params is None:
            return
        unknown = [n for n in self.names if n not in params]
        if unknown:
            raise UnknownParameterError(
                f"prior parameter(s) {', '.join(unknown)} are not in model {getattr(model, 'name', '')!r}; "
                f"known: {', '.join(sorted(params))}.")

    def table(self, level: float = 0.9):
        """pandas DataFrame: median, CV, log-scale sd, central ``level`` interval and source."""
        import pandas as pd

        level = check_level(level)
        rows = []
        for e in self.entries:
            lo, hi = e.interval(level)
            rows.append({"parameter": e.name, "median": e.median, "cv": e.cv, "log_sd": e.log_scale,
                         f"q{50 - 50 * level:g}": lo, f"q{50 + 50 * level:g}": hi, "source": e.source})
        return pd.DataFrame(rows).set_index("parameter")

    def sample(self, key, n: int) -> dict[str, np.ndarray]:
        """``n`` draws: a virtual population ``{name: array (n,)}`` for ``pbpk.simulate_cohort``.

        key: a ``jax.random`` key or an integer seed.
        """
        import jax

        if not isinstance(n, (int, np.integer)) or n < 1:
            raise PriorError(f"n = {n!r} must be a positive integer.")
        if isinstance(key, (int, np.integer)):
            key = jax.random.PRNGKey(int(key))
        z = np.asarray(jax.random.normal(key, (int(n), len(self))))
        logp = self.log_loc + self.log_scale * z
        return {name: np.exp(logp[:, i]) for i, name in enumerate(self.names)}

    def log_density(self, values: Mapping[str, float]) -> float:
        """Log density of parameter values (natural units) under the prior."""
        total = 0.0
        for e in self.entries:
            v = float(values[e.name])
            if math.isnan(v):
                raise PriorError(f"{e.name} = nan has no prior density; give a number > 0 in the "
                                 "parameter's unit.")
            if v <= 0:
                return -math.inf
            z = (math.log(v) - e.log_loc) / e.log_scale
            total += -0.5 * z * z - math.log(e.log_scale * v * math.sqrt(2 * math.pi))
        return total

    def __repr__(self) -> str:
        body = ", ".join(f"{e.name}~LN({e.median:.3g}, cv={e.cv:g})" for e in self.entries)
        return f"Prior({body})"


def check_level(level) -> float:
    """A central interval's probability, checked to lie in (0, 1)."""
    x = real_or_none(level)
    if x is None or not 0 < x < 1:
        raise InvalidInputError(f"level = {level!r} must lie strictly between 0 and 1 (e.g. 0.9, not 90).")
    return x


def _default_cv(name: str) -> tuple[float, str]:
    for pattern, cv, src in DEFAULT_CV:
        if re.fullmatch(pattern, name):
            return cv, src
    return 0.5, "assumed CV 50 % (no population data recorded for this parameter)"


def _default_names(params: Mapping[str, float]) -> list[str]:
    names = []
    organs = ["kidney", "salivary", "liver", "spleen"]
    tumours = sorted(k[2:] for k in params if re.fullmatch(r"R_tumour.*", k))
    for org in organs + tumours:
        if f"R_{org}" not in params:
            continue
        vol = params.get(f"V_{org}_int", 1.0)
        if org.startswith("tumour") and float(vol) <= 0:
            continue
        names.append(f"R_{org}")
    for org in ["kidney", "salivary", *tumours]:
        if f"krel_{org}" in params and f"R_{org}" in names:
            names.append(f"krel_{org}")
    for k in ("gfr_eff", "Q_kidney"):
        if k in params:
            names.append(k)
    return names
