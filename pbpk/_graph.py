"""The model graph: compartments, species and processes as plain, immutable data.

A :class:`ModelGraph` says *what* moves where and by which rate law; it holds no numbers.
Numbers live in a parameter mapping (name -> value, in the project's units: L, L/h, nmol,
1/h, L/(nmol h)). :func:`pbpk.compile_model` turns a graph into a JAX vector field.

Rate laws (``A`` amounts in nmol, ``V`` compartment volumes in L, ``C = A / V``), applied to
every ligand species (hot and cold) alike:

``flow``      one-way convective transport, flux ``Q * C_src`` (``Q`` in L/h)
``exchange``  passive permeability, flux ``PS * (C_a - C_b)`` from ``a`` to ``b`` (``PS`` in L/h)
``transfer``  first-order transfer of an amount, flux ``k * A_src`` (``k`` in 1/h)
``binding``   saturable binding to a receptor pool shared by hot and cold ligand,
              flux ``kon * C_free * (R - B_hot - B_cold) - koff * B`` (``kon`` in L/(nmol h),
              ``koff`` in 1/h, ``R`` in nmol)

Physical decay turns hot into cold ligand in every compartment; it is implied by the nuclide
and needs no process. Each process moves ligand from one compartment to another, so every
graph conserves total ligand by construction.

A process rate is a product of *factors*: ``"name"`` multiplies by a parameter, ``"/name"``
divides by it and ``"1-name"`` multiplies by one minus it, e.g. ``("gfr_eff", "f_exc")``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pbpk._errors import GraphError, UnknownNameError
from pbpk._frozen import FrozenMap

__all__ = [
    "Compartment",
    "Process",
    "ModelGraph",
    "PROCESS_KINDS",
    "flow",
    "exchange",
    "transfer",
    "binding",
]

PROCESS_KINDS = ("flow", "exchange", "transfer", "binding")
SPECIES = ("hot", "cold")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise GraphError(
            f"{what} name {name!r} is not valid: use letters, digits, '_' and '.', "
            "starting with a letter (e.g. 'kidney.vascular')."
        )
    return name


def parse_factor(token: str) -> tuple[str, str]:
    """Split a rate factor token into ``(kind, parameter)``; kind is ``mul``, ``div`` or ``comp``."""
    if not isinstance(token, str) or not token:
        raise GraphError(f"rate factor {token!r} must be a non-empty string such as 'Q_kidney'.")
    if token.startswith("/"):
        kind, name = "div", token[1:]
    elif token.startswith("1-"):
        kind, name = "comp", token[2:]
    else:
        kind, name = "mul", token
    _check_name(name, "parameter")
    return kind, name


@dataclass(frozen=True)
class Compartment:
    """A well-mixed pool of ligand in one organ and one space.

    Parameters
    ----------
    name:
        Unique name, conventionally ``"<organ>.<space>"`` (``"kidney.tubule"``).
    region:
        Reporting region the compartment counts towards (``"kidney"``); activities and TIA
        are summed per region.
    space:
        ``vascular``, ``interstitial``, ``bound``, ``internalised``, ``tubule``,
        ``peritubular``, ``plasma``, ``excreta`` ... (free text, used for plots and queries).
    volume:
        Name of the parameter giving the distribution volume in L, or ``None`` for pools
        holding amounts only (bound, internalised, urine). Concentration-driven processes
        (flow, exchange, binding from it) need a volume.
    in_body:
        ``False`` for excreta (urine, released metabolites): they are not part of any organ's
        dose and are reported separately.
    """

    name: str
    region: str
    space: str
    volume: str | None = None
    in_body: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "compartment")
        _check_name(self.region, "region")
        if self.volume is not None:
            _check_name(self.volume, "volume parameter")


@dataclass(frozen=True)
class Process:
    """One transport or reaction step between two compartments.

    ``rate`` holds the rate-factor tokens (see the module docstring). For ``binding``,
    ``rate`` is ``kon`` factors, ``koff`` the dissociation factors and ``receptor`` the
    factors of the total receptor amount in nmol.
    """

    kind: str
    source: str
    target: str
    rate: tuple[str, ...]
    koff: tuple[str, ...] = ()
    receptor: tuple[str, ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PROCESS_KINDS:
            raise GraphError(
                f"process kind {self.kind!r} is not known; use one of {', '.join(PROCESS_KINDS)}."
            )
        for attr in ("rate", "koff", "receptor"):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, (value,))
            for token in getattr(self, attr):
                parse_factor(token)
        if not self.rate:
            raise GraphError(f"process {self.source}->{self.target} has no rate factors.")
        if self.kind == "binding" and (not self.koff or not self.receptor):
            raise GraphError(
                f"binding {self.source}->{self.target} needs koff and receptor factors."
            )
        if self.kind != "binding" and (self.koff or self.receptor):
            raise GraphError(f"only binding processes take koff/receptor ({self.kind}).")
        if self.source == self.target:
            raise GraphError(f"process {self.kind} goes from {self.source!r} to itself.")

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of every parameter this process reads."""
        return tuple(parse_factor(t)[1] for t in (*self.rate, *self.koff, *self.receptor))


