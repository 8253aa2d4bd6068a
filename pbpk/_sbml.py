"""SBML export and import of model graphs (python-libsbml).

``to_sbml`` writes a :class:`~pbpk.PBPKModel` as SBML Level 3 Version 2 whose kinetics are
exactly those of :func:`pbpk.compile_model` (same rate laws, same parameters), so any SBML
simulator (libroadrunner, COPASI, tellurium) can cross-check :func:`pbpk.simulate`:

* every graph compartment becomes two species, ``<name>_hot`` and ``<name>_cold`` (dots in
  names become ``__``), as amounts in nmol (``hasOnlySubstanceUnits``), in an SBML compartment
  whose size is the compartment's volume parameter (a size-1 ``amount_pool`` compartment holds
  the volume-less pools);
* every model parameter, ``lambda_phys_per_h`` included, is a global constant parameter;
  concentrations are written explicitly as ``amount / volume parameter``;
* one reaction per process and species (``flow``: ``Q*A_src/V_src``; ``exchange``:
  ``PS*(A_a/V_a - A_b/V_b)``; ``transfer``: ``k*A_src``; ``binding``:
  ``kon*(A_free/V_free)*(R - B_hot - B_cold) - koff*B``) and one physical-decay reaction
  hot -> cold per compartment;
* optionally ``TIA_<region>`` parameters (nmol h) integrating the hot amount of each body
  region by rate rules (the ODE part of the TIA; :func:`pbpk.simulate` adds the decay tail);
* an optional single bolus at t = 0 as initial amounts.

Time is in h, amounts in nmol, volumes in L (declared as model units). Model name, nuclide,
ligand and the source of every parameter are written as notes; a ``pbpk`` annotation records
the graph so that :func:`from_sbml` restores it exactly.

``from_sbml`` reads documents written by ``to_sbml`` (all four process kinds) and *simple*
SBML models: species as ligand pools, reactions with one reactant (stoichiometry 1), at most
one product, and a kinetic law that is mass action ``k*S`` (a transfer) or flow-like
``Q*S/V`` with ``V`` the volume of the reactant's compartment (a flow). Anything else is
refused with :class:`~pbpk.GraphError`. Documents with a DOCTYPE or ENTITY declaration are
refused before parsing; kinetic laws are read as MathML trees, never evaluated as code.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

from pbpk._compile import DECAY_PARAMETER
from pbpk._dosing import Administration, Schedule
from pbpk._errors import GraphError, InvalidInputError, UnitError
from pbpk._graph import Compartment, ModelGraph, Process, parse_factor
from pbpk._model import PBPKModel

__all__ = ["from_sbml", "to_sbml"]

PBPK_NS = "https://theranostic-twin.org/ns/pbpk-sbml/1"
_FORMAT = "pbpk-sbml/1"
_FORMS = ("hot", "cold")
_XHTML = "http://www.w3.org/1999/xhtml"
_UNIT_IDS = ("hour", "nmol", "per_hour", "litre_per_hour", "nmol_hour", "litre_per_nmol_per_hour",
             "dimensionless_fraction")
_SID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DANGEROUS = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_SUPPORTED = (
    "supported kinetic laws are mass action 'k * S' (imported as a transfer, k may be a "
    "product or quotient of constant parameters) and flow-like 'Q * S / V' with V the volume "
    "(size) of the reactant's compartment (imported as a flow), for reactions with one "
    "reactant and at most one product of stoichiometry 1; documents written by pbpk.to_sbml "
    "also carry exchange and binding processes"
)


def _libsbml():
    try:
        import libsbml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "SBML export/import needs python-libsbml: pip install python-libsbml"
        ) from exc
    return libsbml


# ============================================================================ ids
def _base_sid(name: str) -> str:
    sid = re.sub(r"[^A-Za-z0-9_]", "_", name.replace(".", "__"))
    return sid if _SID.match(sid) else f"_{sid}"


class _Ids:
    """Allocates unique SBML ids (one namespace for compartments, species, parameters...)."""

    def __init__(self) -> None:
        self.used: set[str] = set(_UNIT_IDS)

    def new(self, wanted: str) -> str:
        sid, k = wanted, 2
        while sid in self.used:
            sid, k = f"{wanted}_{k}", k + 1
        self.used.add(sid)
        return sid


def _species_ids(graph: ModelGraph) -> dict[tuple[str, str], str]:
    """``(compartment name, 'hot'|'cold') -> species id`` as written by :func:`to_sbml`."""
    return _allocate(graph, [])[1]


def _tia_ids(graph: ModelGraph) -> dict[str, str]:
    """``body region -> id`` of the TIA rate-rule parameters written by :func:`to_sbml`."""
    return _allocate(graph, [])[2]


def _allocate(graph: ModelGraph, parameters: list[str]):
    """Species and TIA ids first (they depend on the graph only), then parameter ids."""
    ids = _Ids()
    sp = {}
    for c in graph.compartments:
        for form in _FORMS:
            sp[(c.name, form)] = ids.new(f"{_base_sid(c.name)}_{form}")
    tia = {r: ids.new(f"TIA_{_base_sid(r)}") for r in graph.body_regions}
    pid = {n: ids.new(_base_sid(n)) for n in parameters}
    return ids, sp, tia, pid


# ============================================================================ rate laws
def _paren(expr: str) -> str:
    return f"({expr})" if (" " in expr) else expr


def _factors(tokens: tuple[str, ...], pid: Mapping[str, str]) -> str:
    """Infix product of rate factor tokens (``name``, ``/name``, ``1-name``)."""
    mul, div = [], []
    for token in tokens:
        kind, name = parse_factor(token)
        if kind == "mul":
            mul.append(pid[name])
        elif kind == "comp":
            mul.append(f"(1 dimensionless - {pid[name]})")
        else:
            div.append(pid[name])
    expr = " * ".join(mul) if mul else "1"
    for d in div:
        expr = f"{expr} / {d}"
    return expr


def _law(p: Process, form: str, sp, pid, vol) -> str:
    """The kinetic law of process ``p`` for one species, as the compiled vector field has it."""
    s, t = sp[(p.source, form)], sp[(p.target, form)]
    rate = _paren(_factors(p.rate, pid))
    if p.kind == "flow":
        return f"{rate} * {s} / {vol[p.source]}"
    if p.kind == "transfer":
        return f"{rate} * {s}"
    if p.kind == "exchange":
        return f"{rate} * ({s} / {vol[p.source]} - {t} / {vol[p.target]})"
    receptor = _paren(_factors(p.receptor, pid))
    koff = _paren(_factors(p.koff, pid))
    bh, bc = sp[(p.target, "hot")], sp[(p.target, "cold")]
    return f"{rate} * ({s} / {vol[p.source]}) * ({receptor} - {bh} - {bc}) - {koff} * {t}"


# ============================================================================ export
def _unit_definitions(model) -> None:
    libsbml = _libsbml()

    def define(uid, *units):
        ud = model.createUnitDefinition()
        ud.setId(uid)
        for kind, exponent, scale, multiplier in units:
            u = ud.createUnit()
            u.setKind(kind)
            u.setExponent(exponent)
            u.setScale(scale)
            u.setMultiplier(multiplier)

    s, mol, litre = libsbml.UNIT_KIND_SECOND, libsbml.UNIT_KIND_MOLE, libsbml.UNIT_KIND_LITRE
    define("hour", (s, 1, 0, 3600.0))
    define("nmol", (mol, 1, -9, 1.0))
    define("per_hour", (s, -1, 0, 3600.0))
    define("litre_per_hour", (litre, 1, 0, 1.0), (s, -1, 0, 3600.0))
    define("nmol_hour", (mol, 1, -9, 1.0), (s, 1, 0, 3600.0))
    define("litre_per_nmol_per_hour", (litre, 1, 0, 1.0), (mol, -1, -9, 1.0), (s, -1, 0, 3600.0))
    define("dimensionless_fraction", (libsbml.UNIT_KIND_DIMENSIONLESS, 1, 0, 1.0))
    model.setTimeUnits("hour")
    model.setSubstanceUnits("nmol")
    model.setExtentUnits("nmol")
    model.setVolumeUnits("litre")


def _parameter_units(graph: ModelGraph) -> dict[str, str]:
    """Units of parameters whose role is unambiguous (single-factor rates, volumes)."""
    guess: dict[str, set[str]] = {}

    def put(name, unit):
        guess.setdefault(name, set()).add(unit)

    for c in graph.compartments:
        if c.volume:
            put(c.volume, "litre")
    single = {"flow": "litre_per_hour", "exchange": "litre_per_hour", "transfer": "per_hour",
              "binding": "litre_per_nmol_per_hour"}
    for p in graph.processes:
        groups = [(p.rate, single[p.kind])]
        if p.kind == "binding":
            groups += [(p.koff, "per_hour"), (p.receptor, "nmol")]
        for tokens, unit in groups:
            for token in tokens:
                kind, name = parse_factor(token)
                if kind == "comp":
                    put(name, "dimensionless_fraction")
                elif len(tokens) == 1 and kind == "mul":
                    put(name, unit)
    put(DECAY_PARAMETER, "per_hour")
    return {n: u.pop() for n, u in guess.items() if len(u) == 1}


def _xhtml(*paragraphs: str) -> str:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return f'<body xmlns="{_XHTML}">{body}</body>'


def _annotation(tag: str, **attrs) -> str:
    text = " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items())
    return f'<annotation><pbpk:{tag} xmlns:pbpk="{PBPK_NS}" {text}/></annotation>'


def _bolus(model: PBPKModel, schedule) -> tuple[float, float]:
    if schedule is None:
        return 0.0, 0.0
    if isinstance(schedule, Administration):
        schedule = Schedule((schedule,))
    if not isinstance(schedule, Schedule):
        raise InvalidInputError(
            "schedule must be None, a Schedule or an Administration "
            "(e.g. pbpk.Schedule.single(7400.0))."
        )
    adm = schedule.administrations
    if len(adm) != 1 or adm[0].time_h != 0.0 or adm[0].infusion_h != 0.0:
        raise InvalidInputError(
            "SBML export supports a single bolus at t = 0 (pbpk.Schedule.single(activity)); "
            "simulate other schedules with pbpk.simulate, or export without a schedule and add "
            "SBML events yourself."
        )
    return adm[0].amounts_nmol(model.carrier_free_mbq_per_nmol,
                               model.default_molar_activity_mbq_per_nmol)


def _set_numbers(xml: str, numbers: list[tuple[str, str, str, float]]) -> str:
    """Rewrite numeric attributes with '%.17g' (libsbml writes only 15 significant digits)."""
    wanted = {(tag, sid): (attr, value) for tag, sid, attr, value in numbers}
    done = set()

    def fix(match):
        element = match.group(0)
        sid = re.search(r'\bid="([^"]*)"', element)
        key = (match.group(1), sid.group(1) if sid else "")
        if key not in wanted:
            return element
        attr, value = wanted[key]
        done.add(key)
        return re.sub(rf'\b{attr}="[^"]*"', f'{attr}="{value:.17g}"', element, count=1)

    tags = "|".join(sorted({tag for tag, _, _, _ in numbers}))
    xml = re.sub(rf"<({tags})\s[^>]*>", fix, xml) if numbers else xml
    if len(done) != len(wanted):  # pragma: no cover - would be a bug in to_sbml
        raise GraphError(f"internal error: SBML elements not found: {sorted(set(wanted) - done)}.")
    return xml


def to_sbml(model: PBPKModel, schedule: Schedule | Administration | None = None, *,
            include_tia: bool = True) -> str:
    """Write a model as SBML Level 3 Version 2 text with the kinetics of the compiled model.

    Parameters
    ----------
    model:
        The model to export (graph, nuclide, parameter values and sources).
    schedule:
        ``None`` (all initial amounts 0) or a single bolus at t = 0, e.g.
        ``pbpk.Schedule.single(7400.0)``: its hot and cold ligand (nmol) become the initial
        amounts of the dose compartment's two species.
    include_tia:
        Add ``TIA_<region>`` parameters (nmol h) with rate rules integrating the hot amount of
        every body region from t = 0. Multiply by the nuclide's carrier-free molar activity
        (MBq/nmol) for MBq h; :func:`pbpk.simulate` further adds the tail ``A(t_end)/lambda``.

    Returns
    -------
    str
        The SBML document. Species ids are ``<compartment>_hot``/``<compartment>_cold`` with
        dots replaced by ``__`` (``kidney.vascular`` -> ``kidney__vascular_hot``).
    """
    if not isinstance(model, PBPKModel):
        raise InvalidInputError(
            f"to_sbml needs a PBPKModel (e.g. pbpk.psma_model()), got {type(model).__name__}."
        )
    libsbml = _libsbml()
    graph = model.graph
    params = dict(model.parameters)
    for name, value in params.items():
        if not math.isfinite(value):
            raise InvalidInputError(f"parameter {name!r} = {value!r} is not finite; SBML needs numbers.")
    hot0, cold0 = _bolus(model, schedule)

    names = sorted(params)
    ids, sp, tia_id, pid = _allocate(graph, names)
    numbers: list[tuple[str, str, str, float]] = []

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId(ids.new(_base_sid(graph.name)))
    m.setName(graph.name)
    _unit_definitions(m)
    sources = dict(model.sources)
    notes = [
        f"PBPK model {graph.name!r} exported by the pbpk package ({_FORMAT}).",
        (f"Nuclide: {model.nuclide} (decay constant lambda_phys_per_h = "
         f"{params[DECAY_PARAMETER]:.17g} 1/h, carrier-free molar activity "
         f"{model.carrier_free_mbq_per_nmol:.17g} MBq/nmol)."),
        (f"Ligand: {model.ligand or 'not given'}; default molar activity "
         f"{model.default_molar_activity_mbq_per_nmol:.17g} MBq/nmol."),
        f"Description: {model.description or graph.description or '-'}",
        ("Units: time h, amounts nmol, volumes L. Species <compartment>_hot/_cold are "
         "radiolabelled/unlabelled ligand; physical decay turns hot into cold in every "
         "compartment."),
    ]
    if hot0 or cold0:
        notes.append(f"Initial bolus at t = 0 into {graph.dose_compartment}: "
                     f"{hot0:.17g} nmol hot, {cold0:.17g} nmol cold.")
    if include_tia:
        notes.append("TIA_<region> (nmol h) integrate the hot amount of each body region from "
                     "t = 0; times the carrier-free molar activity they give MBq h.")
    notes.append("Parameter sources:")
    notes += [f"{n} = {params[n]:.17g}: {sources.get(n, 'not given')}" for n in names]
    m.setNotes(_xhtml(*notes))
    m.setAnnotation(_annotation(
        "model", format=_FORMAT, name=graph.name, dose_compartment=graph.dose_compartment,
        description=graph.description, metadata=json.dumps(dict(graph.metadata), sort_keys=True),
        nuclide=model.nuclide, ligand=model.ligand,
        default_molar_activity_mbq_per_nmol=f"{model.default_molar_activity_mbq_per_nmol:.17g}",
        tia=str(bool(include_tia)).lower(),
    ))

    # compartments: one per graph compartment with a volume, one size-1 pool for the others
    vol: dict[str, str] = {}
    sbml_comp: dict[str, str] = {}
    pool = None
    for c in graph.compartments:
        if c.volume is None:
            if pool is None:
                pool = ids.new("amount_pool")
                cm = m.createCompartment()
                cm.setId(pool)
                cm.setName("pools holding amounts only (bound, internalised, excreta)")
                cm.setSpatialDimensions(3)
                cm.setSize(1.0)
                cm.setUnits("litre")
                cm.setConstant(True)
            sbml_comp[c.name] = pool
            continue
        vol[c.name] = pid[c.volume]
        cid = ids.new(f"V_{_base_sid(c.name)}")
        cm = m.createCompartment()
        cm.setId(cid)
        cm.setName(c.name)
        cm.setSpatialDimensions(3)
        cm.setSize(params[c.volume])
        cm.setUnits("litre")
        cm.setConstant(True)
        ia = m.createInitialAssignment()
        ia.setSymbol(cid)
        ia.setMath(libsbml.parseL3Formula(pid[c.volume]))
        numbers.append(("compartment", cid, "size", params[c.volume]))
        sbml_comp[c.name] = cid

    units = _parameter_units(graph)
    for n in names:
        p = m.createParameter()
        p.setId(pid[n])
        p.setName(n)
        p.setValue(params[n])
        p.setConstant(True)
        if n in units:
            p.setUnits(units[n])
        p.setNotes(_xhtml(f"source: {sources.get(n, 'not given')}"))
        numbers.append(("parameter", pid[n], "value", params[n]))

    for c in graph.compartments:
        for form in _FORMS:
            s = m.createSpecies()
            s.setId(sp[(c.name, form)])
            s.setName(f"{c.name} ({form})")
            s.setCompartment(sbml_comp[c.name])
            amount = 0.0
            if c.name == graph.dose_compartment:
                amount = hot0 if form == "hot" else cold0
            s.setInitialAmount(amount)
            s.setSubstanceUnits("nmol")
            s.setHasOnlySubstanceUnits(True)
            s.setBoundaryCondition(False)
            s.setConstant(False)
            s.setAnnotation(_annotation(
                "pool", compartment=c.name, form=form, region=c.region, space=c.space,
                volume=c.volume or "", in_body=str(c.in_body).lower(),
            ))
            numbers.append(("species", sp[(c.name, form)], "initialAmount", amount))

    def reaction(rid, name, reactant, product, law, reversible, modifiers, annotation):
        r = m.createReaction()
        r.setId(ids.new(rid))
        r.setName(name)
        r.setReversible(reversible)
        ref = r.createReactant()
        ref.setSpecies(reactant)
        ref.setStoichiometry(1.0)
        ref.setConstant(True)
        ref = r.createProduct()
        ref.setSpecies(product)
        ref.setStoichiometry(1.0)
        ref.setConstant(True)
        for mod in modifiers:
            r.createModifier().setSpecies(mod)
        kl = r.createKineticLaw()
        math_ast = libsbml.parseL3Formula(law)
        if math_ast is None:  # pragma: no cover - would be a bug in _law
            raise GraphError(f"internal error: cannot parse rate law {law!r}.")
        kl.setMath(math_ast)
        r.setAnnotation(annotation)

    for i, p in enumerate(graph.processes):
        for form in _FORMS:
            law = _law(p, form, sp, pid, vol)
            mods = []
            if p.kind == "binding":
                other = "cold" if form == "hot" else "hot"
                mods = [sp[(p.target, other)]]
            reaction(
                f"{p.kind}_{i}_{form}",
                f"{p.kind} {p.source} -> {p.target} ({form}){' ' + p.label if p.label else ''}",
                sp[(p.source, form)], sp[(p.target, form)], law,
                p.kind in ("exchange", "binding"), mods,
                _annotation("process", index=i, form=form, kind=p.kind, source=p.source,
                            target=p.target, rate=" ".join(p.rate), koff=" ".join(p.koff),
                            receptor=" ".join(p.receptor), label=p.label),
            )
    lam = pid[DECAY_PARAMETER]
    for c in graph.compartments:
        h = sp[(c.name, "hot")]
        reaction(f"decay_{_base_sid(c.name)}", f"physical decay in {c.name}", h,
                 sp[(c.name, "cold")], f"{lam} * {h}", False, [],
                 _annotation("decay", compartment=c.name))

    if include_tia:
        for region in graph.body_regions:
            tid = tia_id[region]
            p = m.createParameter()
            p.setId(tid)
            p.setName(f"time-integrated hot amount in {region}")
            p.setValue(0.0)
            p.setUnits("nmol_hour")
            p.setConstant(False)
            p.setAnnotation(_annotation("tia", region=region))
            rule = m.createRateRule()
            rule.setVariable(tid)
            terms = [sp[(c.name, "hot")] for c in graph.compartments_in(region)]
            rule.setMath(libsbml.parseL3Formula(" + ".join(terms)))

    xml = libsbml.writeSBMLToString(doc)
    return _set_numbers(xml, numbers)


# ============================================================================ import
class _Unsupported(Exception):
    pass


def _children(node):
    return [node.getChild(i) for i in range(node.getNumChildren())]


def _product(node, libsbml) -> tuple[float, Counter]:
    """A kinetic-law tree as ``coef * prod(atom ** exponent)``; atoms are ``('sym', name)`` or
    ``('comp', name)`` for ``(1 - name)``. Raises _Unsupported for anything else."""
    t = node.getType()
    if t == libsbml.AST_TIMES:
        coef, atoms = 1.0, Counter()
        for ch in _children(node):
            c, a = _product(ch, libsbml)
            coef *= c
            atoms.update(a)
        return coef, atoms
    if t == libsbml.AST_DIVIDE and node.getNumChildren() == 2:
        c1, a1 = _product(node.getChild(0), libsbml)
        c2, a2 = _product(node.getChild(1), libsbml)
        if c2 == 0:
            raise _Unsupported("division by zero")
        a = Counter(a1)
        a.subtract(a2)
        return c1 / c2, a
    if node.isNumber():
        value = float(node.getValue())
        if not math.isfinite(value):
            raise _Unsupported("non-finite number")
        return value, Counter()
    if t == libsbml.AST_NAME:
        return 1.0, Counter({("sym", node.getName()): 1})
    if t == libsbml.AST_MINUS and node.getNumChildren() == 1:
        c, a = _product(node.getChild(0), libsbml)
        return -c, a
    if (t == libsbml.AST_MINUS and node.getNumChildren() == 2 and node.getChild(0).isNumber()
            and float(node.getChild(0).getValue()) == 1.0
            and node.getChild(1).getType() == libsbml.AST_NAME):
        return 1.0, Counter({("comp", node.getChild(1).getName()): 1})
    raise _Unsupported(libsbml.formulaToL3String(node))


def _reject(reaction_id: str, why: str) -> GraphError:
    return GraphError(f"reaction {reaction_id!r} cannot be imported: {why}; {_SUPPORTED}.")


def _errors(doc, libsbml) -> list[str]:
    out = []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            out.append(f"line {e.getLine()}: {e.getMessage().strip()}")
    return out


def _read(text: str):
    if not isinstance(text, str):
        raise InvalidInputError(
            f"from_sbml needs the SBML document as text (str), got {type(text).__name__}; "
            "read the file first, e.g. Path(f).read_text()."
        )
    if _DANGEROUS.search(text):
        raise InvalidInputError(
            "the SBML document contains a DOCTYPE or ENTITY declaration; such documents can "
            "read local files or expand without bound (XML external entities, 'billion "
            "laughs') and are refused. SBML needs no DTD: remove the <!DOCTYPE ...> block."
        )
    libsbml = _libsbml()
    doc = libsbml.readSBMLFromString(text)
    errs = _errors(doc, libsbml)
    if errs or doc.getModel() is None:
        detail = "; ".join(errs[:5]) or "the document has no <model>"
        raise InvalidInputError(f"not a readable SBML document: {detail}.")
    core = doc.getSBMLNamespaces().getURI()
    for i in range(doc.getNumPlugins()):
        plugin = doc.getPlugin(i)
        package = plugin.getPackageName()
        if plugin.getURI() == core:  # built into the core (L3V2 extended math)
            continue
        if package == "comp" or doc.getPackageRequired(package):
            raise GraphError(
                f"the document uses the SBML package {package!r}, which changes the model's "
                "meaning (submodels, external files, ...); flatten it to plain SBML core first."
            )
    if doc.getLevel() < 2:
        raise InvalidInputError(
            f"SBML Level {doc.getLevel()} is not supported; convert to Level 3 (e.g. with "
            "libsbml's SBMLDocument.setLevelAndVersion(3, 2))."
        )
    return doc, libsbml


def _pbpk_annotation(sbase, tag: str):
    """Attributes of our ``<pbpk:tag .../>`` annotation element, or None."""
    ann = sbase.getAnnotation()
    if ann is None:
        return None
    for node in _children(ann):
        if node.getURI() == PBPK_NS and node.getName() == tag:
            attrs = node.getAttributes()
            return {attrs.getName(i): attrs.getValue(i) for i in range(attrs.getLength())}
    return None


def _unit_factor(model, uid: str, libsbml) -> tuple[int, float] | None:
    """(kind, factor) of a single-unit definition or base unit name, None if not simple."""
    ud = model.getUnitDefinition(uid)
    if ud is None:
        kind = libsbml.UnitKind_forName(uid)
        return None if kind == libsbml.UNIT_KIND_INVALID else (kind, 1.0)
    if ud.getNumUnits() != 1 or ud.getUnit(0).getExponent() != 1:
        return None
    u = ud.getUnit(0)
    return u.getKind(), u.getMultiplier() * 10.0 ** u.getScale()


def _check_units(model, libsbml) -> None:
    wanted = [
        ("getTimeUnits", "time", libsbml.UNIT_KIND_SECOND, 3600.0, "hours"),
        ("getSubstanceUnits", "substance", libsbml.UNIT_KIND_MOLE, 1e-9, "nmol"),
        ("getVolumeUnits", "volume", libsbml.UNIT_KIND_LITRE, 1.0, "litres"),
    ]
    for getter, what, kind, factor, label in wanted:
        uid = getattr(model, getter)()
        if not uid:
            continue  # undeclared: taken as the project's units (documented)
        found = _unit_factor(model, uid, libsbml)
        if found is None or found[0] != kind or not math.isclose(found[1], factor, rel_tol=1e-9):
            raise UnitError(
                f"the model's {what} units {uid!r} are not {label}; pbpk works in h, nmol and "
                "L. Rescale the document's parameters and units before importing."
            )


def _unit_scale(model, uid: str, libsbml) -> float | None:
    """A unit's size in the project's units (h, nmol, L): 1.0 when ``uid`` is h, nmol, L, or a
    product of their powers (per hour, L/h, ...); None when it has another kind (metre,
    gram, ...)."""
    canonical = {libsbml.UNIT_KIND_SECOND: 3600.0, libsbml.UNIT_KIND_MOLE: 1e-9,
                 libsbml.UNIT_KIND_LITRE: 1.0, libsbml.UNIT_KIND_DIMENSIONLESS: 1.0}
    ud = model.getUnitDefinition(uid)
    if ud is None:
        units = [(libsbml.UnitKind_forName(uid), 1.0, 0, 1.0)]
    else:
        units = [(u.getKind(), u.getExponent(), u.getScale(), u.getMultiplier())
                 for u in (ud.getUnit(i) for i in range(ud.getNumUnits()))]
    total = 1.0
    for kind, exponent, scale, multiplier in units:
        if kind not in canonical:
            return None
        total *= (multiplier * 10.0 ** scale / canonical[kind]) ** exponent
    return total


def _check_element_units(model, libsbml) -> None:
    """Units declared on compartments, species, parameters and local parameters must be the
    project's (L, nmol, h and their products, e.g. per hour or L/h): numbers are read
    unscaled."""
    builtin = {"substance", "volume", "time", "area", "length"}  # model defaults, checked above
    items = [("compartment", model.getCompartment(i), "getUnits")
             for i in range(model.getNumCompartments())]
    items += [("species", model.getSpecies(i), "getSubstanceUnits")
              for i in range(model.getNumSpecies())]
    items += [("parameter", model.getParameter(i), "getUnits")
              for i in range(model.getNumParameters())]
    for i in range(model.getNumReactions()):
        reaction = model.getReaction(i)
        law = reaction.getKineticLaw()
        if law is not None:
            items += [(f"in reaction {reaction.getId()!r}, local parameter", law.getLocalParameter(k),
                       "getUnits") for k in range(law.getNumLocalParameters())]
    for what, element, getter in items:
        uid = getattr(element, getter)()
        if not uid or (uid in builtin and model.getUnitDefinition(uid) is None):
            continue
        scale = _unit_scale(model, uid, libsbml)
        if scale is None or not math.isclose(scale, 1.0, rel_tol=1e-9):
            size = "" if scale is None else f" ({scale:.6g} times the project's unit)"
            raise UnitError(
                f"{what} {element.getId()!r} has units {uid!r}{size}, which are not the project's "
                "h, nmol and L (or products of them such as per hour or L/h); pbpk reads the "
                "numbers unscaled. Convert the value and declare the units in h, nmol and L "
                "before importing."
            )


def _refuse_conversion_factors(model) -> None:
    """SBML conversion factors scale each species' rate of change; pbpk does not apply them."""
    if model.isSetConversionFactor():
        raise UnitError(
            f"the SBML model sets conversionFactor={model.getConversionFactor()!r}, which scales "
            "every species' rate of change; pbpk does not apply conversion factors. Fold the "
            "factor into the rate constants (and initial amounts) and remove it before importing."
        )
    for i in range(model.getNumSpecies()):
        sp = model.getSpecies(i)
        if sp.isSetConversionFactor():
            raise UnitError(
                f"species {sp.getId()!r} sets conversionFactor={sp.getConversionFactor()!r}, which "
                "scales its rate of change; pbpk does not apply conversion factors. Fold the factor "
                "into the rate constants of its reactions and remove it before importing."
            )


