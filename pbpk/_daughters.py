"""Decay chains with daughter redistribution (alpha emitters: 225Ac, 212Pb).

When a radioligand's nuclide decays, the daughter atom need not stay where the parent
decayed: the alpha recoil of 225Ac (about 100 keV) breaks the chelate and frees 221Fr, whose
own decay frees 213Bi; after the beta decay of 212Pb about a third of the 212Bi leaves the
chelate. A :class:`ChainModel` joins

* the parent radioligand (a :class:`~pbpk.PBPKModel`; its hot ligand is the parent nuclide),
* one :class:`FreeDaughter` per *tracked* daughter nuclide: a model graph of the free ion's
  own kinetics (distribution with blood flow, renal uptake, urinary excretion), its
  parameters, the fraction of daughters released per decay of the predecessor (by the space
  the predecessor decays in) and where a released atom enters (by region).

Each decay of a tracked member X in compartment c (region r) makes ``b`` atoms of the next
tracked member Y (``b`` summed over the paths through untracked members, from
``radioactivedecay``): a fraction ``f_release`` of them enters Y's free-ion pool of region r
(``entry``), the rest stays as *retained* Y in region r and decays there. A retained atom keeps
the space of the parent compartment where it (or its first retained ancestor) was formed, and
its decays release the next member by that space's fraction (else ``"retained"``, else
``"*"``). Daughters of free atoms are free. Untracked members (217At, 213Po, 209Tl, 209Pb,
212Po, 208Tl ...) decay where their tracked predecessor decays: their energy is added to that member's (exact for
time-integrated energy when they do not move; half-lives of microseconds to minutes, except
209Pb, 3.25 h, 0.197 MeV of electrons per decay). Atoms leaving the last tracked member are
counted as *ended*, so parent + daughters + ended = administered, exactly.

With every release fraction 0 each daughter decays in the region where the parent decayed:
the in-situ (equilibrium-daughter) assumption of conventional alpha dosimetry, available as
:meth:`ChainModel.in_situ` and :meth:`ChainResult.in_situ_tia`.

Units: daughter states are held as *parent-equivalent activity* ``S = N x A_cf(parent)``
(MBq; ``N`` in nmol), so they share a scale with the parent's activity. A daughter's activity
is ``S x lambda_Y / lambda_P`` and its TIA ``(lambda_Y int S dt + future decays) / lambda_P``
(MBq h). :func:`simulate_chain` integrates at least to 10 half-lives of the longest-lived
tracked member after the last administration (internally on to 20 when the last output time
is earlier); after that every atom left is assumed to stay in its region.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from pbpk._compile import compile_graph
from pbpk._dosing import Administration, Schedule
from pbpk._errors import GraphError, InvalidInputError, SolverError, UnknownNameError
from pbpk._frozen import FrozenMap
from pbpk._graph import Compartment, ModelGraph, flow, parse_factor
from pbpk._model import PBPKModel
from pbpk._nuclides import (
    NONPENETRATING_TYPES,
    PENETRATING_TYPES,
    _decay_data,
    _is_radioactive,
    decay_chain,
    get_nuclide,
)
from pbpk._numbers import real_or_none
from pbpk._physiology import Physiology

__all__ = [
    "ELEMENT_KINETICS",
    "PB212_LIGANDS",
    "ChainModel",
    "ChainResult",
    "FreeDaughter",
    "ac225_psma_model",
    "decay_transitions",
    "free_ion_graph",
    "pb212_sstr_model",
    "simulate_chain",
]

ALPHA_TYPES = ("alpha", "alpha_recoil")
ELECTRON_TYPES = tuple(t for t in NONPENETRATING_TYPES if t not in ALPHA_TYPES)
RETAINED = "retained"  # release key for decays of retained (not free) atoms
DEFAULT = "*"


# ----------------------------------------------------------------------------- chain data
def decay_transitions(tracked: Sequence[str]) -> dict[str, dict[str | None, float]]:
    """Per tracked member, the atoms of the next tracked member made per decay.

    Untracked radioactive members in between are passed through (they decay where their
    tracked predecessor decayed); ``None`` collects the paths ending in a stable nuclide
    without another tracked member. Each row sums to 1. Branching fractions come from
    ``radioactivedecay`` (ICRP-107 dataset).

    ``tracked`` is a list of distinct nuclides, the parent first and the others members of its
    decay chain; anything else raises :class:`~pbpk.InvalidInputError`.
    """
    names = _tracked_names(tracked)
    out: dict[str, dict[str | None, float]] = {}
    for x in names:
        row: dict[str | None, float] = {}
        _walk(x, 1.0, names, row, {})
        out[x] = row
    return out


def _tracked_names(tracked) -> tuple[str, ...]:
    """Canonical names of ``tracked``: a sequence of distinct nuclides, the first one's chain."""
    hint = "tracked must be a list of nuclide names, parent first (e.g. ['Ac-225', 'Fr-221', 'Bi-213'])"
    if isinstance(tracked, (str, bytes)):
        raise InvalidInputError(f"{hint}, got the string {tracked!r}.")
    try:
        tracked = tuple(tracked)
    except TypeError:
        raise InvalidInputError(f"{hint}, got {type(tracked).__name__}.") from None
    if not tracked:
        raise InvalidInputError("tracked must name at least the parent nuclide (e.g. ['Pb-212', 'Bi-212']).")
    names = tuple(get_nuclide(n).name for n in tracked)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInputError(
            f"tracked lists {', '.join(repeated)} more than once; list each chain member once."
        )
    chain = [m for m, _ in decay_chain(names[0])]
    foreign = [n for n in names[1:] if n not in chain]
    if foreign:
        raise InvalidInputError(
            f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not in the decay chain of "
            f"{names[0]} (the first nuclide is the parent); its chain is {', '.join(chain)}."
        )
    return names


def _lumped_members(x: str, tracked: tuple[str, ...]) -> dict[str, float]:
    """Untracked radioactive members reached from ``x`` before another tracked one, with fraction."""
    lumped: dict[str, float] = {}
    _walk(x, 1.0, tracked, {}, lumped)
    return lumped


def _walk(node: str, frac: float, tracked, row: dict, lumped: dict) -> None:
    progeny = _decay_data(node)[1]
    # branches the dataset leaves out (At-217 -> Rn-217, 0.012 %) end the chain here
    missing = 1.0 - math.fsum(float(bf) for _, bf in progeny)
    if missing > 0.0:
        row[None] = row.get(None, 0.0) + frac * missing
    for child, bf in progeny:
        f = frac * float(bf)
        if child in tracked:
            row[child] = row.get(child, 0.0) + f
        elif _is_radioactive(child):
            lumped[child] = lumped.get(child, 0.0) + f
            _walk(child, f, tracked, row, lumped)
        else:
            row[None] = row.get(None, 0.0) + f


def _tag(nuclide: str) -> str:
    return nuclide.replace("-", "")


# ----------------------------------------------------------------------------- free ions
#: Free-ion kinetics per element, with sources and the assumptions where data are thin.
#: ``kidney_extraction``/``liver_extraction``: fraction of the free ion entering the organ
#: that is taken up into cells per pass (retained over the daughter's life), realised by
#: :func:`free_ion_graph` as the well-stirred clearance ``Q E / (1 - E)`` from the organ's
#: pool (``Q``: its total plasma flow, portal flow included for the liver);
#: ``urine_fraction``: fraction of the glomerular filtrate's free ion that reaches the urine.
ELEMENT_KINETICS: dict[str, dict[str, object]] = {
    "Bi": {
        "kidney_extraction": 0.3,
        "liver_extraction": 0.05,
        "urine_fraction": 0.5,
        "source": (
            "ASSUMPTION: free Bi(III) is taken up avidly by the renal tubular cells and "
            "retained (Schwartz J et al., Phys Med Biol 2011;56:721, renal uptake of 213Bi "
            "from 225Ac-antibody, mouse; Jaggi JS et al., Cancer Res 2005;65:4888); no human "
            "extraction fraction is published: 0.3 of the free Bi entering the kidneys is taken "
            "up per pass, so about 40 % of the 213Bi released into blood decays in the kidneys "
            "(0.41 for a bolus into plasma, reference male). Liver 0.05 per pass of the total "
            "hepatic plasma flow (207Bi citrate in a volunteer deposits mainly in liver and is "
            "excreted in urine over days: Newton D et al., Hum Exp Toxicol 2001, abstract); "
            "half of the filtered free Bi reaches the urine."
        ),
    },
    "Fr": {
        "kidney_extraction": 0.5,
        "liver_extraction": 0.2,
        "urine_fraction": 0.1,
        "source": (
            "ASSUMPTION: francium is an alkali metal, taken to follow potassium/rubidium "
            "(flow-limited distribution, high cellular extraction in kidney and liver, about "
            "10 % of filtered K reaches the urine); no measured 221Fr kinetics in humans. "
            "With a 4.9 min half-life most 221Fr decays within one circulation."
        ),
    },
}


