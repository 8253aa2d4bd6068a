"""Automatic MBAM reduction of a PBPK model for an observation design.

:func:`reduce_pbpk` iterates, on the current (reduced) :class:`pbpk.PBPKModel`:

1. the Fisher metric of the design's quantities of interest (organ activities at the PET and
   SPECT times, optionally organ TIA) in the log of the reducible parameters (flows, PS,
   receptor amounts, release rates, filtration; volumes and ligand constants stay fixed);
2. *axis limits*: parameters whose own Fisher column is negligible lie along near-null
   eigendirections, so the geodesic from them runs straight along the axis (the supplement's
   "limits identified from the initial velocity"). Each is pushed both ways and the side that
   changes the predictions least is taken as its limit (0 or infinity);
3. a *geodesic* (both directions) from the sloppiest eigendirection of the remaining
   parameters, on the sub-model of the parameters that direction moves, and the limit
   :func:`mbam.identify_limit` reads from its end;
4. the limits evaluated on the graph (process removal, compartment merging, instantaneous
   transfer, receptor removal) plus removal of compartments no ligand can reach;
5. a refit of the reduced model to the full model's predictions when the limit alone costs
   fit, and the chi-square test (and, with a ``prior``, a population check of the TIA);
6. when no limit of 2-4 passes, the transit limit ``V -> 0`` of fast flow-through spaces
   (:func:`mbam.eliminate_transit`) under the same tests, before the loop stops.

Accepted steps record the limit, the parameter count, the fit and the map from old to new
parameters; :meth:`PBPKReduction.map_parameters` sends full-model parameter values (e.g. prior
draws) to the reduced model. Results serialise to JSON (:meth:`PBPKReduction.to_json`,
:func:`load_reduced`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import re
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

import pbpk
from pbpk import GraphError, InvalidInputError, PBPKError, PBPKModel, UnknownNameError
from pbpk._compile import DECAY_PARAMETER, check_parameter_values
from pbpk._graph import parse_factor

from ._limits import KIND_LIMIT, find_boundaries
from ._model import MBAMError, Model, _integer, _names, _option, _real, _sequence
from ._pbpk import (
    GraphRewrite,
    _bypass_droppable,
    _time_constant,
    _transit_pattern,
    apply_limit_to_model,
    eliminate_transit,
    lump_parallel,
    parallel_groups,
    remove_process,
    transit_candidates,
)

__all__ = [
    "AGENT_PARAMETERS",
    "DesignError",
    "PBPKReduction",
    "PBPKReductionStep",
    "PopulationCheck",
    "ReductionDesign",
    "design_model",
    "load_reduced",
    "patient_parameters",
    "prune_unreachable",
    "reduce_pbpk",
    "reducible_parameters",
]

log = logging.getLogger(__name__)

#: Ligand (agent) constants: swapped by ``pbpk.theranostic_pair``, never reduced.
AGENT_PARAMETERS = ("kon", "koff", "kint", "k_pb_on", "k_pb_off")
FORMAT = "mbam-pbpk-reduction/1"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class DesignError(MBAMError, InvalidInputError):
    """An observation design is invalid or does not fit the model."""


# ============================================================================ design
def _times(value, what: str) -> tuple[float, ...]:
    try:
        items = _sequence(value, what, "[1.0, 24.0] (hours)")
    except InvalidInputError as exc:
        raise DesignError(str(exc)) from None
    t = tuple(_real(v) for v in items)
    if any(v is None for v in t):
        raise DesignError(f"{what} must be a list of numbers (hours), got {value!r}.")
    if any(not math.isfinite(v) or v <= 0 for v in t):
        raise DesignError(f"{what} must be finite and > 0 h after injection, got {t}.")
    return t


@dataclasses.dataclass(frozen=True)
class ReductionDesign:
    """What the reduced model must reproduce.

    agent: the ligand of the model being reduced (``"PSMA-617"``).
    pet_times_h, spect_times_h: scan times (h after injection); the predictions are the
        region activities (MBq) of the agent at every scan time.
    regions: observed regions (organs at risk and tumours).
    activity_mbq: injected activity of the simulated administration.
    cv, floor_mbq: noise of an activity, ``sigma = sqrt((cv*A)^2 + floor^2)``.
    tia_cv: relative noise given to each region's TIA (a quantity of interest; 0 leaves TIA out).
    """

    agent: str = "PSMA-617"
    pet_times_h: tuple[float, ...] = (1.0,)
    spect_times_h: tuple[float, ...] = (4.0, 24.0, 96.0, 168.0)
    regions: tuple[str, ...] = ("kidney", "salivary", "lacrimal", "liver", "spleen", "tumour1",
                                "tumour_rest", "plasma")
    activity_mbq: float = 7400.0
    cv: float = 0.1
    floor_mbq: float = 0.5
    tia_cv: float = 0.02

    def __post_init__(self) -> None:
        if not isinstance(self.agent, str) or not self.agent:
            raise DesignError("design.agent must be a ligand name such as 'PSMA-617'.")
        pet = _times(self.pet_times_h, "pet_times_h")
        spect = _times(self.spect_times_h, "spect_times_h")
        if not pet and not spect:
            raise DesignError("the design needs at least one scan time (pet_times_h or spect_times_h).")
        object.__setattr__(self, "pet_times_h", pet)
        object.__setattr__(self, "spect_times_h", spect)
        if isinstance(self.regions, str):
            raise DesignError("design.regions must be a list of region names, not one string.")
        regions = tuple(self.regions)
        if not regions or any(not isinstance(r, str) or not _NAME.match(r) for r in regions):
            raise DesignError(f"design.regions must be non-empty region names, got {regions!r}.")
        if len(set(regions)) != len(regions):
            raise DesignError(f"design.regions has duplicates: {regions}.")
        object.__setattr__(self, "regions", regions)
        for name, lo in (("activity_mbq", 0.0), ("cv", 0.0), ("floor_mbq", -1e-300), ("tia_cv", -1e-300)):
            v = getattr(self, name)
            f = _real(v)
            if f is None or not math.isfinite(f) or f <= lo:
                raise DesignError(f"design.{name} = {v!r} must be a finite number "
                                  f"{'> 0' if lo == 0 else '>= 0'}.")
            object.__setattr__(self, name, f)

    @property
    def times_h(self) -> tuple[float, ...]:
        """Every scan time, sorted and unique."""
        return tuple(sorted(set(self.pet_times_h) | set(self.spect_times_h)))

    @classmethod
    def psma_pet_spect(cls, agent: str = "PSMA-617", late_pet_h: float | None = None,
                       **kwargs) -> ReductionDesign:
        """PET at 1 h (plus an optional late frame) and post-therapy SPECT at 4, 24, 96, 168 h."""
        pet = (1.0,) if late_pet_h is None else (1.0, float(late_pet_h))
        return cls(agent=agent, pet_times_h=pet, **kwargs)

    def check_model(self, model: PBPKModel) -> None:
        """Raise :class:`DesignError` if the design does not fit ``model``."""
        if model.ligand and self.agent != model.ligand:
            raise DesignError(f"the design is for {self.agent!r} but the model's ligand is "
                              f"{model.ligand!r}; build the model of that agent or change design.agent.")
        bad = [r for r in self.regions if r not in model.graph.body_regions]
        if bad:
            raise DesignError(f"design region(s) {', '.join(bad)} are not body regions of "
                              f"{model.name!r}; known: {', '.join(model.graph.body_regions)}.")

    def to_dict(self) -> dict:
        return {"format": "mbam-design/1", **{f.name: (list(v) if isinstance(v, tuple) else v)
                                              for f in dataclasses.fields(self)
                                              for v in [getattr(self, f.name)]}}

    @classmethod
    def from_dict(cls, data: Mapping) -> ReductionDesign:
        if not isinstance(data, Mapping):
            raise DesignError("a design must be a JSON object (mapping).")
        fmt = data.get("format", "mbam-design/1")
        if fmt != "mbam-design/1":
            raise DesignError(f"unknown design format {fmt!r}; expected 'mbam-design/1'.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"format"})
        if unknown:
            raise DesignError(f"unknown design field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "format"}
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> ReductionDesign:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DesignError(f"the design is not valid JSON: {exc}.") from None
        return cls.from_dict(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


# ============================================================================ parameters
def _volumes(model: PBPKModel) -> set[str]:
    return {c.volume for c in model.graph.compartments if c.volume is not None}


def patient_parameters(model: PBPKModel) -> tuple[str, ...]:
    """Patient-specific parameters: all but the decay constant and the ligand constants
    (what ``pbpk.theranostic_pair`` keeps from the patient)."""
    return tuple(n for n in model.parameter_names
                 if n != DECAY_PARAMETER and n not in AGENT_PARAMETERS)


def reducible_parameters(model: PBPKModel, fixed: Sequence[str] = ()) -> tuple[str, ...]:
    """Parameters MBAM moves: patient parameters that are not volumes, not used as ``1-x``
    factors, positive, and not in ``fixed``."""
    fixed = _names(fixed, "fixed")
    comp = set()
    for p in model.graph.processes:
        for t in (*p.rate, *p.koff, *p.receptor):
            kind, name = parse_factor(t)
            if kind == "comp":
                comp.add(name)
    vols = _volumes(model)
    return tuple(n for n in patient_parameters(model)
                 if n not in vols and n not in comp and n not in set(fixed)
                 and model.parameters[n] > 0)


# ============================================================================ map old -> new
def _parse_monomial(text: str) -> tuple[tuple[str, int], ...]:
    """'a*b/c', 'a^2/(b*c)', '1/(a*b)' -> ((name, exponent), ...); no evaluation of code."""
    text = text.strip()
    factors: list[tuple[str, int]] = []
    sign = 1
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*":
            sign = 1
            i += 1
            continue
        if ch == "/":
            sign = -1
            i += 1
            continue
        if ch == "(":
            j = text.index(")", i)
            for name, e in _parse_monomial(text[i + 1:j]):
                factors.append((name, sign * e))
            i = j + 1
            continue
        m = re.match(r"([A-Za-z_][A-Za-z0-9_.]*|1)(\^(-?\d+))?", text[i:])
        if not m:
            raise MBAMError(f"cannot read the parameter expression {text!r}.")
        name, exp = m.group(1), int(m.group(3) or 1)
        if name != "1":
            factors.append((name, sign * exp))
        i += m.end()
    return tuple(factors)


_RATIO = re.compile(r"^\((?P<num>[^()]+)\) / \((?P<den>[^()]+)\)$")


def _parse_definition(expr: str):
    """Sum of monomials, e.g. 'V_a + V_b' or 'V + R*kon/koff', or a ratio of two sums written
    '(PS) / (Q + PS)', returned as ``("/", numerator terms, denominator terms)``."""
    m = _RATIO.match(expr.strip())
    if m:
        return ("/", _parse_definition(m.group("num")), _parse_definition(m.group("den")))
    return tuple((1.0, _parse_monomial(t)) for t in expr.split(" + "))


def _terms_to_json(terms):
    if terms and terms[0] == "/":
        return {"num": _terms_to_json(terms[1]), "den": _terms_to_json(terms[2])}
    return [[c, [list(f) for f in mono]] for c, mono in terms]


def _terms_from_json(data):
    if isinstance(data, Mapping):
        return ("/", _terms_from_json(data["num"]), _terms_from_json(data["den"]))
    return tuple((float(c), tuple((str(a), int(e)) for a, e in mono)) for c, mono in data)


def _evaluate(terms, values: Mapping[str, np.ndarray]):
    if terms and terms[0] == "/":
        return _evaluate(terms[1], values) / _evaluate(terms[2], values)
    total = 0.0
    for coef, mono in terms:
        v = coef
        for name, e in mono:
            v = v * np.asarray(values[name], dtype=float) ** e
        total = total + v
    return total


# ============================================================================ results
@dataclasses.dataclass(frozen=True, eq=False)
class PBPKReductionStep:
    """One reduction step (accepted, or the last rejected one).

    ``limits``: the limits evaluated, ``({"name", "direction", "how"}, ...)`` with ``how`` =
    ``"axis"``, ``"geodesic"``, ``"lump"`` or ``"transit"``; ``geodesic``: the geodesic's
    :class:`mbam.LimitReport` as a dict (or ``None``); ``rewrites``: the graph rewrites
    applied, in order (their ``parameter_map`` says which old parameter became which new one);
    ``definitions``: each new parameter as a sum of monomials of the previous step's
    parameters, or a ratio of two such sums; ``scale``: refit factors
    (new value / value given by the definitions); ``chi2``: weighted sum of squares against the
    full model after the refit, ``chi2_unrefitted`` before it; ``population_max_rel_err``: the
    largest TIA relative error over the prior draws checked (``None`` without a prior).
    """

    iteration: int
    description: str
    limits: tuple[Mapping[str, str], ...]
    geodesic: Mapping | None
    rewrites: tuple[GraphRewrite, ...]
    definitions: tuple[tuple[str, tuple], ...]
    scale: Mapping[str, float]
    n_params: int
    n_patient_params: int
    n_states: int
    chi2: float
    chi2_unrefitted: float
    population_max_rel_err: float | None
    accepted: bool
    wall_s: float
    names: tuple[str, ...] = ()

    @property
    def parameter_map(self) -> dict[str, str | None]:
        """Old parameter -> the parameter replacing it, or ``None`` (went to its limit)."""
        out: dict[str, str | None] = {}
        for rec in self.rewrites:
            for old, new in rec.parameter_map.items():
                out[old] = new
        for old, new in list(out.items()):  # follow chains within the step
            seen = set()
            while new is not None and new in out and new not in seen:
                seen.add(new)
                new = out[new]
            out[old] = new
        return out

    def map_values(self, values: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
        """Previous step's parameter values -> this step's (``names``)."""
        work = dict(values)
        for new, terms in self.definitions:
            work[new] = _evaluate(terms, work)
        return {n: np.asarray(work[n], dtype=float) * self.scale.get(n, 1.0) for n in names}

    def as_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "description": self.description,
            "limits": [dict(d) for d in self.limits],
            "geodesic": self.geodesic,
            "rewrites": [{"kind": r.kind, "description": r.description,
                          "parameter_map": dict(r.parameter_map),
                          "new_parameters": dict(r.new_parameters),
                          "values": dict(r.values), "notes": list(r.notes)} for r in self.rewrites],
            "definitions": [[n, _terms_to_json(terms)] for n, terms in self.definitions],
            "scale": dict(self.scale),
            "parameter_map": self.parameter_map,
            "n_params": self.n_params,
            "n_patient_params": self.n_patient_params,
            "n_states": self.n_states,
            "chi2": self.chi2,
            "chi2_unrefitted": self.chi2_unrefitted,
            "population_max_rel_err": self.population_max_rel_err,
            "accepted": self.accepted,
            "wall_s": self.wall_s,
            "names": list(self.names),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> PBPKReductionStep:
        return cls(
            iteration=int(d["iteration"]), description=str(d["description"]),
            limits=tuple(dict(x) for x in d["limits"]), geodesic=d.get("geodesic"),
            rewrites=tuple(GraphRewrite(r["kind"], r["description"], dict(r["parameter_map"]),
                                        dict(r.get("new_parameters", {})), dict(r.get("values", {})),
                                        tuple(r.get("notes", ()))) for r in d["rewrites"]),
            definitions=tuple((str(n), _terms_from_json(terms)) for n, terms in d["definitions"]),
            scale={str(k): float(v) for k, v in d["scale"].items()},
            n_params=int(d["n_params"]), n_patient_params=int(d["n_patient_params"]),
            n_states=int(d["n_states"]), chi2=float(d["chi2"]),
            chi2_unrefitted=float(d["chi2_unrefitted"]),
            population_max_rel_err=(None if d.get("population_max_rel_err") is None
                                    else float(d["population_max_rel_err"])),
            accepted=bool(d["accepted"]), wall_s=float(d["wall_s"]),
            names=tuple(str(n) for n in d.get("names", ())),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class PopulationCheck:
    """The reduced model's design-region TIAs against the full model's over prior draws
    (:meth:`PBPKReduction.check_population`).

    ``by_region``: a DataFrame indexed by region with the ``max``, ``p99`` and ``median`` of
    ``|TIA_reduced / TIA_full - 1|``; ``max_rel_err``: the largest over regions and draws;
    ``failed_solves``: draws where either model's solver failed (left out of the errors).
    """

    n_draws: int
    failed_solves: int
    max_rel_err: float
    worst_region: str
    by_region: object = dataclasses.field(repr=False)
    #: what was simulated: "prior draws" or "given patients"
    source: str = "prior draws"

    def passes(self, tol: float = 0.02) -> bool:
        """Whether every solve succeeded and every region's TIA is within ``tol``."""
        return self.failed_solves == 0 and self.max_rel_err <= tol

    def to_dict(self) -> dict:
        return {"n_draws": self.n_draws, "source": self.source, "failed_solves": self.failed_solves,
                "max_rel_err": self.max_rel_err, "worst_region": self.worst_region,
                "by_region": {r: {k: float(v) for k, v in row.items()}
                              for r, row in self.by_region.to_dict(orient="index").items()}}

    def __str__(self) -> str:
        return (f"TIA over {self.n_draws} {self.source}: max error {100 * self.max_rel_err:.2f} % "
                f"({self.worst_region}), failed solves {self.failed_solves}")