def _refuse_dynamics(model, allowed_rate_rules: set[str] = frozenset()) -> None:
    if model.getNumEvents():
        raise GraphError(
            f"the SBML model has {model.getNumEvents()} event(s); events are not supported "
            "(give doses with pbpk.Schedule instead): remove them before importing."
        )
    for i in range(model.getNumRules()):
        rule = model.getRule(i)
        var = rule.getVariable() if rule.isSetVariable() else ""
        if rule.isRate() and var in allowed_rate_rules:
            continue
        raise GraphError(
            f"the SBML model has a rule ({rule.getElementName()} for {var or 'an expression'}); "
            "rules are not supported: a graph's dynamics come from its reactions only."
        )


def from_sbml(text: str) -> tuple[ModelGraph, dict[str, float]]:
    """Read a model graph and its parameter values from SBML text.

    Documents written by :func:`to_sbml` are restored exactly (graph and parameters, with
    ``lambda_phys_per_h``); their kinetic laws are checked against the recorded processes.
    Other documents are read as *simple* models: every species becomes a compartment of the
    graph (named and reported as its species id, the SBML compartment as its ``space``), the
    SBML compartment size its volume parameter (named after the compartment, or the parameter
    an initial assignment sets it to), and every reaction a transfer (``k*S``) or flow
    (``Q*S/V``); reactions without a product go to an excreted ``sink`` pool. Numbers are taken
    as h, nmol and L (declared units, of the model or of any compartment, species,
    parameter or local parameter, must be these or their products; conversion factors are
    refused). Initial amounts do not belong to a
    graph: the species with the largest initial amount becomes the dose compartment and all
    initial amounts are listed in ``graph.metadata['sbml_initial_amounts_nmol']`` (JSON).

    Raises
    ------
    InvalidInputError
        Not SBML text, unreadable, or with a DOCTYPE/ENTITY declaration (refused unparsed).
    GraphError
        A construct other than those above (events, rules, unsupported kinetic laws ...).
    UnitError
        Declared units other than h, nmol, L (or their products, e.g. per hour, L/h) on the
        model, a compartment, a species, a parameter or a local parameter; or a
        ``conversionFactor`` (model or species), which pbpk does not apply.
    """
    doc, libsbml = _read(text)
    model = doc.getModel()
    _check_units(model, libsbml)
    _check_element_units(model, libsbml)
    _refuse_conversion_factors(model)
    info = _pbpk_annotation(model, "model")
    if info is not None and info.get("format") == _FORMAT:
        return _from_pbpk(model, info, libsbml)
    return _from_simple(model, libsbml)


