"""Virtual populations: covariate distributions, the covariate model of ``pbpk`` and the prior.

A :class:`Population` is data: the agent, the fraction of women, one distribution per covariate
(age, weight, height, eGFR, haematocrit, total tumour volume) and a :class:`calibration.Prior`
for the residual between-patient variability of the kinetic parameters. Patient ``i`` of a
population drawn with ``key`` depends only on ``(key, i)`` (``jax.random.fold_in``), so the same
key gives the same patients whatever the chunk size, the engine or the order chunks run in.

From covariates to model parameters. ``pbpk.psma_model``/``pbpk.sstr_model`` with
``pbpk.Physiology.for_patient`` is the covariate model (volumes and flows scaled by weight and
BSA, GFR from eGFR, renal perfusion by age, tumour volumes). Building one model per patient
costs milliseconds, more than its simulation; but every parameter of that covariate model is
an exact linear combination of a few covariate features (1, Hct, w, w(1-Hct), V_p, V_p age, GFR,
V_tum, V_tum(1-Hct), with the plasma volume V_p = 2.8 BSA (1-Hct)). :func:`prepare` identifies
that linear map from a few dozen models built with the public API and *verifies* it on
further models; if ``pbpk`` ever changes its covariate model so that the map stops being
exact, preparation fails loudly instead of drifting.

The prior acts multiplicatively around the covariate prediction:
``p_i = p_cov(i) * (median / p_ref) * exp(sigma z_i)``, where ``p_ref`` is the parameter of the
reference patient (``Prior.default`` of that model has ``median == p_ref``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

import pbpk
from pbpk._models import MIN_REST_FLOW_FRACTION
from pbpk._physiology import FLOW_FRACTIONS
from twin.cohort._errors import CohortConfigError, CohortError

__all__ = [
    "COVARIATES",
    "Fixed",
    "LogNormalDist",
    "Normal",
    "Population",
    "PreparedPopulation",
    "Uniform",
    "prepare",
]

#: Covariates of a population: name -> (admissible low, high, description).
COVARIATES: dict[str, tuple[float, float, str]] = {
    "age_y": (18.0, 110.0, "age, years"),
    "weight_kg": (30.0, 250.0, "body weight, kg"),
    "height_cm": (120.0, 230.0, "height, cm"),
    "egfr_ml_min_1_73m2": (5.0, 200.0, "eGFR, mL/min/1.73 m2 (de-indexed by the Mosteller BSA)"),
    "haematocrit": (0.15, 0.65, "haematocrit, fraction"),
    "tumour_volume_l": (0.001, 4.0, "total tumour volume, L"),
}
_ORDER = tuple(COVARIATES)  # fixed order: the random stream of covariate j is fold_in(key_i, j)


def _num(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CohortConfigError(f"{owner}: {name} = {value!r} must be a number.")
    v = float(value)
    if not math.isfinite(v):
        raise CohortConfigError(f"{owner}: {name} = {value!r} must be finite.")
    return v


@dataclass(frozen=True)
class Normal:
    """Normal distribution truncated to ``[low, high]`` (default: the covariate's admissible range)."""

    mean: float
    sd: float
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        for k in ("mean", "sd"):
            object.__setattr__(self, k, _num("normal", k, getattr(self, k)))
        if self.sd <= 0:
            raise CohortConfigError(f"normal: sd = {self.sd} must be > 0.")


@dataclass(frozen=True)
class LogNormalDist:
    """Log-normal distribution (median, coefficient of variation) truncated to ``[low, high]``."""

    median: float
    cv: float
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        for k in ("median", "cv"):
            object.__setattr__(self, k, _num("lognormal", k, getattr(self, k)))
        if self.median <= 0 or self.cv <= 0:
            raise CohortConfigError("lognormal: median and cv must be > 0.")


@dataclass(frozen=True)
class Uniform:
    """Uniform distribution on ``[low, high]``."""

    low: float
    high: float

    def __post_init__(self):
        for k in ("low", "high"):
            object.__setattr__(self, k, _num("uniform", k, getattr(self, k)))
        if not self.low < self.high:
            raise CohortConfigError(f"uniform: low = {self.low} must be below high = {self.high}.")


@dataclass(frozen=True)
class Fixed:
    """Every patient has the same value."""

    value: float

    def __post_init__(self):
        object.__setattr__(self, "value", _num("fixed", "value", self.value))


Distribution = Normal | LogNormalDist | Uniform | Fixed


def _bounded(name: str, dist: Distribution) -> Distribution:
    """Check a distribution against the covariate's range; fill in default truncation bounds."""
    lo, hi, what = COVARIATES[name]
    if isinstance(dist, Fixed):
        if not lo <= dist.value <= hi:
            raise CohortConfigError(f"{name} = {dist.value:g} is outside the admissible range "
                                    f"{lo:g}-{hi:g} ({what}).")
        return dist
    if isinstance(dist, Uniform):
        low, high = dist.low, dist.high
    else:
        low = lo if dist.low is None else _num(name, "low", dist.low)
        high = hi if dist.high is None else _num(name, "high", dist.high)
        dist = dataclasses.replace(dist, low=low, high=high)
    if not (lo <= low < high <= hi):
        raise CohortConfigError(
            f"{name}: the distribution's range {low:g}-{high:g} must lie inside the admissible "
            f"range {lo:g}-{hi:g} ({what}) and have low < high; set low/high accordingly.")
    centre = dist.mean if isinstance(dist, Normal) else dist.median if isinstance(dist, LogNormalDist) else low
    if not low <= centre <= high:
        raise CohortConfigError(f"{name}: the centre {centre:g} lies outside its range {low:g}-{high:g}.")
    return dist


# Illustrative mCRPC population (assumptions, not fitted to a cohort): age and weight of the
# VISION trial population (median age 71 y; Sartor et al., N Engl J Med 2021;385:1091), adult male
# height, eGFR of an elderly population with eligibility >= 30, haematocrit of anaemic-to-normal
# men, and a right-skewed total tumour volume.
_DEFAULT_COVARIATES = {
    "age_y": Normal(71.0, 8.0, 45.0, 95.0),
    "weight_kg": Normal(84.0, 14.0, 50.0, 150.0),
    "height_cm": Normal(176.0, 7.0, 155.0, 200.0),
    "egfr_ml_min_1_73m2": Normal(75.0, 20.0, 30.0, 130.0),
    "haematocrit": Normal(0.38, 0.04, 0.25, 0.50),
    "tumour_volume_l": LogNormalDist(0.15, 1.2, 0.005, 3.0),
}
_FEMALE_HEIGHT = Normal(163.0, 7.0, 145.0, 185.0)
_FEMALE_WEIGHT = Normal(70.0, 14.0, 40.0, 140.0)


@dataclass(frozen=True)
class Population:
    """A virtual population: agent, covariate distributions and the prior of the kinetics.

    Parameters
    ----------
    agent:
        Therapy ligand (``"PSMA-617"``, ``"PSMA-I&T"``, ``"DOTATATE"``, ``"DOTATOC"``).
    covariates:
        Mapping covariate name -> distribution (:class:`Normal`, :class:`LogNormalDist`,
        :class:`Uniform`, :class:`Fixed`); missing names take the defaults of
        :meth:`default`. Names: see :data:`COVARIATES`.
    female_fraction:
        Fraction of women (0 for PSMA ligands: the PSMA model's graph is male).
    lesion_fraction:
        PSMA models: the index lesion (``tumour1``) holds this fraction of the total tumour
        volume, the rest is ``tumour_rest``. SSTR models: one tumour holds all of it.
    prior:
        A :class:`calibration.Prior` of the residual variability, or ``None`` for
        ``Prior.default`` of the reference patient's model.
    nuclide:
        Label (default: the ligand's therapy nuclide, e.g. 177Lu).
    """

    agent: str = "PSMA-617"
    covariates: Mapping[str, Distribution] = field(default_factory=dict)
    female_fraction: float = 0.0
    lesion_fraction: float = 0.2
    prior: object | None = None
    nuclide: str | None = None

    def __post_init__(self):
        try:
            lig = pbpk.get_ligand(self.agent)
        except pbpk.PBPKError as exc:
            raise CohortConfigError(f"agent {self.agent!r}: {exc}") from None
        object.__setattr__(self, "agent", lig.name)
        if not isinstance(self.covariates, Mapping):
            raise CohortConfigError("covariates must be a mapping of covariate name -> distribution.")
        unknown = sorted(set(self.covariates) - set(COVARIATES))
        if unknown:
            raise CohortConfigError(f"unknown covariate(s) {', '.join(unknown)}; known: {', '.join(COVARIATES)}.")
        ff = _num("population", "female_fraction", self.female_fraction)
        if not 0.0 <= ff <= 1.0:
            raise CohortConfigError(f"female_fraction = {ff} must be between 0 and 1.")
        if lig.target == "PSMA" and ff > 0:
            raise CohortConfigError(
                "PSMA ligand populations are male (the PSMA model includes the prostate); set "
                "female_fraction = 0.")
        object.__setattr__(self, "female_fraction", ff)
        lf = _num("population", "lesion_fraction", self.lesion_fraction)
        if not 0.0 < lf < 1.0:
            raise CohortConfigError(f"lesion_fraction = {lf} must be strictly between 0 and 1.")
        object.__setattr__(self, "lesion_fraction", lf)
        covs = dict(_DEFAULT_COVARIATES)
        if ff == 1.0:
            covs.update(height_cm=_FEMALE_HEIGHT, weight_kg=_FEMALE_WEIGHT)
        for name, dist in self.covariates.items():
            if not isinstance(dist, (Normal, LogNormalDist, Uniform, Fixed)):
                raise CohortConfigError(
                    f"covariate {name}: {dist!r} is not a distribution; use Normal, LogNormalDist, "
                    "Uniform or Fixed.")
            covs[name] = dist
        covs = {k: _bounded(k, covs[k]) for k in _ORDER}
        object.__setattr__(self, "covariates", tuple(covs.items()))
        if self.prior is not None:
            from calibration import Prior

            if not isinstance(self.prior, Prior):
                raise CohortConfigError("prior must be a calibration.Prior or None.")
        if self.nuclide is not None:
            try:
                object.__setattr__(self, "nuclide", pbpk.get_nuclide(self.nuclide).name)
            except pbpk.PBPKError as exc:
                raise CohortConfigError(f"nuclide {self.nuclide!r}: {exc}") from None
        self._check_reference_patient()

    def _check_reference_patient(self) -> None:
        """Build the model of the population's centre patient (about a millisecond): a population
        whose centre has no valid pbpk model is refused now, naming its covariates, instead of
        failing with pbpk's message when a trial or run is set up."""
        sex = "female" if self.female_fraction == 1.0 else "male"
        try:
            self.reference_model()
        except pbpk.InvalidInputError as exc:
            centre = ", ".join(f"{k} = {_centre(d):g}" for k, d in self.covariates)
            raise CohortConfigError(
                f"the {self.agent} population's centre patient ({sex}; {centre}; the distributions' "
                f"means, medians, midpoints or fixed values) has no valid model: {exc} Change the "
                "covariate distributions so that their centre is a valid patient.") from None

    @classmethod
    def default(cls, agent: str = "PSMA-617", **kwargs) -> Population:
        """The illustrative default population for ``agent`` (see the module source for values)."""
        return cls(agent=agent, **kwargs)

    @property
    def covariate_distributions(self) -> dict[str, Distribution]:
        return dict(self.covariates)

    @property
    def target(self) -> str:
        return pbpk.get_ligand(self.agent).target

    def model(self, sex: str = "male", **covariates: float) -> pbpk.PBPKModel:
        """The ``pbpk`` model of one patient with these covariates (medians where not given)."""
        cov = {k: _centre(d) for k, d in self.covariates}
        cov.update(covariates)
        return _build_model(self.agent, self.nuclide, self.lesion_fraction, sex, cov)

    def reference_model(self) -> pbpk.PBPKModel:
        return self.model("female" if self.female_fraction == 1.0 else "male")

    def default_prior(self):
        from calibration import Prior

        return self.prior if self.prior is not None else Prior.default(self.reference_model())

    def to_dict(self) -> dict:
        """JSON-able description (used in the run manifest)."""
        return {
            "agent": self.agent,
            "nuclide": self.nuclide,
            "female_fraction": self.female_fraction,
            "lesion_fraction": self.lesion_fraction,
            "covariates": {k: {"distribution": type(d).__name__, **dataclasses.asdict(d)}
                           for k, d in self.covariates},
            "prior": self.default_prior().to_dict(),
        }

    def sample(self, key, n: int, *, start: int = 0):
        """Covariates and kinetic parameters of patients ``start .. start+n-1`` (pandas DataFrame).

        ``key``: an integer seed or a ``jax.random`` key. Columns: ``patient_id``, ``sex``,
        the covariates, ``gfr_ml_min`` (absolute) and every parameter that varies.
        """
        import pandas as pd

        if not isinstance(n, (int, np.integer)) or n < 1:
            raise CohortConfigError(f"n = {n!r} must be a positive integer.")
        prep = prepare(self)
        draw = prep.draw(key_data(key), np.arange(start, start + n, dtype=np.int64))
        cols = {"patient_id": draw["patient_id"],
                "sex": np.where(draw["female"], "female", "male")}
        cols.update({k: draw[k] for k in (*_ORDER, "gfr_ml_min")})
        cols.update({name: draw["params"][:, j] for j, name in enumerate(prep.varying)})
        return pd.DataFrame(cols)


def _centre(d: Distribution) -> float:
    if isinstance(d, Normal):
        return d.mean
    if isinstance(d, LogNormalDist):
        return d.median
    if isinstance(d, Uniform):
        return 0.5 * (d.low + d.high)
    return d.value


#: Largest integer seed (``jax.random.PRNGKey`` takes a signed 64-bit integer).
MAX_SEED = 2**63 - 1


def key_data(key) -> np.ndarray:
    """A ``jax.random`` key or integer seed as its raw uint32 data (for manifests and pickling)."""
    import jax

    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not 0 <= key <= MAX_SEED:
            raise CohortConfigError(f"seed = {key} must be a whole number from 0 to 2**63 - 1 "
                                    f"({MAX_SEED}).")
        return np.asarray(jax.random.key_data(jax.random.PRNGKey(int(key))), dtype=np.uint32)
    try:
        if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
            key = jax.random.key_data(key)
    except TypeError:
        pass
    arr = np.asarray(key)
    if (arr.shape == (2,) and np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0
            and arr.max() < 2**32):
        arr = arr.astype(np.uint32)
    if arr.dtype != np.uint32 or arr.shape != (2,):
        raise CohortConfigError(
            "key must be an integer seed or a jax.random.PRNGKey(seed) key (two uint32 words).")
    return arr.astype(np.uint32)


def _build_model(agent, nuclide, lesion_fraction, sex, cov) -> pbpk.PBPKModel:
    w, h = float(cov["weight_kg"]), float(cov["height_cm"])
    bsa = math.sqrt(w * h / 3600.0)
    gfr = float(cov["egfr_ml_min_1_73m2"]) * bsa / 1.73
    phys = pbpk.Physiology.for_patient(sex, weight_kg=w, height_cm=h, age_y=float(cov["age_y"]),
                                       gfr_ml_min=gfr, haematocrit=float(cov["haematocrit"]))
    vt = float(cov["tumour_volume_l"])
    if pbpk.get_ligand(agent).target == "PSMA":
        return pbpk.psma_model(agent, nuclide, phys, lesion_volumes_l=(lesion_fraction * vt,),
                               tumour_rest_volume_l=(1.0 - lesion_fraction) * vt)
    return pbpk.sstr_model(agent, nuclide, phys, tumour_volumes_l=(vt,))


def _features(cov: Mapping[str, np.ndarray]) -> np.ndarray:
    w = np.asarray(cov["weight_kg"], float)
    h = np.asarray(cov["height_cm"], float)
    hct = np.asarray(cov["haematocrit"], float)
    vp = 2.8 * np.sqrt(w * h / 3600.0) * (1.0 - hct)
    bsa = np.sqrt(w * h / 3600.0)
    gfr = np.asarray(cov["egfr_ml_min_1_73m2"], float) * bsa / 1.73
    vt = np.asarray(cov["tumour_volume_l"], float)
    age = np.asarray(cov["age_y"], float)
    one = np.ones_like(w)
    return np.stack([one, hct, w, w * (1 - hct), vp, vp * age, gfr, vt, vt * (1 - hct)], axis=-1)


_FIT_RANGES = {"age_y": (40.0, 95.0), "weight_kg": (55.0, 150.0), "height_cm": (150.0, 200.0),
               "egfr_ml_min_1_73m2": (25.0, 140.0), "haematocrit": (0.25, 0.5),
               "tumour_volume_l": (0.005, 0.3)}


@dataclass(frozen=True)
class PreparedPopulation:
    """A population with its identified covariate map; picklable, shipped to workers.

    ``maps[sex]`` is (n_outputs, n_features); outputs are ``varying`` parameters then organ
    volumes (L) of ``volume_names``.
    """

    population: Population
    template: pbpk.PBPKModel
    varying: tuple[str, ...]
    volume_names: tuple[str, ...]
    maps: tuple[np.ndarray, np.ndarray]  # male, female
    prior_index: tuple[int, ...]
    prior_log_scale: tuple[float, ...]
    prior_log_ratio: tuple[float, ...]
    #: pbpk's plasma-flow budget (pbpk._models._flow_budget): indices into ``varying`` of the
    #: flows set as fractions of the cardiac plasma output and of those set per volume, the
    #: sum of the per-volume flows that do not vary, and the indices of Q_rest and Q_lungs
    #: (the cardiac plasma output); empty when the model has no such flows
    budget_fraction_index: tuple[int, ...] = ()
    budget_volume_index: tuple[int, ...] = ()
    budget_volume_fixed_l_per_h: float = 0.0
    budget_rest_index: int = -1
    budget_output_index: int = -1

    def _flow_budget(self, params: np.ndarray) -> np.ndarray:
        """Apply pbpk's flow-budget rule to covariate-map parameters (in place); returns where a
        valid flow set exists. Where less than MIN_REST_FLOW_FRACTION of the cardiac plasma
        output would be left to the rest of the body, the fraction-based flows are scaled by one
        factor so that exactly that share is left, as pbpk.psma_model/sstr_model do."""
        ok = np.ones(params.shape[:-1], bool)
        if self.budget_rest_index < 0:
            return ok
        frac, vol = list(self.budget_fraction_index), list(self.budget_volume_index)
        f_out = params[..., self.budget_output_index]
        floor = MIN_REST_FLOW_FRACTION * f_out
        rest = params[..., self.budget_rest_index]
        q_frac = params[..., frac].sum(axis=-1)
        q_vol = params[..., vol].sum(axis=-1) + self.budget_volume_fixed_l_per_h
        low = rest < floor
        if not low.any():
            return ok
        available = f_out - floor - q_vol
        ok = ~low | (available > 0.05 * q_frac)  # pbpk refuses the rest
        scale = np.where(low & ok, available / np.where(q_frac > 0, q_frac, 1.0), 1.0)
        params[..., frac] *= scale[..., None]
        params[..., self.budget_rest_index] = np.where(
            low, f_out - params[..., frac].sum(axis=-1) - q_vol, rest)
        return ok

    def draw(self, key: np.ndarray, ids: np.ndarray) -> dict:
        """Covariates, parameters (n, len(varying)) and organ volumes of patients ``ids``.

        A patient whose covariates leave the covariate model without a valid parameter set
        (e.g. tumour flow larger than the flow left for the rest of the body) is redrawn from
        the next random stream of the same patient, up to :data:`MAX_ATTEMPTS` times;
        ``attempts`` counts the draws used and ``valid`` is False if none was valid.
        """
        ids = np.asarray(ids, np.int64)
        raw = _draw_fn(self.population, len(self.prior_index))(np.asarray(key, np.uint32), ids)
        raw = {k: np.asarray(v) for k, v in raw.items()}  # leading axis: attempt
        cov = {k: raw[k] for k in _ORDER}
        phi = _features(cov)  # (A, n, F)
        female = raw["female"].astype(bool)
        out = np.where(female[..., None], phi @ self.maps[1].T, phi @ self.maps[0].T)
        npar = len(self.varying)
        params = out[..., :npar].copy()
        budget_ok = self._flow_budget(params)  # on the covariate prediction, before the prior
        if self.prior_index:
            params[..., list(self.prior_index)] *= np.exp(
                np.asarray(self.prior_log_ratio) + np.asarray(self.prior_log_scale) * raw["z"])
        ok = budget_ok & np.all(params > 0, axis=-1) & np.all(out[..., npar:] > 0, axis=-1)
        first = np.argmax(ok, axis=0)
        valid = ok.any(axis=0)
        cols = np.arange(ids.size)

        def pick(a):
            return a[first, cols]

        cov = {k: pick(v) for k, v in cov.items()}
        w, h = cov["weight_kg"], cov["height_cm"]
        gfr = cov["egfr_ml_min_1_73m2"] * np.sqrt(w * h / 3600.0) / 1.73
        return {"patient_id": ids, "female": pick(female), **cov, "gfr_ml_min": gfr,
                "params": pick(params), "volumes_l": pick(out[..., npar:]), "valid": valid,
                "attempts": np.where(valid, first + 1, MAX_ATTEMPTS)}


#: Redraws of a patient whose covariates give no valid parameter set (see PreparedPopulation.draw).
MAX_ATTEMPTS = 8


def _draw_fn(population: Population, n_prior: int):
    """Per-patient random draws: (MAX_ATTEMPTS, n) covariates, sex and prior z-scores.

    Patient ``i``'s numbers come from ``numpy.random.SeedSequence(entropy=key, spawn_key=(i,))``
    only, so they do not depend on which other patients are drawn with it.
    """
    from scipy.special import ndtr, ndtri

    dists = population.covariates
    ff = population.female_fraction
    ncov = len(dists)
    # a mixed population draws women's height and weight from the female defaults (unless the
    # user gave their own distribution), from the same uniform numbers
    female_dists = {}
    if 0.0 < ff < 1.0:
        for name, fdist in (("height_cm", _FEMALE_HEIGHT), ("weight_kg", _FEMALE_WEIGHT)):
            if dict(dists)[name] == _bounded(name, _DEFAULT_COVARIATES[name]):
                female_dists[name] = _bounded(name, fdist)

    def sample(d, uc):
        if isinstance(d, Fixed):
            return np.full(uc.shape, d.value)
        if isinstance(d, Uniform):
            return d.low + (d.high - d.low) * uc
        if isinstance(d, Normal):
            loc, scale, lo, hi = d.mean, d.sd, d.low, d.high
        else:
            loc, scale = math.log(d.median), math.sqrt(math.log1p(d.cv**2))
            lo, hi = math.log(d.low), math.log(d.high)
        pa, pb = ndtr((lo - loc) / scale), ndtr((hi - loc) / scale)
        x = np.clip(loc + scale * ndtri(pa + uc * (pb - pa)), lo, hi)
        return x if isinstance(d, Normal) else np.exp(x)

    def call(key, ids):
        entropy = [int(k) for k in np.asarray(key, np.uint32)]
        u = np.empty((MAX_ATTEMPTS, len(ids), ncov + 1))
        z = np.empty((MAX_ATTEMPTS, len(ids), n_prior))
        for j, i in enumerate(ids):
            rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(int(i),)))
            u[:, j, :] = rng.random((MAX_ATTEMPTS, ncov + 1))
            z[:, j, :] = rng.standard_normal((MAX_ATTEMPTS, n_prior))
        out = {"z": z, "female": u[..., ncov] < ff}
        for c, (name, d) in enumerate(dists):
            uc = u[..., c]
            out[name] = sample(d, uc)
            if name in female_dists:
                out[name] = np.where(out["female"], sample(female_dists[name], uc), out[name])
        return out

    return call