def flow(source: str, target: str, *rate: str, label: str = "") -> Process:
    """Convective flow ``Q * C_source`` from ``source`` to ``target``."""
    return Process("flow", source, target, tuple(rate), label=label)


def exchange(a: str, b: str, *ps: str, label: str = "") -> Process:
    """Passive exchange ``PS * (C_a - C_b)``."""
    return Process("exchange", a, b, tuple(ps), label=label)


def transfer(source: str, target: str, *k: str, label: str = "") -> Process:
    """First-order transfer ``k * A_source``."""
    return Process("transfer", source, target, tuple(k), label=label)


def binding(
    free: str,
    bound: str,
    kon: Sequence[str] | str,
    koff: Sequence[str] | str,
    receptor: Sequence[str] | str,
    label: str = "",
) -> Process:
    """Saturable receptor binding with hot and cold ligand sharing one receptor pool."""
    as_tuple = (lambda v: (v,) if isinstance(v, str) else tuple(v))
    return Process(
        "binding", free, bound, as_tuple(kon), as_tuple(koff), as_tuple(receptor), label=label
    )


@dataclass(frozen=True)
class ModelGraph:
    """A PBPK model as data: compartments, processes and where doses enter.

    Build one from scratch, or start from a shipped model (``pbpk.psma_model()``) and use
    :meth:`with_compartment`, :meth:`with_process`, :meth:`without_process` to edit it.
    Graphs are immutable; every edit returns a new graph. ``to_json``/``from_json``
    serialise them as text.
    """

    name: str
    compartments: tuple[Compartment, ...]
    processes: tuple[Process, ...]
    dose_compartment: str
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compartments", tuple(self.compartments))
        object.__setattr__(self, "processes", tuple(self.processes))
        object.__setattr__(self, "metadata", FrozenMap(self.metadata))
        self.validate()

    # ------------------------------------------------------------------ queries
    def __hash__(self) -> int:
        return hash((self.name, self.compartments, self.processes, self.dose_compartment))

    @property
    def compartment_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.compartments)

    @property
    def regions(self) -> tuple[str, ...]:
        """Reporting regions in first-appearance order (in-body regions first)."""
        seen: dict[str, None] = {}
        for c in sorted(self.compartments, key=lambda c: not c.in_body):
            seen.setdefault(c.region, None)
        return tuple(seen)

    @property
    def body_regions(self) -> tuple[str, ...]:
        excreta = {c.region for c in self.compartments if not c.in_body}
        return tuple(r for r in self.regions if r not in excreta)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Every parameter the graph reads (volumes and rate factors), sorted."""
        names = {c.volume for c in self.compartments if c.volume is not None}
        for p in self.processes:
            names.update(p.parameters)
        return tuple(sorted(names))

    def compartment(self, name: str) -> Compartment:
        for c in self.compartments:
            if c.name == name:
                return c
        raise UnknownNameError(
            f"compartment {name!r} is not in model {self.name!r}; known compartments: "
            f"{', '.join(self.compartment_names)}."
        )

    def compartments_in(self, region: str) -> tuple[Compartment, ...]:
        found = tuple(c for c in self.compartments if c.region == region)
        if not found:
            raise UnknownNameError(
                f"region {region!r} is not in model {self.name!r}; known regions: "
                f"{', '.join(self.regions)}."
            )
        return found

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`GraphError` if the graph is inconsistent."""
        names = [c.name for c in self.compartments]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise GraphError(f"duplicate compartment names in {self.name!r}: {', '.join(dup)}.")
        by_name = {c.name: c for c in self.compartments}
        if self.dose_compartment not in by_name:
            raise GraphError(
                f"dose compartment {self.dose_compartment!r} is not a compartment of "
                f"{self.name!r}; choose one of {', '.join(names)}."
            )
        bound_targets: dict[str, str] = {}
        for p in self.processes:
            for end in (p.source, p.target):
                if end not in by_name:
                    raise GraphError(
                        f"process {p.kind} {p.source}->{p.target} refers to unknown compartment "
                        f"{end!r}; add it with with_compartment() first."
                    )
            src = by_name[p.source]
            needs_volume = [src] if p.kind in ("flow", "binding") else []
            if p.kind == "exchange":
                needs_volume = [src, by_name[p.target]]
            for c in needs_volume:
                if c.volume is None:
                    raise GraphError(
                        f"{p.kind} {p.source}->{p.target} needs a concentration in {c.name!r}, "
                        "which has no volume parameter; give the compartment a volume or use a "
                        "transfer (first-order in amount) instead."
                    )
            if p.kind == "binding":
                if p.target in bound_targets and bound_targets[p.target] != p.source:
                    raise GraphError(
                        f"bound compartment {p.target!r} is fed by two binding processes; "
                        "use one bound compartment per receptor pool."
                    )
                bound_targets[p.target] = p.source

    # ------------------------------------------------------------------ editing
    def with_compartment(self, compartment: Compartment) -> ModelGraph:
        return dataclasses.replace(self, compartments=(*self.compartments, compartment))

    def with_process(self, process: Process) -> ModelGraph:
        return dataclasses.replace(self, processes=(*self.processes, process))

    def without_process(self, kind: str, source: str, target: str) -> ModelGraph:
        keep = tuple(
            p for p in self.processes if not (p.kind == kind and p.source == source and p.target == target)
        )
        if len(keep) == len(self.processes):
            raise UnknownNameError(f"no {kind} process from {source!r} to {target!r} in {self.name!r}.")
        return dataclasses.replace(self, processes=keep)

    def renamed(self, name: str) -> ModelGraph:
        return dataclasses.replace(self, name=name)

    # ------------------------------------------------------------------ display
    def summary(self) -> str:
        """A text listing of compartments and processes (what a user reads to check a model)."""
        lines = [f"ModelGraph {self.name!r}: {len(self.compartments)} compartments, "
                 f"{len(self.processes)} processes, doses into {self.dose_compartment!r}"]
        lines.append("compartments:")
        for c in self.compartments:
            vol = c.volume or "-"
            flag = "" if c.in_body else "  (excreta)"
            lines.append(f"  {c.name:<28} region={c.region:<14} space={c.space:<13} V={vol}{flag}")
        lines.append("processes:")
        for p in self.processes:
            rate = "*".join(p.rate)
            extra = f" koff={'*'.join(p.koff)} R={'*'.join(p.receptor)}" if p.kind == "binding" else ""
            lines.append(f"  {p.kind:<9} {p.source:>24} -> {p.target:<24} {rate}{extra}")
        return "\n".join(lines)

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph, compartments clustered by region."""
        out = [f'digraph "{self.name}" {{', "  rankdir=LR; node [shape=box, fontsize=10];"]
        for i, region in enumerate(self.regions):
            out.append(f'  subgraph "cluster_{i}" {{ label="{region}";')
            for c in self.compartments_in(region):
                out.append(f'    "{c.name}" [label="{c.space}"];')
            out.append("  }")
        style = {"flow": "solid", "exchange": "dashed", "transfer": "dotted", "binding": "bold"}
        for p in self.processes:
            arrow = ' dir="both"' if p.kind in ("exchange", "binding") else ""
            out.append(f'  "{p.source}" -> "{p.target}" [style={style[p.kind]}{arrow}];')
        out.append("}")
        return "\n".join(out)

    def draw(self, ax=None):
        """Draw the graph with matplotlib (regions as columns); returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(8, 1.2 * len(self.regions)), 6))
        pos: dict[str, tuple[float, float]] = {}
        for i, region in enumerate(self.regions):
            for j, c in enumerate(self.compartments_in(region)):
                pos[c.name] = (float(i), -float(j))
        colours = {"flow": "tab:blue", "exchange": "tab:green", "transfer": "tab:orange",
                   "binding": "tab:red"}
        for p in self.processes:
            (x0, y0), (x1, y1) = pos[p.source], pos[p.target]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color=colours[p.kind], lw=0.8,
                                        alpha=0.7, connectionstyle="arc3,rad=0.15"))
        for c in self.compartments:
            x, y = pos[c.name]
            ax.text(x, y, c.space, ha="center", va="center", fontsize=7,
                    bbox=dict(boxstyle="round", fc="white" if c.in_body else "lightgrey"))
        for i, region in enumerate(self.regions):
            ax.text(i, 0.8, region, ha="center", fontsize=8, rotation=30)
        for kind, colour in colours.items():
            ax.plot([], [], color=colour, label=kind)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_axis_off()
        ax.set_title(self.name)
        return ax

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "format": "pbpk-graph/1",
            "name": self.name,
            "description": self.description,
            "dose_compartment": self.dose_compartment,
            "metadata": dict(self.metadata),
            "compartments": [dataclasses.asdict(c) for c in self.compartments],
            "processes": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(p).items()}
                for p in self.processes
            ],
        }

    def to_json(self, indent: int = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping) -> ModelGraph:
        if data.get("format") != "pbpk-graph/1":
            raise GraphError(
                f"unknown graph format {data.get('format')!r}; expected 'pbpk-graph/1' "
                "(written by ModelGraph.to_json)."
            )
        try:
            comps = [Compartment(**c) for c in data["compartments"]]
            procs = [
                Process(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in p.items()})
                for p in data["processes"]
            ]
            return cls(
                name=data["name"],
                compartments=tuple(comps),
                processes=tuple(procs),
                dose_compartment=data["dose_compartment"],
                description=data.get("description", ""),
                metadata=data.get("metadata", {}),
            )
        except (KeyError, TypeError) as exc:
            raise GraphError(f"graph description is incomplete or malformed: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> ModelGraph:
        return cls.from_dict(json.loads(text))


def regions_of(graph: ModelGraph, names: Iterable[str]) -> tuple[str, ...]:
    """Validate region names against a graph and return them as a tuple."""
    known = set(graph.regions)
    out = tuple(names)
    bad = [r for r in out if r not in known]
    if bad:
        raise UnknownNameError(
            f"unknown region(s) {', '.join(map(repr, bad))}; known regions: {', '.join(graph.regions)}."
        )
    return out