def _element(nuclide: str) -> str:
    return nuclide.split("-")[0]


def free_ion_graph(
    parent: PBPKModel,
    nuclide: str,
    physiology: Physiology | None = None,
    *,
    kinetics: Mapping[str, float] | None = None,
) -> tuple[ModelGraph, dict[str, float], dict[str, str], dict[str, str]]:
    """The free-ion kinetics graph of a daughter nuclide in the parent model's body.

    Every body region of the parent gets one well-mixed free-ion pool (``<region>.free``,
    volume = the region's vascular and interstitial volumes) perfused by the region's plasma
    flow (flow-limited distribution). Regions whose blood drains into another region in the
    parent (spleen and gut into the liver: portal flow) drain into that region's pool here too,
    so the liver pool carries the total hepatic plasma flow. Kidney and liver add a cell pool
    filled at the well-stirred clearance ``CL = Q E / (1 - E)``, with ``Q`` the organ's total
    plasma flow and ``E`` the extraction fraction per pass: at steady state a fraction ``E`` of
    the ion entering the organ is taken up. Free ion in plasma is filtered at the GFR and a
    fraction reaches the urine; excreta regions of the parent get an out-of-body pool.

    Parameters
    ----------
    parent:
        The radioligand model; its regions, volumes and plasma flows ``Q_<region>`` are used.
    nuclide:
        The daughter (``"Bi-213"``).
    physiology:
        For the GFR (default: reference male).
    kinetics:
        ``kidney_extraction`` and ``liver_extraction`` (per-pass fractions in [0, 1)),
        ``urine_fraction`` (in [0, 1]) and optionally ``source`` (text); keys not given are
        taken from :data:`ELEMENT_KINETICS` for the element, which must then have them.

    Returns ``(graph, parameters, sources, entry)``: ``entry`` maps each parent region to the
    pool where released atoms of that region enter.
    """
    nuc = get_nuclide(nuclide).name
    elem = _element(nuc)
    kin = _free_ion_kinetics(elem, kinetics)
    phys = physiology or Physiology.reference("male")
    g, pp = parent.graph, parent.parameters
    comps = [Compartment("plasma.free", "plasma", "free", "V_plasma")]
    params = {"V_plasma": sum(pp[c.volume] for c in g.compartments_in("plasma") if c.volume)}
    procs = []
    entry = {"plasma": "plasma.free", DEFAULT: "plasma.free"}
    drains = _portal_drains(g)
    for region in g.body_regions:
        if region == "plasma":
            continue
        vols = [pp[c.volume] for c in g.compartments_in(region) if c.volume]
        q = pp.get(f"Q_{region}")
        if not vols or q is None:
            raise GraphError(
                f"region {region!r} of {g.name!r} has no volume or no plasma flow Q_{region}; "
                "the free-ion graph needs both (build it by hand for such a model)."
            )
        comps.append(Compartment(f"{region}.free", region, "free", f"V_{region}"))
        params[f"V_{region}"] = float(sum(vols))
        params[f"Q_{region}"] = float(q)
        entry[region] = f"{region}.free"
    for region in g.body_regions:
        if region == "plasma":
            continue
        name = f"{region}.free"
        out = f"{drains[region]}.free" if region in drains else "plasma.free"
        procs.append(flow("plasma.free", name, f"Q_{region}"))
        # the blood leaving a region carries its own flow and the flows draining into it
        for r in _upstream(region, drains):
            procs.append(flow(name, out, f"Q_{r}"))
    for organ in ("kidney", "liver"):
        if organ in entry:
            e = float(kin[f"{organ}_extraction"])
            q_total = math.fsum(params[f"Q_{r}"] for r in _upstream(organ, drains))
            comps.append(Compartment(f"{organ}.cells", organ, "cells"))
            procs.append(flow(f"{organ}.free", f"{organ}.cells", f"CL_{organ}_uptake"))
            params[f"CL_{organ}_uptake"] = q_total * e / (1.0 - e)  # well-stirred: E per pass
    excreta = [r for r in g.regions if r not in g.body_regions]
    for region in excreta:
        name = f"{region}.excreta"
        comps.append(Compartment(name, region, "excreta", None, in_body=False))
        entry[region] = name
    if "urine" in excreta:
        procs.append(flow("plasma.free", "urine.excreta", "gfr_free", "f_urine"))
        params["gfr_free"] = phys.gfr_l_per_h
        params["f_urine"] = float(kin["urine_fraction"])
    graph = ModelGraph(f"free_{_tag(nuc)}", tuple(comps), tuple(procs), "plasma.free",
                       description=f"free {nuc} ion kinetics in {g.name}")
    src = {k: f"parent model {g.name} (volumes and plasma flows of the region)" for k in params}
    for k in params:
        if k.startswith("CL_") or k in ("f_urine",):
            src[k] = str(kin.get("source", "user kinetics"))
    for organ in ("kidney", "liver"):
        k = f"CL_{organ}_uptake"
        if k in params:
            flows = " + ".join(f"Q_{r}" for r in _upstream(organ, drains))
            src[k] = (f"well-stirred clearance ({flows}) x E / (1 - E), E = "
                      f"{organ}_extraction {float(kin[f'{organ}_extraction']):g} per pass; " + src[k])
    src["gfr_free"] = "patient GFR (Physiology.gfr_l_per_h)"
    return graph, params, src, entry


_KINETICS_KEYS = ("kidney_extraction", "liver_extraction", "urine_fraction")


def _free_ion_kinetics(elem: str, kinetics) -> dict[str, object]:
    """The element's kinetics with ``kinetics`` on top, checked (names, real fractions)."""
    if kinetics is not None and not isinstance(kinetics, Mapping):
        raise InvalidInputError(
            f"kinetics must be a mapping such as {{'kidney_extraction': 0.3, 'liver_extraction': "
            f"0.05, 'urine_fraction': 0.5}}, got {type(kinetics).__name__}."
        )
    given = dict(kinetics or {})
    unknown = [k for k in given if k not in (*_KINETICS_KEYS, "source")]
    if unknown:
        raise UnknownNameError(
            f"unknown free-ion kinetics key(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(_KINETICS_KEYS)} and 'source' (text)."
        )
    kin = {**ELEMENT_KINETICS.get(elem, {}), **given}
    missing = [k for k in _KINETICS_KEYS if k not in kin]
    if missing:
        known = f"known elements: {', '.join(ELEMENT_KINETICS)}"
        raise InvalidInputError(
            f"no free-ion kinetics for element {elem!r} ({known}): kinetics lacks "
            f"{', '.join(missing)}; pass kinetics={{'kidney_extraction': ..., 'liver_extraction': "
            "..., 'urine_fraction': ...}."
        )
    for key in _KINETICS_KEYS:
        v = _real_or_none(kin[key])
        upper_open = key.endswith("_extraction")
        ok = v is not None and math.isfinite(v) and 0.0 <= v and (v < 1.0 if upper_open else v <= 1.0)
        if not ok:
            rng = "[0, 1) (per-pass extraction; 1 would be an infinite clearance)" if upper_open else "[0, 1]"
            raise InvalidInputError(f"free-ion kinetics {key} = {kin[key]!r} must be a number in {rng}.")
        kin[key] = v
    if "source" in given and not isinstance(given["source"], str):
        raise InvalidInputError(f"free-ion kinetics 'source' must be text, got {given['source']!r}.")
    return kin


def _portal_drains(g: ModelGraph) -> dict[str, str]:
    """Body regions whose plasma flow drains into another body region (not plasma), e.g.
    spleen and gi into the liver, read from the parent graph's flows."""
    region = {c.name: c.region for c in g.compartments}
    body = set(g.body_regions)
    drains: dict[str, str] = {}
    for p in g.processes:
        if p.kind != "flow":
            continue
        a, b = region[p.source], region[p.target]
        if a == b or a not in body or b not in body or "plasma" in (a, b):
            continue
        if tuple(p.rate) != (f"Q_{a}",) or drains.get(a, b) != b:
            raise GraphError(
                f"flow {p.source} -> {p.target} of {g.name!r} joins two body regions but does not "
                f"carry the region's whole plasma flow Q_{a} to one region; free_ion_graph cannot "
                "map it: build the free-ion graph by hand."
            )
        drains[a] = b
    for a in drains:  # a cycle would never return to plasma
        seen, r = {a}, drains[a]
        while r in drains:
            if r in seen:
                raise GraphError(f"the plasma flows of {g.name!r} between regions form a cycle through {r!r}.")
            seen.add(r)
            r = drains[r]
    return drains


def _upstream(region: str, drains: Mapping[str, str]) -> list[str]:
    """``region`` and every region whose blood passes through it (portal flows)."""
    out = [region]
    for r in sorted(drains):
        if drains[r] == region:
            out += _upstream(r, drains)
    return out


_real_or_none = real_or_none