@dataclasses.dataclass(frozen=True, eq=False)
class PBPKReduction:
    """The reduced model (``model``: a :class:`pbpk.PBPKModel` that runs in ``pbpk.simulate``,
    ``simulate_cohort``, ``calibration.calibrate`` and organ dose like the full one), the full
    model it came from, the design, the history of steps and why the loop stopped."""

    full_model: PBPKModel
    model: PBPKModel
    design: ReductionDesign
    history: tuple[PBPKReductionStep, ...]
    stop_reason: str
    wall_s: float

    def __post_init__(self) -> None:
        # the reduced model predicts the design's regions only (PBPKModel.predicted_regions);
        # files written before the field existed get it from their design
        if isinstance(self.model, PBPKModel) and self.accepted and not self.model.predicted_regions:
            object.__setattr__(self, "model", dataclasses.replace(
                self.model, predicted_regions=self.predicted_regions()))

    def predicted_regions(self) -> tuple[str, ...]:
        """The regions the reduced model predicts: the design's, of those the full model predicts
        (the full model's when no step was accepted)."""
        if not self.accepted:
            return self.full_model.predicted_regions
        return tuple(r for r in self.design.regions if r in self.model.regions
                     and isinstance(self.full_model, PBPKModel) and self.full_model.predicts(r))

    @property
    def accepted(self) -> tuple[PBPKReductionStep, ...]:
        return tuple(s for s in self.history if s.accepted)

    def counts(self) -> dict[str, int]:
        """Parameters (all but the decay constant), patient-specific parameters and ODE states,
        before and after."""
        def n_all(m):
            return len([n for n in m.parameter_names if n != DECAY_PARAMETER])

        return {
            "params_before": n_all(self.full_model), "params_after": n_all(self.model),
            "patient_params_before": len(patient_parameters(self.full_model)),
            "patient_params_after": len(patient_parameters(self.model)),
            "states_before": self.full_model.compiled.n_states,
            "states_after": self.model.compiled.n_states,
        }

    def parameter_map(self) -> dict[str, str | None]:
        """Full-model parameter -> reduced-model parameter it ended in (``None``: eliminated)."""
        out = {n: n for n in self.full_model.parameter_names if n != DECAY_PARAMETER}
        for step in self.accepted:
            m = step.parameter_map
            out = {k: (None if v is None else m.get(v, v)) for k, v in out.items()}
        return out

    def map_parameters(self, values: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
        """Full-model parameter values (scalars or arrays with a patient axis; missing names take
        the full model's defaults) -> the reduced model's parameters, through each accepted
        step's definitions and refit factors. Every output has the inputs' common (broadcast)
        shape, so the result feeds ``pbpk.simulate_cohort`` directly.

        The values follow pbpk's own rule (:func:`pbpk.simulate` accepts the same): finite,
        volumes > 0, other parameters >= 0, fractions used as ``1 - x`` in [0, 1]. The decay
        constant may be given only with the nuclide's value (as in ``model.parameters``).
        Raises :class:`pbpk.UnknownNameError` for a name that is not a parameter of the full
        model and :class:`pbpk.InvalidInputError` for values outside that rule, shapes that do
        not broadcast to one common shape, or a mapping that comes out non-finite (e.g. a ratio
        whose parameters are all 0)."""
        full = self.full_model
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise InvalidInputError(
                f"values must be a mapping {{parameter name: value or array}}, got {type(values).__name__}.")
        values = dict(values)
        names = [n for n in full.parameter_names if n != DECAY_PARAMETER]
        if DECAY_PARAMETER in values:
            decay = values.pop(DECAY_PARAMETER)
            if not np.all(np.asarray(decay, dtype=object) == full.parameters[DECAY_PARAMETER]):
                raise InvalidInputError(
                    f"{DECAY_PARAMETER} = {decay!r} differs from the nuclide's "
                    f"{full.parameters[DECAY_PARAMETER]!r} ({full.nuclide}); it is set by the nuclide, "
                    "not mapped: leave it out.")
        unknown = [k for k in values if k not in full.parameters]
        if unknown:
            raise UnknownNameError(
                f"unknown full-model parameter(s) {', '.join(map(repr, unknown))} of {full.name!r}; "
                f"known: {', '.join(names)}.")
        cur = {}
        for n in names:
            if n not in values:
                cur[n] = np.asarray(full.parameters[n], dtype=float)
                continue
            v = values[n]
            arr = np.asarray(v)
            if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                         or np.issubdtype(arr.dtype, np.floating)):
                raise InvalidInputError(
                    f"values[{n!r}] = {v!r} must be a number or an array of numbers.")
            cur[n] = arr.astype(float)
        # the rule pbpk.simulate applies: finite, volumes > 0, others >= 0, fractions in [0, 1]
        check_parameter_values(full.compiled, {**cur, DECAY_PARAMETER: full.parameters[DECAY_PARAMETER]})
        try:
            shape = np.broadcast_shapes(*(np.shape(v) for v in cur.values()))
        except ValueError:
            shapes = ", ".join(f"{n}: {np.shape(v)}" for n, v in cur.items() if np.shape(v) != ())
            raise InvalidInputError(
                f"the values' shapes do not broadcast to one common shape ({shapes}); give scalars "
                "or arrays with the same patient axis.") from None
        for step in self.accepted:
            cur = step.map_values(cur, step.names)
        out = {n: np.broadcast_to(cur[n], shape).copy() for n in self.model.parameter_names
               if n != DECAY_PARAMETER}
        bad = [n for n, v in out.items() if not np.all(np.isfinite(v))]
        if bad:
            raise InvalidInputError(
                f"the reduced parameter(s) {', '.join(bad)} come out non-finite for these values (a "
                "ratio whose full-model parameters are all 0?); the reduced model cannot represent "
                "them: simulate the full model for such patients.")
        return out

    def check_population(self, prior, n_draws: int = 1000, key=0, *, activity_mbq: float | None = None,
                         chunk_size: int = 100) -> PopulationCheck:
        """Simulate ``n_draws`` draws of ``prior`` (full-model parameters) in the full model and,
        mapped by :meth:`map_parameters`, in the reduced one, and compare the design regions'
        TIAs after one administration of ``activity_mbq`` (default: the design's).

        ``prior`` may also be the patients themselves: a mapping or DataFrame of full-model
        parameter values with one row per patient, e.g. ``twin.cohort.Population.sample(key,
        n)`` (columns that are not parameters, such as covariates, are ignored; ``n_draws`` and
        ``key`` are then unused). A reduction is checked around the reference physiology; the
        covariate patients of a population can differ more (PSMA-617: plasma 4.9 % over 256).

        The reduction itself checks each step on a few draws (``population_draws``, 32 by
        default), which can miss the tails: on the PSMA model the final error over 32 draws was
        0.63 % and over 1,000 draws 0.97-1.53 %, depending on the draws. Run this on the
        population you will use."""
        given = None
        if isinstance(prior, Mapping) or hasattr(prior, "columns"):
            cols = list(prior.keys()) if isinstance(prior, Mapping) else list(prior.columns)
            names = [c for c in cols if c in self.full_model.parameters and c != DECAY_PARAMETER]
            if not names:
                raise InvalidInputError(
                    f"none of the columns of the given patients ({', '.join(map(str, cols[:8]))}"
                    f"{', ...' if len(cols) > 8 else ''}) is a parameter of {self.full_model.name!r}; "
                    "give full-model parameter values per patient or a prior (calibration.Prior).")
            try:
                given = {k: np.asarray(prior[k], dtype=float) for k in names}
                n_given = np.broadcast_shapes(*(v.shape for v in given.values()))
            except (TypeError, ValueError):
                raise InvalidInputError(
                    "the given patients' parameter columns must be numbers of one common length.") from None
            if len(n_given) != 1 or n_given[0] < 1:
                raise InvalidInputError(
                    f"the given patients' parameters must be 1-D with one value per patient, got shape {n_given}.")
            n_draws = int(n_given[0])
        elif not (hasattr(prior, "sample") and hasattr(prior, "names")):
            raise InvalidInputError("prior must have .names and .sample(key, n) (e.g. calibration.Prior), "
                                    "or be a table of full-model parameters per patient.")
        else:
            bad = [n for n in prior.names if n not in self.full_model.parameters]
            if bad:
                raise InvalidInputError(f"prior parameter(s) {', '.join(bad)} are not in {self.full_model.name!r}.")
        if _integer(n_draws) is None or n_draws < 1:
            raise InvalidInputError(f"n_draws = {n_draws!r} must be an integer >= 1.")
        if _integer(chunk_size) is None or chunk_size < 1:
            raise InvalidInputError(f"chunk_size = {chunk_size!r} must be an integer >= 1.")
        act_in = self.design.activity_mbq if activity_mbq is None else activity_mbq
        act = _real(act_in)
        if act is None or not (math.isfinite(act) and act > 0):
            raise InvalidInputError(f"activity_mbq = {act_in!r} must be a finite number > 0.")
        import pandas as pd

        if given is not None:
            draws = {k: np.broadcast_to(v, (n_draws,)).copy() for k, v in given.items()}
        else:
            draws = {k: np.asarray(v, dtype=float) for k, v in prior.sample(key, int(n_draws)).items()}
        sched = pbpk.Schedule.single(float(act))
        times = list(self.design.times_h)
        chunk = max(1, min(int(chunk_size), int(n_draws)))
        rf = pbpk.simulate_cohort(self.full_model, sched, times, draws, chunk_size=chunk)
        rr = pbpk.simulate_cohort(self.model, sched, times, self.map_parameters(draws), chunk_size=chunk)
        regions = list(self.design.regions)
        tf = np.asarray(rf.tia_mbq_h)[:, [rf.body_regions.index(r) for r in regions]]
        tr = np.asarray(rr.tia_mbq_h)[:, [rr.body_regions.index(r) for r in regions]]
        ok = (np.asarray(rf.status) == 0) & (np.asarray(rr.status) == 0)
        if not ok.any():
            raise MBAMError("every draw failed to solve in the full or the reduced model.")
        rel = np.abs(tr[ok] / tf[ok] - 1.0)
        table = pd.DataFrame({"max": rel.max(0), "p99": np.quantile(rel, 0.99, axis=0),
                              "median": np.median(rel, axis=0)}, index=pd.Index(regions, name="region"))
        worst = int(np.argmax(rel.max(0)))
        return PopulationCheck(int(n_draws), int((~ok).sum()), float(rel.max()), regions[worst], table,
                               "prior draws" if given is None else "given patients")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "full_model": json.loads(self.full_model.to_json()),
            "reduced_model": json.loads(self.model.to_json()),
            "design": self.design.to_dict(),
            "history": [s.as_dict() for s in self.history],
            "stop_reason": self.stop_reason,
            "wall_s": self.wall_s,
            "counts": self.counts(),
        }

    def to_json(self) -> str:
        """JSON text (no pickle): both models, the design and the history."""
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path) -> pathlib.Path:
        """Write :meth:`to_json` to ``path``; returns the path."""
        path = pathlib.Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    def summary(self) -> str:
        """The history in words, one line per step."""
        c = self.counts()
        head = (f"{self.full_model.name}: {c['params_before']} -> {c['params_after']} parameters "
                f"({c['patient_params_before']} -> {c['patient_params_after']} patient-specific), "
                f"{c['states_before']} -> {c['states_after']} states; stopped: {self.stop_reason}")
        lines = [head]
        for s in self.history:
            flag = "accepted" if s.accepted else "rejected"
            lines.append(f"  step {s.iteration} ({flag}): {s.n_params} parameters, chi2 {s.chi2:.3g}: "
                         f"{s.description}")
        return "\n".join(lines)


