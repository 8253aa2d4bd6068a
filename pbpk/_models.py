"""Shipped whole-body radioligand models: PSMA (Kletting/Begum lineage) and SSTR2.

Topology (research notes §1.2-1.5): venous plasma -> lungs -> arterial plasma -> organs ->
venous plasma, with the portal circulation (spleen and GI drain into the liver, whose outflow
carries all three flows). Receptor-positive organs have vascular, interstitial, bound and
internalised compartments; receptor-negative tissues vascular and interstitial; brain
vascular only. The kidney has vascular, tubular, peritubular, bound and internalised
compartments; ligand reaches the (apical) receptors only by glomerular filtration.

Fixed defects of the public implementation (research notes §1.10): liver outflow carries
liver + spleen + GI flow; rest-of-body plasma excludes arterial and venous plasma; lung flow
equals the sum of all systemic flows, tumours included; the kidney reabsorption return uses
the peritubular volume; the decay constant is the nuclide's (radioactivedecay); GFR comes
from the patient (eGFR), not a fixed MAG3 value.
"""

from __future__ import annotations

import dataclasses
import json
import math
from functools import lru_cache
from importlib import resources

import numpy as np

from pbpk._errors import InvalidInputError
from pbpk._graph import Compartment, ModelGraph, binding, exchange, flow, transfer
from pbpk._ligands import Ligand, get_ligand
from pbpk._model import PBPKModel
from pbpk._numbers import real_or_none
from pbpk._physiology import FLOW_FRACTIONS, Physiology

__all__ = ["psma_model", "sstr_model", "theranostic_pair", "RELEASE_MODES"]

RELEASE_MODES = ("sink", "interstitium", "plasma")
_NON_RECEPTOR = ("heart", "muscle", "skin", "adipose", "red_marrow", "bone", "rest")
_PORTAL = ("spleen", "gi")

_S = {
    "phys": "ICRP-89 reference masses / Kletting-Begum PBPK physiology (research notes §2.1), "
            "scaled to the patient",
    "rho": "receptor density x organ volume (research notes §2.3)",
    "krel": "release rates of the PBPK lineage (PyCNO/Bartelink, research notes §2.5)",
    "renal": "phi x GFR with phi 0.66 and f_exc 0.96 (both public codes, research notes §2.6)",
}


@lru_cache(maxsize=1)
def _calibration() -> dict:
    text = resources.files("pbpk").joinpath("data/calibration.json").read_text("utf-8")
    return json.loads(text)


def _organ(name: str, space: str, volume: str | None = None, region: str | None = None):
    return Compartment(f"{name}.{space}", region or name, space, volume)


