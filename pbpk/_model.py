"""A runnable PBPK model: graph + nuclide + default parameters with their sources."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from pbpk._compile import DECAY_PARAMETER, CompiledGraph, compile_graph
from pbpk._errors import InvalidInputError, UnknownNameError
from pbpk._frozen import FrozenMap
from pbpk._graph import ModelGraph, parse_factor
from pbpk._nuclides import get_nuclide

__all__ = ["PBPKModel", "UnpredictedRegionWarning"]


class UnpredictedRegionWarning(UserWarning):
    """A result was asked for a region the model does not predict (``PBPKModel.predicted_regions``:
    a reduced model predicts the regions of its reduction design only): it was left out of a
    table, or returned unchecked by a by-name accessor such as ``SimulationResult.tia``."""


@dataclass(frozen=True)
class PBPKModel:
    """A model graph with a nuclide, default parameters and where each default comes from.

    ``organ_volumes_l`` records the organ and tumour volumes the parameters were built from
    (used for dose: mass = volume x 1 kg/L).

    ``predicted_regions`` names the regions whose activity the model is meant to predict; empty
    (the default) means all of them. A reduced model (:func:`mbam.reduce_pbpk`) lists its
    design's regions: its other regions still carry activity, so that ligand is conserved and
    the dose to other organs gets its cross-fire, but their own activity was not checked
    against the full model (a lumped tissue, or a process removed because the design could
    not see it), and the dose code reports no dose for them.

    Parameters are in hours, litres and nmol (see :mod:`pbpk._graph`). The decay constant
    ``lambda_phys_per_h`` is set from the nuclide and should not be overridden by hand; use
    :meth:`with_nuclide` to label the same ligand with another nuclide.
    """

    graph: ModelGraph
    nuclide: str
    parameters: Mapping[str, float]
    ligand: str = ""
    default_molar_activity_mbq_per_nmol: float = 100.0
    sources: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    organ_volumes_l: Mapping[str, float] = field(default_factory=dict)
    predicted_regions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        nuc = get_nuclide(self.nuclide)
        object.__setattr__(self, "nuclide", nuc.name)
        if not isinstance(self.parameters, Mapping):
            raise InvalidInputError(
                f"parameters must be a mapping of name to value, got {type(self.parameters).__name__}."
            )
        params = {}
        for k, v in self.parameters.items():
            try:
                params[k] = float(v)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"parameter {k!r} = {v!r} of model {self.graph.name!r} is not a number; give a float."
                ) from None
        params[DECAY_PARAMETER] = nuc.decay_constant_per_h
        missing = [n for n in self.compiled.param_names if n not in params]
        if missing:
            raise UnknownNameError(
                f"model {self.graph.name!r} lacks default values for: {', '.join(missing)}."
            )
        object.__setattr__(self, "parameters", FrozenMap(params))
        object.__setattr__(self, "sources", FrozenMap(self.sources))
        object.__setattr__(self, "organ_volumes_l", FrozenMap(self.organ_volumes_l))
        pr = self.predicted_regions
        if isinstance(pr, str) or not isinstance(pr, (tuple, list)) or not all(isinstance(r, str) for r in pr):
            raise InvalidInputError(
                f"predicted_regions = {pr!r} of model {self.graph.name!r} must be a tuple of region "
                "names (empty: every region).")
        unknown = [r for r in pr if r not in self.graph.regions]
        if unknown:
            raise UnknownNameError(
                f"predicted_regions of model {self.graph.name!r} name(s) {', '.join(map(repr, unknown))} "
                f"that are not regions of its graph; regions: {', '.join(self.graph.regions)}.")
        object.__setattr__(self, "predicted_regions", tuple(dict.fromkeys(pr)))

    def predicts(self, region: str) -> bool:
        """Whether the model predicts the activity of ``region`` (see ``predicted_regions``)."""
        return not self.predicted_regions or region in self.predicted_regions

    def __hash__(self) -> int:
        return hash((self.graph, self.nuclide, tuple(sorted(self.parameters.items()))))

    @property
    def compiled(self) -> CompiledGraph:
        return compile_graph(self.graph)

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def regions(self) -> tuple[str, ...]:
        return self.graph.regions

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self.compiled.param_names

    @property
    def carrier_free_mbq_per_nmol(self) -> float:
        return get_nuclide(self.nuclide).carrier_free_mbq_per_nmol

    def with_parameters(self, **overrides: float) -> PBPKModel:
        """A copy with some default parameters replaced (names are checked)."""
        unknown = [k for k in overrides if k not in self.parameters]
        if unknown:
            raise UnknownNameError(
                f"unknown parameter(s) {', '.join(unknown)} for model {self.name!r}; known: "
                f"{', '.join(self.parameter_names)}."
            )
        if DECAY_PARAMETER in overrides:
            raise InvalidInputError(
                f"{DECAY_PARAMETER} follows the nuclide; use with_nuclide() to change it."
            )
        merged = {**self.parameters, **overrides}  # converted and checked in __post_init__
        srcs = {**self.sources, **{k: "user override" for k in overrides}}
        return dataclasses.replace(self, parameters=merged, sources=srcs)

    def with_nuclide(self, nuclide: str) -> PBPKModel:
        """The same ligand and physiology labelled with another nuclide."""
        return dataclasses.replace(self, nuclide=nuclide)

    def with_graph(self, graph: ModelGraph, parameters: Mapping[str, float] | None = None) -> PBPKModel:
        """A model on an edited graph (parameters default to this model's)."""
        params = dict(self.parameters if parameters is None else parameters)
        return dataclasses.replace(self, graph=graph, parameters=params)

    def parameter_table(self):
        """A pandas DataFrame of every parameter: value, unit (from its role in the graph; empty
        where the role does not fix it) and source."""
        import pandas as pd

        units = parameter_units(self.graph)
        units[DECAY_PARAMETER] = "1/h"
        rows = [
            {"parameter": n, "value": self.parameters[n], "unit": units.get(n, ""),
             "source": self.sources.get(n, "")}
            for n in self.parameter_names
        ]
        return pd.DataFrame(rows).set_index("parameter")

    def __repr__(self) -> str:
        g = self.graph
        return (f"PBPKModel({g.name!r}, ligand={self.ligand!r}, nuclide={self.nuclide!r}, "
                f"{len(g.compartments)} compartments, {len(g.processes)} processes, "
                f"{len(self.parameters)} parameters; parameter_table() lists them)")

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "pbpk-model/1",
                "graph": self.graph.to_dict(),
                "nuclide": self.nuclide,
                "ligand": self.ligand,
                "default_molar_activity_mbq_per_nmol": self.default_molar_activity_mbq_per_nmol,
                "parameters": dict(self.parameters),
                "sources": dict(self.sources),
                "description": self.description,
                "organ_volumes_l": dict(self.organ_volumes_l),
                "predicted_regions": list(self.predicted_regions),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> PBPKModel:
        data = json.loads(text)
        if data.get("format") != "pbpk-model/1":
            raise InvalidInputError("not a pbpk model file (expected format 'pbpk-model/1').")
        return cls(
            graph=ModelGraph.from_dict(data["graph"]),
            nuclide=data["nuclide"],
            parameters=data["parameters"],
            ligand=data.get("ligand", ""),
            default_molar_activity_mbq_per_nmol=data.get("default_molar_activity_mbq_per_nmol", 100.0),
            sources=data.get("sources", {}),
            description=data.get("description", ""),
            organ_volumes_l=data.get("organ_volumes_l", {}),
            predicted_regions=tuple(data.get("predicted_regions", ())),
        )


def parameter_units(graph: ModelGraph) -> dict[str, str]:
    """Units of the parameters whose role in ``graph`` fixes them (see :mod:`pbpk._graph`):
    volumes L; receptor amounts nmol; kon L/(nmol h); koff 1/h; fractions (used as ``1-x``) 1;
    the one non-fraction factor of a flow or exchange L/h, of a transfer 1/h. A parameter with
    two roles that disagree, or a rate with several non-fraction factors, gets none."""
    units: dict[str, set[str]] = {}

    def add(name, unit):
        units.setdefault(name, set()).add(unit)

    for c in graph.compartments:
        if c.volume is not None:
            add(c.volume, "L")
    fractions = {parse_factor(t)[1] for p in graph.processes for t in (*p.rate, *p.koff, *p.receptor)
                 if parse_factor(t)[0] == "comp"}
    for name in fractions:
        add(name, "1")
    for p in graph.processes:
        if p.kind == "binding":
            for t in p.rate:
                add(parse_factor(t)[1], "L/(nmol h)")
            for t in p.koff:
                add(parse_factor(t)[1], "1/h")
            for t in p.receptor:
                add(parse_factor(t)[1], "nmol")
            continue
        factors = [parse_factor(t) for t in p.rate]
        main = [n for k, n in factors if k == "mul" and n not in fractions]
        if len(main) == 1 and all(k != "div" for k, _ in factors):
            add(main[0], "1/h" if p.kind == "transfer" else "L/h")
    return {n: next(iter(u)) for n, u in units.items() if len(u) == 1}
