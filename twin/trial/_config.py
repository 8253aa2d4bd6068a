"""Trial configuration in TOML (read with ``tomllib``; nothing in it is executed).

Layout (every table but ``[[arms]]`` is optional; see ``twin/trial/data/psma_kidney_limit.toml``)::

    [trial]      name, n_patients, seed, chunk_size
    [population] agent, female_fraction, lesion_fraction, nuclide
    [population.covariates.<name>]  distribution = "normal" | "lognormal" | "uniform" | "fixed"
                                    and its numbers (mean, sd | median, cv | low, high | value)
    [prior]      cv = { R_kidney = 0.5, ... }        (CV overrides of Prior.default)
    [[arms]]     name, activity_gbq, cycles, interval_weeks, ligand_nmol, personalise,
                 min_cycles, limit = { organ, quantity, limit_gy }
    [[limits]]   organ, quantity, limit_gy           (replace the default organ-at-risk limits)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from twin.cohort._errors import CohortConfigError
from twin.cohort._population import COVARIATES, Fixed, LogNormalDist, Normal, Population, Uniform
from twin.trial._arms import Arm, Limit
from twin.trial._trial import Trial, check_ligand_amounts, check_limit_organs

__all__ = ["TrialConfig", "TrialConfigError", "load_trial_config", "parse_trial_config"]


class TrialConfigError(CohortConfigError):
    """A trial configuration file has an unknown key, a missing key or a bad value."""


_SECTIONS = {"trial", "population", "prior", "arms", "limits"}
_TRIAL_KEYS = {"name", "n_patients", "seed", "chunk_size"}
_POP_KEYS = {"agent", "female_fraction", "lesion_fraction", "nuclide", "covariates"}
_DISTS = {"normal": (Normal, {"mean", "sd"}, {"low", "high"}),
          "lognormal": (LogNormalDist, {"median", "cv"}, {"low", "high"}),
          "uniform": (Uniform, {"low", "high"}, set()),
          "fixed": (Fixed, {"value"}, set())}
_ARM_KEYS = {"name", "activity_gbq", "cycles", "interval_weeks", "ligand_nmol", "personalise",
             "min_cycles", "limit"}
_LIMIT_KEYS = {"organ", "quantity", "limit_gy"}


@dataclass(frozen=True)
class TrialConfig:
    """A parsed configuration: the :class:`Trial` and the run's chunk size."""

    trial: Trial
    chunk_size: int = 128
    source: str = "<string>"
    #: whether the file gave [[limits]] (else the trial has the shipped defaults)
    limits_given: bool = False

    def with_reduction(self, reduction) -> Trial:
        """The trial on an MBAM-reduced model (see :class:`Trial`); default limits are taken again
        for the reduced model's organs, given ones are checked against them."""
        return dataclasses.replace(self.trial, reduction=reduction,
                                   limits=self.trial.limits if self.limits_given else None)


def _table(where: str, value) -> dict:
    if not isinstance(value, dict):
        raise TrialConfigError(f"{where} must be a table (e.g. [{where}]), got {type(value).__name__}.")
    return value


def _keys(where: str, table: dict, allowed: set, required: set = frozenset()) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TrialConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                               f"{', '.join(sorted(allowed))}.")
    missing = sorted(set(required) - set(table))
    if missing:
        raise TrialConfigError(f"{where}: missing key(s) {', '.join(missing)}.")