def _build_graph(name, receptor_organs, kidney_mode, release, protein_binding, description):
    """Whole-body graph with the given receptor organs; every tissue drains to venous plasma."""
    if release not in RELEASE_MODES:
        raise InvalidInputError(f"release = {release!r} is not known; use one of {', '.join(RELEASE_MODES)}.")
    comps = [
        Compartment("arterial.plasma", "plasma", "plasma", "V_art"),
        Compartment("venous.plasma", "plasma", "plasma", "V_ven"),
        _organ("lungs", "vascular", "V_lungs_vas"),
        _organ("lungs", "interstitial", "V_lungs_int"),
        _organ("brain", "vascular", "V_brain_vas"),
    ]
    procs = [
        flow("venous.plasma", "lungs.vascular", "Q_lungs"),
        exchange("lungs.vascular", "lungs.interstitial", "PS_lungs"),
        flow("lungs.vascular", "arterial.plasma", "Q_lungs"),
        flow("arterial.plasma", "brain.vascular", "Q_brain"),
        flow("brain.vascular", "venous.plasma", "Q_brain"),
    ]
    if protein_binding:  # protein-bound ligand circulates in plasma only; linear (albumin in excess)
        comps += [
            Compartment("arterial.protein_bound", "plasma", "protein_bound", "V_art"),
            Compartment("venous.protein_bound", "plasma", "protein_bound", "V_ven"),
        ]
        procs += [
            flow("venous.protein_bound", "arterial.protein_bound", "Q_lungs"),
            flow("arterial.protein_bound", "venous.protein_bound", "Q_lungs"),
        ]
        for side in ("arterial", "venous"):
            procs += [
                transfer(f"{side}.plasma", f"{side}.protein_bound", "k_pb_on"),
                transfer(f"{side}.protein_bound", f"{side}.plasma", "k_pb_off"),
            ]
    if release == "sink":
        comps.append(Compartment("released.metabolites", "released", "excreta", None, in_body=False))
    comps.append(Compartment("urine.bladder", "urine", "excreta", None, in_body=False))

    def release_target(organ):
        if release == "sink":
            return "released.metabolites"
        if release == "plasma":
            return "venous.plasma"
        return "kidney.peritubular" if organ == "kidney" else f"{organ}.interstitial"

    def perfuse(organ):
        procs.append(flow("arterial.plasma", f"{organ}.vascular", f"Q_{organ}"))
        if organ in _PORTAL:
            procs.append(flow(f"{organ}.vascular", "liver.vascular", f"Q_{organ}"))
        elif organ == "liver":
            for o in ("liver", *_PORTAL):
                procs.append(flow("liver.vascular", "venous.plasma", f"Q_{o}"))
        else:
            procs.append(flow(f"{organ}.vascular", "venous.plasma", f"Q_{organ}"))

    for organ in receptor_organs:
        comps += [
            _organ(organ, "vascular", f"V_{organ}_vas"),
            _organ(organ, "interstitial", f"V_{organ}_int"),
            _organ(organ, "bound"),
            _organ(organ, "internalised"),
        ]
        perfuse(organ)
        procs += [
            exchange(f"{organ}.vascular", f"{organ}.interstitial", f"PS_{organ}"),
            binding(f"{organ}.interstitial", f"{organ}.bound", "kon", "koff", f"R_{organ}"),
            transfer(f"{organ}.bound", f"{organ}.internalised", "kint"),
            transfer(f"{organ}.internalised", release_target(organ), f"krel_{organ}"),
        ]
    for organ in _NON_RECEPTOR:
        comps += [_organ(organ, "vascular", f"V_{organ}_vas"), _organ(organ, "interstitial", f"V_{organ}_int")]
        perfuse(organ)
        procs.append(exchange(f"{organ}.vascular", f"{organ}.interstitial", f"PS_{organ}"))
    for organ in _PORTAL:
        if organ not in receptor_organs:
            comps += [_organ(organ, "vascular", f"V_{organ}_vas"), _organ(organ, "interstitial", f"V_{organ}_int")]
            perfuse(organ)
            procs.append(exchange(f"{organ}.vascular", f"{organ}.interstitial", f"PS_{organ}"))
    if "liver" not in receptor_organs:
        comps += [_organ("liver", "vascular", "V_liver_vas"), _organ("liver", "interstitial", "V_liver_int")]
        perfuse("liver")
        procs.append(exchange("liver.vascular", "liver.interstitial", "PS_liver"))

    # kidney: filtration -> tubule (receptor binding and/or reabsorption) -> urine
    comps += [
        _organ("kidney", "vascular", "V_kidney_vas"),
        _organ("kidney", "tubule", "V_kidney_tub"),
        _organ("kidney", "peritubular", "V_kidney_pt"),
        _organ("kidney", "bound"),
        _organ("kidney", "internalised"),
    ]
    perfuse("kidney")
    procs += [
        flow("kidney.vascular", "kidney.tubule", "gfr_eff"),
        flow("kidney.tubule", "urine.bladder", "gfr_eff", "f_exc"),
        flow("kidney.tubule", "kidney.peritubular", "gfr_eff", "1-f_exc"),
        flow("kidney.peritubular", "kidney.vascular", "gfr_eff", "1-f_exc"),
        binding("kidney.tubule", "kidney.bound", "kon", "koff", "R_kidney"),
        transfer("kidney.bound", "kidney.internalised", "kint"),
        transfer("kidney.internalised", release_target("kidney"), "krel_kidney"),
    ]
    if kidney_mode == "receptor+reabsorption":
        procs.append(transfer("kidney.tubule", "kidney.internalised", "k_reab"))
    return ModelGraph(name, tuple(comps), tuple(procs), "venous.plasma", description=description)