# ---------------------------------------------------------------------------- our documents
def _from_pbpk(model, info, libsbml):
    tia = {}
    params: dict[str, float] = {}
    pid: dict[str, str] = {}
    for i in range(model.getNumParameters()):
        p = model.getParameter(i)
        if _pbpk_annotation(p, "tia") is not None:
            tia[p.getId()] = p
            continue
        if not p.getConstant() or not p.isSetValue():
            raise GraphError(f"parameter {p.getId()!r} must be constant with a value.")
        name = p.getName() or p.getId()
        params[name] = float(p.getValue())
        pid[name] = p.getId()
    _refuse_dynamics(model, set(tia))

    comps: dict[str, Compartment] = {}
    sp: dict[tuple[str, str], str] = {}
    for i in range(model.getNumSpecies()):
        s = model.getSpecies(i)
        a = _pbpk_annotation(s, "pool")
        if a is None:
            raise GraphError(
                f"species {s.getId()!r} has no pbpk annotation in a document written by "
                "pbpk.to_sbml; edit the model as a graph and export it again."
            )
        sp[(a["compartment"], a["form"])] = s.getId()
        if a["form"] == "hot":
            comps[a["compartment"]] = Compartment(
                a["compartment"], a["region"], a.get("space", ""), a.get("volume") or None,
                a.get("in_body", "true") == "true",
            )
    vol = {c.name: pid.get(c.volume, "") for c in comps.values() if c.volume}

    processes: dict[int, Process] = {}
    decays = set()
    for i in range(model.getNumReactions()):
        r = model.getReaction(i)
        rid = r.getId()
        law = r.getKineticLaw()
        if law is None or law.getMath() is None:
            raise _reject(rid, "it has no kinetic law")
        got = libsbml.formulaToL3String(law.getMath())
        dec = _pbpk_annotation(r, "decay")
        a = _pbpk_annotation(r, "process")
        if dec is not None:
            c = dec["compartment"]
            expected = f"{pid[DECAY_PARAMETER]} * {sp[(c, 'hot')]}"
            ends = (sp[(c, "hot")], sp[(c, "cold")])
            decays.add(c)
        elif a is not None:
            proc = Process(a["kind"], a["source"], a["target"], tuple(a["rate"].split()),
                           tuple(a.get("koff", "").split()), tuple(a.get("receptor", "").split()),
                           a.get("label", ""))
            try:
                expected = _law(proc, a["form"], sp, pid, vol)
            except KeyError as exc:
                raise _reject(rid, f"its pbpk annotation names unknown {exc}") from None
            ends = (sp[(proc.source, a["form"])], sp[(proc.target, a["form"])])
            idx = int(a["index"])
            if processes.setdefault(idx, proc) != proc:
                raise _reject(rid, "its hot and cold reactions record different processes")
        else:
            raise _reject(rid, "it has no pbpk annotation in a document written by pbpk.to_sbml")
        want = libsbml.formulaToL3String(libsbml.parseL3Formula(expected))
        refs = ([r.getReactant(k).getSpecies() for k in range(r.getNumReactants())],
                [r.getProduct(k).getSpecies() for k in range(r.getNumProducts())])
        if got != want or refs != ([ends[0]], [ends[1]]):
            raise GraphError(
                f"reaction {rid!r} was edited after export: its kinetic law or species no longer "
                f"match its pbpk annotation (expected {want!r}, found {got!r}); remove the "
                "pbpk annotations to import it as a plain SBML model, or edit the graph instead."
            )
    if decays != set(comps):
        raise GraphError("the document lacks physical-decay reactions for some compartments.")
    graph = ModelGraph(
        name=info.get("name", model.getId()),
        compartments=tuple(comps.values()),
        processes=tuple(processes[k] for k in sorted(processes)),
        dose_compartment=info["dose_compartment"],
        description=info.get("description", ""),
        metadata=json.loads(info.get("metadata") or "{}"),
    )
    return graph, params