def _budget_indices(ref: pbpk.PBPKModel, varying: Sequence[str]) -> dict:
    """Where pbpk's flow-budget rule reads its flows (see PreparedPopulation._flow_budget):
    organ flows ``Q_<organ>`` of the model's organs (lungs and rest aside) are fractions of the
    cardiac plasma output when the organ is in ``FLOW_FRACTIONS``, else per volume."""
    names = [o for o in ref.organ_volumes_l if o not in ("lungs", "rest") and f"Q_{o}" in ref.parameters]
    if "Q_rest" not in varying or "Q_lungs" not in varying or not names:
        return {}
    frac, vol, fixed = [], [], 0.0
    for o in names:
        key = "tumour" if o.startswith("tumour") else o
        q = f"Q_{o}"
        if q in varying:
            (frac if key in FLOW_FRACTIONS else vol).append(varying.index(q))
        elif key in FLOW_FRACTIONS:  # pragma: no cover - every fraction-based flow scales with F
            raise CohortError(f"{q} is a fraction of the cardiac output but does not vary.")
        else:
            fixed += float(ref.parameters[q])
    return {"budget_fraction_index": tuple(frac), "budget_volume_index": tuple(vol),
            "budget_volume_fixed_l_per_h": fixed, "budget_rest_index": varying.index("Q_rest"),
            "budget_output_index": varying.index("Q_lungs")}