def _common_parameters(phys: Physiology, organs: dict[str, float], ligand: Ligand,
                       protein_binding: bool) -> tuple[dict, dict]:
    """Volumes, flows, PS, renal and ligand parameters for the organs present."""
    p: dict[str, float] = {}
    src: dict[str, str] = {}
    vp = phys.plasma_volume_l
    p["V_art"] = 0.105 * vp
    p["V_ven"] = 0.225 * vp
    systemic_flow = 0.0
    vascular_total = p["V_art"] + p["V_ven"]
    tissue_total = 0.0
    for organ, vol in organs.items():
        if organ in ("rest", "kidney"):
            continue
        p[f"V_{organ}_vas"] = phys.vascular_volume_l(organ, vol)
        vascular_total += p[f"V_{organ}_vas"]
        tissue_total += vol
        if organ == "lungs":
            p["V_lungs_int"] = phys.interstitial_volume_l("lungs", vol)
            p["PS_lungs"] = phys.ps_l_per_h("lungs", vol)
            continue
        if organ != "brain":
            p[f"V_{organ}_int"] = phys.interstitial_volume_l(organ, vol)
            p[f"PS_{organ}"] = phys.ps_l_per_h(organ, vol)
        p[f"Q_{organ}"] = phys.plasma_flow_l_per_h(organ, vol)
        systemic_flow += p[f"Q_{organ}"]
    # kidney
    vk = organs["kidney"]
    tissue_total += vk
    p["V_kidney_vas"] = phys.vascular_volume_l("kidney", vk)
    p["V_kidney_tub"] = 0.15 * vk
    p["V_kidney_pt"] = (2.0 / 3.0) * (vk - p["V_kidney_tub"] - p["V_kidney_vas"])
    vascular_total += p["V_kidney_vas"]
    p["Q_kidney"] = phys.plasma_flow_l_per_h("kidney", vk)
    systemic_flow += p["Q_kidney"]
    # rest of body: what is left of body weight, plasma volume and cardiac output
    rest_vol = phys.weight_kg - tissue_total  # 1 kg = 1 L
    p["V_rest_vas"] = vp - vascular_total
    p["V_rest_int"] = 4.1 * p["V_rest_vas"]
    p["PS_rest"] = phys.ps_l_per_h("rest", rest_vol)
    if rest_vol <= 0 or p["V_rest_vas"] <= 0:
        what = "tissue volume" if rest_vol <= 0 else "vascular (plasma) volume"
        value = rest_vol if rest_vol <= 0 else p["V_rest_vas"]
        raise InvalidInputError(
            f"the organ and tumour volumes given leave no {what} for the rest of the body "
            f"({value:.3g} L); check organ_volumes_l and tumour volumes (L) against the body "
            f"weight ({phys.weight_kg:g} kg)."
        )
    budget_note = _flow_budget(p, phys, organs)
    p["Q_lungs"] = phys.cardiac_plasma_output_l_per_h
    p["gfr_eff"] = 0.66 * phys.gfr_l_per_h
    p["f_exc"] = 0.96
    p["kon"] = ligand.kon_l_per_nmol_h
    p["koff"] = ligand.koff_per_h
    p["kint"] = ligand.kint_per_h
    for k in p:
        src[k] = _S["phys"]
    src.update(gfr_eff=_S["renal"], f_exc=_S["renal"], kon=ligand.sources, koff=ligand.sources,
               kint=ligand.sources)
    src["Q_rest"] = f"{_S['phys']}; cardiac plasma output minus all other organ flows"
    if budget_note:
        for k in budget_note[0]:
            src[k] = f"{src[k]}; {budget_note[1]}"
        src["Q_rest"] = f"{src['Q_rest']}; {budget_note[1]}"
    if protein_binding:
        # fast linear binding: bound/free = fb / (1 - fb), equilibrating in ~1 min
        fb = ligand.protein_bound_fraction
        p["k_pb_off"] = 60.0
        p["k_pb_on"] = 60.0 * fb / (1.0 - fb)
        src["k_pb_on"] = src["k_pb_off"] = f"equilibrium bound fraction {fb:.2f}: {ligand.sources}"
    return p, src


