"""Input checks of the alpha dosimetry (twin.dose.alpha_organ_dose, chain_dose).

The chain result is built by hand (two nuclides, made-up TIA and energies), so the expected
doses are ``TIA x 3.6e9 decays/(MBq h) x E x 1.602176634e-13 J/MeV / m``, written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import pbpk
from twin import dose
from twin.dose import UnknownOrganError

J_PER_MBQ_H_MEV = 3.6e9 * 1.602176634e-13

ENERGIES = {"Ac-225": {"alpha": 6.0, "electron": 0.1, "photon": 0.02},
            "Bi-213": {"alpha": 0.2, "electron": 0.5, "photon": 0.1}}
TIA = {"Ac-225": {"kidney": 10.0, "liver": 4.0, "plasma": 1.0},
       "Bi-213": {"kidney": 3.0, "liver": 1.0, "plasma": 0.5, "urine": 2.0}}


def _result() -> pbpk.ChainResult:
    """A ChainResult with the fields chain_dose reads (no simulation)."""
    return pbpk.ChainResult(
        parent=None, nuclides=("Ac-225", "Bi-213"), times_h=np.array([1.0]), regions={},
        activity_mbq={}, free_activity_mbq={}, tia_mbq_h=TIA,
        in_situ_tia={"Ac-225": TIA["Ac-225"], "Bi-213": {"kidney": 10.0, "liver": 4.0, "plasma": 1.0}},
        atoms_residual=np.zeros(1), ended_fraction=np.zeros(1), energies_mev=ENERGIES,
        organ_volumes_l={"kidney": 0.3, "liver": 1.8},
    )


def _kidney_gy(mass_kg: float) -> float:
    e = sum(TIA[n]["kidney"] * (ENERGIES[n]["alpha"] + ENERGIES[n]["electron"]) for n in TIA)
    return e * J_PER_MBQ_H_MEV / mass_kg


# ----------------------------------------------------------------------------- finding 3
def test_chain_dose_refuses_misspelt_organ_masses():
    with pytest.raises(UnknownOrganError, match="kidny") as info:
        dose.chain_dose(_result(), organ_masses_kg={"kidny": 0.31})
    msg = str(info.value)
    for region in ("kidney", "liver", "plasma", "urine"):  # the known regions are listed
        assert region in msg
    assert isinstance(info.value, pbpk.UnknownNameError)


def test_chain_dose_uses_a_known_organ_mass():
    d = dose.chain_dose(_result(), organ_masses_kg={"kidney": 0.31})
    assert d.dose_gy("kidney") == pytest.approx(_kidney_gy(0.31), rel=1e-12)
    d0 = dose.chain_dose(_result())  # default: volume x 1 kg/L
    assert d0.dose_gy("kidney") == pytest.approx(_kidney_gy(0.3), rel=1e-12)
    # a mass for a region with TIA but no volume (urine) gives it a dose
    du = dose.chain_dose(_result(), organ_masses_kg={"urine": 0.2})
    assert du.dose_gy("urine") == pytest.approx(2.0 * 0.7 * J_PER_MBQ_H_MEV / 0.2, rel=1e-12)


@pytest.mark.parametrize("mass", [0.0, -0.3, math.nan, math.inf, True, "0.3", None])
def test_chain_dose_checks_organ_mass_values(mass):
    with pytest.raises(pbpk.InvalidInputError, match="kidney"):
        dose.chain_dose(_result(), organ_masses_kg={"kidney": mass})


@pytest.mark.parametrize("masses", ["kidney", [0.3], 0.3])
def test_chain_dose_organ_masses_must_be_a_mapping(masses):
    with pytest.raises(pbpk.InvalidInputError, match="organ_masses_kg"):
        dose.chain_dose(_result(), organ_masses_kg=masses)


def test_chain_dose_in_situ_must_be_a_bool():
    with pytest.raises(pbpk.InvalidInputError, match="in_situ"):
        dose.chain_dose(_result(), in_situ="yes")


# ----------------------------------------------------------------------------- finding 4
GOOD = {"tia_mbq_h": {"Ac-225": {"kidney": 10.0}}, "organ_masses_kg": {"kidney": 0.3}}


VALID = [("energies_mev", None), ("method", "abc"), ("rbe_alpha", 1.5), ("rbe_electron", 1.5),
         ("organ_masses_kg", {"x": 1})]  # a mass table may list organs without TIA
WRONG = [(arg, bad)
         for arg in ("tia_mbq_h", "organ_masses_kg", "energies_mev", "rbe_alpha", "rbe_electron", "method")
         for bad in ({"x": 1}, "abc", None, 1.5, [1.0], True)
         if not any(arg == a and bad == b and type(bad) is type(b) for a, b in VALID)]


@pytest.mark.parametrize("arg, bad", WRONG)
def test_alpha_organ_dose_wrong_types_raise_typed_errors(arg, bad):
    """A dict, a string, None, a number, a list or a bool in place of each argument."""
    kw = {**GOOD, arg: bad}
    tia, masses = kw.pop("tia_mbq_h"), kw.pop("organ_masses_kg")
    # typed: InvalidInputError, or UnknownNuclideError (with the known names) for {"x": 1} as TIA
    with pytest.raises((pbpk.InvalidInputError, pbpk.UnknownNameError), match=arg):
        dose.alpha_organ_dose(tia, masses, **kw)


@pytest.mark.parametrize("tia, match", [
    ({"Ac-225": None}, r"tia_mbq_h\['Ac-225'\] must be a mapping"),
    ({"Ac-225": "kidney"}, r"tia_mbq_h\['Ac-225'\] must be a mapping"),
    ({"Ac-225": [1.0]}, r"tia_mbq_h\['Ac-225'\] must be a mapping"),
    ({"Ac-225": {"kidney": True}}, "must be a number"),
    ({"Ac-225": {"kidney": "1.0"}}, "must be a number"),
    ({"Ac-225": {"kidney": -1.0}}, "non-negative"),
    ({"Ac-225": {1: 1.0}}, "region names"),
    ({225: {"kidney": 1.0}}, "nuclide names"),
])
def test_alpha_organ_dose_checks_the_tia_table(tia, match):
    with pytest.raises(pbpk.InvalidInputError, match=match):
        dose.alpha_organ_dose(tia, {"kidney": 0.3})


@pytest.mark.parametrize("energies, match", [
    ({"Ac-225": None}, "needs numbers"),
    ({"Ac-225": "alpha"}, "needs numbers"),
    ({"Ac-225": {"alpha": "6", "electron": 0.1}}, "must be a number"),
    ({"Ac-225": {"alpha": -6.0, "electron": 0.1}}, ">= 0"),
])
def test_alpha_organ_dose_checks_energies(energies, match):
    with pytest.raises(pbpk.InvalidInputError, match=match):
        dose.alpha_organ_dose({"Ac-225": {"kidney": 1.0}}, {"kidney": 0.3}, energies_mev=energies)


def test_alpha_organ_dose_refuses_a_misspelt_nuclide_in_energies():
    with pytest.raises(pbpk.UnknownNameError, match="Ac-255"):
        dose.alpha_organ_dose({"Ac-225": {"kidney": 1.0}}, {"kidney": 0.3},
                              energies_mev={"Ac-255": {"alpha": 1.0, "electron": 0.0}})


def test_alpha_organ_dose_accepts_numpy_scalars():
    d = dose.alpha_organ_dose({"Ac-225": {"kidney": np.float32(10.0)}}, {"kidney": np.float64(0.3)},
                              energies_mev={"Ac-225": {"alpha": np.float64(6.0), "electron": 0}},
                              rbe_alpha=np.int64(5))
    ref = 10.0 * 6.0 * J_PER_MBQ_H_MEV / 0.3
    assert d.dose_gy("kidney") == pytest.approx(ref, rel=1e-12)
    assert d.dose_gy("kidney", rbe_weighted=True) == pytest.approx(5 * ref, rel=1e-12)


def test_energies_under_a_nuclide_alias_are_used():
    # '213Bi' names Bi-213: its energies must replace ICRP-107's, whatever spelling each side uses
    ref = 2.0 * (8.0 + 0.5) * J_PER_MBQ_H_MEV / 0.3
    for tia_key, e_key in (("Bi-213", "213Bi"), ("213Bi", "Bi213"), ("Bi-213", "Bi-213")):
        d = dose.alpha_organ_dose({tia_key: {"kidney": 2.0}}, {"kidney": 0.3},
                                  energies_mev={e_key: {"alpha": 8.0, "electron": 0.5}})
        assert d.dose_gy("kidney") == pytest.approx(ref, rel=1e-12)
    with pytest.raises(pbpk.InvalidInputError, match="Bi-213 twice"):
        dose.alpha_organ_dose({"Bi-213": {"kidney": 2.0}}, {"kidney": 0.3},
                              energies_mev={"213Bi": {"alpha": 8.0, "electron": 0.5},
                                            "Bi-213": {"alpha": 7.0, "electron": 0.5}})


def test_pandas_series_and_numpy_bools_are_accepted():
    import pandas as pd

    d = dose.alpha_organ_dose({"Ac-225": pd.Series({"kidney": 10.0})}, pd.Series({"kidney": 0.3}),
                              energies_mev={"Ac-225": {"alpha": 6.0, "electron": 0.0}})
    assert d.dose_gy("kidney") == pytest.approx(10.0 * 6.0 * J_PER_MBQ_H_MEV / 0.3, rel=1e-12)
    assert dose.chain_dose(_result(), in_situ=np.True_).dose_gy("kidney") == pytest.approx(
        dose.chain_dose(_result(), in_situ=True).dose_gy("kidney"), rel=0)
