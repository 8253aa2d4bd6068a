"""Frozen model objects stay frozen: no in-place edits of their mappings; they still pickle,
deep-copy, compare and serialise (DESIGN.md: immutable objects)."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

import pbpk


@pytest.fixture(scope="module")
def model():
    return pbpk.psma_model()


def test_model_mappings_refuse_edits(model):
    h = hash(model)
    for mapping in (model.parameters, model.sources, model.organ_volumes_l, model.graph.metadata):
        with pytest.raises(TypeError):
            mapping["R_kidney"] = 0.0
        with pytest.raises(TypeError):
            del mapping["R_kidney"]
    assert hash(model) == h
    # the supported way to change a value makes a new model and leaves this one alone
    other = model.with_parameters(R_kidney=2 * model.parameters["R_kidney"])
    assert other.parameters["R_kidney"] == pytest.approx(2 * model.parameters["R_kidney"])
    assert hash(other) != h


def test_physiology_volumes_refuse_edits():
    phys = pbpk.Physiology.reference("male").with_organ_volumes(kidney=0.3)
    with pytest.raises(TypeError):
        phys.organ_volumes_l["kidney"] = 1.0
    assert phys.organ_volumes_l["kidney"] == 0.3


def test_frozen_models_pickle_deepcopy_and_serialise(model):
    # pickling here is of our own objects, as process pools and Dask do; never of user files
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone.parameters == model.parameters
        assert hash(clone) == hash(model)
    back = pbpk.PBPKModel.from_json(model.to_json())
    assert dict(back.parameters) == dict(model.parameters)
    assert json.loads(model.to_json())["parameters"]["R_kidney"] == model.parameters["R_kidney"]
    # mutable copies for the caller
    edited = model.parameters.copy()
    edited["R_kidney"] = 0.0
    assert model.parameters["R_kidney"] > 0