#: Smallest share of the cardiac plasma output left to the rest of the body (see
#: :func:`_flow_budget`). The reference patients keep 3.3 % (PSMA) and 1.9 % (SSTR2).
MIN_REST_FLOW_FRACTION = 0.01


def _flow_budget(p: dict, phys: Physiology, organs: dict[str, float]) -> tuple[tuple, str] | None:
    """Set ``Q_rest`` = cardiac plasma output F minus every organ flow, keeping it >= 1 % of F.

    Flows are fractions of F (kidney x the Bartelink age factor, > 1 below age 60; the
    lineage's fractions sum to 0.955) or per volume (tumours and glands). When they would
    leave less than ``MIN_REST_FLOW_FRACTION`` x F to the rest of the body (young patients,
    large tumours), the fraction-based flows are scaled down by one common factor so that
    exactly that minimum is left; the rule is continuous (factor 1 at the threshold) and
    leaves every other patient unchanged. Returns the scaled flow names and a source note,
    or ``None`` when nothing was scaled. Raises when the per-volume flows alone exceed the
    budget.
    """
    F = phys.cardiac_plasma_output_l_per_h
    floor = MIN_REST_FLOW_FRACTION * F
    fraction_based, volume_based = [], []
    systemic = 0.0  # summed in the order the flows were built (kidney last)
    for organ in (*(o for o in organs if o not in ("lungs", "rest", "kidney")), "kidney"):
        key = "tumour" if organ.startswith("tumour") else organ
        (fraction_based if key in FLOW_FRACTIONS else volume_based).append(f"Q_{organ}")
        systemic += p[f"Q_{organ}"]
    q_frac = sum(p[k] for k in fraction_based)
    q_vol = sum(p[k] for k in volume_based)
    rest = F - systemic
    if rest >= floor:
        p["Q_rest"] = rest
        return None
    available = F - floor - q_vol
    if available <= 0.05 * q_frac:
        largest = ", ".join(f"{k} {p[k]:.3g}" for k in sorted(volume_based, key=p.get, reverse=True)[:3])
        raise InvalidInputError(
            f"the plasma flow budget is exceeded: the per-volume flows of the tumours and glands "
            f"({q_vol:.3g} L/h; largest {largest} L/h) leave almost none of the cardiac plasma "
            f"output ({F:.3g} L/h, of which {MIN_REST_FLOW_FRACTION:.0%} is kept for the rest of "
            f"the body) to the organs; check the tumour/lesion volumes (L) and organ_volumes_l."
        )
    scale = available / q_frac
    for k in fraction_based:
        p[k] *= scale
    p["Q_rest"] = F - sum(p[k] for k in fraction_based) - q_vol
    note = (f"x{scale:.4g} flow-budget scaling: the organ flows (fractions of the cardiac plasma "
            f"output, kidney x age factor {phys.renal_age_factor:.3g}) plus the per-volume tumour "
            f"and gland flows ({q_vol:.3g} L/h) would leave less than "
            f"{MIN_REST_FLOW_FRACTION:.0%} of it to the rest of the body")
    return tuple(fraction_based), note


def _apply_calibration(p: dict, src: dict, key: str) -> None:
    cal = _calibration()[key]
    for name, value in cal["multipliers"].items():
        p[name] *= value
        src[name] = f"{src.get(name, '')}; x{value:.4g} calibrated ({cal['summary']})"