def _release_value(value, what: str) -> float:
    """A release fraction: a real number (not a bool) in [0, 1]."""
    v = _real_or_none(value)
    if v is None:
        raise InvalidInputError(f"{what} = {value!r} must be a number in [0, 1] (fraction released per decay).")
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise InvalidInputError(f"{what} = {value!r} must be in [0, 1] (fraction released per decay).")
    return v


def _updated_release(release: Mapping[str, float], fractions: Mapping[str, object], valid: set[str],
                     nuclide: str, hint: str = "") -> dict[str, float]:
    """``release`` with ``fractions`` (``_`` for ``'*'``) set; unknown spaces are refused."""
    new = dict(release)
    unknown = []
    for k, v in fractions.items():
        key = DEFAULT if k == "_" else k
        if key not in valid:
            unknown.append(k)
            continue
        new[key] = _release_value(v, f"release fraction of {nuclide} for space {key!r}")
    if unknown:
        names = ", ".join([f"{s!r}" for s in sorted(valid - {DEFAULT})]
                          + (["'_' (for '*')"] if DEFAULT in valid else []))
        raise UnknownNameError(
            f"unknown release space(s) {', '.join(map(repr, unknown))} for {nuclide}; valid: {names}."
            + (f" {hint}" if hint else "")
        )
    return new


@dataclass(frozen=True)
class FreeDaughter:
    """A daughter nuclide that can leave the parent and follow its own free-ion kinetics.

    Parameters
    ----------
    nuclide:
        The daughter (``"Bi-213"``), a member of the parent's decay chain.
    graph:
        Its kinetics as a :class:`~pbpk.ModelGraph` of linear processes (flow, exchange,
        transfer; saturable binding is not supported for free ions).
    parameters:
        Values of every parameter the graph reads (L, L/h, 1/h).
    release:
        Fraction of the daughters released per decay of the predecessor, by the *space* of
        the parent compartment where the predecessor decays (``"internalised"``, ``"bound"``
        ...), ``"*"`` for every space not listed. A predecessor retained in tissue sits in the
        space where it was formed (its first retained ancestor's parent compartment): its
        decays use that space's entry, else ``"retained"`` (when given), else ``"*"``. Decays
        of free atoms always give free daughters.
    entry:
        Compartment of ``graph`` where atoms released in each region enter (keys: regions of
        the parent, and of the predecessor's free-ion graph); ``"*"`` for regions not listed.
    sources, assumptions:
        Where the numbers come from.
    """

    nuclide: str
    graph: ModelGraph
    parameters: Mapping[str, float]
    release: Mapping[str, float]
    entry: Mapping[str, str]
    sources: Mapping[str, str] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "nuclide", get_nuclide(self.nuclide).name)
        if not isinstance(self.graph, ModelGraph):
            raise InvalidInputError(f"graph of {self.nuclide} must be a ModelGraph, got {type(self.graph).__name__}.")
        for p in self.graph.processes:
            if p.kind == "binding":
                raise GraphError(
                    f"free-ion graph of {self.nuclide} has a binding process {p.source}->{p.target}; "
                    "daughter kinetics must be linear: use transfer or flow (first-order uptake)."
                )
        params = {}
        for k, v in dict(self.parameters).items():
            try:
                params[k] = float(v)
            except (TypeError, ValueError):
                raise InvalidInputError(f"parameter {k!r} of {self.nuclide} = {v!r} is not a number.") from None
        missing = [n for n in self.graph.parameter_names if n not in params]
        if missing:
            raise UnknownNameError(f"free-ion graph of {self.nuclide} lacks values for: {', '.join(missing)}.")
        volumes = {c.volume for c in self.graph.compartments if c.volume}
        for k in self.graph.parameter_names:
            v = params[k]
            if not math.isfinite(v) or v < 0 or (k in volumes and v <= 0):
                raise InvalidInputError(
                    f"parameter {k!r} of {self.nuclide} = {v!r} must be finite and >= 0 (> 0 for volumes)."
                )
        if not isinstance(self.release, Mapping):
            raise InvalidInputError(
                f"release of {self.nuclide} must be a mapping {{space: fraction}}, got "
                f"{type(self.release).__name__}; e.g. {{'*': 1.0, 'internalised': 0.0}}."
            )
        release = {}
        for k, v in self.release.items():
            if not isinstance(k, str):
                raise InvalidInputError(
                    f"release of {self.nuclide}: space names must be strings, got {k!r}."
                )
            release[k] = _release_value(v, f"release fraction of {self.nuclide} for space {k!r}")
        if DEFAULT not in release:
            raise InvalidInputError(
                f"release of {self.nuclide} needs a '*' entry (fraction released in every other space)."
            )
        entry = dict(self.entry)
        if DEFAULT not in entry:
            raise InvalidInputError(f"entry of {self.nuclide} needs a '*' compartment (e.g. plasma).")
        names = set(self.graph.compartment_names)
        bad = [c for c in entry.values() if c not in names]
        if bad:
            raise UnknownNameError(
                f"entry compartment(s) {', '.join(map(repr, bad))} of {self.nuclide} are not in its "
                f"graph; known: {', '.join(sorted(names))}."
            )
        object.__setattr__(self, "parameters", FrozenMap(params))
        object.__setattr__(self, "release", FrozenMap(release))
        object.__setattr__(self, "entry", FrozenMap(entry))
        object.__setattr__(self, "sources", FrozenMap(self.sources))
        object.__setattr__(self, "assumptions", tuple(self.assumptions))

    def release_fraction(self, space: str) -> float:
        """Fraction released per decay of a predecessor in ``space`` (the ``'*'`` value for a
        space not listed)."""
        return self.release.get(space, self.release[DEFAULT])

    def _retained_key(self, space: str) -> str:
        """The release key used for a decay of a *retained* predecessor sitting in ``space``."""
        if space in self.release:
            return space
        return RETAINED if RETAINED in self.release else DEFAULT

    def entry_compartment(self, region: str) -> str:
        return self.entry.get(region, self.entry[DEFAULT])

    def with_release(self, **fractions: float) -> FreeDaughter:
        """A copy with some release fractions replaced (keys are spaces; ``_`` for ``'*'``).

        Only the spaces the release map lists, ``retained`` and ``_`` (``'*'``) are accepted: a
        daughter does not know its parent's spaces, so a misspelt space is refused
        (:class:`~pbpk.UnknownNameError`). To add another space of the parent use
        :meth:`ChainModel.with_release`, or build the daughter with the whole ``release`` map.
        """
        valid = {*self.release, DEFAULT, RETAINED}
        return dataclasses.replace(
            self, release=_updated_release(
                self.release, fractions, valid, f"{self.nuclide}",
                "FreeDaughter.with_release changes only the spaces its release map lists; to add "
                "a space of the parent use ChainModel.with_release(nuclide, ...) or build "
                "FreeDaughter(..., release={...}).",
            ),
        )