def _wrap(where: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except TrialConfigError:
        raise
    except CohortConfigError as exc:
        raise TrialConfigError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise TrialConfigError(f"{where}: {exc}") from None


def _limit(where: str, d) -> Limit:
    d = _table(where, d)
    _keys(where, d, _LIMIT_KEYS, _LIMIT_KEYS)
    return _wrap(where, Limit, d["organ"], d["quantity"], d["limit_gy"])


def parse_trial_config(data: dict, source: str = "<string>") -> TrialConfig:
    """Build the trial from the TOML document's dictionary (validated key by key)."""
    data = _table("the configuration", data)
    _keys("the configuration", data, _SECTIONS, {"arms"})
    trial = _table("[trial]", data.get("trial", {}))
    _keys("[trial]", trial, _TRIAL_KEYS)
    pop = _table("[population]", data.get("population", {}))
    _keys("[population]", pop, _POP_KEYS)
    covs = {}
    for name, spec in _table("[population.covariates]", pop.get("covariates", {})).items():
        where = f"[population.covariates.{name}]"
        if name not in COVARIATES:
            raise TrialConfigError(f"{where}: unknown covariate; known: {', '.join(COVARIATES)}.")
        spec = dict(_table(where, spec))
        kind = spec.pop("distribution", None)
        if kind not in _DISTS:
            raise TrialConfigError(f"{where}: distribution = {kind!r}; use one of {', '.join(_DISTS)}.")
        cls, req, opt = _DISTS[kind]
        _keys(where, spec, req | opt, req)
        covs[name] = _wrap(where, cls, **spec)
    prior = None
    if "prior" in data:
        pr = _table("[prior]", data["prior"])
        _keys("[prior]", pr, {"cv"})
        cv = _table("[prior] cv", pr.get("cv", {}))
        probe = _wrap("[population]", Population, **{k: v for k, v in pop.items() if k != "covariates"},
                      covariates=covs)
        from calibration import Prior

        try:
            base = Prior.default(probe.reference_model())
            unknown = sorted(set(cv) - set(base.names))
            if unknown:
                raise TrialConfigError(f"[prior] cv: unknown parameter(s) {', '.join(unknown)}; the prior "
                                       f"has {', '.join(base.names)}.")
            prior = Prior.default(probe.reference_model(), cv={k: float(v) for k, v in cv.items()})
            for k, v in cv.items():
                if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
                    raise TrialConfigError(f"[prior] cv.{k} = {v!r} must be a number > 0.")
        except (TypeError, ValueError) as exc:
            if isinstance(exc, TrialConfigError):
                raise
            raise TrialConfigError(f"[prior]: {exc}") from None
    population = _wrap("[population]", Population,
                       **{k: v for k, v in pop.items() if k != "covariates"}, covariates=covs, prior=prior)
    arms_data = data["arms"]
    if not isinstance(arms_data, list) or not arms_data:
        raise TrialConfigError("[[arms]]: give at least one arm as an array of tables ([[arms]]).")
    arms = []
    for i, a in enumerate(arms_data):
        where = f"[[arms]] #{i + 1}"
        a = dict(_table(where, a))
        _keys(where, a, _ARM_KEYS, {"name"})
        if "limit" in a:
            a["limit"] = _limit(f"{where} limit", a["limit"])
        arms.append(_wrap(where, Arm, **a))
    limits = None
    if "limits" in data:
        if not isinstance(data["limits"], list):
            raise TrialConfigError("[[limits]] must be an array of tables.")
        limits = tuple(_limit(f"[[limits]] #{i + 1}", x) for i, x in enumerate(data["limits"]))
    for i, a in enumerate(arms):
        if a.limit is not None:
            _wrap(f"[[arms]] #{i + 1} limit", check_limit_organs, population, (), (a.limit,))
        _wrap(f"[[arms]] #{i + 1}", check_ligand_amounts, population, (a,))
    for i, lim in enumerate(limits or ()):
        _wrap(f"[[limits]] #{i + 1}", check_limit_organs, population, (), (lim,))
    kwargs = {"name": trial.get("name", "virtual trial"), "n_patients": trial.get("n_patients", 1000),
              "key": trial.get("seed", 0)}
    if not isinstance(kwargs["key"], int) or isinstance(kwargs["key"], bool):
        raise TrialConfigError(f"[trial] seed = {kwargs['key']!r} must be a whole number >= 0.")
    if not isinstance(kwargs["name"], str):
        raise TrialConfigError("[trial] name must be a string.")
    t = _wrap("[trial]", Trial, tuple(arms), population, limits=limits, **kwargs)
    chunk = trial.get("chunk_size", 128)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= 100_000:
        raise TrialConfigError(f"[trial] chunk_size = {chunk!r} must be a whole number from 1 to 100000.")
    return TrialConfig(t, chunk, source, limits is not None)


def load_trial_config(path: str | os.PathLike) -> TrialConfig:
    """Read a trial TOML file; :class:`TrialConfigError` says what is wrong and where."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrialConfigError(f"trial configuration {p} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrialConfigError(f"trial configuration {p} could not be read: {exc}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TrialConfigError(f"{p} is not valid TOML: {exc}.") from None
    return parse_trial_config(data, str(p))