def _tumours(volumes_l, densities, default_density: float, what: str) -> tuple[dict, tuple]:
    """Validated tumour volumes {"tumour1": L, ...} and their receptor densities (nmol/L)."""
    def reals(values) -> tuple[float, ...] | None:
        # element by element, so that a bool (True is not 1 L) or a string is refused
        try:
            raw = np.asarray(values, dtype=object)
        except (TypeError, ValueError):
            return None
        if raw.ndim > 1:
            return None
        out = tuple(real_or_none(v) for v in np.atleast_1d(raw))
        return None if any(v is None for v in out) else out

    vols = reals(volumes_l)
    dens = reals(densities) if densities is not None else (
        None if vols is None else (default_density,) * len(vols))
    if vols is None or dens is None:
        raise InvalidInputError(f"{what}_volumes_l and {what}_receptor_nmol_per_l must be numbers "
                                f"(L and nmol/L), one per tumour; got {volumes_l!r} and {densities!r}.")
    if len(dens) != len(vols):
        raise InvalidInputError(f"give one receptor density per tumour ({what}_receptor_nmol_per_l).")
    for i, v in enumerate(vols):
        if not 0 < v < 5:
            raise InvalidInputError(f"{what}_volumes_l[{i}] = {v} L must be between 0 and 5 L.")
    for i, d in enumerate(dens):
        if not (math.isfinite(d) and d > 0):
            raise InvalidInputError(f"{what}_receptor_nmol_per_l[{i}] = {d} must be a finite density > 0 nmol/L.")
    return {f"tumour{i + 1}": v for i, v in enumerate(vols)}, dens


def _organ_volumes(phys: Physiology, receptor, tumours: dict) -> dict[str, float]:
    """Volumes (L) of every organ the whole-body graph resolves."""
    organs = {o: phys.organ_volume_l(o) for o in receptor if o not in tumours}
    organs.update(tumours)
    for o in ("lungs", "brain", "heart", "muscle", "skin", "adipose", "red_marrow", "bone", "kidney"):
        organs[o] = phys.organ_volume_l(o)
    return organs


def _physiology(physiology) -> Physiology:
    if physiology is None:
        return Physiology.reference("male")
    if not isinstance(physiology, Physiology):
        raise InvalidInputError(
            f"physiology must be a pbpk.Physiology (e.g. pbpk.Physiology.for_patient(...)), got "
            f"{type(physiology).__name__}."
        )
    return physiology


