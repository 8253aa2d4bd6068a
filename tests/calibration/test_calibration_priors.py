"""Priors: readable, editable log-normal priors; sampling gives a virtual population."""

import math

import numpy as np
import pytest

import pbpk
from calibration import LogNormal, Prior, PriorError, UnknownParameterError


@pytest.fixture(scope="module")
def model():
    return pbpk.psma_model("PSMA-11", lesion_volumes_l=(0.012,), tumour_rest_volume_l=0.0)


def test_default_prior_is_centred_on_the_model_and_sourced(model):
    prior = Prior.default(model)
    assert {"R_kidney", "R_salivary", "R_tumour1", "krel_kidney", "gfr_eff", "Q_kidney"} <= set(prior.names)
    assert "R_tumour_rest" not in prior.names  # zero volume
    for e in prior:
        assert e.median == pytest.approx(float(model.parameters[e.name]))
        assert e.source and e.cv > 0
    t = prior.table()
    assert list(t.columns) == ["median", "cv", "log_sd", "q5", "q95", "source"]
    assert t.loc["R_kidney", "q5"] < t.loc["R_kidney", "median"] < t.loc["R_kidney", "q95"]


def test_editing_and_json_round_trip(model):
    prior = Prior.default(model, ["R_kidney", "gfr_eff"])
    p2 = prior.with_parameter("R_kidney", cv=0.45, source="my cohort").with_parameter("koff", median=0.04, cv=0.5)
    assert p2["R_kidney"].cv == 0.45 and p2["R_kidney"].source == "my cohort"
    assert p2.names == ("R_kidney", "gfr_eff", "koff")
    assert p2.without("koff").names == ("R_kidney", "gfr_eff")
    assert prior["R_kidney"].cv == 0.3  # immutable (the default receptor CV)
    back = Prior.from_json(p2.to_json())
    assert back.to_dict() == p2.to_dict()
    assert LogNormal("x", 2.0, 0.5).log_scale == pytest.approx(math.sqrt(math.log(1.25)))


def test_prior_errors(model):
    with pytest.raises(UnknownParameterError, match="R_heart"):
        Prior.default(model, ["R_heart"])
    with pytest.raises(PriorError, match="cv"):
        LogNormal("R_kidney", 1.0, 0.0)
    with pytest.raises(PriorError, match="median"):
        LogNormal("R_kidney", -1.0, 0.5)
    with pytest.raises(PriorError, match="duplicate"):
        Prior((LogNormal("a", 1.0, 0.5), LogNormal("a", 1.0, 0.5)))
    with pytest.raises(PriorError, match="give its median"):
        Prior.default(model, ["R_kidney"]).with_parameter("koff", cv=0.2)
    with pytest.raises(PriorError, match="not a prior"):
        Prior.from_dict({"nope": 1})
    assert isinstance(PriorError("x"), pbpk.InvalidInputError)


def test_sampling_gives_a_virtual_population(model):
    prior = Prior.default(model, ["R_kidney", "R_tumour1", "gfr_eff"])
    pop = prior.sample(0, 4000)
    for i, name in enumerate(prior.names):
        logv = np.log(pop[name])
        assert logv.mean() == pytest.approx(prior.log_loc[i], abs=0.05)
        assert logv.std() == pytest.approx(prior.log_scale[i], rel=0.05)
    small = {k: v[:4] for k, v in prior.sample(1, 4).items()}
    res = pbpk.simulate_cohort(model, pbpk.Schedule.single(150.0), [1.0, 2.0], small)
    assert np.all(np.asarray(res.status) == 0)
    assert np.asarray(res.activity_mbq).shape[0] == 4
    assert np.isfinite(prior.log_density({k: v[0] for k, v in small.items()}))