@functools.lru_cache(maxsize=16)
def prepare(population: Population) -> PreparedPopulation:
    """Identify and verify the linear covariate map of ``population`` (cached per population)."""
    sexes = ("male", "female")
    ref = population.reference_model()
    vol_names = tuple(sorted(ref.organ_volumes_l))
    param_names = tuple(ref.parameters)
    rng = np.random.default_rng(20261122)
    n_fit, n_check = 14, 4
    maps, outputs = [], []
    for sex in sexes:
        if sex == "female" and population.target == "PSMA":
            maps.append(None)
            continue
        cand = {k: rng.uniform(*_FIT_RANGES[k], 10 * (n_fit + n_check)) for k in _ORDER}
        rows, used = [], []
        for i in range(10 * (n_fit + n_check)):
            try:
                m = _build_model(population.agent, population.nuclide, population.lesion_fraction,
                                 sex, {k: cand[k][i] for k in _ORDER})
            except pbpk.InvalidInputError:  # e.g. no flow left for the rest of the body
                continue
            if "flow-budget scaling" in m.sources.get("Q_rest", ""):
                continue  # flows rescaled (young patient, large tumour): not the linear regime
            used.append(i)
            if m.graph != ref.graph or tuple(m.parameters) != param_names:
                raise CohortError("the model graph differs between patients of this population; "
                                  "mixing sexes needs one graph (use female_fraction 0 or 1).")
            rows.append([m.parameters[p] for p in param_names] + [m.organ_volumes_l[v] for v in vol_names])
            if len(used) == n_fit + n_check:
                break
        y = np.asarray(rows, float)
        phi = _features({k: v[used] for k, v in cand.items()})
        scale = np.maximum(np.abs(y).max(axis=0), 1e-300)
        coef, *_ = np.linalg.lstsq(phi[:n_fit], y[:n_fit] / scale, rcond=None)
        a = (coef * scale).T
        err = np.abs(phi @ a.T - y) / scale
        if err.max() > 1e-9:
            worst = (list(param_names) + list(vol_names))[int(np.argmax(err.max(axis=0)))]
            raise CohortError(
                f"the pbpk covariate model is no longer linear in the cohort features ({worst}: "
                f"relative error {err.max():.2g}); twin.cohort._population needs updating.")
        a[np.abs(a) < 1e-14 * np.abs(a).max(axis=1, keepdims=True)] = 0.0
        maps.append(a)
        outputs.append(y)
    male = maps[0]
    female = maps[1] if maps[1] is not None else male
    prior = population.default_prior()
    prior.check_model(ref)
    npar = len(param_names)
    # a parameter varies if it depends on a covariate feature, differs between the sexes beyond
    # the identification's accuracy (1e-9, as verified above: the two least-squares fits of a
    # constant such as lambda_phys_per_h differ in the last bits) or has a prior
    phi_all = _features({k: rng.uniform(*_FIT_RANGES[k], 8) for k in _ORDER})
    pred_m, pred_f = phi_all @ male[:npar].T, phi_all @ female[:npar].T
    size = np.maximum(np.abs(pred_m).max(axis=0), 1e-300)
    sex_differs = np.abs(pred_f - pred_m).max(axis=0) > 1e-9 * size
    varies = [j for j in range(npar)
              if np.any(male[j, 1:] != 0) or sex_differs[j] or param_names[j] in prior.names]
    varying = tuple(param_names[j] for j in varies)
    rows = varies + list(range(npar, npar + len(vol_names)))
    prior_index = tuple(varying.index(e.name) for e in prior.entries)
    budget = _budget_indices(ref, varying)
    log_ratio = tuple(math.log(e.median / float(ref.parameters[e.name])) for e in prior.entries)
    return PreparedPopulation(
        population=population, template=ref, varying=varying, volume_names=vol_names,
        maps=(male[rows], female[rows]), prior_index=prior_index,
        prior_log_scale=tuple(float(e.log_scale) for e in prior.entries),
        prior_log_ratio=log_ratio, **budget)