def psma_model(
    ligand: str = "PSMA-617",
    nuclide: str | None = None,
    physiology: Physiology | None = None,
    *,
    lesion_volumes_l: tuple[float, ...] = (0.012,),
    lesion_receptor_nmol_per_l: tuple[float, ...] | None = None,
    tumour_rest_volume_l: float = 0.05,
    lacrimal: bool = True,
    release: str = "sink",
    protein_binding: bool = False,
    calibrated: bool = True,
) -> PBPKModel:
    """The whole-body PSMA model for a PSMA ligand (177Lu-PSMA-617 by default).

    Parameters
    ----------
    ligand:
        ``"PSMA-617"``, ``"PSMA-I&T"`` (therapy) or ``"PSMA-11"``, ``"DCFPyL"`` (imaging).
    nuclide:
        Label; defaults to the ligand's usual nuclide (177Lu, 68Ga, 18F).
    physiology:
        Patient physiology; the ICRP-89 reference male by default.
    lesion_volumes_l, lesion_receptor_nmol_per_l:
        Individually modelled lesions (``tumour1``, ``tumour2``, ...) and their PSMA density;
        default 50 nM (mean of the 13 Begum-cohort lesion fits, research notes §2.3).
    tumour_rest_volume_l:
        Total tumour volume not segmented as lesions (``tumour_rest``; 0 to omit).
    lacrimal:
        Model the lacrimal glands (an organ at risk for PSMA ligands).
    release:
        Where internalised activity goes when released: ``"sink"`` (default, as the full
        public model), ``"interstitium"`` or ``"plasma"``.
    protein_binding:
        Add plasma-protein-bound ligand in arterial and venous plasma (not filtered, does not
        leave the circulation).
    calibrated:
        Apply the multipliers fitted to the clinical anchors (``pbpk/data/calibration.json``).

    Notes
    -----
    Plasma-flow budget (both shipped models): organ flows are fractions of the cardiac plasma
    output F (summing to 0.955; the kidney's times the age factor
    :attr:`Physiology.renal_age_factor`, > 1 below age 60) or per volume (lesions, tumour
    rest, glands); the rest of the body gets what is left. When that would be under
    ``MIN_REST_FLOW_FRACTION`` (1 %) of F (patients under about 42-50 y, lesions above
    about 0.2-0.3 L), every fraction-based flow is scaled down by one common factor so that
    the rest keeps exactly 1 % of F; the factor is recorded in the flows' ``sources``.
    Patients with more than 1 % left (the reference patients included) are unchanged. Only
    when the per-volume flows alone nearly exhaust F is the model refused.
    """
    lig = get_ligand(ligand)
    if lig.target != "PSMA":
        raise InvalidInputError(f"{lig.name} targets {lig.target}; use sstr_model() for it.")
    phys = _physiology(physiology)
    tumours, dens = _tumours(lesion_volumes_l, lesion_receptor_nmol_per_l, 50.0, "lesion")
    if (isinstance(tumour_rest_volume_l, bool) or not isinstance(tumour_rest_volume_l, (int, float, np.floating))
            or not math.isfinite(tumour_rest_volume_l) or tumour_rest_volume_l < 0):
        raise InvalidInputError(f"tumour_rest_volume_l = {tumour_rest_volume_l!r} must be a finite volume "
                                ">= 0 L (0 to omit the tumour rest).")
    if tumour_rest_volume_l > 0:
        tumours["tumour_rest"] = float(tumour_rest_volume_l)
    receptor = [*tumours, "salivary", *(["lacrimal"] if lacrimal else []), "prostate", "liver",
                "spleen", "gi"]
    if phys.sex == "female":
        receptor.remove("prostate")
    organs = _organ_volumes(phys, receptor, tumours)
    name = f"psma_{lig.name}"
    graph = _build_graph(name, tuple(receptor), "receptor", release, protein_binding,
                         f"Whole-body PSMA PBPK model ({lig.name})")
    p, src = _common_parameters(phys, organs, lig, protein_binding)
    # receptor amounts (nmol) = density (nmol/L) x organ volume
    rho_lesion = dict(zip(tumours, dens))
    # Bartelink: TumourRest = 1.4 x mean lesion density; with no lesion modelled, the default
    # lesion density (50 nmol/L) sets the prostate and other PSMA-expressing tissues
    mean_lesion = sum(dens) / len(dens) if dens else 50.0
    rho_rest = 1.4 * mean_lesion
    rho = {"salivary": 40.0, "lacrimal": 42.0, "kidney": 16.0}
    rho["prostate"] = 0.1 * rho_rest
    rho["liver"] = 0.05 * rho["prostate"]
    rho["spleen"] = 0.2 * rho["kidney"]
    rho["gi"] = 0.06 * rho["prostate"]
    for t in tumours:
        rho[t] = rho_lesion.get(t, rho_rest)
    krel_per_min = {"kidney": 2.9e-4, "salivary": 4.2e-4}
    for organ in (*receptor, "kidney"):
        p[f"R_{organ}"] = rho[organ] * organs[organ]
        src[f"R_{organ}"] = _S["rho"]
        k = 1.5e-4 if organ.startswith("tumour") else krel_per_min.get(organ, 2.9e-4)
        p[f"krel_{organ}"] = k * 60.0
        src[f"krel_{organ}"] = _S["krel"]
    if calibrated:
        _apply_calibration(p, src, "psma")
    return PBPKModel(graph, nuclide or lig.default_nuclide, p, ligand=lig.name,
                     default_molar_activity_mbq_per_nmol=lig.molar_activity_mbq_per_nmol,
                     sources=src, description=graph.description, organ_volumes_l=organs)


