"""Alpha-emitter dosimetry: local deposition per nuclide, RBE weighting, in-situ comparison.

``D(region) = sum over nuclides of TIA(nuclide, region) x E(nuclide) / m(region)``, with the
mean energies per decay of ICRP-107 (``pbpk/data/icrp107_energies.csv``) split into

* **alpha**: alpha particles and the recoiling nucleus (``alpha`` + ``alpha_recoil``),
  high-LET, weighted by ``rbe_alpha`` (default **5**, the value of the clinical 225Ac and
  213Bi dosimetry this is compared with, e.g. Kratochwil C et al., EJNMMI 2018;45:31: "Sv
  RBE5"); the RBE of alpha particles for deterministic effects is 3-7 in the literature and
  is an option here, not a fact;
* **electron**: beta, conversion and Auger electrons, weighted by ``rbe_electron`` (1).

Photons (gamma, X-ray, annihilation) are not deposited: they mostly leave the organ
(``photon_mev`` is reported per nuclide so the omission can be judged; for 212Pb the
2.6 MeV photon of 208Tl carries about 1.2 MeV per 212Pb decay). Alpha ranges (40-90 um) and
the electron ranges of these nuclides are small against organs, so local deposition is the
usual organ-level model; it does not resolve sub-organ (nephron, salivary acinus) geometry.

Units: TIA in MBq h, mass in kg, dose in Gy; the RBE-weighted dose is in Gy (RBE) (the "Sv" of
the clinical alpha papers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pbpk._errors import InvalidInputError, UnknownNameError
from pbpk._nuclides import PENETRATING_TYPES, decay_chain, get_nuclide
from pbpk._numbers import real_or_none
from twin.dose._errors import UnknownOrganError
from twin.dose._kernels import DECAYS_PER_MBQ_H, MEV_TO_J

__all__ = [
    "ALPHA_RBE_DEFAULT",
    "AlphaDoseResult",
    "alpha_organ_dose",
    "chain_dose",
    "in_situ_alpha_dose",
    "nuclide_energies_mev",
]

#: Default relative biological effectiveness of alpha particles (stated, see module docstring).
ALPHA_RBE_DEFAULT = 5.0

_ALPHA = ("alpha", "alpha_recoil")
_ELECTRON = ("beta_minus", "beta_plus", "ic_electron", "auger_electron")


def nuclide_energies_mev(nuclide: str, *, include_daughters: bool = False) -> dict[str, float]:
    """Alpha, electron and photon energy per decay (MeV), ICRP-107.

    ``include_daughters=True`` sums the whole chain weighted by the cumulative branching
    fractions (:func:`pbpk.decay_chain`): the energy per parent decay if every daughter decays
    where the parent decayed.
    """
    members = decay_chain(nuclide) if include_daughters else [(get_nuclide(nuclide).name, 1.0)]
    out = {"alpha": 0.0, "electron": 0.0, "photon": 0.0}
    for member, frac in members:
        per = get_nuclide(member).energy_per_decay_mev
        out["alpha"] += frac * math.fsum(per[t] for t in _ALPHA)
        out["electron"] += frac * math.fsum(per[t] for t in _ELECTRON)
        out["photon"] += frac * math.fsum(per[t] for t in PENETRATING_TYPES)
    return out


@dataclass(frozen=True)
class AlphaDoseResult:
    """Organ doses of an alpha emitter by local deposition.

    ``table`` is a pandas DataFrame indexed by region with ``mass_kg``, ``alpha_gy``,
    ``electron_gy``, ``absorbed_gy`` (alpha + electron), ``rbe_weighted_gy`` (Gy (RBE)) and
    ``<nuclide>_gy`` (absorbed dose from each nuclide). ``skipped`` lists regions with TIA but
    no mass (blood, excreta): no dose is given for them.
    """

    table: object
    rbe_alpha: float
    rbe_electron: float
    energies_mev: Mapping[str, Mapping[str, float]]
    skipped: tuple[str, ...] = ()
    method: str = ""
    notes: tuple[str, ...] = field(default=())

    def dose_gy(self, region: str, rbe_weighted: bool = False) -> float:
        col = "rbe_weighted_gy" if rbe_weighted else "absorbed_gy"
        if region not in self.table.index:
            raise InvalidInputError(
                f"no dose for region {region!r}; regions with a dose: {', '.join(self.table.index)}"
            )
        return float(self.table.loc[region, col])


def _real(value, name: str, what: str) -> float:
    """``value`` as a float if it is one real number (:func:`pbpk._numbers.real_or_none`), else
    a typed error."""
    v = real_or_none(value)
    if v is None:
        raise InvalidInputError(f"{name} must be a number ({what}), got {value!r}")
    return v


def _check_rbe(value, name: str) -> float:
    v = _real(value, name, "an RBE weight, e.g. 5 for alphas, 1 for electrons")
    if not (math.isfinite(v) and v > 0):
        raise InvalidInputError(
            f"{name} must be positive and finite (e.g. 5 for alphas, 1 for electrons), got {value!r}")
    return v


def _check_mass(value, name: str) -> float:
    v = _real(value, name, "kg")
    if not (math.isfinite(v) and v > 0):
        raise InvalidInputError(f"{name} must be positive and finite (kg), got {value!r}")
    return v


def _check_tia_value(value, name: str) -> float:
    v = _real(value, name, "MBq·h")
    if not (math.isfinite(v) and v >= 0):
        raise InvalidInputError(
            f"{name} must be finite and non-negative (MBq·h), got {value!r}; time-integrated "
            "activity cannot be negative"
        )
    return v


def _known_nuclide(name: str, where: str) -> None:
    """Typed error (the nuclide error, with the known names) naming the argument it came from."""
    try:
        get_nuclide(name)
    except UnknownNameError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _mapping(x):
    """A pandas Series (e.g. ``SimulationResult.tia_table()``) as a dict; anything else as is."""
    if not isinstance(x, Mapping) and type(x).__name__ == "Series" and hasattr(x, "items"):
        return dict(x.items())
    return x


def _check_masses(organ_masses_kg, name: str = "organ_masses_kg") -> dict[str, float]:
    organ_masses_kg = _mapping(organ_masses_kg)
    if not isinstance(organ_masses_kg, Mapping):
        raise InvalidInputError(
            f"{name} must be a mapping {{region: kg}}, got {type(organ_masses_kg).__name__}."
        )
    out = {}
    for region, m in organ_masses_kg.items():
        if not isinstance(region, str):
            raise InvalidInputError(f"{name}: region names must be strings, got {region!r}.")
        out[region] = _check_mass(m, f"{name}[{region!r}]")
    return out


def _check_tia_table(tia_mbq_h) -> dict[str, dict[str, float]]:
    if not isinstance(tia_mbq_h, Mapping) or not tia_mbq_h:
        raise InvalidInputError("tia_mbq_h must be a non-empty mapping {nuclide: {region: MBq h}}.")
    out = {}
    canonical = {}  # canonical nuclide name -> key as given: '225Ac' and 'Ac-225' are one nuclide
    for nuc, per_region in tia_mbq_h.items():
        if not isinstance(nuc, str):
            raise InvalidInputError(
                f"tia_mbq_h keys must be nuclide names such as 'Ac-225', got {nuc!r}."
            )
        _known_nuclide(nuc, "tia_mbq_h")
        name = get_nuclide(nuc).name
        if name in canonical:
            raise InvalidInputError(
                f"tia_mbq_h gives {name} twice ({canonical[name]!r} and {nuc!r}); give each nuclide "
                "once (add the TIAs per region if both are meant)."
            )
        canonical[name] = nuc
        per_region = _mapping(per_region)
        if not isinstance(per_region, Mapping):
            raise InvalidInputError(
                f"tia_mbq_h[{nuc!r}] must be a mapping {{region: MBq h}}, got {type(per_region).__name__}; "
                "give the TIA per nuclide and region, e.g. {'Ac-225': {'kidney': 12.0}}."
            )
        row = {}
        for region, value in per_region.items():
            if not isinstance(region, str):
                raise InvalidInputError(f"tia_mbq_h[{nuc!r}]: region names must be strings, got {region!r}.")
            row[region] = _check_tia_value(value, f"tia_mbq_h[{nuc!r}][{region!r}]")
        out[nuc] = row
    return out


def _check_energies(energies_mev, nuclides) -> dict[str, dict[str, float]]:
    """Energies per decay for each nuclide of ``nuclides`` (given ones checked, others ICRP-107)."""
    if energies_mev is not None and not isinstance(energies_mev, Mapping):
        raise InvalidInputError(
            f"energies_mev must be None or a mapping {{nuclide: {{'alpha': MeV, 'electron': MeV}}}}, "
            f"got {type(energies_mev).__name__}."
        )
    given = {}  # canonical nuclide name -> (key as given, energies): '213Bi' and 'Bi-213' are one
    for key in energies_mev or {}:
        if not isinstance(key, str):
            raise InvalidInputError(f"energies_mev keys must be nuclide names such as 'Bi-213', got {key!r}.")
        _known_nuclide(key, "energies_mev")  # a misspelt nuclide would otherwise be ignored silently
        canonical = get_nuclide(key).name
        if canonical in given:
            raise InvalidInputError(
                f"energies_mev gives {canonical} twice ({given[canonical][0]!r} and {key!r}); keep one.")
        given[canonical] = (key, energies_mev[key])
    energies = {}
    for nuc in nuclides:
        name = get_nuclide(nuc).name
        if name in given:
            e = given[name][1]
            if not isinstance(e, Mapping) or "alpha" not in e or "electron" not in e:
                raise InvalidInputError(
                    f"energies_mev[{nuc!r}] needs numbers for 'alpha' and 'electron' (MeV per decay)."
                )
            row = {}
            for kind in ("alpha", "electron"):
                v = _real(e[kind], f"energies_mev[{nuc!r}][{kind!r}]", "MeV per decay")
                if not (math.isfinite(v) and v >= 0):
                    raise InvalidInputError(
                        f"energies_mev[{nuc!r}][{kind!r}] must be finite and >= 0 MeV per decay, got {e[kind]!r}."
                    )
                row[kind] = v
            photon = e.get("photon", float("nan"))
            row["photon"] = _real(photon, f"energies_mev[{nuc!r}]['photon']", "MeV per decay")
            energies[nuc] = row
        else:
            energies[nuc] = nuclide_energies_mev(name)
    return energies


def alpha_organ_dose(
    tia_mbq_h: Mapping[str, Mapping[str, float]],
    organ_masses_kg: Mapping[str, float],
    *,
    energies_mev: Mapping[str, Mapping[str, float]] | None = None,
    rbe_alpha: float = ALPHA_RBE_DEFAULT,
    rbe_electron: float = 1.0,
    method: str = "local deposition",
) -> AlphaDoseResult:
    """Organ doses from TIA per nuclide and region by local deposition.

    Parameters
    ----------
    tia_mbq_h:
        ``{nuclide: {region: TIA in MBq h}}``.
    organ_masses_kg:
        ``{region: mass in kg}``; regions without a mass are skipped (and listed).
    energies_mev:
        ``{nuclide: {"alpha": MeV, "electron": MeV}}`` per decay; by default each nuclide's
        own ICRP-107 energies (daughters excluded: give them their own TIA, or pass the
        energies of a :class:`pbpk.ChainModel`, which include the short-lived followers).
    rbe_alpha, rbe_electron:
        RBE weights (default 5 and 1).
    """
    import pandas as pd

    ra = _check_rbe(rbe_alpha, "rbe_alpha")
    re_ = _check_rbe(rbe_electron, "rbe_electron")
    tia_mbq_h = _check_tia_table(tia_mbq_h)
    organ_masses_kg = _check_masses(organ_masses_kg)
    energies = _check_energies(energies_mev, tia_mbq_h)
    if not isinstance(method, str):
        raise InvalidInputError(f"method must be a string describing the dose method, got {method!r}.")
    regions: list[str] = []
    for per_region in tia_mbq_h.values():
        for region in per_region:
            if region not in regions:
                regions.append(region)
    rows, skipped = [], []
    j_per_mbq_h_mev = MEV_TO_J * DECAYS_PER_MBQ_H
    for region in regions:
        if region not in organ_masses_kg:
            skipped.append(region)
            continue
        m = float(organ_masses_kg[region])
        row = {"mass_kg": m, "alpha_gy": 0.0, "electron_gy": 0.0}
        for nuc, per_region in tia_mbq_h.items():
            tia = float(per_region.get(region, 0.0))
            da = tia * energies[nuc]["alpha"] * j_per_mbq_h_mev / m
            de = tia * energies[nuc]["electron"] * j_per_mbq_h_mev / m
            row["alpha_gy"] += da
            row["electron_gy"] += de
            row[f"{get_nuclide(nuc).name}_gy"] = da + de
        row["absorbed_gy"] = row["alpha_gy"] + row["electron_gy"]
        row["rbe_weighted_gy"] = ra * row["alpha_gy"] + re_ * row["electron_gy"]
        rows.append((region, row))
    table = pd.DataFrame([r for _, r in rows], index=pd.Index([n for n, _ in rows], name="region"))
    return AlphaDoseResult(table, ra, re_, energies, tuple(skipped), method)


def _default_masses(volumes_l: Mapping[str, float], organ_masses_kg, known_regions=None):
    """Organ volumes x 1 kg/L (the models' organ volumes are ICRP-89 masses), tumour volumes x
    1.04 kg/L (:func:`twin.dose.tumour_mass_kg`), overridden or completed by ``organ_masses_kg``
    (checked: known region names, positive finite masses)."""
    from twin.dose._organ import tumour_mass_kg

    masses = {k: (tumour_mass_kg(v) if k.startswith("tumour") and float(v) > 0 else float(v))
              for k, v in dict(volumes_l).items()}
    if organ_masses_kg is None:
        return masses
    given = _check_masses(organ_masses_kg)
    known = set(masses) | set(known_regions or ())
    unknown = [r for r in given if r not in known]
    if unknown:
        raise UnknownOrganError(
            f"organ_masses_kg has unknown region(s) {', '.join(map(repr, unknown))}; known regions "
            f"of this result: {', '.join(sorted(known))}. Check the spelling (a mass for a region "
            "without TIA would give no dose)."
        )
    masses.update(given)
    return masses


def chain_dose(
    result,
    *,
    organ_masses_kg: Mapping[str, float] | None = None,
    rbe_alpha: float = ALPHA_RBE_DEFAULT,
    rbe_electron: float = 1.0,
    in_situ: bool = False,
) -> AlphaDoseResult:
    """Organ doses of a :class:`pbpk.ChainResult` (daughter redistribution modelled).

    Each tracked nuclide deposits its own energy and that of its short-lived untracked
    followers (``result.energies_mev``) in the region where it decays. ``in_situ=True`` gives
    the comparison in which every daughter decays where the parent decayed. Masses default to
    the model's organ volumes x 1 kg/L and tumour volumes x 1.04 kg/L; ``organ_masses_kg``
    overrides or adds.
    """
    for attr in ("tia_mbq_h", "in_situ_tia", "energies_mev", "organ_volumes_l"):
        if not hasattr(result, attr):
            raise InvalidInputError(
                f"chain_dose needs a pbpk.ChainResult (from pbpk.simulate_chain), got {type(result).__name__}; "
                "for a single-nuclide result use alpha_organ_dose or in_situ_alpha_dose."
            )
    if not isinstance(in_situ, (bool, np.bool_)):
        raise InvalidInputError(f"in_situ must be True or False, got {in_situ!r}.")
    in_situ = bool(in_situ)
    tia = result.in_situ_tia if in_situ else result.tia_mbq_h
    regions_with_tia = set().union(*(set(v) for v in result.tia_mbq_h.values()),
                                   *(set(v) for v in result.in_situ_tia.values()))
    masses = _default_masses(result.organ_volumes_l, organ_masses_kg, regions_with_tia)
    method = "in situ (daughters decay where the parent decayed)" if in_situ else "daughter redistribution"
    return alpha_organ_dose(tia, masses, energies_mev=result.energies_mev, rbe_alpha=rbe_alpha,
                            rbe_electron=rbe_electron, method=method)


def in_situ_alpha_dose(
    tia_mbq_h: Mapping[str, float],
    nuclide: str,
    organ_masses_kg: Mapping[str, float],
    *,
    rbe_alpha: float = ALPHA_RBE_DEFAULT,
    rbe_electron: float = 1.0,
) -> AlphaDoseResult:
    """Doses from the parent's TIA alone with every daughter decaying in place (conventional).

    ``tia_mbq_h`` is ``{region: TIA}`` of the parent (e.g. ``pbpk.simulate(...).tia_table()``);
    the chain energy per parent decay comes from :func:`nuclide_energies_mev` with
    ``include_daughters=True``.
    """
    name = get_nuclide(nuclide).name
    energies = {name: nuclide_energies_mev(name, include_daughters=True)}
    return alpha_organ_dose({name: dict(tia_mbq_h)}, organ_masses_kg, energies_mev=energies,
                            rbe_alpha=rbe_alpha, rbe_electron=rbe_electron,
                            method="in situ (whole chain at the parent's site)")
