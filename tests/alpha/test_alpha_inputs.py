"""Input checks of the decay-chain models (pbpk.ChainModel, pbpk.FreeDaughter, ac225/pb212 builders).

References are the literal values set and the spaces of the parent graph written out here
(the PSMA model's compartments: plasma, vascular, interstitial, bound, internalised, tubule,
peritubular, excreta).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import pbpk

PSMA_SPACES = {"plasma", "vascular", "interstitial", "bound", "internalised", "tubule",
               "peritubular", "excreta"}


@pytest.fixture(scope="module")
def ac_chain():
    return pbpk.ac225_psma_model()


# ----------------------------------------------------------------------------- finding 1
def test_chain_with_release_refuses_a_misspelt_space(ac_chain):
    with pytest.raises(pbpk.UnknownNameError, match="internalized") as info:
        ac_chain.with_release("Fr-221", internalized=0.2)
    msg = str(info.value)
    for space in PSMA_SPACES | {"retained"}:  # the valid spaces are listed
        assert repr(space) in msg
    # nothing was changed: the model is immutable and the call raised
    assert ac_chain.daughter("Fr-221").release_fraction("internalised") == 0.0


def test_chain_with_release_accepts_parent_spaces_and_default(ac_chain):
    new = ac_chain.with_release("Fr-221", bound=0.25, _=0.5)
    d = new.daughter("Fr-221")
    assert d.release_fraction("bound") == 0.25
    assert d.release_fraction("vascular") == 0.5  # via '*'
    assert d.release_fraction("internalised") == 0.0  # untouched
    assert ac_chain.daughter("Fr-221").release_fraction("bound") == 1.0  # original unchanged


def test_chain_with_release_of_a_daughter_made_by_a_daughter(ac_chain):
    """Bi-213 comes from Fr-221 decays only: free 221Fr always releases it, retained 221Fr by
    the parent space where it sits (else 'retained', else '*')."""
    assert ac_chain.with_release("Bi-213", bound=0.2).daughter("Bi-213").release_fraction("bound") == 0.2
    for nuclide, key in (("Bi-213", "internalized"), ("Fr-221", "retained")):
        with pytest.raises(pbpk.UnknownNameError, match="unknown release space"):
            ac_chain.with_release(nuclide, **{key: 0.5})
    with_retained = ac_chain.with_release("Bi-213", retained=0.3)
    assert with_retained.daughter("Bi-213").release_fraction("retained") == 0.3
    with pytest.raises(pbpk.UnknownNameError, match="unknown release space"):
        with_retained.with_release("Bi-213", _=0.5)  # '*' is never consulted once 'retained' is set


def test_free_daughter_with_release_refuses_unknown_spaces(ac_chain):
    d = ac_chain.daughter("Fr-221")
    with pytest.raises(pbpk.UnknownNameError, match="ChainModel.with_release"):
        d.with_release(interstitual=0.5)
    assert d.with_release(internalised=0.75).release["internalised"] == 0.75
    assert d.with_release(_=0.0).release["*"] == 0.0


@pytest.mark.parametrize("value", [1.5, -0.1, math.nan, math.inf, True, "0.5", None, [0.5]])
def test_release_fractions_must_be_numbers_in_0_1(ac_chain, value):
    with pytest.raises(pbpk.InvalidInputError, match="internalised"):
        ac_chain.with_release("Fr-221", internalised=value)
    with pytest.raises(pbpk.InvalidInputError, match="internalised"):
        ac_chain.daughter("Fr-221").with_release(internalised=value)


def test_release_fractions_accept_numpy_scalars(ac_chain):
    d = ac_chain.with_release("Fr-221", internalised=np.float32(0.5), _=np.int64(1)).daughter("Fr-221")
    assert d.release["internalised"] == 0.5 and d.release["*"] == 1.0
    assert type(d.release["internalised"]) is float


def test_free_daughter_release_map_is_checked_at_construction(ac_chain):
    d = ac_chain.daughter("Bi-213")
    with pytest.raises(pbpk.InvalidInputError, match="mapping"):
        pbpk.FreeDaughter(d.nuclide, d.graph, d.parameters, 0.5, d.entry)
    with pytest.raises(pbpk.InvalidInputError, match=r"\[0, 1\]"):
        pbpk.FreeDaughter(d.nuclide, d.graph, d.parameters, {"*": "x"}, d.entry)


# ----------------------------------------------------------------------------- finding 2
@pytest.mark.parametrize("value", [0, 0.0, -0.1, math.nan, math.inf, True, "0.1", None])
def test_ac225_molar_activity_is_checked_at_entry(value):
    with pytest.raises(pbpk.InvalidInputError, match="molar_activity_mbq_per_nmol"):
        pbpk.ac225_psma_model(molar_activity_mbq_per_nmol=value)


@pytest.mark.parametrize("value", [0, -2.0, math.nan, False, "2"])
def test_pb212_molar_activity_is_checked_at_entry(value):
    with pytest.raises(pbpk.InvalidInputError, match="molar_activity_mbq_per_nmol"):
        pbpk.pb212_sstr_model(molar_activity_mbq_per_nmol=value)


def test_ac225_molar_activity_accepts_numpy_scalars():
    chain = pbpk.ac225_psma_model(molar_activity_mbq_per_nmol=np.float64(0.25))
    assert chain.parent.default_molar_activity_mbq_per_nmol == 0.25


def test_assumptions_state_the_molar_activity_used():
    assert any("0.1 MBq/nmol" in a for a in pbpk.ac225_psma_model().assumptions)
    stated = pbpk.ac225_psma_model(molar_activity_mbq_per_nmol=0.25).assumptions
    assert any("0.25 MBq/nmol (given)" in a for a in stated)
    assert not any("0.1 MBq/nmol" in a for a in stated)
    assert any("3 MBq/nmol (given)" in a for a in pbpk.pb212_sstr_model(molar_activity_mbq_per_nmol=3.0).assumptions)


def test_chain_model_refuses_release_spaces_it_never_consults(ac_chain):
    """A release map built by hand is checked like with_release: a space the simulation never
    consults for that daughter (a misspelling, or 'retained' for a daughter of the parent)
    would change nothing, so the chain refuses it at construction."""
    fr, bi = ac_chain.daughter("Fr-221"), ac_chain.daughter("Bi-213")
    for daughter, key in ((fr, "internalized"), (fr, "retained"), (bi, "internalized")):
        bad = dataclasses.replace(daughter, release={**daughter.release, key: 0.5})
        others = tuple(bad if d is daughter else d for d in ac_chain.daughters)
        with pytest.raises(pbpk.UnknownNameError, match=repr(key)):
            pbpk.ChainModel(ac_chain.parent, others)
    # the shipped chains list only consulted spaces, and '*' is always allowed
    assert set(fr.release) == {"*", "internalised"} and set(bi.release) == {"*", "internalised"}
    assert set(pbpk.pb212_sstr_model().daughter("Bi-212").release) == {"*", "internalised"}
