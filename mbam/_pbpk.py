"""Evaluate MBAM limits on a PBPK model graph, keeping total ligand conserved.

Each rewrite takes a :class:`pbpk.PBPKModel` and returns ``(reduced_model, GraphRewrite)``:
a new model (graph + parameters, unused parameters dropped, new ones added with their values
at the current point) and a record of what changed. Every rewrite only deletes processes,
re-targets their ends or rescales their rates, and every process of the graph language moves
ligand from one compartment to another, so the reduced graph conserves ligand by construction.

Limits and their graph form:

* a rate -> 0: :func:`remove_process` drops the process.
* an exchange ``PS -> infinity``: :func:`merge_exchange` lumps the two compartments into one
  with volume ``V_a + V_b`` (equal concentrations: exchange has unit partition ratio).
* a flow/transfer rate -> infinity: :func:`instantaneous_transfer` routes everything entering
  the source straight to the target and deletes the source.
* binding ``kon, koff -> infinity`` at fixed ``K_D``: :func:`equilibrium_binding` gives the
  linear (unsaturated) rapid-equilibrium form, the closest one the graph language can express.
* a finite product/ratio: :func:`combine_parameters` replaces it by one new parameter.
* tissues perfused in parallel whose time constants ``V/Q`` merge (a fold):
  :func:`lump_parallel` lumps them into one tissue with ``Q = sum Q_i``, ``V = sum V_i``
  (Nestorov et al. 1998); :func:`parallel_groups` lists the candidates.
* a vascular space whose transit time ``V / Q`` goes to zero (``V -> 0`` at fixed Q and PS):
  :func:`eliminate_transit` replaces it by its quasi-steady state, with the extraction
  fraction ``E = PS / (Q + PS)`` as the new parameter; :func:`transit_candidates` lists them.

:func:`apply_limit_to_model` maps a simple limit spec (or an :class:`mbam.LimitReport`) to these.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from pbpk import Compartment, GraphError, InvalidInputError, PBPKModel, Process, UnknownNameError
from pbpk._compile import DECAY_PARAMETER
from pbpk._graph import parse_factor

from ._model import _names, _real

__all__ = [
    "GraphRewrite",
    "apply_limit_to_model",
    "combine_parameters",
    "eliminate_transit",
    "equilibrium_binding",
    "instantaneous_transfer",
    "lump_parallel",
    "merge_exchange",
    "parallel_groups",
    "remove_process",
    "transit_candidates",
]


@dataclasses.dataclass(frozen=True)
class GraphRewrite:
    """What one graph rewrite changed.

    ``parameter_map`` maps every parameter of the old model that the new one no longer has to
    the parameter replacing it, or ``None`` when it went to its limit (0 or infinity).
    ``new_parameters`` maps each new parameter to its definition in old parameters and
    ``values`` gives its value at the old model's parameters. ``notes`` list caveats.
    """

    kind: str
    description: str
    parameter_map: Mapping[str, str | None]
    new_parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    values: Mapping[str, float] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- helpers
def _new_model(model: PBPKModel, graph, new_values: Mapping[str, float], source: str) -> PBPKModel:
    """The model on ``graph`` with only the parameters the graph reads (plus new ones)."""
    needed = set(graph.parameter_names)
    params = {k: v for k, v in model.parameters.items() if k in needed and k != DECAY_PARAMETER}
    params.update({k: float(v) for k, v in new_values.items()})
    missing = sorted(needed - set(params) - {DECAY_PARAMETER})
    if missing:  # pragma: no cover - internal consistency
        raise GraphError(f"rewrite left parameters without values: {', '.join(missing)}.")
    sources = {k: v for k, v in model.sources.items() if k in params}
    sources.update({k: source for k in new_values})
    return dataclasses.replace(model.with_graph(graph, params), sources=sources)


def _map_removed(model: PBPKModel, reduced: PBPKModel, replace: Mapping[str, str]) -> dict:
    gone = [n for n in model.parameter_names if n not in reduced.parameters]
    return {n: replace.get(n) for n in gone}


def _fresh_name(model: PBPKModel, name: str, what: str) -> str:
    if name in model.parameters or name in model.graph.compartment_names:
        raise GraphError(
            f"{what} name {name!r} is already used in model {model.name!r}; pass another name."
        )
    return name


def _inverse(tokens: Sequence[str]) -> tuple[str, ...]:
    out = []
    for t in tokens:
        kind, name = parse_factor(t)
        if kind == "comp":
            raise NotImplementedError(
                f"cannot invert the rate factor {t!r} (1 - {name}) in the graph language."
            )
        out.append(name if kind == "div" else "/" + name)
    return tuple(out)


def _expr(tokens: Sequence[str]) -> str:
    """Rate-factor tokens as a readable product, e.g. ``R*kon/koff``."""
    out = ""
    for t in tokens:
        kind, name = parse_factor(t)
        term = name if kind == "mul" else (name if kind == "div" else f"(1-{name})")
        sep = "/" if kind == "div" else "*"
        out = (out + sep + term) if out else ("1/" + term if kind == "div" else term)
    return out or "1"


def _value(model: PBPKModel, tokens: Sequence[str]) -> float:
    v = 1.0
    for t in tokens:
        kind, name = parse_factor(t)
        p = model.parameters[name]
        v *= p if kind == "mul" else (1.0 / p if kind == "div" else 1.0 - p)
    return v


def _outflows(graph, name: str) -> list[Process]:
    """Processes that can move ligand out of compartment ``name``."""
    return [
        p for p in graph.processes
        if p.source == name or (p.target == name and p.kind in ("exchange", "binding"))
    ]


def _replace_compartments(graph, names: set[str], merged: Compartment) -> list[Compartment]:
    """The graph's compartments with those in ``names`` replaced by ``merged``, placed where
    the first of them stood."""
    comps, placed = [], False
    for c in graph.compartments:
        if c.name in names:
            if not placed:
                comps.append(merged)
                placed = True
        else:
            comps.append(c)
    return comps


def _lump(model: PBPKModel, members: Mapping[str, tuple[str, ...]], merged: Compartment):
    """Replace compartments ``members`` by ``merged``.

    ``members`` maps each merged compartment to the rate factors of its share of the merged
    amount at equilibrium (``A_member = share * A_merged``). Members with a volume share the
    merged concentration, so concentration-driven processes keep their rates; first-order
    (amount) processes leaving a member are scaled by its share; processes between members
    become internal and are dropped. Returns (graph, dropped internal processes).
    """
    graph = model.graph
    names = set(members)
    comps = _replace_compartments(graph, names, merged)
    procs, dropped = [], []
    for p in graph.processes:
        s_in, t_in = p.source in names, p.target in names
        if s_in and t_in:
            dropped.append(p)
            continue
        if not (s_in or t_in):
            procs.append(p)
            continue
        rate = p.rate
        if s_in and p.kind == "transfer":
            rate = (*p.rate, *members[p.source])
        if t_in and p.kind == "binding":
            raise GraphError(
                f"{p.target!r} is the bound pool of the binding from {p.source!r}; merging it with "
                "another compartment would make the receptor occupancy count the whole merged "
                "amount. Evaluate the binding limit first (equilibrium_binding)."
            )
        if (s_in and p.kind in ("flow", "exchange", "binding")) or (t_in and p.kind == "exchange"):
            end = p.source if s_in else p.target
            if graph.compartment(end).volume is None:  # pragma: no cover - graph validation
                raise GraphError(f"{p.kind} reads a concentration in {end!r}, which has no volume.")
        procs.append(dataclasses.replace(
            p,
            source=merged.name if s_in else p.source,
            target=merged.name if t_in else p.target,
            rate=rate,
        ))
    dose = merged.name if graph.dose_compartment in names else graph.dose_compartment
    return dataclasses.replace(graph, compartments=tuple(comps), processes=tuple(procs),
                               dose_compartment=dose), dropped


def _merged_compartment(graph, a: str, b: str, name: str | None, volume: str | None,
                        space: str) -> tuple[Compartment, list[str]]:
    ca, cb = graph.compartment(a), graph.compartment(b)
    if ca.in_body != cb.in_body:
        raise GraphError(
            f"cannot merge {a!r} (in body: {ca.in_body}) with {b!r} (in body: {cb.in_body}): "
            "a merged compartment is either in the body or excreta."
        )
    notes = []
    if ca.region != cb.region:
        notes.append(
            f"{a!r} (region {ca.region!r}) and {b!r} (region {cb.region!r}) lie in different "
            f"regions; the merged compartment counts towards {ca.region!r} only, so region "
            f"{cb.region!r} loses that activity."
        )
    if name is None:
        suffix = b.split(".")[-1] if cb.region == ca.region else b.replace(".", "_")
        name = f"{a}_{suffix}"
    if volume is None:
        volume = "V_" + name.replace(".", "_")
    return Compartment(name, ca.region, space, volume, ca.in_body), notes


# ----------------------------------------------------------------------------- rewrites
def remove_process(model: PBPKModel, kind: str, source: str, target: str,
                   rate: Sequence[str] | None = None) -> tuple[PBPKModel, GraphRewrite]:
    """Limit rate -> 0: delete the ``kind`` process(es) from ``source`` to ``target``.

    ``rate`` (rate-factor tokens) picks one of several parallel processes with the same ends
    (e.g. the three liver -> venous flows); by default all of them go.
    """
    if rate is not None:
        rate = _names(rate, "rate (the rate-factor tokens of the process)")
    graph = model.graph
    hit = [p for p in graph.processes if p.kind == kind and p.source == source and p.target == target
           and (rate is None or tuple(p.rate) == tuple(rate))]
    if not hit:
        raise UnknownNameError(
            f"no {kind} process from {source!r} to {target!r}"
            + (f" with rate {'*'.join(rate)}" if rate is not None else "") + f" in {model.name!r}."
        )
    keep = tuple(p for p in graph.processes if p not in hit)
    new_graph = dataclasses.replace(graph, processes=keep)
    reduced = _new_model(model, new_graph, {}, "mbam")
    rates = ", ".join("*".join(p.rate) for p in hit)
    return reduced, GraphRewrite(
        kind="remove_process",
        description=f"{kind} {source} -> {target} (rate {rates}) -> 0: process removed",
        parameter_map=_map_removed(model, reduced, {}),
    )


def merge_exchange(model: PBPKModel, a: str, b: str, *, name: str | None = None,
                   volume: str | None = None) -> tuple[PBPKModel, GraphRewrite]:
    """Limit PS -> infinity of the exchange ``a <-> b``: lump ``a`` and ``b`` into one compartment.

    The merged compartment (default name ``"<a>_<space of b>"``) has the new volume parameter
    (default ``"V_<name>"``) equal to ``V_a + V_b``, the region of ``a`` and the dose
    compartment role of either. Concentration-driven processes keep their rates (at equilibrium
    ``C_a = C_b = C_merged``); first-order transfers leaving ``a`` are scaled by ``V_a / V``.
    """
    graph = model.graph
    ex = [p for p in graph.processes if p.kind == "exchange" and {p.source, p.target} == {a, b}]
    if not ex:
        raise GraphError(f"there is no exchange between {a!r} and {b!r} in {model.name!r}.")
    ca, cb = graph.compartment(a), graph.compartment(b)
    merged, notes = _merged_compartment(graph, a, b, name, volume, f"{ca.space}+{cb.space}")
    _fresh_name(model, merged.name, "compartment")
    _fresh_name(model, merged.volume, "volume parameter")
    members = {a: (ca.volume, "/" + merged.volume), b: (cb.volume, "/" + merged.volume)}
    new_graph, dropped = _lump(model, members, merged)
    v = model.parameters[ca.volume] + model.parameters[cb.volume]
    reduced = _new_model(model, new_graph, {merged.volume: v}, f"mbam: {ca.volume} + {cb.volume}")
    other = [p for p in dropped if p not in ex]
    if other:
        notes.append("processes between the merged compartments became internal and were dropped: "
                     + ", ".join(f"{p.kind} {p.source}->{p.target}" for p in other))
    ps = ", ".join(sorted({t for p in ex for t in p.rate}))
    return reduced, GraphRewrite(
        kind="merge_exchange",
        description=(f"exchange {a} <-> {b} ({ps}) -> infinity: compartments merged into "
                     f"{merged.name!r} with volume {merged.volume} = {ca.volume} + {cb.volume}"),
        parameter_map=_map_removed(model, reduced, {ca.volume: merged.volume,
                                                    cb.volume: merged.volume}),
        new_parameters={merged.volume: f"{ca.volume} + {cb.volume}"},
        values={merged.volume: v},
        notes=tuple(notes),
    )


def instantaneous_transfer(model: PBPKModel, source: str, target: str) -> tuple[PBPKModel, GraphRewrite]:
    """Limit flow/transfer rate -> infinity from ``source`` to ``target``.

    Ligand entering ``source`` moves on to ``target`` at once: every process into ``source``
    is re-targeted to ``target`` and ``source`` is removed (a dose into ``source`` goes to
    ``target``). Only defined when the fast process is ``source``'s single outflow.
    """
    graph = model.graph
    graph.compartment(source)
    graph.compartment(target)
    outs = _outflows(graph, source)
    fast = [p for p in outs if p.source == source and p.target == target
            and p.kind in ("flow", "transfer")]
    if not fast:
        raise GraphError(f"there is no flow or transfer from {source!r} to {target!r} in {model.name!r}.")
    if len(outs) != len(fast):
        others = ", ".join(f"{p.kind} {p.source}->{p.target}" for p in outs if p not in fast)
        raise GraphError(
            f"{source!r} has other outflows ({others}); an infinitely fast {source}->{target} "
            "only routes ligand straight on when it is the compartment's single outflow. "
            "Apply the other limits first, or remove those processes."
        )
    procs = []
    for p in graph.processes:
        if p in fast:
            continue
        if p.target == source:  # outflows are excluded above, so this is a flow/transfer in
            if p.source == target:
                continue  # target -> source -> target at once: a null cycle
            p = dataclasses.replace(p, target=target)
        procs.append(p)
    comps = tuple(c for c in graph.compartments if c.name != source)
    dose = target if graph.dose_compartment == source else graph.dose_compartment
    new_graph = dataclasses.replace(graph, compartments=comps, processes=tuple(procs),
                                    dose_compartment=dose)
    reduced = _new_model(model, new_graph, {}, "mbam")
    notes = []
    region = graph.compartment(source).region
    if region not in new_graph.regions:
        notes.append(f"region {region!r} had no other compartment and is no longer reported.")
    rates = ", ".join("*".join(p.rate) for p in fast)
    return reduced, GraphRewrite(
        kind="instantaneous_transfer",
        description=(f"{fast[0].kind} {source} -> {target} ({rates}) -> infinity: {source!r} "
                     f"removed, its inputs go straight to {target!r}"),
        parameter_map=_map_removed(model, reduced, {}),
        notes=tuple(notes),
    )


def equilibrium_binding(model: PBPKModel, free: str, bound: str, *, saturable: bool = False,
                        name: str | None = None, volume: str | None = None
                        ) -> tuple[PBPKModel, GraphRewrite]:
    """Limit kon, koff -> infinity at fixed ``K_D = koff/kon`` for the binding ``free -> bound``.

    The graph language has no algebraic (quasi-steady) constraint, so saturable equilibrium
    binding with hot and cold ligand competing for ``R`` (``B = R C / (K_D + C)``) cannot be
    written as processes; ``saturable=True`` raises :class:`NotImplementedError`. The default
    gives the closest expressible form, rapid *linear* equilibrium (valid while the free
    concentration stays well below ``K_D``, so receptor saturation is lost): ``B = (R/K_D) C``,
    so free and bound lump into one compartment with volume ``V_eff = V_free + R kon/koff``.
    First-order processes out of the bound pool (internalisation) become transfers of the
    merged amount scaled by the bound share ``(R kon/koff) / V_eff``.
    """
    if saturable:
        raise NotImplementedError(
            "saturable equilibrium binding (B = R C/(K_D + C), hot and cold competing) needs an "
            "algebraic constraint that the pbpk graph language (flow, exchange, transfer, "
            "binding) cannot express; use saturable=False for the linear rapid-equilibrium form "
            "or keep the kinetic binding process."
        )
    graph = model.graph
    hit = [p for p in graph.processes if p.kind == "binding" and p.source == free and p.target == bound]
    if not hit:
        raise GraphError(f"there is no binding from {free!r} to {bound!r} in {model.name!r}.")
    p = hit[0]
    cf, cb = graph.compartment(free), graph.compartment(bound)
    merged, notes = _merged_compartment(graph, free, bound, name, volume, f"{cf.space}+{cb.space}")
    _fresh_name(model, merged.name, "compartment")
    _fresh_name(model, merged.volume, "volume parameter")
    bp = (*p.receptor, *p.rate, *_inverse(p.koff))  # R kon / koff, in L
    members = {free: (cf.volume, "/" + merged.volume), bound: (*bp, "/" + merged.volume)}
    new_graph, _ = _lump(model, members, merged)
    v = model.parameters[cf.volume] + _value(model, bp)
    expr = f"{cf.volume} + {_expr(bp)}"
    reduced = _new_model(model, new_graph, {merged.volume: v}, f"mbam: {expr}")
    notes.append("linear rapid equilibrium: receptor saturation and hot/cold competition are "
                 "dropped (valid for free concentrations well below K_D = koff/kon).")
    return reduced, GraphRewrite(
        kind="equilibrium_binding",
        description=(f"binding {free} -> {bound}: {'*'.join(p.rate)}, {'*'.join(p.koff)} -> "
                     f"infinity at fixed K_D: lumped into {merged.name!r} with volume "
                     f"{merged.volume} = {expr}"),
        parameter_map=_map_removed(model, reduced, {cf.volume: merged.volume}),
        new_parameters={merged.volume: expr},
        values={merged.volume: v},
        notes=tuple(notes),
    )


def combine_parameters(model: PBPKModel, names: Sequence[str], new_name: str,
                       exponents: Sequence[int] | None = None, *,
                       allow_partial: bool = False) -> tuple[PBPKModel, GraphRewrite]:
    """Replace the finite combination ``prod(name_i ** exponent_i)`` by one parameter.

    Every rate-factor list (rate, koff, receptor of each process) holding the whole product
    (or its inverse) gets ``new_name`` (or ``/new_name``) instead of those factors. The
    combination must cover every use of each name (volumes included) unless
    ``allow_partial=True``, in which case the remaining uses keep the old parameter.
    """
    names = _names(names, "combine_parameters names")
    exps = tuple(int(e) for e in (exponents if exponents is not None else [1] * len(names)))
    if len(exps) != len(names) or len(set(names)) != len(names) or not names:
        raise InvalidInputError("combine_parameters needs distinct names and one exponent per name.")
    if any(e == 0 for e in exps):
        raise InvalidInputError("exponents must be non-zero integers.")
    unknown = [n for n in names if n not in model.parameter_names]
    if unknown:
        raise UnknownNameError(f"unknown parameter(s) {', '.join(unknown)} in {model.name!r}.")
    _fresh_name(model, new_name, "parameter")
    graph = model.graph
    target = dict(zip(names, exps))

    def rewrite(tokens: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
        power: dict[str, int] = {}
        for t in tokens:
            kind, n = parse_factor(t)
            if n in target and kind != "comp":
                power[n] = power.get(n, 0) + (1 if kind == "mul" else -1)
        for sign in (1, -1):
            if all(power.get(n, 0) == sign * e for n, e in target.items()):
                rest = [t for t in tokens if parse_factor(t)[1] not in target
                        or parse_factor(t)[0] == "comp"]
                return (*rest, new_name if sign == 1 else "/" + new_name), True
        return tokens, False

    procs, count = [], 0
    for p in graph.processes:
        fields = {}
        for attr in ("rate", "koff", "receptor"):
            toks, hit = rewrite(getattr(p, attr))
            fields[attr] = toks
            count += hit
        procs.append(dataclasses.replace(p, **fields))
    if not count:
        raise GraphError(
            f"no rate of {model.name!r} contains the product "
            f"{'*'.join(f'{n}^{e}' for n, e in target.items())} as whole factors."
        )
    new_graph = dataclasses.replace(graph, processes=tuple(procs))
    left = sorted(set(names) & set(new_graph.parameter_names))
    if left and not allow_partial:
        raise GraphError(
            f"{', '.join(left)} still appear(s) outside the combination (as a volume or in "
            "another rate), so the combination does not replace them; pass allow_partial=True "
            "to keep those uses."
        )
    value = math.prod(model.parameters[n] ** e for n, e in target.items())
    num = "*".join(n if e == 1 else f"{n}^{e}" for n, e in target.items() if e > 0) or "1"
    den = "*".join(n if e == -1 else f"{n}^{-e}" for n, e in target.items() if e < 0)
    expr = num + (f"/({den})" if "*" in den else f"/{den}" if den else "")
    reduced = _new_model(model, new_graph, {new_name: value}, f"mbam: {expr}")
    notes = (f"{', '.join(left)} kept for other uses",) if left else ()
    return reduced, GraphRewrite(
        kind="combine_parameters",
        description=f"{expr} stays finite: replaced by {new_name!r} in {count} rate(s)",
        parameter_map={n: new_name for n in names if n not in reduced.parameters},
        new_parameters={new_name: expr},
        values={new_name: value},
        notes=notes,
    )


# ----------------------------------------------------------------------------- lumping
def _parallel_member(model: PBPKModel, name: str):
    """``(source, target, Q)`` if compartment ``name`` is a one-compartment tissue perfused in
    parallel (a flow ``source -> name`` and a flow ``name -> target``, both with the single
    rate parameter ``Q`` used nowhere else, and no other process), else ``None``."""
    graph = model.graph
    c = graph.compartment(name)
    if (c.volume is None or not c.in_body or name == graph.dose_compartment
            or sum(d.region == c.region for d in graph.compartments) != 1
            or sum(d.volume == c.volume for d in graph.compartments) != 1
            or _uses(graph, c.volume)):
        return None
    touching = [p for p in graph.processes if name in (p.source, p.target)]
    if len(touching) != 2 or any(p.kind != "flow" or p.koff or p.receptor for p in touching):
        return None
    into = [p for p in touching if p.target == name]
    out = [p for p in touching if p.source == name]
    if len(into) != 1 or len(out) != 1 or into[0].rate != out[0].rate or len(into[0].rate) != 1:
        return None
    kind, q = parse_factor(into[0].rate[0])
    if kind != "mul" or len(_uses(graph, q)) != 2:
        return None
    return into[0].source, out[0].target, q


def _time_constant(model: PBPKModel, name: str) -> float:
    """V / Q (h) of a compartment that :func:`_parallel_member` accepts."""
    q = _parallel_member(model, name)[2]
    return model.parameters[model.graph.compartment(name).volume] / model.parameters[q]


def parallel_groups(model: PBPKModel, exclude_regions: Sequence[str] = ()) -> tuple[tuple[str, ...], ...]:
    """Groups of compartments :func:`lump_parallel` can lump: one-compartment tissues perfused
    in parallel between the same two compartments (e.g. receptor-negative tissues fed by
    arterial and drained to venous plasma, once their exchange limits are merged), outside
    ``exclude_regions``. Each group has at least two members, sorted by time constant V/Q."""
    if not isinstance(model, PBPKModel):
        raise InvalidInputError(f"model must be a pbpk.PBPKModel, got {type(model).__name__}.")
    skip = set(_names(exclude_regions, "exclude_regions"))
    groups: dict[tuple[str, str], list[str]] = {}
    for c in model.graph.compartments:
        if c.region in skip:
            continue
        hit = _parallel_member(model, c.name)
        if hit is not None:
            groups.setdefault(hit[:2], []).append(c.name)
    return tuple(tuple(sorted(g, key=lambda n: _time_constant(model, n)))
                 for g in groups.values() if len(g) >= 2)


def lump_parallel(model: PBPKModel, compartments: Sequence[str], *, name: str = "lumped",
                  flow_parameter: str | None = None, volume: str | None = None
                  ) -> tuple[PBPKModel, GraphRewrite]:
    """Lump tissues perfused in parallel into one tissue (Nestorov et al. 1998 lumping).

    Every member must be a one-compartment tissue with a flow in from one compartment ``S``
    and a flow out to another ``T`` at its own flow ``Q_i`` (see :func:`parallel_groups`).
    The lumped tissue (region ``name``, compartment ``"<name>.tissue"``) has the flow
    ``Q = sum Q_i`` (parameter ``flow_parameter``, default ``"Q_<name>"``) and the volume
    ``V = sum V_i`` (``volume``, default ``"V_<name>"``). Ligand is conserved (the rewrite only
    re-targets flows). The lumped model is exact when every member has the same time constant
    ``V_i / Q_i`` (each member's concentration then equals the lumped one); otherwise it is the
    MBAM limit in which those time constants merge, and a refit adjusts ``Q``. The members'
    regions are no longer reported; their activity is reported as region ``name``.
    """
    if isinstance(compartments, str):
        raise InvalidInputError(
            f"compartments must be a list of compartment names, got the string {compartments!r}; "
            "mbam.parallel_groups(model) lists the lumpable groups."
        )
    members = tuple(dict.fromkeys(compartments))
    if len(members) < 2:
        raise InvalidInputError("lump_parallel needs at least two compartments.")
    graph = model.graph
    for m in members:
        graph.compartment(m)
    info = {m: _parallel_member(model, m) for m in members}
    bad = [m for m, i in info.items() if i is None]
    if bad:
        raise GraphError(
            f"{', '.join(repr(b) for b in bad)} cannot be lumped: a lumped member must be the only "
            "compartment of its region, with one flow in and one flow out at the same single flow "
            "parameter and no other process (merge its exchange limits first); "
            "mbam.parallel_groups(model) lists the lumpable groups."
        )
    ends = {i[:2] for i in info.values()}
    if len(ends) != 1:
        raise GraphError(
            "the compartments are not perfused in parallel: their flows connect "
            + "; ".join(f"{m}: {i[0]} -> {i[1]}" for m, i in info.items())
        )
    source, target = next(iter(ends))
    if name in graph.regions:
        raise GraphError(f"region name {name!r} is already used in model {model.name!r}; pass another name.")
    comp_name = f"{name}.tissue"
    q_new = flow_parameter or f"Q_{name}"
    v_new = volume or f"V_{name}"
    _fresh_name(model, comp_name, "compartment")
    _fresh_name(model, q_new, "flow parameter")
    _fresh_name(model, v_new, "volume parameter")
    if q_new == v_new:
        raise InvalidInputError("the flow and volume parameters need different names.")
    qs = {m: info[m][2] for m in members}
    vs = {m: graph.compartment(m).volume for m in members}
    spaces = {graph.compartment(m).space for m in members}
    merged = Compartment(comp_name, name, spaces.pop() if len(spaces) == 1 else "lumped", v_new, True)
    comps = _replace_compartments(graph, set(members), merged)
    procs, placed = [], False
    for p in graph.processes:
        if p.source in members or p.target in members:
            if not placed:
                procs.append(Process("flow", source, comp_name, (q_new,)))
                procs.append(Process("flow", comp_name, target, (q_new,)))
                placed = True
            continue
        procs.append(p)
    new_graph = dataclasses.replace(graph, compartments=tuple(comps), processes=tuple(procs))
    P = model.parameters
    q_val = sum(P[q] for q in qs.values())
    v_val = sum(P[v] for v in vs.values())
    q_expr = " + ".join(qs[m] for m in members)
    v_expr = " + ".join(vs[m] for m in members)
    reduced = _new_model(model, new_graph, {q_new: q_val, v_new: v_val}, f"mbam lumping: {q_expr}; {v_expr}")
    taus = [_time_constant(model, m) for m in members]
    regions = [graph.compartment(m).region for m in members]
    notes = (
        f"exact when the members' time constants V/Q are equal; here they range from "
        f"{min(taus):.3g} to {max(taus):.3g} h (lumped: {v_val / q_val:.3g} h).",
        f"regions {', '.join(regions)} are no longer reported; their activity is region {name!r}.",
    )
    replace = {**{q: q_new for q in qs.values()}, **{v: v_new for v in vs.values()}}
    return reduced, GraphRewrite(
        kind="lump_parallel",
        description=(f"parallel tissues {', '.join(regions)} ({source} -> {target}) lumped into "
                     f"{comp_name!r}: {q_new} = {q_expr}, {v_new} = {v_expr}"),
        parameter_map=_map_removed(model, reduced, replace),
        new_parameters={q_new: q_expr, v_new: v_expr},
        values={q_new: q_val, v_new: v_val},
        notes=notes,
    )


# ----------------------------------------------------------------------------- transit limit
def _transit_pattern(model: PBPKModel, name: str):
    """``(inflows, out, ex, partner)`` if compartment ``name`` is a flow-through space with one
    exchange (flows in, exactly one flow out with plain rate factors, exactly one exchange with
    plain rate factors, nothing else touching it; not the dose compartment, its volume used
    nowhere else), else ``None``."""
    graph = model.graph
    c = graph.compartment(name)
    if (c.volume is None or not c.in_body or name == graph.dose_compartment
            or sum(d.volume == c.volume for d in graph.compartments) != 1
            or _uses(graph, c.volume)):
        return None
    touching = [p for p in graph.processes if name in (p.source, p.target)]
    inflows = [p for p in touching if p.kind == "flow" and p.target == name]
    outs = [p for p in touching if p.kind == "flow" and p.source == name]
    exs = [p for p in touching if p.kind == "exchange"]
    if len(outs) != 1 or len(exs) != 1 or not inflows or len(inflows) + 2 != len(touching):
        return None
    out, ex = outs[0], exs[0]
    if out.target == name or any(p.source == name for p in inflows):
        return None
    if any(parse_factor(t)[0] != "mul" for t in (*out.rate, *ex.rate)):
        return None
    partner = ex.target if ex.source == name else ex.source
    if partner == out.target:
        return None
    ps_names = [parse_factor(t)[1] for t in ex.rate]
    if any(len(_uses(graph, n)) != 1 for n in ps_names):  # PS must leave the model with V
        return None
    return inflows, out, ex, partner


def _without_space(graph, name: str, replacement: Sequence[Process]):
    """``graph`` without compartment ``name``: its processes are replaced by ``replacement``,
    placed where its first process stood."""
    procs, placed = [], False
    for p in graph.processes:
        if name not in (p.source, p.target):
            procs.append(p)
        elif not placed:
            procs.extend(replacement)
            placed = True
    comps = tuple(c for c in graph.compartments if c.name != name)
    return dataclasses.replace(graph, compartments=comps, processes=tuple(procs))


def transit_candidates(model: PBPKModel, max_transit_h: float, max_volume_fraction: float = 0.01,
                       exclude_regions: Sequence[str] = ()) -> tuple[tuple[str, float], ...]:
    """Compartments :func:`eliminate_transit` can eliminate whose transit time ``V / Q``
    (``Q`` the flow leaving it) is at most ``max_transit_h`` and whose volume is at most
    ``max_volume_fraction`` of the smallest volume among the compartments its flows come from
    and go to (the limit drops its content, so that content must be negligible where the
    ligand otherwise is), with the transit time (h), fastest first. A space in fast exchange
    with a large partner (``PS >> Q``) but slowly flushed is not one: its limit is the merge
    (``PS -> infinity``); nor is a large vascular bed such as the gut's, whose blood is a
    sizeable part of the circulating plasma.
    ``exclude_regions``: regions left alone (a compartment that is its region's only one is
    never a candidate: its region would no longer be reported)."""
    if not isinstance(model, PBPKModel):
        raise InvalidInputError(f"model must be a pbpk.PBPKModel, got {type(model).__name__}.")
    if _real(max_transit_h) is None or not max_transit_h > 0:
        raise InvalidInputError(f"max_transit_h = {max_transit_h!r} must be a positive number of hours.")
    if _real(max_volume_fraction) is None or not max_volume_fraction > 0:
        raise InvalidInputError(f"max_volume_fraction = {max_volume_fraction!r} must be a positive number.")
    skip = set(_names(exclude_regions, "exclude_regions"))
    out = []
    for c in model.graph.compartments:
        if c.region in skip or sum(d.region == c.region for d in model.graph.compartments) < 2:
            continue
        pat = _transit_pattern(model, c.name)
        if pat is None:
            continue
        ends = [model.graph.compartment(n).volume for n in (*(f.source for f in pat[0]), pat[1].target)]
        ends = [model.parameters[v] for v in ends if v is not None]
        small = not ends or model.parameters[c.volume] <= max_volume_fraction * min(ends)
        # V / Q: the time blood takes through the space (its exchange only shortens the time to
        # quasi-steady state; V / Q small also means the space holds little ligand)
        tau = model.parameters[c.volume] / _value(model, pat[1].rate)
        if tau <= max_transit_h and small:
            out.append((c.name, tau))
    return tuple(sorted(out, key=lambda x: x[1]))


def _unused_name(model: PBPKModel, base: str) -> str:
    """``base``, ``base_2``, ... : the first that is neither a parameter nor a compartment."""
    name, k = base, 1
    while name in model.parameters or name in model.graph.compartment_names:
        k += 1
        name = f"{base}_{k}"
    return name


def _bypass_droppable(model: PBPKModel, name: str) -> bool:
    """Whether the transit limit of ``name`` can also drop its bypass: one inflow at the same
    rate as the outflow, from a compartment of the outflow target's region but not the target."""
    pat = _transit_pattern(model, name)
    if pat is None or len(pat[0]) != 1:
        return False
    (f,), out = pat[0], pat[1]
    graph = model.graph
    return (tuple(f.rate) == tuple(out.rate) and f.source != out.target
            and graph.compartment(f.source).region == graph.compartment(out.target).region)


def eliminate_transit(model: PBPKModel, name: str, *, extraction: str | None = None,
                      bypass: bool = True, clearance: str | None = None
                      ) -> tuple[PBPKModel, GraphRewrite]:
    """Limit ``V -> 0`` of a flow-through space (its transit time -> 0): quasi-steady state.

    ``name`` must receive flows (clearances ``a_i`` from compartments ``S_i``), leave by one
    flow (clearance ``Q``, to ``T``) and exchange with one compartment ``X`` (``PS``), e.g. a
    tumour's vascular space fed by arterial plasma, drained to venous plasma and exchanging
    with the interstitium. As ``V -> 0`` its concentration follows
    ``C = (sum a_i C_Si + PS C_X) / (Q + PS)`` at every instant, so each inflow splits into
    ``S_i -> T`` at ``a_i (1 - E)`` and ``S_i -> X`` at ``a_i E``, and ``X`` drains to ``T`` at
    ``Q E`` (= ``PS (1 - E)``), with the extraction fraction ``E = PS / (Q + PS)`` (parameter
    ``extraction``, default ``"E_<region>"``, numbered if taken). ``V`` and ``PS`` leave the
    model, ``E`` enters;
    ligand is conserved (every new process moves ligand between existing compartments). The
    limit drops the space's own content, about ``V C``: accurate when the transit time ``V / Q``
    is short against the times observed (:func:`transit_candidates`).

    ``bypass=False`` also drops the bypass ``S -> T`` at ``Q (1 - E)``, for a space with one
    inflow at the flow ``Q`` from a compartment of the same region as ``T`` (e.g. arterial to
    venous plasma: blood through a tumour that never meets its interstitium). ``S -> X`` and
    ``X -> T`` then run at the clearance ``CL = Q PS / (Q + PS)`` (parameter ``clearance``,
    default ``"CL_<region>"``, numbered if taken), and ``Q`` leaves the model with ``V`` and
    ``PS``.
    """
    graph = model.graph
    comp = graph.compartment(name)
    pat = _transit_pattern(model, name)
    if pat is None:
        raise GraphError(
            f"{name!r} is not a flow-through space with one exchange: eliminate_transit needs flows "
            "in, exactly one flow out and exactly one exchange (plain rate factors, the PS used "
            "nowhere else), no other process, and a volume of its own; "
            "mbam.transit_candidates(model, max_transit_h) lists the compartments that qualify."
        )
    inflows, out, ex, partner = pat
    q_val, ps_val = _value(model, out.rate), _value(model, ex.rate)
    e_val = ps_val / (q_val + ps_val)
    tau = model.parameters[comp.volume] / q_val
    q_expr, ps_expr = _expr(out.rate), _expr(ex.rate)
    if not bypass:
        return _eliminate_transit_and_bypass(model, name, pat, clearance, q_val, ps_val, tau,
                                             q_expr, ps_expr)
    e_name = (_fresh_name(model, extraction, "extraction parameter") if extraction
              else _unused_name(model, f"E_{comp.region}"))
    procs = []
    for f in inflows:
        if f.source != out.target:  # S -> T with S = T moves nothing
            procs.append(Process("flow", f.source, out.target, (*f.rate, f"1-{e_name}"), label=f.label))
        procs.append(Process("flow", f.source, partner, (*f.rate, e_name), label=f.label))
    procs.append(Process("flow", partner, out.target, (*out.rate, e_name), label=out.label))
    new_graph = _without_space(graph, name, procs)
    reduced = _new_model(model, new_graph, {e_name: e_val},
                         f"mbam transit limit: {e_name} = {ps_expr} / ({q_expr} + {ps_expr})")
    return reduced, GraphRewrite(
        kind="eliminate_transit",
        description=(f"transit time of {name!r} ({comp.volume} / {q_expr} = "
                     f"{tau * 3600.0:.3g} s) -> 0: quasi-steady state, flows into it split "
                     f"between {out.target!r} and {partner!r} by the extraction fraction "
                     f"{e_name} = {ps_expr} / ({q_expr} + {ps_expr}) = {e_val:.3g}"),
        parameter_map=_map_removed(model, reduced, {parse_factor(t)[1]: e_name for t in ex.rate}),
        new_parameters={e_name: f"({ps_expr}) / ({q_expr} + {ps_expr})"},
        values={e_name: e_val},
        notes=(f"exact as the transit time {tau * 3600.0:.3g} s -> 0; the error is of the order "
               "of the transit time over the time scales observed.",),
    )


def _eliminate_transit_and_bypass(model, name, pat, clearance, q_val, ps_val, tau, q_expr, ps_expr):
    graph = model.graph
    comp = graph.compartment(name)
    if not _bypass_droppable(model, name):
        raise GraphError(
            f"the bypass of {name!r} cannot be dropped: that needs one inflow at the same flow as "
            "its outflow, from a compartment of the outflow target's region (e.g. arterial to "
            "venous plasma); use bypass=True."
        )
    (f,), out, ex, partner = pat
    cl_name = (_fresh_name(model, clearance, "clearance parameter") if clearance
               else _unused_name(model, f"CL_{comp.region}"))
    cl_val = q_val * ps_val / (q_val + ps_val)
    new_graph = _without_space(graph, name, (
        Process("flow", f.source, partner, (cl_name,), label=f.label),
        Process("flow", partner, out.target, (cl_name,), label=out.label),
    ))
    definition = f"({q_expr}*{ps_expr}) / ({q_expr} + {ps_expr})"
    reduced = _new_model(model, new_graph, {cl_name: cl_val}, f"mbam transit limit: {cl_name} = {definition}")
    replace = {parse_factor(t)[1]: cl_name for t in (*ex.rate, *out.rate)}
    return reduced, GraphRewrite(
        kind="eliminate_transit",
        description=(f"transit time of {name!r} ({comp.volume} / {q_expr} = {tau * 3600.0:.3g} s) "
                     f"-> 0 and its bypass {f.source} -> {out.target} dropped: {f.source!r} "
                     f"feeds {partner!r}, which drains to {out.target!r}, both at the clearance "
                     f"{cl_name} = {q_expr}*{ps_expr} / ({q_expr} + {ps_expr}) = {cl_val:.3g} L/h"),
        parameter_map=_map_removed(model, reduced, replace),
        new_parameters={cl_name: definition},
        values={cl_name: cl_val},
        notes=(f"exact as the transit time {tau * 3600.0:.3g} s -> 0, except for the bypass: "
               f"{q_val - cl_val:.3g} of the flow {q_val:.3g} L/h went from {f.source!r} to "
               f"{out.target!r} through the space without meeting {partner!r}; both are region "
               f"{graph.compartment(out.target).region!r}.",),
    )


# ----------------------------------------------------------------------------- limit specs
def _direction(value) -> str:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("0", "zero"):
            return "0"
        if v in ("inf", "+inf", "infinity", "+infinity"):
            return "inf"
    elif _real(value) is not None:
        if value == 0:
            return "0"
        if math.isinf(value) and value > 0:
            return "inf"
    raise InvalidInputError(f"limit {value!r} is not understood; use 0 or 'inf'.")


def _spec_of(limit) -> dict[str, str]:
    if isinstance(limit, Mapping):
        return {str(k): _direction(v) for k, v in limit.items()}
    if hasattr(limit, "limits"):
        out = {}
        for pl in limit.limits:
            d = pl.direction
            if d not in ("0", "inf"):
                raise NotImplementedError(
                    f"{pl.describe()}: only log-parameters going to 0 or infinity map to graph rewrites."
                )
            out[pl.name] = d
        return out
    raise InvalidInputError("give a limit as a mapping {name: 0 | 'inf'} or an mbam.LimitReport.")


def _uses(graph, name: str):
    """(process, field, token kind) for every use of ``name`` in a rate factor."""
    out = []
    for p in graph.processes:
        for attr in ("rate", "koff", "receptor"):
            for t in getattr(p, attr):
                kind, n = parse_factor(t)
                if n == name:
                    out.append((p, attr, kind))
    return out


def apply_limit_to_model(model: PBPKModel, limit) -> tuple[PBPKModel, tuple[GraphRewrite, ...]]:
    """Evaluate a limit on the graph; returns the reduced model and the rewrites applied.

    ``limit`` is a mapping ``{parameter: 0 | "inf"}`` or an :class:`mbam.LimitReport` (its
    ``limits``; their names must be the model's parameter names). Supported:

    * ``name -> 0`` where ``name`` multiplies process rates: those processes are removed;
    * ``name -> inf`` for an exchange PS: each exchange using it is merged;
    * ``name -> inf`` for a flow/transfer rate: :func:`instantaneous_transfer` for each;
    * ``kon`` and ``koff`` both ``-> inf`` (the binding's rate and koff factors): linear
      equilibrium binding for every binding using them.

    Anything else (volumes, receptor amounts, ``1-name`` factors, a binding limit without both
    kon and koff) raises :class:`NotImplementedError` naming the case.
    """
    spec = _spec_of(limit)
    for n in spec:
        if n not in model.parameter_names:
            raise UnknownNameError(f"limit names unknown parameter {n!r} of {model.name!r}.")
    records: list[GraphRewrite] = []
    done: set[str] = set()
    for name, direction in spec.items():
        if name in done:
            continue
        graph = model.graph
        if any(c.volume == name for c in graph.compartments):
            raise NotImplementedError(f"{name} is a volume; a volume -> {direction} has no graph rewrite here.")
        uses = _uses(graph, name)
        if not uses:
            done.add(name)
            continue
        if any(k != "mul" for _, _, k in uses):
            raise NotImplementedError(
                f"{name} appears as '/{name}' or '1-{name}'; only plain rate factors are mapped."
            )
        bind_uses = [(p, a) for p, a, _ in uses if p.kind == "binding"]
        if bind_uses:
            if len(bind_uses) != len(uses) or direction != "inf":
                raise NotImplementedError(
                    f"{name} -> {direction} in a binding: only kon, koff -> infinity together "
                    "(equilibrium binding) is mapped."
                )
            attr = bind_uses[0][1]
            partner_attr = "koff" if attr == "rate" else "rate"
            partners = {parse_factor(t)[1] for p, _ in bind_uses for t in getattr(p, partner_attr)}
            partner = next((q for q in partners if spec.get(q) == "inf"), None)
            if attr == "receptor" or partner is None:
                raise NotImplementedError(
                    f"{name} -> {direction}: a binding limit maps to a rewrite only when both its "
                    "kon and koff factors go to infinity (fixed K_D)."
                )
            for p, _ in bind_uses:
                model, rec = equilibrium_binding(model, p.source, p.target)
                records.append(rec)
            done.update({name, partner})
            continue
        while uses:  # each rewrite removes at least one use of ``name``
            p = uses[0][0]
            if direction == "0":
                model, rec = remove_process(model, p.kind, p.source, p.target, p.rate)
            elif p.kind == "exchange":
                model, rec = merge_exchange(model, p.source, p.target)
            else:
                model, rec = instantaneous_transfer(model, p.source, p.target)
            records.append(rec)
            uses = _uses(model.graph, name)
        done.add(name)
    return model, tuple(records)
