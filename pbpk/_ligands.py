"""Ligand library: agent-specific kinetic constants with their sources.

Units: kon in L/(nmol h), koff and kint in 1/h (published values are per minute and are
converted here, x 60). ``protein_bound_fraction`` is the fraction bound to plasma proteins,
used when a model is built with ``protein_binding=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbpk._errors import InvalidInputError, UnknownNameError

__all__ = ["Ligand", "LIGANDS", "get_ligand"]


@dataclass(frozen=True)
class Ligand:
    name: str
    target: str  # "PSMA" or "SSTR2"
    kon_l_per_nmol_h: float
    koff_per_h: float
    kint_per_h: float
    default_nuclide: str
    molar_activity_mbq_per_nmol: float
    protein_bound_fraction: float
    sources: str
    role: str = "therapy"  # or "imaging"

    @property
    def kd_nmol_per_l(self) -> float:
        return self.koff_per_h / self.kon_l_per_nmol_h


_MIN = 60.0  # per minute -> per hour

# kint: the lineage's 0.001/min under-predicts clinical kidney and SG retention ~4-fold
# (research notes §1.12); 0.01/min, the top of the range Begum 2019 explored (1e-4 to 1e-2
# /min), reproduces clinical levels and is the default for every PSMA ligand.
_KINT_PSMA = 0.01 * _MIN

LIGANDS: dict[str, Ligand] = {
    "PSMA-617": Ligand(
        "PSMA-617", "PSMA", 0.09 * _MIN, 0.09 * _MIN, _KINT_PSMA, "Lu-177", 82.0, 0.65,
        "kon 0.09 L/nmol/min, koff 0.09/min (KD 1 nM) [Bartelink R model, Target-Site-PBPK-in-"
        "oncology, Apache-2.0]; 82 MBq/nmol (7.4 GBq ~ 90 nmol) [same]; plasma-protein binding "
        "~60-70 % [research notes §1.6, unverified]; kint see module note",
    ),
    "PSMA-I&T": Ligand(
        "PSMA-I&T", "PSMA", 0.046 * _MIN, 0.368 * _MIN, _KINT_PSMA, "Lu-177", 80.0, 0.786,
        "kon 0.046 L/nmol/min, koff 0.368/min (KD 8 nM, natLu-PSMA-I&T IC50 7.9 nM) [PyCNO "
        "SBML; JNM table of PSMA-I&T affinities]; 7.3 GBq with 91 nmol [EJNMMI Phys 2020 "
        "s40658-020-00311-0]; HSA binding 78.6 % [JNM PSMA-I&T/I&F table]",
    ),
    "PSMA-11": Ligand(
        "PSMA-11", "PSMA", 0.046 * _MIN, 0.046 * 12.0 * _MIN, _KINT_PSMA, "Ga-68", 72.0, 0.3,
        "KD ~12 nM (Ki of Ga-PSMA-11, literature recollection, unverified) with the I&T kon; "
        "115 MBq with 1.6 nmol [EJNMMI Phys 2020] -> 72 MBq/nmol; protein binding assumed 30 %",
        role="imaging",
    ),
    "DCFPyL": Ligand(
        "DCFPyL", "PSMA", 0.09 * _MIN, 0.044 * _MIN, _KINT_PSMA, "F-18", 45.0, 0.3,
        "kon 0.09 L/nmol/min, koff 0.044/min (KD 0.49 nM), 45 MBq/nmol [Bartelink R model]; "
        "protein binding assumed 30 %",
        role="imaging",
    ),
    "DOTATATE": Ligand(
        "DOTATATE", "SSTR2", 0.05 * _MIN, 0.05 * 1.6 * _MIN, 0.01 * _MIN, "Lu-177", 70.0, 0.5,
        "SSTR2 KD ~1.6 nM (Y-DOTATATE IC50, Reubi 2000, unverified); kon and kint not found in "
        "retrievable sources: kon 0.05 L/nmol/min and kint 0.01/min assumed, organ receptor "
        "amounts calibrated instead (see pbpk/data/calibration.json); 7.4 GBq with 105 nmol "
        "[Jimenez-Franco 2021] -> 70 MBq/nmol",
    ),
    "DOTATOC": Ligand(
        "DOTATOC", "SSTR2", 0.05 * _MIN, 0.05 * 2.5 * _MIN, 0.01 * _MIN, "Lu-177", 70.0, 0.5,
        "as DOTATATE with a lower SSTR2 affinity (KD ~2.5 nM assumed); amounts as DOTATATE",
    ),
    "Ga-DOTATATE": Ligand(
        "Ga-DOTATATE", "SSTR2", 0.05 * _MIN, 0.05 * 0.2 * _MIN, 0.01 * _MIN, "Ga-68", 10.8, 0.5,
        "Ga-DOTATATE IC50 0.2 nM (Reubi 2000, unverified); 92.7 MBq with ~8.6 nmol "
        "[Siebinga 2021] -> 10.8 MBq/nmol",
        role="imaging",
    ),
}


def get_ligand(name: str) -> Ligand:
    """Look up a ligand by name (case-insensitive). A nuclide prefix ('177Lu-', '68Ga-') picks
    the form labelled with that nuclide ('68Ga-DOTATATE' is Ga-DOTATATE) and is refused when
    the ligand is labelled with another one."""
    if not isinstance(name, str):
        raise InvalidInputError(
            f"ligand name must be a string such as 'PSMA-617', got {name!r} ({type(name).__name__})."
        )
    by_name = {k.lower(): v for k, v in LIGANDS.items()}
    text = name.strip().lower()
    if text in by_name:
        return by_name[text]
    m = re.match(r"^(\d{1,3})([a-z]{1,2})-(.+)$", text)  # "177lu-psma-617"
    if m:
        mass, element, base = m.groups()
        nuclide = f"{element.capitalize()}-{mass}"
        named = [by_name[k] for k in (base, f"{element}-{base}") if k in by_name]
        for lig in named:
            if lig.default_nuclide == nuclide:
                return lig
        if named:
            raise UnknownNameError(
                f"ligand {name!r}: {', '.join(lig.name for lig in named)} is labelled with "
                f"{', '.join(sorted({lig.default_nuclide for lig in named}))}, not {nuclide}; name the "
                "ligand without the prefix and choose the nuclide with nuclide=...")
    raise UnknownNameError(f"ligand {name!r} is not known; known ligands: {', '.join(LIGANDS)}.")