def load_reduced(source) -> PBPKReduction:
    """Read a reduction written by :meth:`PBPKReduction.to_json` / ``save`` (a path or the JSON
    text). JSON only; nothing in the file is executed."""
    text = None
    if isinstance(source, pathlib.Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        p = pathlib.Path(source)
        if not p.is_file():
            raise InvalidInputError(f"no reduction file at {str(p)!r}; write one with "
                                    "`twin reduce --out FILE` or PBPKReduction.save().")
        text = p.read_text(encoding="utf-8")
    elif isinstance(source, str):
        text = source
    else:
        raise InvalidInputError("load_reduced takes a file path or JSON text.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"the reduction file is not valid JSON: {exc}.") from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise InvalidInputError(f"not an MBAM reduction file (expected format {FORMAT!r}).")
    try:
        full = PBPKModel.from_json(json.dumps(data["full_model"]))
        # the predicted regions follow from the design and the steps (PBPKReduction); the
        # stored list is compared after the design has been checked against the models
        reduced_data = dict(data["reduced_model"])
        stored_regions = reduced_data.pop("predicted_regions", None)
        reduced = PBPKModel.from_json(json.dumps(reduced_data))
        design = ReductionDesign.from_dict(data["design"])
        history = tuple(PBPKReductionStep.from_dict(d) for d in data["history"])
        stop_reason, wall_s = str(data.get("stop_reason", "")), float(data.get("wall_s", 0.0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, PBPKError):
            raise
        raise InvalidInputError(f"the reduction file is incomplete or malformed: {exc!r}.") from None
    red = PBPKReduction(full, reduced, design, history, stop_reason, wall_s)
    _check_reduction(red)
    if stored_regions is not None and (not isinstance(stored_regions, list)
                                       or set(stored_regions) != set(red.model.predicted_regions)):
        raise InvalidInputError(
            f"the reduction file is inconsistent: its reduced model predicts {stored_regions!r}, but "
            f"its design and steps give {', '.join(red.model.predicted_regions) or 'every region'}; "
            "it was edited or is corrupt: write it again with PBPKReduction.save().")
    return red


_MAP_RTOL = 1e-9  # map_parameters() at the full model's values vs the reduced model's


def _check_reduction(red: PBPKReduction) -> None:
    """Raise a typed error if the parts of a reduction (read from a file) do not fit together:
    the design must fit both models (:meth:`ReductionDesign.check_model`), each accepted step's
    definitions may use only the previous step's parameters, its ``names`` must be what they
    define or carry over, its refit scales must be finite and > 0, the last step's names must
    be the reduced model's parameters, and :meth:`PBPKReduction.map_parameters` at the full
    model's own values must give the reduced model's values (relative tolerance 1e-9)."""
    try:
        red.design.check_model(red.full_model)
        red.design.check_model(red.model)
    except DesignError as exc:
        raise DesignError(f"the reduction file's design does not fit its models: {exc}") from None
    available = {n for n in red.full_model.parameter_names if n != DECAY_PARAMETER}

    def used(terms):
        if terms and terms[0] == "/":
            return used(terms[1]) | used(terms[2])
        return {name for _, mono in terms for name, _ in mono}

    def fail(step, msg):
        raise InvalidInputError(f"the reduction file is inconsistent: step {step.iteration} {msg}; "
                                "it was edited or is corrupt: write it again with PBPKReduction.save().")

    for step in red.accepted:
        defined = set()
        for name, terms in step.definitions:
            missing = sorted(used(terms) - available - defined)
            if missing:
                fail(step, f"defines {name!r} from unknown parameter(s) {', '.join(missing)}")
            defined.add(name)
        if not step.names:
            fail(step, "lists no parameter names")
        missing = [n for n in step.names if n not in available | defined]
        if missing:
            fail(step, f"lists parameter(s) {', '.join(missing)} that neither the previous step "
                       "has nor this step defines")
        extra = [n for n in step.scale if n not in step.names]
        if extra:
            fail(step, f"scales parameter(s) {', '.join(extra)} it does not list")
        bad = [f"{n} = {v!r}" for n, v in step.scale.items()
               if not (math.isfinite(v) and v > 0)]
        if bad:
            fail(step, f"has refit scale(s) {', '.join(bad)}; each must be a finite number > 0")
        available = set(step.names)
    reduced = {n for n in red.model.parameter_names if n != DECAY_PARAMETER}
    if available != reduced:
        diff = sorted(available ^ reduced)
        raise InvalidInputError(
            f"the reduction file is inconsistent: its steps end in parameters that differ from the "
            f"reduced model's ({', '.join(diff)}); it was edited or is corrupt: write it again with "
            "PBPKReduction.save().")
    # the steps applied to the full model's own values must give the reduced model's values
    corrupt = ("; it was edited or is corrupt: write it again with PBPKReduction.save().")
    try:
        with np.errstate(all="ignore"):
            mapped = red.map_parameters()
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"the reduction file is inconsistent: its steps do not map the full model's own "
            f"parameter values to the reduced model ({exc}){corrupt}") from None
    stored = red.model.parameters
    diff = [f"{n} = {stored[n]!r} (the steps give {float(v):.10g})" for n, v in mapped.items()
            if not np.isclose(float(v), stored[n], rtol=_MAP_RTOL, atol=0.0)]
    if diff:
        raise InvalidInputError(
            f"the reduction file is inconsistent: the reduced model's parameter(s) "
            f"{'; '.join(diff)} differ from what its steps map the full model's parameter values "
            f"to (relative tolerance {_MAP_RTOL:g}){corrupt}")


# ============================================================================ graph helpers
def prune_unreachable(model: PBPKModel, *, keep: Sequence[str] | None = None
                      ) -> tuple[PBPKModel, GraphRewrite | None]:
    """Remove compartments that no ligand can reach from the dose compartment (after a process
    removal they stay empty for every schedule), with the processes that touch them. Exact.

    By default the last compartment of a region is kept so that the region is still reported
    (as zero); with ``keep`` (region names) only those regions keep an empty compartment and
    other regions that no ligand reaches go, with their volume parameters."""
    from ._pbpk import _map_removed, _new_model

    if keep is not None:
        keep = _names(keep, "keep")
    g = model.graph
    adj: dict[str, set[str]] = {c.name: set() for c in g.compartments}
    for p in g.processes:
        adj[p.source].add(p.target)
        if p.kind in ("exchange", "binding"):
            adj[p.target].add(p.source)
    reach, todo = {g.dose_compartment}, [g.dose_compartment]
    while todo:
        for nxt in adj[todo.pop()]:
            if nxt not in reach:
                reach.add(nxt)
                todo.append(nxt)
    left = {r: sum(c.region == r for c in g.compartments) for r in g.regions}
    gone = []
    for c in g.compartments:
        if c.name not in reach and (left[c.region] > 1 or (keep is not None and c.region not in keep)):
            gone.append(c.name)
            left[c.region] -= 1
    if not gone:
        return model, None
    drop = set(gone)
    graph = dataclasses.replace(
        g, compartments=tuple(c for c in g.compartments if c.name not in drop),
        processes=tuple(p for p in g.processes if p.source not in drop and p.target not in drop))
    reduced = _new_model(model, graph, {}, "mbam")
    return reduced, GraphRewrite(
        kind="prune_unreachable",
        description=f"compartments no ligand reaches removed: {', '.join(gone)}",
        parameter_map=_map_removed(model, reduced, {}),
    )


def _receptor_only(model: PBPKModel, name: str) -> list:
    """Binding processes whose receptor factor is ``name`` if that is its only use, else []."""
    hits, other = [], False
    for p in model.graph.processes:
        for attr in ("rate", "koff", "receptor"):
            for t in getattr(p, attr):
                if parse_factor(t)[1] == name:
                    if p.kind == "binding" and attr == "receptor":
                        hits.append(p)
                    else:
                        other = True
    return [] if other else hits


def _apply_limits(model: PBPKModel, spec: Sequence[tuple[str, str]], keep_regions: Sequence[str] = ()
                  ) -> tuple[PBPKModel, tuple[GraphRewrite, ...]]:
    """Evaluate limits ``[(name, '0' | 'inf'), ...]`` on the graph, in order, then prune.
    A receptor amount -> 0 removes its binding; everything else goes through
    :func:`mbam.apply_limit_to_model`. Raises NotImplementedError/PBPKError when not mappable
    (also when a region of ``keep_regions`` would no longer be reported)."""
    records: list[GraphRewrite] = []
    keep = list(keep_regions)
    for name, direction in spec:
        if name not in model.parameters:
            continue  # eliminated by an earlier rewrite of this batch
        binds = _receptor_only(model, name)
        if binds and direction == "0":
            for p in binds:
                model, rec = remove_process(model, "binding", p.source, p.target)
                records.append(rec)
            continue
        model, recs = apply_limit_to_model(model, {name: direction})
        records.extend(recs)
    model, rec = prune_unreachable(model, keep=keep)
    if rec is not None:
        records.append(rec)
    lost = [r for r in keep if r not in model.graph.body_regions]
    if lost:
        raise GraphError(f"the limit {spec} removes observed region(s) {', '.join(lost)}.")
    return model, tuple(records)


def _mappable(model: PBPKModel, spec, keep_regions=()) -> bool:
    try:
        _apply_limits(model, spec, keep_regions)
    except (NotImplementedError, PBPKError):
        return False
    return True


# ============================================================================ the loop
def _transit_free(model: PBPKModel, comp: str, fixed: Sequence[str], allowed) -> bool:
    """Whether the transit limit of ``comp`` moves only parameters the caller lets move (its
    volume and its exchange's PS)."""
    exchange = _transit_pattern(model, comp)[2]
    moved = {model.graph.compartment(comp).volume} | {parse_factor(t)[1] for t in exchange.rate}
    if moved & set(fixed):
        return False
    return allowed is None or (moved - _volumes(model)) <= allowed


def _split_by_time_constant(model: PBPKModel, group: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """``group`` (sorted by time constant V/Q) cut at the largest gap of log V/Q into a fast
    and a slow part; parts of one member stay unlumped. Groups under four members stay whole."""
    if len(group) < 4:
        return (tuple(group),)
    log_tau = [math.log(_time_constant(model, c)) for c in group]
    k = 1 + int(np.argmax(np.diff(log_tau)))
    return tuple(tuple(part) for part in (group[:k], group[k:]) if len(part) >= 2)


def _free_region(model: PBPKModel, base: str, taken: Sequence[str] = ()) -> str:
    """A region name ``base``, ``base_2``, ... that is not a region of ``model``, not in
    ``taken``, and whose lumped parameters ``Q_<name>``/``V_<name>`` are not parameters."""
    name, k = base, 1
    while (name in model.graph.regions or name in taken
           or f"Q_{name}" in model.parameters or f"V_{name}" in model.parameters):
        k += 1
        name = f"{base}_{k}"
    return name


def _lump_parts(model: PBPKModel, parts: Sequence[Sequence[str]]):
    """Lump each group of ``parts`` in turn. Every new region (and its ``Q_``/``V_``
    parameters) gets a name the starting model does not use: a name freed by an earlier
    part (a lumped region lumped again) would otherwise collide with the starting model's
    parameter of that name, whose value the reduction carries over."""
    taken = set(model.graph.regions) | {n[2:] for n in model.parameters if n[:2] in ("Q_", "V_")}
    m, recs = model, []
    for g in parts:
        name = _free_region(m, "lumped", taken)
        taken.add(name)
        m, rec = lump_parallel(m, g, name=name)
        recs.append(rec)
    return m, tuple(recs)


def _predictor(model: PBPKModel, design: ReductionDesign, names: Sequence[str], opts: Mapping):
    sched = pbpk.Schedule.single(design.activity_mbq)
    times = np.array(design.times_h)
    ri = np.array([model.graph.regions.index(r) for r in design.regions])
    bi = np.array([model.graph.body_regions.index(r) for r in design.regions])
    tia = design.tia_cv > 0
    names = tuple(names)

    def predict(x):
        p = {n: jnp.exp(x[i]) for i, n in enumerate(names)}
        r = pbpk.simulate(model, sched, times, p, check=False, **opts)
        parts = [r.activity_mbq[:, ri].reshape(-1)]
        if tia:
            parts.append(r.tia_mbq_h[bi])
        y = jnp.concatenate(parts)
        return jnp.where(r.status == 0, y, jnp.nan)

    return predict


def _sigma(design: ReductionDesign, y0: np.ndarray) -> np.ndarray:
    n_act = len(design.times_h) * len(design.regions)
    act, tia = y0[:n_act], y0[n_act:]
    s_act = np.sqrt((design.cv * act) ** 2 + design.floor_mbq**2)
    s_tia = np.maximum(design.tia_cv * np.abs(tia), 1e-12)
    return np.concatenate([s_act, s_tia])


def _log_x(model: PBPKModel, names) -> np.ndarray:
    return np.log(np.array([model.parameters[n] for n in names], dtype=float))


def design_model(model: PBPKModel, design: ReductionDesign | None = None,
                 parameters: Sequence[str] | None = None, *,
                 simulate_options: Mapping | None = None) -> tuple[Model, np.ndarray]:
    """The design's predictions as an :class:`mbam.Model` of the log of ``parameters``
    (default: :func:`reducible_parameters`), with the design's noise at the model's own
    predictions; returns ``(model, x0)`` with ``x0`` the log of the model's values. Use it for
    :func:`mbam.fisher_spectrum` and :func:`mbam.find_boundaries` on a PBPK model."""
    if not isinstance(model, PBPKModel):
        raise InvalidInputError(f"model must be a pbpk.PBPKModel, got {type(model).__name__}.")
    design = design or ReductionDesign.psma_pet_spect(model.ligand or "PSMA-617")
    design.check_model(model)
    names = _names(parameters, "parameters") if parameters is not None else reducible_parameters(model)
    bad = [n for n in names if n not in model.parameters or n == DECAY_PARAMETER]
    if bad or not names:
        raise InvalidInputError(f"parameters {bad or names} are not free parameters of {model.name!r}.")
    opts = {"rtol": 1e-7, "atol": 1e-10, **dict(simulate_options or {})}
    pred = _predictor(model, design, names, opts)
    x0 = _log_x(model, names)
    y0 = np.asarray(jax.jit(pred)(jnp.asarray(x0)))
    if not np.all(np.isfinite(y0)):
        raise MBAMError("the model's predictions are not finite for this design; check the model.")
    return Model(pred, names, _sigma(design, y0)), x0


def _refit(res, x0: np.ndarray, max_nfev: int) -> tuple[np.ndarray, float]:
    fun = jax.jit(res)
    jac = jax.jit(jax.jacfwd(res))
    sol = scipy.optimize.least_squares(
        lambda x: np.asarray(fun(jnp.asarray(x))), x0,
        jac=lambda x: np.asarray(jac(jnp.asarray(x))),
        method="trf", xtol=1e-10, ftol=1e-10, gtol=1e-12, max_nfev=max_nfev)
    if not np.all(np.isfinite(sol.fun)):
        return x0, math.inf
    return sol.x, float(np.sum(sol.fun**2))


def _tia_rel_err(model, design, draws, reference, opts) -> float:
    sched = pbpk.Schedule.single(design.activity_mbq)
    res = pbpk.simulate_cohort(model, sched, list(design.times_h), draws,
                               chunk_size=min(64, len(next(iter(draws.values())))),
                               rtol=opts.get("rtol", 1e-6), atol=opts.get("atol", 1e-9))
    bi = [model.graph.body_regions.index(r) for r in design.regions]
    tia = np.asarray(res.tia_mbq_h)[:, bi]
    ok = np.asarray(res.status) == 0
    if not ok.all():
        return math.inf
    return float(np.max(np.abs(tia / reference - 1.0)))


def reduce_pbpk(
    model: PBPKModel,
    design: ReductionDesign | None = None,
    prior=None,
    *,
    chi2_tol: float = 1.0,
    max_iter: int = 7,
    fixed: Sequence[str] = (),
    parameters: Sequence[str] | None = None,
    axis_tol: float = 1.0,
    axis_budget: float = 0.5,
    push: float = 10.0,
    geodesic: bool = True,
    n_sub: int = 4,
    refit: str = "auto",
    refit_max_nfev: int = 20,
    population_draws: int = 32,
    population_tol: float = 0.01,
    key=0,
    simulate_options: Mapping | None = None,
    geodesic_options: Mapping | None = None,
    lump: bool = True,
    transit: bool = True,
    transit_fraction: float = 0.01,
    progress: bool = False,
    callback=None,
) -> PBPKReduction:
    """Reduce a PBPK model by MBAM for an observation design.

    Parameters
    ----------
    model: the full :class:`pbpk.PBPKModel` (e.g. ``pbpk.psma_model("PSMA-617")``).
    design: :class:`ReductionDesign`; default ``ReductionDesign.psma_pet_spect(model.ligand)``.
    prior: optional population prior over full-model parameters (anything with ``names`` and
        ``sample(key, n) -> {name: array}``, e.g. ``calibration.Prior.default(model)``). Each
        step must then keep the design regions' TIA within ``population_tol`` over
        ``population_draws`` draws mapped to the reduced parameters. The metric itself is the
        likelihood metric (a prior would hide the boundaries).
    chi2_tol: largest accepted weighted sum of squares against the full model's predictions.
    max_iter: most reduction steps (0 returns the full model unchanged); the loop also stops
        when a step finds no limit that passes (the PSMA-617 model for the default design
        stops after 6 steps).
    fixed: parameters never moved (besides volumes, ``1-x`` factors and ligand constants);
        ``parameters``: if given, only these are moved.
    axis_tol: Fisher column norm (chi-square change per log unit, square-rooted) below which a
        parameter is an axis-limit candidate (a finite number >= 0; 0: no axis limits); each is
        pushed ``push`` log units both ways and the candidates are batched, cheapest first,
        while their separate chi-square costs add up to at most ``axis_budget * chi2_tol``
        (``axis_budget``: a finite number >= 0; the batch is then tested as a whole).
    push: log units a limit is pushed (a finite number > 0; also the geodesic's ``max_dx``).
    geodesic: follow a geodesic from the sloppiest remaining direction each step (on the
        sub-model of at most ``n_sub`` parameters that direction moves; an integer >= 2).
    refit: ``"auto"`` (refit when the limit alone costs more than a tenth of ``chi2_tol``),
        ``"always"`` or ``"never"``; ``refit_max_nfev``: evaluations of the least-squares refit
        (an integer >= 1). ``population_draws`` (an integer >= 1) and ``population_tol`` (a
        finite number > 0): see ``prior``.
    simulate_options: ``rtol``/``atol``/``max_steps`` for the metric's simulations
        (default rtol 1e-7, atol 1e-10).
    geodesic_options: passed to :func:`mbam.integrate_geodesic`.
    lump: at the start of each step, when the model has tissues perfused in parallel outside
        the design's regions (:func:`mbam.parallel_groups`; e.g. the receptor-negative tissues
        once their exchanges are merged), first try lumping each group into one tissue
        (:func:`mbam.lump_parallel`: the limit in which their time constants merge), then the
        groups cut at the largest gap of their time constants; a lumping is kept under the
        same chi-square and population tests as any limit, and costs no boundary search.
    transit: when a step finds no limit that passes (or none at all), before stopping, try
        the limit ``V -> 0`` of the flow-through spaces with one exchange whose transit time
        ``V / Q`` is at most ``transit_fraction`` times the design's first observation time and
        whose volume is at most ``transit_fraction`` of its neighbours'
        (:func:`mbam.transit_candidates`; e.g. a tumour's vascular space: about 4 s and 0.1 %
        of the arterial plasma volume), all together (:func:`mbam.eliminate_transit`:
        quasi-steady state), first with their bypasses dropped where that is defined (arterial
        to venous plasma: ``V``, ``Q`` and ``PS`` become one clearance), then kept (``V`` and
        ``PS`` become the extraction fraction), under the same tests as a lumping; when they
        pass, the loop goes on. Skipped for a space whose PS or volume is in ``fixed``, or
        whose PS is not in ``parameters`` when that is given.
    progress: a progress bar over steps; ``callback(step)`` is called after every step.
    """
    t_start = time.perf_counter()
    if not isinstance(model, PBPKModel):
        raise InvalidInputError(f"model must be a pbpk.PBPKModel, got {type(model).__name__}.")
    if design is None:
        design = ReductionDesign.psma_pet_spect(model.ligand or "PSMA-617")
    if not isinstance(design, ReductionDesign):
        raise DesignError(f"design must be an mbam.ReductionDesign, got {type(design).__name__}.")
    design.check_model(model)
    chi2_tol = _option("chi2_tol", chi2_tol, finite=False)
    max_iter = _option("max_iter", max_iter, integer=True, strict=False)
    push = _option("push (log units a limit is pushed)", push)
    axis_tol = _option("axis_tol", axis_tol, strict=False)  # 0: no axis limits
    axis_budget = _option("axis_budget", axis_budget, strict=False)
    n_sub = _option("n_sub", n_sub, integer=True, low=2, strict=False)
    refit_max_nfev = _option("refit_max_nfev", refit_max_nfev, integer=True, low=1, strict=False)
    population_draws = _option("population_draws", population_draws, integer=True, low=1,
                               strict=False)
    population_tol = _option("population_tol", population_tol)
    if _real(transit_fraction) is None or not 0 < transit_fraction < 1:
        raise InvalidInputError(f"transit_fraction = {transit_fraction!r} must lie in (0, 1).")
    if refit not in ("auto", "always", "never"):
        raise InvalidInputError(f"refit = {refit!r}; use 'auto', 'always' or 'never'.")
    fixed = _names(fixed, "fixed")
    if parameters is not None:
        parameters = _names(parameters, "parameters")
    unknown = [n for n in (*fixed, *(parameters or ())) if n not in model.parameters]
    if unknown:
        raise InvalidInputError(f"unknown parameter(s) {', '.join(unknown)} in fixed/parameters.")
    if prior is not None:
        if not (hasattr(prior, "sample") and hasattr(prior, "names")):
            raise InvalidInputError("prior must have .names and .sample(key, n) (e.g. calibration.Prior).")
        bad = [n for n in prior.names if n not in model.parameters]
        if bad:
            raise InvalidInputError(f"prior parameter(s) {', '.join(bad)} are not in {model.name!r}.")
    opts = {"rtol": 1e-7, "atol": 1e-10, **dict(simulate_options or {})}
    geo_opts = {"max_dx": push, "rtol": 1e-2, "atol": 1e-2, "max_steps": 60, "max_step": 2.0,
                **dict(geodesic_options or {})}
    allowed = None if parameters is None else set(parameters)

    def free(m):
        names = reducible_parameters(m, fixed)
        return tuple(n for n in names if allowed is None or n in allowed)

    full = model
    names0 = free(full)
    y0 = np.asarray(jax.jit(_predictor(full, design, names0, opts))(jnp.asarray(_log_x(full, names0))))
    if not np.all(np.isfinite(y0)):
        raise MBAMError("the full model's predictions are not finite for this design; check the model.")
    sigma = _sigma(design, y0)

    def residual_fn(m, names):
        pred = _predictor(m, design, names, opts)
        return lambda x: (pred(x) - y0) / sigma

    pop = None
    if prior is not None and max_iter > 0:
        draws = {k: np.asarray(v, dtype=float) for k, v in prior.sample(key, int(population_draws)).items()}
        sched = pbpk.Schedule.single(design.activity_mbq)
        ref = pbpk.simulate_cohort(full, sched, list(design.times_h), draws,
                                   chunk_size=min(64, int(population_draws)))
        bi = [full.graph.body_regions.index(r) for r in design.regions]
        pop = {"reference": np.asarray(ref.tia_mbq_h)[:, bi],
               "draws": {n: np.broadcast_to(np.asarray(draws.get(n, v), float), (int(population_draws),)).copy()
                         for n, v in full.parameters.items() if n != DECAY_PARAMETER}}

    def evaluate(it, t_it, how, apply, names, x_start, limits, geo_info):
        """Apply a rewrite to ``cur`` (``apply(cur) -> (model, records)``), start it at
        ``x_start``, refit, check the population; returns (step, new model, mapped draws)."""
        new, recs = apply(cur)
        start = dict(zip(names, np.exp(x_start)))
        new = dataclasses.replace(new, parameters={**new.parameters, **{
            k: float(v) for k, v in start.items() if k in new.parameters}})
        new_names = free(new)
        res_new = residual_fn(new, new_names)
        xn = _log_x(new, new_names)
        r0 = np.asarray(jax.jit(res_new)(jnp.asarray(xn)))
        c2u = float(r0 @ r0) if np.all(np.isfinite(r0)) else math.inf
        c2 = c2u
        if math.isfinite(c2u) and (refit == "always" or (refit == "auto" and c2u > 0.1 * chi2_tol)):
            xr, c2r = _refit(res_new, xn, refit_max_nfev)
            if c2r < c2u:
                xn, c2 = xr, c2r
                new = dataclasses.replace(new, parameters={**new.parameters, **{
                    n: float(v) for n, v in zip(new_names, np.exp(xn))}})
        all_names = tuple(n for n in new.parameter_names if n != DECAY_PARAMETER)
        defs = tuple((n, _parse_definition(e)) for r in recs for n, e in r.new_parameters.items())
        base = {n: v for n, v in cur.parameters.items() if n != DECAY_PARAMETER}
        proto = PBPKReductionStep(it, "", (), None, recs, defs, {}, 0, 0, 0, 0.0, 0.0, None,
                                  False, 0.0, all_names)
        mapped = proto.map_values(base, all_names)
        scale = {n: float(new.parameters[n] / mapped[n]) for n in all_names
                 if mapped[n] > 0 and abs(math.log(new.parameters[n] / mapped[n])) > 1e-12}
        proto = dataclasses.replace(proto, scale=scale)
        pop_err = None
        draws_new = None
        ok = c2 <= chi2_tol
        if ok and pop is not None:
            draws_new = proto.map_values(pop["draws"], all_names)
            pop_err = _tia_rel_err(new, design, draws_new, pop["reference"], opts)
            ok = pop_err <= population_tol
        desc = "; ".join(r.description for r in recs)
        step = dataclasses.replace(
            proto, description=f"{how}: {desc}", limits=limits, geodesic=geo_info,
            n_params=len(all_names), n_patient_params=len(patient_parameters(new)),
            n_states=new.compiled.n_states, chi2=c2, chi2_unrefitted=c2u,
            population_max_rel_err=pop_err, accepted=ok,
            wall_s=time.perf_counter() - t_it)
        log.info("step %d %s: chi2 %.3g (unrefitted %.3g), population error %s, %s",
                 it, how, c2, c2u, pop_err, "accepted" if ok else "rejected")
        return step, new, draws_new

    def accept(step, new, draws_new):
        nonlocal cur, pop
        if pop is not None:
            pop = {**pop, "draws": draws_new}
        cur = new
        history.append(step)
        if callback is not None:
            callback(step)

    def try_transit(it, t_it):
        """The transit limits of the current model as one step; True when accepted."""
        nonlocal transit_rejected
        if not transit:
            return False
        names = free(cur)
        cands = tuple(c for c, _ in transit_candidates(cur, max_transit_h, transit_fraction)
                      if _transit_free(cur, c, fixed, allowed))
        if not cands or cands == transit_rejected:
            return False

        def apply(m, drop):
            recs = []
            for c in cands:
                m, rec = eliminate_transit(m, c, bypass=not (drop and _bypass_droppable(m, c)))
                recs.append(rec)
            return m, tuple(recs)

        limits = tuple({"name": cur.graph.compartment(c).volume, "direction": "0", "how": "transit"}
                       for c in cands)
        tries = (True, False) if any(_bypass_droppable(cur, c) for c in cands) else (False,)
        step = None
        for drop in tries:  # dropping the bypasses too removes their flows as well
            try:
                step, new, draws_new = evaluate(it, t_it, "transit", lambda m, d=drop: apply(m, d),
                                                names, _log_x(cur, names), limits, None)
            except (NotImplementedError, PBPKError) as exc:  # pragma: no cover - checked by the pattern
                log.info("transit limits %s not evaluated: %s", cands, exc)
                continue
            if step.accepted:
                break
        if step is None or not step.accepted:
            transit_rejected = cands
            return False
        accept(step, new, draws_new)
        return True

    cur = full
    history: list[PBPKReductionStep] = []
    lump_rejected: tuple = ()
    transit_rejected: tuple = ()
    max_transit_h = float(transit_fraction) * min(design.times_h)
    stop = "max_iter"
    iters = range(int(max_iter))
    if progress:
        from pbpk._progress import progress_bar

        iters = progress_bar(iters, total=int(max_iter), desc="MBAM reduction")
    for it in iters:
        t_it = time.perf_counter()
        names = free(cur)
        if len(names) < 2:
            stop = "min_params"
            break
        groups = parallel_groups(cur, exclude_regions=design.regions) if lump else ()
        if groups and groups != lump_rejected:
            x = _log_x(cur, names)
            lumps = [("lump", groups)]
            split = tuple(part for g in groups for part in _split_by_time_constant(cur, g))
            if split != groups:
                lumps.append(("lump (by time constant)", split))
            done = False
            for how, parts in lumps:
                def apply(m, parts=parts):
                    return _lump_parts(m, parts)

                limits = tuple({"name": ", ".join(cur.graph.compartment(c).region for c in g),
                                "direction": "lumped", "how": "lump"} for g in parts)
                step, new, draws_new = evaluate(it, t_it, how, apply, names, x, limits, None)
                if step.accepted:
                    accept(step, new, draws_new)
                    done = True
                    break
            if done:
                continue
            lump_rejected = groups
        x = _log_x(cur, names)
        res = residual_fn(cur, names)
        res_j = jax.jit(res)
        J = np.asarray(jax.jit(jax.jacfwd(res))(jnp.asarray(x)))
        r_cur = np.asarray(res_j(jnp.asarray(x)))
        if not (np.all(np.isfinite(J)) and np.all(np.isfinite(r_cur))):
            stop = "numerical_failure"
            break
        chi2_cur = float(r_cur @ r_cur)

        def chi2_at(xx, res_j=res_j):
            r = np.asarray(res_j(jnp.asarray(xx)))
            return float(r @ r) if np.all(np.isfinite(r)) else math.inf

        # ---- axis limits: parameters whose own Fisher column is small, pushed both ways
        col = np.linalg.norm(J, axis=0)
        axis = []
        for i in np.argsort(col):
            if col[i] >= axis_tol:
                break
            best = None
            for d, sgn in (("0", -1.0), ("inf", 1.0)):
                xp = x.copy()
                xp[i] += sgn * push
                c2 = chi2_at(xp)
                if (math.isfinite(c2) and (best is None or c2 < best[1])
                        and _mappable(cur, [(names[i], d)], design.regions)):
                    best = (d, c2)
            if best is not None and best[1] - chi2_cur <= axis_budget * chi2_tol:
                axis.append((names[i], best[0], max(best[1] - chi2_cur, 0.0)))
        axis.sort(key=lambda a: a[2])
        total, kept = 0.0, []
        for a in axis:  # a batch whose separate costs add up to at most axis_budget * chi2_tol
            if total + a[2] <= axis_budget * chi2_tol:
                kept.append(a)
                total += a[2]
        axis = kept
        axis_names = {a[0] for a in axis}

        # ---- geodesic from the sloppiest remaining direction
        geo = None
        geo_info = None
        rest = [i for i in range(len(names)) if names[i] not in axis_names]
        if geodesic and len(rest) >= 2:
            _, _, vt = np.linalg.svd(J[:, rest], full_matrices=False)
            u = vt[-1]
            order = np.argsort(-np.abs(u))
            sub = [rest[k] for k in order[:n_sub] if abs(u[k]) >= 0.1 * np.max(np.abs(u))]
            if len(sub) < 2:
                sub = [rest[k] for k in order[:2]]
            sub_idx = jnp.asarray(sub)
            xj = jnp.asarray(x)

            def sub_res(xs, _res=res, _idx=sub_idx, _x=xj):
                return _res(_x.at[_idx].set(xs))

            smodel = Model(lambda xs: sub_res(xs) * jnp.asarray(sigma), tuple(names[i] for i in sub),
                           sigma)
            try:
                search = find_boundaries(smodel, x[sub], **geo_opts)
            except MBAMError as exc:
                log.info("geodesic failed: %s", exc)
                search = ()
            options = []
            for b in search:
                lim = b.limit
                spec = [(p.name, p.direction) for p in lim.limits]
                if (lim.kind != KIND_LIMIT or lim.combinations or not spec
                        or any(d not in ("0", "inf") for _, d in spec) or not _mappable(cur, spec, design.regions)):
                    log.info("geodesic %s: %s (not evaluated on the graph)", b.direction, lim.description)
                    continue
                xe = x.copy()
                xe[sub] = b.geodesic.x_end
                options.append((chi2_at(xe), b, spec, xe))
            if options:
                c2, b, spec, xe = min(options, key=lambda o: o[0])
                geo = (spec, xe)
                geo_info = {"direction": b.direction, "parameters": [names[i] for i in sub],
                            **b.limit.as_dict()}

        attempts = []
        axis_spec = [(n, d) for n, d, _ in axis]
        if geo is not None and axis_spec:
            attempts.append(("axis+geodesic", axis_spec + geo[0], geo[1]))
        if axis_spec:
            attempts.append(("axis", axis_spec, x))
            if len(axis_spec) > 3:
                attempts.append(("axis", axis_spec[: len(axis_spec) // 2], x))
        if geo is not None:
            attempts.append(("geodesic", geo[0], geo[1]))
        if not attempts:
            if try_transit(it, t_it):
                continue
            stop = "no_boundary"
            break

        step = passed = None
        for how, spec, x_start in attempts:
            try:
                step, new, draws_new = evaluate(
                    it, t_it, how, lambda m, spec=spec: _apply_limits(m, spec, design.regions),
                    names, x_start, tuple(
                        {"name": n, "direction": d,
                         "how": "geodesic" if (geo is not None and (n, d) in geo[0]) else "axis"}
                        for n, d in spec),
                    geo_info if how != "axis" else None)
            except (NotImplementedError, PBPKError) as exc:  # pragma: no cover - checked above
                log.info("limit %s not evaluated: %s", spec, exc)
                continue
            if step.accepted:
                passed = (step, new, draws_new)
                break
        if step is None:  # pragma: no cover - every attempt was checked to be mappable
            stop = "no_boundary"
            break
        if passed is not None:
            accept(*passed)
            continue
        if try_transit(it, t_it):
            continue  # the rejected limits are tried again on the model without the transits
        history.append(step)  # the last rejected step ends the history
        if callback is not None:
            callback(step)
        stop = "chi2_tolerance"
        break
    return PBPKReduction(full, cur, design, tuple(history), stop, time.perf_counter() - t_start)