@dataclass(frozen=True)
class ChainModel:
    """A radioligand whose decays produce free daughters with their own kinetics.

    ``parent`` is the radioligand model (its nuclide is the chain's parent); ``daughters`` the
    tracked daughters in decay order. See the module docstring for the rules.
    """

    parent: PBPKModel
    daughters: tuple[FreeDaughter, ...]
    description: str = ""
    assumptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.parent, PBPKModel):
            raise InvalidInputError(
                f"parent must be a PBPKModel (e.g. pbpk.psma_model(nuclide='Ac-225')), got "
                f"{type(self.parent).__name__}."
            )
        daughters = tuple(self.daughters)
        for d in daughters:
            if not isinstance(d, FreeDaughter):
                raise InvalidInputError(f"daughters must be FreeDaughter objects, got {type(d).__name__}.")
        chain = [m for m, _ in decay_chain(self.parent.nuclide)]
        names = [d.nuclide for d in daughters]
        if len(set(names)) != len(names):
            raise GraphError(f"a daughter nuclide appears twice: {', '.join(names)}.")
        for n in names:
            if n not in chain[1:]:
                raise InvalidInputError(
                    f"{n} is not a daughter of {self.parent.nuclide}; its chain is {', '.join(chain)}."
                )
        if names != sorted(names, key=chain.index):
            raise InvalidInputError(f"list the daughters in decay order: {', '.join(sorted(names, key=chain.index))}.")
        object.__setattr__(self, "daughters", daughters)
        for d in daughters:  # a space the simulation never consults would be silently ignored
            valid, hint = self._release_keys(d, d.release)
            unknown = sorted(k for k in d.release if k not in valid and k != DEFAULT)  # "*" is required
            if unknown:
                raise UnknownNameError(
                    f"release of {d.nuclide} lists space(s) {', '.join(map(repr, unknown))} that this "
                    f"chain never consults; valid: {', '.join(map(repr, sorted(valid)))}. {hint}"
                )
        self._check_entries()
        object.__setattr__(self, "assumptions", tuple(self.assumptions))

    def _entry_regions(self, d: FreeDaughter) -> set[str]:
        """Regions where atoms of ``d`` can be released (the keys its entry map may use): the
        parent's regions (decays of the parent and of retained daughters) and the regions of
        the free-ion graphs of the tracked daughters that make ``d``."""
        trans = decay_transitions(self.nuclides)
        regions = set(self.parent.graph.regions)
        for x in self.daughters:
            if x is not d and trans[x.nuclide].get(d.nuclide, 0.0) > 0.0:
                regions |= set(x.graph.regions)
        return regions

    def _check_entries(self) -> None:
        """Entry keys must be regions where the daughter can be released; a parent region
        without its own entry whose atoms would enter a pool of another region is warned about."""
        parent_regions = set(self.parent.graph.regions)
        unmapped: dict[str, list[str]] = {}
        for d in self.daughters:
            consulted = self._entry_regions(d)
            unknown = [k for k in d.entry if k != DEFAULT and k not in consulted]
            foreign = [k for k in unknown if k in d.graph.regions]
            if foreign:
                raise GraphError(
                    f"the free-ion graph of {d.nuclide} has region(s) {', '.join(map(repr, foreign))} "
                    f"that the parent model {self.parent.name!r} lacks (its regions: "
                    f"{', '.join(self.parent.graph.regions)}): the daughters were built for another "
                    "parent. Build the chain for this parent (e.g. pbpk.ac225_psma_model(..., "
                    "lesion_volumes_l=...)) or the daughters' graphs with "
                    "pbpk.free_ion_graph(parent, nuclide)."
                )
            if unknown:
                raise UnknownNameError(
                    f"entry of {d.nuclide} names region(s) {', '.join(map(repr, unknown))} where no "
                    f"{d.nuclide} is ever released; known regions: {', '.join(sorted(consulted))} "
                    "(and '*' for every other region)."
                )
            star_region = d.graph.compartment(d.entry[DEFAULT]).region
            for r in sorted(parent_regions & consulted):
                if r not in d.entry and r != star_region:
                    unmapped.setdefault(r, []).append(d.nuclide)
        if unmapped:
            import warnings

            parts = "; ".join(f"{r} ({', '.join(n)})" for r, n in unmapped.items())
            warnings.warn(
                f"the daughters' entry maps have no pool for parent region(s) {parts}: daughters "
                "released there enter their '*' compartment, in another region. Build the chain "
                "for this parent (e.g. pbpk.ac225_psma_model(..., lesion_volumes_l=...), or "
                "daughters from pbpk.free_ion_graph(parent, nuclide)) or give entry for them.",
                UserWarning,
                stacklevel=3,
            )

    def __hash__(self) -> int:  # mappings inside are not hashable; identity is enough for caching
        return id(self)

    def _release_keys(self, d: FreeDaughter, release: Mapping[str, float]) -> tuple[set[str], str]:
        """The release keys the simulation consults for daughter ``d`` and a sentence saying why:
        the parent graph's spaces and ``'*'`` for a daughter made by decays of the parent; the
        parent graph's spaces (where retained predecessors sit), ``retained`` (and ``'*'``
        while ``retained`` is not listed) for one made by decays of a tracked daughter."""
        trans = decay_transitions(self.nuclides)
        by_parent = trans[self.parent.nuclide].get(d.nuclide, 0.0) > 0.0
        by_daughter = any(trans.get(x.nuclide, {}).get(d.nuclide, 0.0) > 0.0
                          for x in self.daughters if x is not d)
        spaces = {c.space for c in self.parent.graph.compartments}
        valid = set()
        if by_parent:
            valid |= spaces | {DEFAULT}
        if by_daughter:  # retained predecessors sit in the parent's spaces
            valid |= spaces | {RETAINED} | ({DEFAULT} if RETAINED not in release else set())
        made = " and ".join(w for w, yes in (("the parent", by_parent), ("tracked daughters", by_daughter))
                            if yes)
        hint = (f"{d.nuclide} is made by decays of {made}"
                + ("; free daughters always release it, retained ones by the parent space where "
                   "they sit (else 'retained', else '*')." if not by_parent
                   else "; 'retained' applies only to daughters made by daughters." if not by_daughter
                   else "."))
        return valid, hint

    @property
    def nuclides(self) -> tuple[str, ...]:
        """The tracked members: parent first, then the daughters in decay order."""
        return (self.parent.nuclide, *(d.nuclide for d in self.daughters))

    @property
    def transitions(self) -> dict[str, dict[str | None, float]]:
        return decay_transitions(self.nuclides)

    def member_energies_mev(self) -> dict[str, dict[str, float]]:
        """MeV per decay of each tracked member, its untracked followers included.

        Keys ``alpha`` (alpha + alpha recoil), ``electron`` (beta, conversion and Auger
        electrons) and ``photon`` (gamma, X-ray, annihilation), ICRP-107
        (``pbpk/data/icrp107_energies.csv``).
        """
        out = {}
        for x in self.nuclides:
            members = {x: 1.0, **_lumped_members(x, self.nuclides)}
            e = {"alpha": 0.0, "electron": 0.0, "photon": 0.0}
            for m, f in members.items():
                per = get_nuclide(m).energy_per_decay_mev
                e["alpha"] += f * math.fsum(per[t] for t in ALPHA_TYPES)
                e["electron"] += f * math.fsum(per[t] for t in ELECTRON_TYPES)
                e["photon"] += f * math.fsum(per[t] for t in PENETRATING_TYPES)
            out[x] = e
        return out

    def cumulative_fractions(self) -> dict[str, dict[str, float]]:
        """``C[X][Y]``: decays of Y per decay of X along the tracked chain (``C[X][X] = 1``)."""
        trans = self.transitions
        out = {}
        for x in self.nuclides:
            c = {y: 0.0 for y in self.nuclides}
            c[x] = 1.0
            for y in self.nuclides[self.nuclides.index(x):]:  # decay order: parents first
                for z, b in trans[y].items():
                    if z is not None:
                        c[z] += c[y] * b
            out[x] = c
        return out

    def daughter(self, nuclide: str) -> FreeDaughter:
        name = get_nuclide(nuclide).name
        for d in self.daughters:
            if d.nuclide == name:
                return d
        raise UnknownNameError(f"{nuclide!r} is not a tracked daughter; tracked: {', '.join(self.nuclides[1:])}.")

    def with_release(self, nuclide: str, **fractions: float) -> ChainModel:
        """A copy with release fractions of one daughter replaced (``_=`` sets ``'*'``).

        Keys are the spaces the simulation consults for this daughter: for a daughter made by
        decays of the parent, the parent graph's spaces and ``_`` (``'*'``, every space not
        listed); for one made by decays of a tracked daughter (free ones always release it),
        the parent graph's spaces (decays of atoms retained there), ``retained`` (retained
        atoms in spaces not listed) and ``_`` while ``retained`` is not listed. Values are fractions in
        [0, 1]. Any other key would change nothing, so it raises
        :class:`~pbpk.UnknownNameError` listing the valid ones.
        """
        d = self.daughter(nuclide)
        valid, hint = self._release_keys(d, d.release)
        new_d = dataclasses.replace(d, release=_updated_release(d.release, fractions, valid, d.nuclide, hint))
        new = tuple(new_d if x is d else x for x in self.daughters)
        return dataclasses.replace(self, daughters=new)

    def with_daughter_parameters(self, nuclide: str, **values: float) -> ChainModel:
        """A copy with some free-ion parameters of one daughter replaced (names are checked)."""
        d = self.daughter(nuclide)
        unknown = [k for k in values if k not in d.parameters]
        if unknown:
            raise UnknownNameError(
                f"unknown parameter(s) {', '.join(unknown)} of {d.nuclide}; known: "
                f"{', '.join(sorted(d.parameters))}."
            )
        new_d = dataclasses.replace(
            d, parameters={**d.parameters, **values},
            sources={**d.sources, **{k: "user override" for k in values}},
        )
        return dataclasses.replace(self, daughters=tuple(new_d if x is d else x for x in self.daughters))

    def in_situ(self) -> ChainModel:
        """The same model with every release fraction 0: daughters decay where the parent did."""
        new = tuple(dataclasses.replace(d, release={k: 0.0 for k in d.release}) for d in self.daughters)
        return dataclasses.replace(self, daughters=new, description=self.description + " (in situ)")

    def with_parent(self, parent: PBPKModel) -> ChainModel:
        """The same daughters with another parent model (e.g. a calibrated patient).

        The daughters keep their free-ion graphs, so the new parent should have the regions
        they were built for: a daughter region the parent lacks raises
        :class:`~pbpk.GraphError`; a parent region without an entry is warned about. For
        another body (lesions, physiology) build the chain anew (:func:`ac225_psma_model`).
        """
        return dataclasses.replace(self, parent=parent)

    def to_json(self) -> str:
        """JSON text of the whole chain (parent model, daughter graphs, release and entry maps)."""
        return json.dumps(
            {
                "format": "pbpk-chain/1",
                "parent": json.loads(self.parent.to_json()),
                "daughters": [
                    {
                        "nuclide": d.nuclide,
                        "graph": d.graph.to_dict(),
                        "parameters": dict(d.parameters),
                        "release": dict(d.release),
                        "entry": dict(d.entry),
                        "sources": dict(d.sources),
                        "assumptions": list(d.assumptions),
                    }
                    for d in self.daughters
                ],
                "description": self.description,
                "assumptions": list(self.assumptions),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ChainModel:
        """Read a chain written by :meth:`to_json` (plain JSON; nothing is executed)."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"not JSON text: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != "pbpk-chain/1":
            raise InvalidInputError("not a pbpk chain file (expected format 'pbpk-chain/1').")
        try:
            parent = PBPKModel.from_json(json.dumps(data["parent"]))
            daughters = tuple(
                FreeDaughter(
                    d["nuclide"], ModelGraph.from_dict(d["graph"]), d["parameters"], d["release"],
                    d["entry"], d.get("sources", {}), tuple(d.get("assumptions", ())),
                )
                for d in data["daughters"]
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"chain description is incomplete or malformed: {exc}") from None
        return cls(parent, daughters, data.get("description", ""), tuple(data.get("assumptions", ())))

    def summary(self) -> str:
        lines = [f"ChainModel {self.parent.name} ({self.parent.nuclide}): {self.description}"]
        for x, row in self.transitions.items():
            parts = ", ".join(f"{y or 'ended'} {b:.5g}" for y, b in row.items())
            lines.append(f"  {x} -> {parts}")
        by_parent = self.transitions[self.parent.nuclide]
        for d in self.daughters:
            rel = ", ".join(f"{k}: {v:g}" for k, v in d.release.items())
            note = ("" if by_parent.get(d.nuclide, 0.0) > 0.0 else
                    " (per decay of a retained predecessor, by the space where it sits; free "
                    "predecessors always release)")
            lines.append(f"  {d.nuclide}: {len(d.graph.compartments)} free-ion pools; release {rel}{note}")
        lines += [f"  assumption: {a}" for a in self.assumptions]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- compiled system
@dataclass(frozen=True, eq=False)
class _ChainSystem:
    """Index arrays and values of the joint parent + daughter system."""

    n_parent: int
    n_states: int
    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    jac_rows: np.ndarray
    jac_cols: np.ndarray
    slots: np.ndarray  # slot of each (row, col) entry within the daughter part of the pattern
    # layout per daughter k: free states, retained per (parent region, site class), integral
    # per report region
    free: tuple[np.ndarray, ...]
    retained: tuple[np.ndarray, ...]
    integral: tuple[np.ndarray, ...]
    report_regions: tuple[tuple[str, ...], ...]
    free_region: tuple[np.ndarray, ...]  # report-region index of each free state
    retained_region: np.ndarray  # report-region index of each retained state (same for every k)
    ended: int
    parent_excreta: tuple[tuple[str, int], ...]  # (excreta region, state of the parent's integral)


def _factor_value(tokens, params) -> float:
    v = 1.0
    for t in tokens:
        kind, name = parse_factor(t)
        x = params[name]
        v = v * (x if kind == "mul" else (1.0 - x) if kind == "comp" else 1.0 / x)
    return v


def _retained_sites(chain: ChainModel) -> tuple[list[tuple[str, str]], dict[tuple[str, str], int]]:
    """Sites of retained atoms: (parent region, representative space) per site, and the site of
    each (region, space) of the parent's compartments.

    A retained atom stays in the parent compartment's space where its first retained ancestor
    was formed; spaces whose decays release every daughter made by a tracked daughter by the
    same release key share a site (e.g. 'internalised' vs every other space in the 225Ac chain).
    """
    trans = chain.transitions
    by_daughter = [y for y in chain.daughters
                   if any(trans[x.nuclide].get(y.nuclide, 0.0) > 0.0 for x in chain.daughters)]
    sites: list[tuple[str, str]] = []
    seen: dict[tuple[str, tuple[str, ...]], int] = {}
    site_of: dict[tuple[str, str], int] = {}
    for c in chain.parent.graph.compartments:
        key = (c.region, tuple(y._retained_key(c.space) for y in by_daughter))
        if key not in seen:
            seen[key] = len(sites)
            sites.append((c.region, c.space))
        site_of[(c.region, c.space)] = seen[key]
    return sites, site_of


def _build_system(chain: ChainModel) -> _ChainSystem:
    parent = chain.parent
    cg = compile_graph(parent.graph)
    n_p = cg.n_states
    regions_p = parent.graph.regions
    lam = {x: get_nuclide(x).decay_constant_per_h for x in chain.nuclides}
    acf_p = parent.carrier_free_mbq_per_nmol
    trans = chain.transitions
    sites, site_of = _retained_sites(chain)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []

    def add(r, c, v):
        rows.append(r)
        cols.append(c)
        vals.append(float(v))

    # layout
    offset = n_p
    free, retained, integral, report, free_region = [], [], [], [], []
    extra = []
    for d in chain.daughters:
        extra += [r for r in d.graph.regions if r not in regions_p and r not in extra]
    rep = (*regions_p, *extra)  # report regions, common to every daughter
    ns = len(sites)
    for d in chain.daughters:
        dg = d.graph
        nf = len(dg.compartments)
        free.append(np.arange(offset, offset + nf))
        retained.append(np.arange(offset + nf, offset + nf + ns))
        integral.append(np.arange(offset + nf + ns, offset + nf + ns + len(rep)))
        report.append(rep)
        free_region.append(np.array([rep.index(c.region) for c in dg.compartments]))
        offset += nf + ns + len(rep)
    ended = offset
    excreta = [r for r in regions_p if r not in parent.graph.body_regions]
    parent_excreta = tuple((r, ended + 1 + i) for i, r in enumerate(excreta))
    n = ended + 1 + len(excreta)
    index = {d.nuclide: k for k, d in enumerate(chain.daughters)}

    def produce(y_name, region, rate, col, space=None, site=None):
        """Atoms of ``y_name`` made at ``rate`` x state ``col`` by a decay in ``region``: of the
        parent in ``space``, of a retained atom at ``site``, or (neither) of a free atom."""
        if y_name is None:
            add(ended, col, rate)
            return
        k = index[y_name]
        d = chain.daughters[k]
        j = d.graph.compartment_names.index(d.entry_compartment(region))
        if space is None and site is None:  # daughters of free atoms are free
            add(int(free[k][j]), col, rate)
            return
        if space is not None:
            f = d.release_fraction(space)
            site = site_of[(region, space)]
        else:
            f = d.release[d._retained_key(sites[site][1])]
        add(int(free[k][j]), col, rate * f)
        add(int(retained[k][site]), col, rate * (1.0 - f))

    # parent hot atoms (nmol) decaying in each compartment
    for i, c in enumerate(parent.graph.compartments):
        for y, b in trans[parent.nuclide].items():
            produce(y, c.region, b * lam[parent.nuclide] * acf_p, i, space=c.space)
    # the parent's time integral in each excreta region (its TIA there)
    for r, state in parent_excreta:
        for i, c in enumerate(parent.graph.compartments):
            if c.region == r:
                add(state, i, 1.0)
    # daughters
    for k, d in enumerate(chain.daughters):
        ly = lam[d.nuclide]
        dg = d.graph
        cidx = {c.name: j for j, c in enumerate(dg.compartments)}
        fs = free[k]
        for p in dg.processes:
            s, t = cidx[p.source], cidx[p.target]
            if p.kind == "transfer":
                k_st = _factor_value(p.rate, d.parameters)
                pairs = [(s, t, k_st)]
            elif p.kind == "flow":
                vs = d.parameters[dg.compartments[s].volume]
                pairs = [(s, t, _factor_value(p.rate, d.parameters) / vs)]
            else:  # exchange
                ps = _factor_value(p.rate, d.parameters)
                pairs = [(s, t, ps / d.parameters[dg.compartments[s].volume]),
                         (t, s, ps / d.parameters[dg.compartments[t].volume])]
            for a, b_, rate in pairs:
                add(int(fs[a]), int(fs[a]), -rate)
                add(int(fs[b_]), int(fs[a]), rate)
        for j, c in enumerate(dg.compartments):
            add(int(fs[j]), int(fs[j]), -ly)
            add(int(integral[k][free_region[k][j]]), int(fs[j]), 1.0)
            for z, b in trans[d.nuclide].items():
                produce(z, c.region, b * ly, int(fs[j]))
        for q, (region, _) in enumerate(sites):
            col = int(retained[k][q])
            add(col, col, -ly)
            add(int(integral[k][rep.index(region)]), col, 1.0)
            for z, b in trans[d.nuclide].items():
                produce(z, region, b * ly, col, site=q)

    rows_a = np.array(rows, dtype=np.int32)
    cols_a = np.array(cols, dtype=np.int32)
    # pattern: parent pattern first (its jac_values fill those slots), then the daughter part
    entries: dict[tuple[int, int], int] = {}
    for i in range(n_p, n):
        entries.setdefault((i, i), len(entries))
    slots = np.array([entries.setdefault((r, c), len(entries)) for r, c in zip(rows, cols)], dtype=np.int32)
    extra = np.array(list(entries), dtype=np.int32).reshape(-1, 2)
    return _ChainSystem(
        n_parent=n_p, n_states=n, rows=rows_a, cols=cols_a, vals=np.array(vals),
        jac_rows=np.concatenate([cg.jac_rows, extra[:, 0]]).astype(np.int32),
        jac_cols=np.concatenate([cg.jac_cols, extra[:, 1]]).astype(np.int32),
        slots=slots, free=tuple(free), retained=tuple(retained), integral=tuple(integral),
        report_regions=tuple(report), free_region=tuple(free_region),
        retained_region=np.array([rep.index(r) for r, _ in sites]), ended=ended,
        parent_excreta=parent_excreta,
    )


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class ChainResult:
    """What :func:`simulate_chain` returns (one patient, NumPy arrays).

    Attributes
    ----------
    parent:
        The parent radioligand's :class:`~pbpk.SimulationResult` (activities, TIA, urine ...).
    nuclides:
        Tracked members, parent first.
    times_h:
        Output times (h).
    activity_mbq:
        Per daughter nuclide, (T, R) activity (MBq) per region in ``regions[nuclide]`` (free
        and retained atoms together); the parent's is ``parent.activity_mbq``.
    tia_mbq_h:
        Per nuclide, TIA (MBq h) per region, from the first administration to infinity
        (every region, excreta included; the parent's body-region TIAs are also in
        ``parent.tia_mbq_h``).
    atoms_residual:
        (T,) (parent + daughters + ended atoms - administered parent atoms) / administered.
    ended_fraction:
        (T,) atoms that have left the last tracked member, per administered parent atom.
    in_situ_tia:
        Per nuclide and parent region, the TIA if every daughter decayed where the parent
        decayed (the conventional equilibrium-daughter assumption), for comparison.
    regions:
        Per daughter, the region names of its ``activity_mbq`` columns.
    free_activity_mbq:
        Per daughter, (T, R) activity of its free (released) atoms only.
    energies_mev:
        Per tracked nuclide, alpha/electron/photon MeV per decay, short-lived followers included.
    organ_volumes_l:
        The parent model's organ and tumour volumes (L), for dose.
    """

    parent: object
    nuclides: tuple[str, ...]
    times_h: np.ndarray
    regions: Mapping[str, tuple[str, ...]]
    activity_mbq: Mapping[str, np.ndarray]
    free_activity_mbq: Mapping[str, np.ndarray]
    tia_mbq_h: Mapping[str, Mapping[str, float]]
    in_situ_tia: Mapping[str, Mapping[str, float]]
    atoms_residual: np.ndarray
    ended_fraction: np.ndarray
    energies_mev: Mapping[str, Mapping[str, float]]
    organ_volumes_l: Mapping[str, float]

    def tia(self, nuclide: str, region: str) -> float:
        """TIA (MBq h) of one nuclide in one region (0 where it never arrives)."""
        name = get_nuclide(nuclide).name
        if name not in self.tia_mbq_h:
            raise UnknownNameError(f"{nuclide!r} is not tracked; tracked: {', '.join(self.nuclides)}.")
        known = set(self.parent.body_regions).union(*(set(v) for v in self.tia_mbq_h.values()))
        if region not in known:
            raise UnknownNameError(f"unknown region {region!r}; body regions: {', '.join(self.parent.body_regions)}.")
        return float(self.tia_mbq_h[name].get(region, 0.0))

    def activity(self, nuclide: str, region: str) -> np.ndarray:
        """(T,) activity (MBq) of one nuclide in one region."""
        name = get_nuclide(nuclide).name
        if name == self.nuclides[0]:
            return np.asarray(self.parent.activity(region))
        if name not in self.activity_mbq:
            raise UnknownNameError(f"{nuclide!r} is not tracked; tracked: {', '.join(self.nuclides)}.")
        regs = self.regions[name]
        if region not in regs:
            raise UnknownNameError(f"unknown region {region!r}; known: {', '.join(regs)}.")
        return self.activity_mbq[name][:, regs.index(region)]

    def tia_table(self, in_situ: bool = False):
        """pandas DataFrame of TIA (MBq h): body regions x nuclides (``in_situ`` for the comparison)."""
        import pandas as pd

        src = self.in_situ_tia if in_situ else self.tia_mbq_h
        regions = list(self.parent.body_regions)
        data = {n: [float(src[n].get(r, 0.0)) for r in regions] for n in self.nuclides}
        return pd.DataFrame(data, index=pd.Index(regions, name="region"))


# ----------------------------------------------------------------------------- simulate
@lru_cache(maxsize=16)
def _jitted_chain(key, sys_ref, segs, out_map, times_key, injected_key, opts_key):
    from pbpk._rodas import rodas4_solve
    from pbpk._simulate import _assemble
    from pbpk._sparse import SparseLUPlan

    graph, nuclide = key
    system: _ChainSystem = sys_ref.system
    cg = compile_graph(graph)
    nc = cg.n_compartments
    n_p = system.n_parent
    n = system.n_states
    n_extra = int(system.jac_rows.size - cg.nnz)
    plan = SparseLUPlan.from_pattern(n, system.jac_rows, system.jac_cols)
    opts = dict(opts_key)
    rows_d = system.rows - n_p
    cols = system.cols
    slots = system.slots
    times = np.array(times_key)
    acf = get_nuclide(nuclide).carrier_free_mbq_per_nmol
    lam = get_nuclide(nuclide).decay_constant_per_h

    def rhs(y, args):
        coef, lin_jac, u, dvals = args
        dp = cg.rhs(y[:n_p], (coef, lin_jac, u))
        dd = jax.ops.segment_sum(dvals * y[cols], rows_d, num_segments=n - n_p)
        return jnp.concatenate([dp, dd])

    def jac_values(y, args):
        coef, lin_jac, u, dvals = args
        jp = cg.jac_values(y[:n_p], (coef, lin_jac, u))
        jd = jax.ops.segment_sum(dvals, slots, num_segments=n_extra)
        return jnp.concatenate([jp, jd])

    def run(p, dvals, bolus, expected):
        coef = cg.coefficients(p)
        lin_jac = cg.linear_jacobian(coef)
        u = jnp.zeros(n_p)
        y = jnp.zeros(n)
        starts, seg_ys = [], []
        status = jnp.zeros((), jnp.int32)
        n_steps = jnp.zeros((), jnp.int32)
        for k, (a, b, save) in enumerate(segs):
            y = y.at[cg.dose_index].add(bolus[k, 0]).at[cg.dose_index + nc].add(bolus[k, 1])
            starts.append(y)
            if b > a:
                sol = rodas4_solve(rhs, jac_values, plan, y, (coef, lin_jac, u, dvals), a,
                                   jnp.asarray(save), rtol=opts["rtol"], atol=opts["atol"],
                                   max_steps=opts["max_steps"])
                ys = sol.ys
                status = jnp.maximum(status, sol.status)
                n_steps = n_steps + sol.n_steps
                y = ys[-1]
            else:
                ys = y[None, :]
            seg_ys.append(ys)
        rows = []
        for k, i in out_map:
            rows.append(jnp.zeros(n) if k == -1 else (starts[k] if i == -2 else seg_ys[k][i]))
        Y = jnp.stack(rows)
        infusion = jnp.zeros_like(bolus)
        parent = _assemble(cg, acf, lam, [s[:n_p] for s in starts], [s[..., :n_p] for s in seg_ys],
                           status, n_steps, segs, out_map, bolus, infusion,
                           np.array(injected_key), times, False, expected)
        return parent, Y

    return jax.jit(run)


class _SystemRef:
    """Hashable holder of a compiled system, keyed by its structure."""

    def __init__(self, system: _ChainSystem, key):
        self.system = system
        self.key = key

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _SystemRef) and self.key == other.key


def _structure_key(chain: ChainModel):
    return (
        chain.parent.graph,
        chain.parent.nuclide,
        tuple((d.nuclide, d.graph, tuple(sorted(d.entry.items())), tuple(sorted(d.release)))
              for d in chain.daughters),
    )


def simulate_chain(
    chain: ChainModel,
    schedule: Schedule | Administration,
    times_h: Sequence[float],
    params: Mapping[str, float] | None = None,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 50_000,
) -> ChainResult:
    """Simulate a radioligand and its free daughters; TIA per nuclide and region.

    Parameters
    ----------
    chain:
        A :class:`ChainModel` (e.g. :func:`ac225_psma_model`).
    schedule:
        Boluses (:class:`~pbpk.Schedule`); infusions are not supported for chains (the
        parent decaying in the syringe would make daughters outside the body model).
    times_h:
        Output times (h). TIAs run to infinity whatever the last one: after the last
        integrated time every atom left is assumed to stay where it is, so when the last
        output time comes before 10 half-lives of the longest-lived tracked member after the
        last administration (2381 h for 225Ac, 106 h for 212Pb) the system is integrated on
        internally to 20 half-lives (the outputs stay at ``times_h``).
    params:
        Overrides of the parent model's parameters (floats). The daughters' free-ion
        parameters are their own: change them with :meth:`ChainModel.with_daughter_parameters`
        (for a new patient build the chain from its physiology).
    rtol, atol:
        Solver tolerances (``atol`` in nmol for the parent, parent-equivalent MBq for the
        daughters).

    Raises
    ------
    InvalidInputError
        Bad schedule, times or parameters.
    SolverError
        The solver failed.
    """
    from pbpk._compile import check_parameter_values
    from pbpk._simulate import (
        _administered_nmol,
        _as_schedule,
        _as_times,
        _dose_inputs,
        _injected_mbq,
        _merged_parameters,
        _segments,
    )

    if not isinstance(chain, ChainModel):
        raise InvalidInputError(
            f"chain must be a ChainModel (e.g. pbpk.ac225_psma_model()), got {type(chain).__name__}; "
            "use pbpk.simulate for a PBPKModel."
        )
    schedule = _as_schedule(schedule)
    if any(a.infusion_h > 0 for a in schedule.administrations):
        raise InvalidInputError(
            "simulate_chain takes boluses only; give the infusion as a bolus (or several) instead."
        )
    times = _as_times(times_h)
    parent = chain.parent
    merged = _merged_parameters(parent, _parameter_overrides(params))
    cg = parent.compiled
    check_parameter_values(cg, merged)
    # a last output time before 10 half-lives of the longest-lived member after the last
    # administration would book too many atoms where they are: integrate on to 20 half-lives
    last_dose = max(a.time_h for a in schedule.administrations)
    t_half = max(get_nuclide(x).half_life_h for x in chain.nuclides)
    n_out = len(times)
    _segments(schedule, times)  # refuses administrations after the last output time
    run_times = times
    if times[-1] < last_dose + _TAIL_HALF_LIVES * t_half:
        run_times = np.append(times, last_dose + 2 * _TAIL_HALF_LIVES * t_half)
    segs, out_map = _segments(schedule, run_times)
    bolus, _ = _dose_inputs(parent, schedule, segs)
    system = _build_system(chain)
    opts = (("rtol", float(rtol)), ("atol", float(atol)), ("max_steps", int(max_steps)))
    ref = _SystemRef(system, _structure_key(chain))
    injected = tuple(_injected_mbq(schedule, float(t)) for t in run_times)
    fn = _jitted_chain((parent.graph, parent.nuclide), ref, segs, out_map,
                       tuple(run_times.tolist()), injected, opts)
    p = cg.pack(merged)
    expected = jnp.asarray(_administered_nmol(parent, schedule, run_times))
    res, Y = fn(p, jnp.asarray(system.vals), jnp.asarray(bolus), expected)
    if int(res.status) != 0:
        from pbpk._simulate import STATUS_MESSAGES

        raise SolverError(f"simulation of chain {parent.name!r} failed: {STATUS_MESSAGES.get(int(res.status))}.")
    return _chain_outputs(chain, system, res, np.asarray(Y), run_times, bolus, segs, out_map, n_out)


#: Half-lives (of the longest-lived tracked member) after the last administration that the
#: last output time of :func:`simulate_chain` must reach (at most 2^-10 of the atoms are then
#: booked where they are); if it does not, the system is integrated on to twice as many.
_TAIL_HALF_LIVES = 10.0


def _parameter_overrides(params) -> dict[str, float]:
    """``params`` of :func:`simulate_chain` as floats (a mapping of real numbers)."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInputError(
            f"params must be a mapping of parent parameter name to value (e.g. {{'R_kidney': 20.0}}), "
            f"got {type(params).__name__}."
        )
    out = {}
    for k, v in params.items():
        x = _real_or_none(v)
        if x is None:
            raise InvalidInputError(
                f"params[{k!r}] = {v!r} must be a real number (simulate_chain takes one patient; "
                "for a daughter's free-ion parameters use ChainModel.with_daughter_parameters)."
            )
        out[k] = x
    return out


def _chain_outputs(chain, system, parent_res, Y, times, bolus, segs, out_map, n_out=None) -> ChainResult:
    """The result from the states ``Y`` at ``times``; the first ``n_out`` times are reported
    (later ones only extend the integration for the TIA)."""
    n_out = len(times) if n_out is None else n_out
    parent = chain.parent
    cg = compile_graph(parent.graph)
    nc = cg.n_compartments
    regions_p = parent.graph.regions
    acf_p = parent.carrier_free_mbq_per_nmol
    lam = {x: get_nuclide(x).decay_constant_per_h for x in chain.nuclides}
    lp = lam[parent.nuclide]
    R = cg.region_matrix  # (regions, nc)
    hot_eq = acf_p * Y[:, :nc]  # parent-equivalent MBq per compartment
    # administered parent atoms (as MBq) up to each output time
    hot_given = np.cumsum(bolus[:, 0]) * acf_p
    given = np.array([0.0 if k == -1 else hot_given[k] for k, _ in out_map])
    daughters_total = np.zeros(len(times))
    activity, free_act, tia = {}, {}, {}
    cum = chain.cumulative_fractions()
    y_end = Y[-1]
    # future decays after the last time: every atom stays in its region
    future = {x: np.zeros(len(regions_p)) for x in chain.nuclides[1:]}
    hot_region_end = R @ hot_eq[-1]
    for x in chain.nuclides[1:]:
        future[x] += cum[parent.nuclide][x] * hot_region_end
    per_region_end = {}
    for k, d in enumerate(chain.daughters):
        rep = system.report_regions[k]
        fr = system.free[k]
        S_free = Y[:, fr]
        S_ret = Y[:, system.retained[k]]
        M = np.zeros((len(fr), len(rep)))
        M[np.arange(len(fr)), system.free_region[k]] = 1.0
        M_ret = np.zeros((len(system.retained[k]), len(rep)))
        M_ret[np.arange(len(system.retained[k])), system.retained_region] = 1.0
        S_reg = S_free @ M + S_ret @ M_ret
        daughters_total += S_free.sum(1) + S_ret.sum(1)
        ratio = lam[d.nuclide] / lp
        activity[d.nuclide] = ratio * S_reg[:n_out]
        free_act[d.nuclide] = ratio * (S_free @ M)[:n_out]
        per_region_end[d.nuclide] = S_reg[-1]
    for k, d in enumerate(chain.daughters):
        rep = system.report_regions[k]
        fut = np.zeros(len(rep))
        fut[: len(regions_p)] += future[d.nuclide]
        for up in chain.nuclides[1:]:
            c = cum[up][d.nuclide]
            if c == 0.0:
                continue
            fut += c * per_region_end[up]
        integ = y_end[system.integral[k]]
        values = (lam[d.nuclide] * integ + fut) / lp
        tia[d.nuclide] = {r: float(v) for r, v in zip(rep, values)}
    tia_parent = {r: float(v) for r, v in zip(parent_res.body_regions, np.asarray(parent_res.tia_mbq_h))}
    for r, state in system.parent_excreta:  # excreta: integral + physical decay where they are
        tia_parent[r] = float(acf_p * y_end[state] + hot_region_end[regions_p.index(r)] / lp)
    tia = {parent.nuclide: tia_parent, **tia}
    in_situ = {x: {r: cum[parent.nuclide][x] * v for r, v in tia_parent.items()} for x in chain.nuclides}
    ended = Y[:, system.ended]
    total = hot_eq.sum(1) + daughters_total + ended
    safe = np.where(given > 0, given, 1.0)
    residual = np.where(given > 0, (total - given) / safe, total)
    regions = {d.nuclide: system.report_regions[k] for k, d in enumerate(chain.daughters)}
    if n_out < len(times):  # the parent's outputs at the requested times, its TIA to infinity
        parent_res = dataclasses.replace(
            parent_res, **{f: getattr(parent_res, f)[:n_out] for f in (
                "times_h", "activity_mbq", "ligand_nmol", "urine_fraction",
                "mass_balance_residual", "injected_activity_mbq")},
            compartment_activity_mbq=None if parent_res.compartment_activity_mbq is None
            else parent_res.compartment_activity_mbq[:n_out],
        )
    return ChainResult(
        parent=parent_res,
        nuclides=chain.nuclides,
        times_h=np.asarray(times[:n_out]),
        regions=regions,
        activity_mbq=activity,
        free_activity_mbq=free_act,
        tia_mbq_h=tia,
        in_situ_tia=in_situ,
        atoms_residual=residual[:n_out],
        ended_fraction=(ended / safe)[:n_out],
        energies_mev=chain.member_energies_mev(),
        organ_volumes_l=dict(parent.organ_volumes_l),
    )


# ----------------------------------------------------------------------------- shipped models
def _recoil_text(release: float) -> str:
    """The stated extracellular release of the 225Ac builder, with the value used."""
    if release == 1.0:
        return (
            "recoil release: the 225Ac alpha recoil (~100 keV) exceeds any chemical bond energy, "
            "so a daughter formed outside a cell leaves the chelate (de Kruijff RM, Wolterbeek HT, "
            "Denkova AG, Pharmaceuticals 2015;8:321, review); release 1.0 per decay in every "
            "extracellular space (of the ligand and of daughters retained there)"
        )
    return (f"release {release:g} per decay in every extracellular space (of the ligand and of "
            "daughters retained there; given)")


def _internal_text(release: float) -> str:
    """The stated intracellular release, with the value used."""
    if release == 0.0:
        return (
            "ASSUMPTION: daughters formed inside cells (internalised ligand, atoms retained in "
            "cells) stay in the cell over their short lives: release 0 (McDevitt MR et al., "
            "Science 2001;294:1537, internalised 225Ac nanogenerators retain their daughters; no "
            "human fraction published)"
        )
    return (f"release {release:g} per decay inside cells (internalised ligand, atoms retained in "
            "cells; given)")


def _molar_activity(value, example: str = "0.1 for 225Ac-PSMA-617") -> float:
    """A molar activity (MBq/nmol): a finite real number > 0 (not a bool)."""
    v = _real_or_none(value)
    if v is None:
        raise InvalidInputError(
            f"molar_activity_mbq_per_nmol = {value!r} must be a number of MBq per nmol "
            f"(e.g. {example})."
        )
    if not (math.isfinite(v) and v > 0):
        raise InvalidInputError(
            f"molar_activity_mbq_per_nmol = {value!r} must be finite and > 0 MBq/nmol "
            f"(e.g. {example})."
        )
    return v


def ac225_psma_model(
    ligand: str = "PSMA-617",
    physiology: Physiology | None = None,
    *,
    release_extracellular: float = 1.0,
    release_internalised: float = 0.0,
    molar_activity_mbq_per_nmol: float = 0.1,
    **psma_kwargs,
) -> ChainModel:
    """225Ac-PSMA-617 (or another PSMA ligand) with free 221Fr and 213Bi.

    The parent is :func:`pbpk.psma_model` labelled with 225Ac (the 177Lu-calibrated kinetics:
    the ligand, not the nuclide, sets them). 221Fr and 213Bi follow their free-ion kinetics
    (:data:`ELEMENT_KINETICS`); 217At (32 ms), 213Po (4 us), 209Tl (2.2 min) and 209Pb decay
    where their predecessor decays.

    Parameters
    ----------
    release_extracellular:
        Fraction of daughters leaving the site per decay outside cells (default 1.0, recoil),
        for decays of the ligand and of daughters retained at extracellular sites.
    release_internalised:
        Fraction leaving the cell per decay of internalised ligand or of daughters retained in
        cells (default 0.0).
    molar_activity_mbq_per_nmol:
        ASSUMPTION 0.1 MBq/nmol (8 MBq with 80 nmol of PSMA-617, the order of the ligand
        amounts of 177Lu therapy; clinical 225Ac-PSMA-617 activities are 50-200 kBq/kg,
        Kratochwil C et al., J Nucl Med 2016;57:1941).
    psma_kwargs:
        Passed to :func:`pbpk.psma_model` (lesions, release mode, calibration ...).
    """
    from pbpk._models import psma_model

    molar = _molar_activity(molar_activity_mbq_per_nmol)
    phys = physiology or Physiology.reference("male")
    parent = psma_model(ligand, "Ac-225", phys, **psma_kwargs)
    parent = dataclasses.replace(parent, default_molar_activity_mbq_per_nmol=molar,
                                 description=parent.description + "; 225Ac")
    # 221Fr is made by decays of the ligand, 213Bi by decays of 221Fr (via 217At): free 221Fr
    # always releases it, 221Fr retained in the parent's space s by the same fraction as a
    # decay of the ligand in s (inside cells: 'internalised'; outside: '*')
    ext = _release_value(release_extracellular, "release_extracellular")
    internal = _release_value(release_internalised, "release_internalised")
    rel = {nuc: {DEFAULT: ext, "internalised": internal} for nuc in ("Fr-221", "Bi-213")}
    daughters = []
    for nuc in ("Fr-221", "Bi-213"):
        graph, params, src, entry = free_ion_graph(parent, nuc, phys)
        daughters.append(FreeDaughter(nuc, graph, params, rel[nuc], entry, src,
                                      (str(ELEMENT_KINETICS[_element(nuc)]["source"]),)))
    return ChainModel(
        parent, tuple(daughters), f"225Ac-{get_ligand_name(ligand)} with free 221Fr and 213Bi",
        (_recoil_text(ext), _internal_text(internal),
         (f"ASSUMPTION: molar activity {molar:g} MBq/nmol (see ac225_psma_model)" if molar == 0.1
          else f"molar activity {molar:g} MBq/nmol (given)"),
         ("the parent kinetics are the 177Lu-calibrated PSMA model's; 225Ac-PSMA-617 has no "
          "separate calibration")),
    )


#: 212Pb-labelled SSTR2 ligands: the kinetics they borrow and the 212Bi release per decay.
PB212_LIGANDS = {
    "DOTAMTATE": (
        "DOTATATE", 0.36,
        ("212Bi release after 212Pb beta decay: 36 % from Pb-DOTA (Mirzadeh S, Kumar K, "
         "Gansow OA, Radiochim Acta 1993;60:1); ASSUMPTION: the same for the TCMC chelator of "
         "DOTAMTATE; SSTR2 kinetics of 177Lu-DOTATATE (same peptide)"),
    ),
    "VMT-alpha-NET": (
        "DOTATOC", 0.36,
        ("ASSUMPTION: Pb-specific chelator (PSC) with the Pb-DOTA release of 36 % (no measured "
         "value found); SSTR2 kinetics of DOTATOC (Tyr3-octreotide, Li M et al., Pharmaceutics "
         "2023;15:414)"),
    ),
}


def pb212_sstr_model(
    ligand: str = "DOTAMTATE",
    physiology: Physiology | None = None,
    *,
    release_extracellular: float | None = None,
    release_internalised: float = 0.0,
    molar_activity_mbq_per_nmol: float = 2.0,
    **sstr_kwargs,
) -> ChainModel:
    """212Pb-DOTAMTATE or a VMT-alpha-NET-style 212Pb SSTR2 ligand with free 212Bi.

    The parent is :func:`pbpk.sstr_model` with the borrowed ligand kinetics labelled with
    212Pb; 212Bi follows free-bismuth kinetics; 212Po (0.3 us) and 208Tl (3 min) decay where
    212Bi decays. MC1R ligands (212Pb-VMT01) need an MC1R model, which the library does not
    have: use this structure with another parent (``ChainModel(parent, daughters)``).

    Parameters
    ----------
    release_extracellular:
        212Bi fraction leaving the chelate per 212Pb decay outside cells (default: the
        ligand's, 0.36).
    release_internalised:
        Fraction leaving cells (default 0.0, assumption).
    molar_activity_mbq_per_nmol:
        ASSUMPTION 2 MBq/nmol (about 200 MBq, 2.5 MBq/kg as in Delpassand ES et al., J Clin
        Oncol 2022;40:1020, with ~100 nmol of peptide).
    """
    from pbpk._models import sstr_model

    if ligand not in PB212_LIGANDS:
        raise UnknownNameError(f"212Pb ligand {ligand!r} is not known; known: {', '.join(PB212_LIGANDS)}.")
    base, release, source = PB212_LIGANDS[ligand]
    molar = _molar_activity(molar_activity_mbq_per_nmol, "2.0 for 212Pb-DOTAMTATE")
    phys = physiology or Physiology.reference("male")
    parent = sstr_model(base, "Pb-212", phys, **sstr_kwargs)
    parent = dataclasses.replace(parent, ligand=ligand, default_molar_activity_mbq_per_nmol=molar,
                                 description=f"{parent.description}; 212Pb-{ligand} ({base} kinetics)")
    f_ext = (release if release_extracellular is None
             else _release_value(release_extracellular, "release_extracellular"))
    internal = _release_value(release_internalised, "release_internalised")
    rel = {DEFAULT: f_ext, "internalised": internal}  # 212Bi is made by the ligand's decays
    graph, params, src, entry = free_ion_graph(parent, "Bi-212", phys)
    d = FreeDaughter("Bi-212", graph, params, rel, entry, src, (str(ELEMENT_KINETICS["Bi"]["source"]),))
    if f_ext != release:
        source = f"{source}; GIVEN: release {f_ext:g} per 212Pb decay outside cells is used instead"
    return ChainModel(parent, (d,), f"212Pb-{ligand} with free 212Bi",
                      (source, _internal_text(internal),
                       f"ASSUMPTION: molar activity {molar:g} MBq/nmol" if molar == 2.0
                       else f"molar activity {molar:g} MBq/nmol (given)"))


def get_ligand_name(name: str) -> str:
    from pbpk._ligands import get_ligand

    return get_ligand(name).name