# ---------------------------------------------------------------------------- simple documents
def _from_simple(model, libsbml):
    _refuse_dynamics(model)
    params: dict[str, float] = {}
    for i in range(model.getNumParameters()):
        p = model.getParameter(i)
        if not p.getConstant():
            raise GraphError(
                f"parameter {p.getId()!r} is not constant; only constant parameters are supported."
            )
        if not p.isSetValue() or not math.isfinite(p.getValue()):
            raise GraphError(f"parameter {p.getId()!r} has no finite value; give it one.")
        params[p.getId()] = float(p.getValue())

    # volume parameter of every SBML compartment
    volume: dict[str, str | None] = {}
    assigned = {model.getInitialAssignment(i).getSymbol(): model.getInitialAssignment(i)
                for i in range(model.getNumInitialAssignments())}
    for i in range(model.getNumCompartments()):
        c = model.getCompartment(i)
        cid = c.getId()
        if not c.getConstant():
            raise GraphError(f"compartment {cid!r} changes size; only constant sizes are supported.")
        if cid in assigned:
            node = assigned.pop(cid).getMath()
            if node is None or node.getType() != libsbml.AST_NAME or node.getName() not in params:
                raise GraphError(
                    f"the initial assignment of compartment {cid!r} must be a single constant "
                    "parameter (its volume); give the size as a number instead."
                )
            volume[cid] = node.getName()
        elif c.isSetSize() and math.isfinite(c.getSize()) and c.getSize() > 0:
            params[cid] = float(c.getSize())
            volume[cid] = cid
        else:
            volume[cid] = None
    if assigned:
        raise GraphError(
            f"initial assignments to {', '.join(sorted(assigned))} are not supported; give "
            "numbers instead."
        )

    comps: list[Compartment] = []
    species: dict[str, tuple[bool, str]] = {}  # id -> (amount-based, compartment)
    initial: dict[str, float] = {}
    for i in range(model.getNumSpecies()):
        s = model.getSpecies(i)
        sid = s.getId()
        if s.getBoundaryCondition() or s.getConstant():
            raise GraphError(
                f"species {sid!r} is a boundary or constant species; only species changed by "
                "reactions are supported (model a source as an initial amount instead)."
            )
        cid = s.getCompartment()
        amount_based = bool(s.getHasOnlySubstanceUnits())
        species[sid] = (amount_based, cid)
        if s.isSetInitialAmount():
            a0 = float(s.getInitialAmount())
        elif s.isSetInitialConcentration():
            if volume[cid] is None:
                raise GraphError(
                    f"species {sid!r} has an initial concentration in compartment {cid!r}, "
                    "which has no size; give the compartment a size or the species an amount."
                )
            a0 = float(s.getInitialConcentration()) * params[volume[cid]]
        else:
            a0 = 0.0
        initial[sid] = a0
        comps.append(Compartment(sid, sid, cid, volume[cid]))
    if not comps:
        raise GraphError("the SBML model has no species; nothing to import.")

    processes: list[Process] = []
    sink = None
    for i in range(model.getNumReactions()):
        r = model.getReaction(i)
        rid = r.getId()
        if r.getNumReactants() != 1 or r.getNumProducts() > 1:
            raise _reject(rid, f"it has {r.getNumReactants()} reactant(s) and "
                               f"{r.getNumProducts()} product(s)")
        refs = [r.getReactant(0)] + ([r.getProduct(0)] if r.getNumProducts() else [])
        for ref in refs:
            if ref.isSetStoichiometry() and ref.getStoichiometry() != 1.0:
                raise _reject(rid, f"species {ref.getSpecies()!r} has stoichiometry "
                                   f"{ref.getStoichiometry():g}")
            if ref.isSetId() and model.getInitialAssignment(ref.getId()) is not None:
                raise _reject(rid, "its stoichiometry is assigned")
        src = r.getReactant(0).getSpecies()
        law = r.getKineticLaw()
        if law is None or law.getMath() is None:
            raise _reject(rid, "it has no kinetic law")
        local = {}
        for k in range(law.getNumLocalParameters()):
            lp = law.getLocalParameter(k)
            name = f"{rid}_{lp.getId()}"
            if name in params or name in species or name in volume:
                raise _reject(rid, f"its local parameter {lp.getId()!r} clashes with {name!r}")
            if not lp.isSetValue() or not math.isfinite(lp.getValue()):
                raise _reject(rid, f"its local parameter {lp.getId()!r} has no finite value")
            params[name] = float(lp.getValue())
            local[lp.getId()] = name
        try:
            coef, atoms = _product(law.getMath(), libsbml)
        except _Unsupported as exc:
            raise _reject(rid, f"its kinetic law is not a product of parameters and one "
                               f"species (found {libsbml.formulaToL3String(law.getMath())!r}; "
                               f"unsupported part {exc})") from None
        # substitute symbols: local parameters, compartments -> volumes, concentrations
        canon: Counter = Counter()
        n_species: Counter = Counter()
        for (kind, name), power in atoms.items():
            if power == 0:
                continue
            if name in local:
                canon[(kind, local[name])] += power
            elif kind == "comp":
                if name not in params:
                    raise _reject(rid, f"'1 - {name}' needs {name!r} to be a constant parameter")
                canon[(kind, name)] += power
            elif name in species:
                n_species[name] += power
                amount_based, cid = species[name]
                if not amount_based:
                    if volume[cid] is None:
                        raise _reject(rid, f"compartment {cid!r} of species {name!r} has no size")
                    canon[("sym", volume[cid])] -= power
            elif name in volume:
                if volume[name] is None:
                    raise _reject(rid, f"compartment {name!r} has no size")
                canon[("sym", volume[name])] += power
            elif name in params:
                canon[("sym", name)] += power
            else:
                raise _reject(rid, f"its kinetic law uses {name!r}, which is not a constant "
                                   "parameter, compartment or species")
        if dict(+n_species) != {src: 1} or any(v < 0 for v in n_species.values()):
            raise _reject(rid, "its rate is not first order in its reactant "
                               f"({libsbml.formulaToL3String(law.getMath())!r})")
        if not coef > 0:
            raise _reject(rid, f"its rate constant factor {coef:g} is not positive")
        if coef != 1.0:
            name = f"{rid}_factor"
            if name in params or name in species or name in volume:
                raise _reject(rid, f"the name {name!r} for its numeric factor is taken")
            params[name] = coef
            canon[("sym", name)] += 1
        if r.getNumProducts():
            dst = r.getProduct(0).getSpecies()
        else:
            if sink is None:
                sink = "sink"
                while sink in species or sink in params or sink in volume:
                    sink += "_"
                comps.append(Compartment(sink, sink, "excreta", None, in_body=False))
            dst = sink
        v_src = volume[species[src][1]]
        kind = "transfer"
        if v_src is not None and canon[("sym", v_src)] == -1:
            canon[("sym", v_src)] = 0
            kind = "flow"
        tokens: list[str] = []
        for (akind, name), power in sorted(canon.items()):
            if power == 0:
                continue
            if akind == "comp":
                if power != 1:
                    raise _reject(rid, f"'(1 - {name})' appears with power {power}")
                tokens.append(f"1-{name}")
            else:
                tokens += [name if power > 0 else f"/{name}"] * abs(power)
        if not tokens:
            name = f"{rid}_factor"
            params[name] = 1.0
            tokens = [name]
        processes.append(Process(kind, src, dst, tuple(tokens), label=r.getName() or rid))

    dose = max(comps[: len(species)], key=lambda c: initial[c.name]).name
    graph = ModelGraph(
        name=model.getId() or model.getName() or "sbml_model",
        compartments=tuple(comps),
        processes=tuple(processes),
        dose_compartment=dose,
        description=model.getName() or "",
        metadata={"source": "SBML import",
                  "sbml_initial_amounts_nmol": json.dumps(initial, sort_keys=True)},
    )
    used = set(graph.parameter_names)
    return graph, {k: v for k, v in params.items() if k in used}