def sstr_model(
    ligand: str = "DOTATATE",
    nuclide: str | None = None,
    physiology: Physiology | None = None,
    *,
    tumour_volumes_l: tuple[float, ...] = (0.02,),
    tumour_receptor_nmol_per_l: tuple[float, ...] | None = None,
    release: str = "sink",
    protein_binding: bool = False,
    calibrated: bool = True,
) -> PBPKModel:
    """The SSTR2 variant (177Lu-DOTATATE/DOTATOC, 68Ga-DOTATATE).

    Receptor organs: tumours, spleen, liver, kidney, adrenals, thyroid, GI (pancreas). The
    kidney adds non-saturable tubular reabsorption (megalin/cubilin) to a small SSTR2 term.
    Tumour SSTR2 density defaults to 34 nM (Jimenez-Franco 2021, minimum for TCP >= 99 %).
    Kinetic constants of SSTR2 ligands are not in retrievable sources: the organ receptor
    amounts and the reabsorption rate are calibrated to published 177Lu-DOTATATE dosimetry
    (see ``pbpk/data/calibration.json``). Organ flows follow the plasma-flow budget rule of
    :func:`psma_model` (Notes).
    """
    lig = get_ligand(ligand)
    if lig.target != "SSTR2":
        raise InvalidInputError(f"{lig.name} targets {lig.target}; use psma_model() for it.")
    phys = _physiology(physiology)
    tumours, dens = _tumours(tumour_volumes_l, tumour_receptor_nmol_per_l, 34.0, "tumour")
    receptor = [*tumours, "spleen", "liver", "adrenals", "thyroid", "gi"]
    organs = _organ_volumes(phys, receptor, tumours)
    name = f"sstr_{lig.name}"
    graph = _build_graph(name, tuple(receptor), "receptor+reabsorption", release, protein_binding,
                         f"Whole-body SSTR2 PBPK model ({lig.name})")
    p, src = _common_parameters(phys, organs, lig, protein_binding)
    # SSTR2 organ densities (nmol/L): spleen 24 and liver 4.3 from Siebinga 2021 amounts
    # (4.40 and 7.80 nmol); the others are starting values for calibration.
    rho = {"spleen": 24.0, "liver": 4.3, "kidney": 2.0, "adrenals": 20.0, "thyroid": 0.6, "gi": 1.0}
    for t, d in zip(tumours, dens):
        rho[t] = d
    for organ in (*receptor, "kidney"):
        p[f"R_{organ}"] = rho[organ] * organs[organ]
        src[f"R_{organ}"] = "SSTR2 density x organ volume (research notes §2.4)"
        k = 1.5e-4 if organ.startswith("tumour") else 2.9e-4
        p[f"krel_{organ}"] = k * 60.0
        src[f"krel_{organ}"] = _S["krel"] + " (PSMA values; SSTR2 values not found)"
    p["k_reab"] = 0.05 * 60.0
    src["k_reab"] = "tubular reabsorption rate, starting value for calibration"
    if calibrated:
        _apply_calibration(p, src, "sstr")
    return PBPKModel(graph, nuclide or lig.default_nuclide, p, ligand=lig.name,
                     default_molar_activity_mbq_per_nmol=lig.molar_activity_mbq_per_nmol,
                     sources=src, description=graph.description, organ_volumes_l=organs)


def theranostic_pair(imaging: PBPKModel, therapy_ligand: str, therapy_nuclide: str | None = None) -> PBPKModel:
    """The therapy agent in the same patient: one physiology, agent constants swapped.

    Every patient-specific parameter of ``imaging`` (volumes, flows, PS, receptor amounts,
    release rates, renal parameters; e.g. after calibration on the PET) is kept; the ligand's
    kon, koff, kint, plasma-protein binding, default molar activity and the nuclide come
    from the therapy agent.
    """
    if not isinstance(imaging, PBPKModel):
        raise InvalidInputError(
            f"imaging must be a pbpk.PBPKModel (e.g. pbpk.psma_model('PSMA-11')), got "
            f"{type(imaging).__name__}."
        )
    lig = get_ligand(therapy_ligand)
    img = get_ligand(imaging.ligand)
    if lig.target != img.target:
        raise InvalidInputError(
            f"{img.name} ({img.target}) and {lig.name} ({lig.target}) do not share a target; a "
            "theranostic pair needs the same receptor."
        )
    params = {**imaging.parameters, "kon": lig.kon_l_per_nmol_h, "koff": lig.koff_per_h,
              "kint": lig.kint_per_h}
    sources = {**imaging.sources, "kon": lig.sources, "koff": lig.sources, "kint": lig.sources}
    if "k_pb_on" in params:
        fb = lig.protein_bound_fraction
        params["k_pb_on"] = params["k_pb_off"] * fb / (1.0 - fb)
    return dataclasses.replace(
        imaging,
        nuclide=therapy_nuclide or lig.default_nuclide,
        parameters=params,
        sources=sources,
        ligand=lig.name,
        default_molar_activity_mbq_per_nmol=lig.molar_activity_mbq_per_nmol,
        description=f"{imaging.description}; therapy agent {lig.name}",
    )
