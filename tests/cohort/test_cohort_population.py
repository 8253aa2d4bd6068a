"""Virtual populations: reproducibility, distributions, the covariate map against pbpk, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import pbpk
from twin.cohort import (
    COVARIATES,
    CohortConfigError,
    Fixed,
    LogNormalDist,
    Normal,
    Population,
    Uniform,
    key_data,
    prepare,
)


@pytest.fixture(scope="module")
def pop():
    return Population.default("PSMA-617")


def test_same_key_same_population_independent_of_chunking(pop):
    a = pop.sample(3, 40)
    b = pop.sample(3, 40)
    assert a.equals(b)
    part = pop.sample(3, 15, start=10)  # patients 10..24 drawn alone
    assert part.reset_index(drop=True).equals(a.iloc[10:25].reset_index(drop=True))
    import jax

    assert pop.sample(jax.random.PRNGKey(3), 5).equals(a.iloc[:5])  # seed and key agree
    assert not np.array_equal(pop.sample(4, 40)["age_y"], a["age_y"])


def test_covariates_follow_their_truncated_distributions():
    dists = {"age_y": Normal(70.0, 8.0, 50.0, 90.0), "tumour_volume_l": LogNormalDist(0.1, 0.8, 0.01, 1.0),
             "weight_kg": Uniform(60.0, 100.0), "haematocrit": Fixed(0.41)}
    p = Population(covariates=dists)
    draws = p.covariate_distributions
    assert draws["haematocrit"] == Fixed(0.41)
    prep = prepare(p)
    d = prep.draw(key_data(0), np.arange(4000))
    age = d["age_y"]
    ref = stats.truncnorm((50 - 70) / 8, (90 - 70) / 8, loc=70, scale=8)  # scipy: independent reference
    assert age.min() >= 50 and age.max() <= 90
    assert abs(age.mean() - ref.mean()) < 4 * ref.std() / math.sqrt(age.size)
    assert stats.kstest(age, ref.cdf).pvalue > 1e-3
    s = math.sqrt(math.log1p(0.8**2))
    tv = np.log(d["tumour_volume_l"])
    ref_t = stats.truncnorm((math.log(0.01) - math.log(0.1)) / s, (math.log(1.0) - math.log(0.1)) / s,
                            loc=math.log(0.1), scale=s)
    assert stats.kstest(tv[d["attempts"] == 1], ref_t.cdf).pvalue > 1e-3
    assert stats.kstest(d["weight_kg"], stats.uniform(60, 40).cdf).pvalue > 1e-3
    assert np.all(d["haematocrit"] == 0.41)


def test_covariate_map_matches_pbpk_models(pop):
    """Parameters not in the prior equal those of pbpk.psma_model built for the same patient."""
    prep = prepare(pop)
    d = prep.draw(key_data(11), np.arange(5))
    prior = set(pop.default_prior().names)
    for i in range(5):
        phys = pbpk.Physiology.for_patient("male", weight_kg=d["weight_kg"][i], height_cm=d["height_cm"][i],
                                           age_y=d["age_y"][i], gfr_ml_min=d["gfr_ml_min"][i],
                                           haematocrit=d["haematocrit"][i])
        vt = d["tumour_volume_l"][i]
        m = pbpk.psma_model("PSMA-617", physiology=phys, lesion_volumes_l=(0.2 * vt,),
                            tumour_rest_volume_l=0.8 * vt)
        for j, name in enumerate(prep.varying):
            if name not in prior:
                assert d["params"][i, j] == pytest.approx(m.parameters[name], rel=1e-9), name
        for j, name in enumerate(prep.volume_names):
            assert d["volumes_l"][i, j] == pytest.approx(m.organ_volumes_l[name], rel=1e-9), name
    # eGFR de-indexed by the Mosteller BSA (CKD-EPI convention)
    bsa = pbpk.bsa_mosteller_m2(d["height_cm"], d["weight_kg"])
    np.testing.assert_allclose(d["gfr_ml_min"], d["egfr_ml_min_1_73m2"] * bsa / 1.73, rtol=1e-12)


def test_prior_spread_around_the_covariate_prediction(pop):
    prep = prepare(pop)
    prior = pop.default_prior()
    d = prep.draw(key_data(5), np.arange(3000))
    j = prep.varying.index("R_kidney")
    kidney_vol = d["volumes_l"][:, prep.volume_names.index("kidney")]
    ratio = d["params"][:, j] / kidney_vol  # receptor density: the covariate part cancels
    sd = np.log(ratio).std()
    assert sd == pytest.approx(prior["R_kidney"].log_scale, rel=0.06)


def test_sstr_population_mixes_sexes():
    p = Population(agent="DOTATATE", female_fraction=0.5)
    d = prepare(p).draw(key_data(0), np.arange(400))
    assert 0.4 < d["female"].mean() < 0.6


@pytest.mark.parametrize("kwargs, words", [
    ({"covariates": {"shoe_size": Fixed(42)}}, "unknown covariate"),
    ({"covariates": {"age_y": Normal(70, 5, 10, 90)}}, "admissible"),
    ({"covariates": {"weight_kg": Fixed(400)}}, "outside the admissible"),
    ({"covariates": {"age_y": 70}}, "not a distribution"),
    ({"female_fraction": 0.3}, "male"),
    ({"agent": "PSMA-999"}, "PSMA-999"),
    ({"lesion_fraction": 1.5}, "lesion_fraction"),
])
def test_bad_population_settings(kwargs, words):
    with pytest.raises(CohortConfigError, match=words):
        Population(**kwargs)


def test_bad_distributions():
    with pytest.raises(CohortConfigError, match="sd"):
        Normal(70, -1)
    with pytest.raises(CohortConfigError, match="low"):
        Uniform(5, 1)
    with pytest.raises(CohortConfigError, match="number"):
        LogNormalDist("0.1", 0.5)


def test_bad_keys():
    for bad in (-1, "zero", 1.5, np.zeros(3, np.uint32)):
        with pytest.raises(CohortConfigError):
            key_data(bad)
    assert set(COVARIATES) >= {"age_y", "weight_kg", "egfr_ml_min_1_73m2", "tumour_volume_l"}


def test_women_in_a_mixed_population_get_female_height_and_weight():
    # the female defaults are Normal(163 cm, 7) and Normal(70 kg, 14) (ICRP-89 reference
    # female 163 cm / 60 kg, weight centred on an adult patient cohort); the male 176 cm / 84 kg
    df = Population("DOTATATE", female_fraction=0.5).sample(0, 400)
    f = (df["sex"] == "female").to_numpy()
    assert 150 < f.sum() < 250
    n_f, n_m = f.sum(), (~f).sum()
    assert abs(df["height_cm"][f].mean() - 163.0) < 4 * 7.0 / math.sqrt(n_f)
    assert abs(df["height_cm"][~f].mean() - 176.0) < 4 * 7.0 / math.sqrt(n_m)
    assert abs(df["weight_kg"][f].mean() - 70.0) < 4 * 14.0 / math.sqrt(n_f)


@pytest.mark.parametrize("agent", ["PSMA-617", "DOTATATE"])
def test_young_patients_and_large_tumours_follow_the_pbpk_flow_budget(agent):
    """Patients whose organ flows pbpk rescales (under about 42-50 y, large tumours: less than
    1 % of the cardiac plasma output left to the rest of the body) get the same parameters from
    the cohort's vectorised map as from pbpk.psma_model/sstr_model built for them."""
    pop = Population(agent=agent, female_fraction=0.0,
                     covariates={"age_y": Uniform(20.0, 40.0),
                                 "tumour_volume_l": LogNormalDist(0.3, 0.3, 0.1, 0.6)})
    prep = prepare(pop)
    d = prep.draw(key_data(5), np.arange(6))
    assert d["valid"].all() and (d["attempts"] == 1).all()  # none redrawn
    prior = set(pop.default_prior().names)
    scaled = 0
    for i in range(6):
        phys = pbpk.Physiology.for_patient("male", weight_kg=d["weight_kg"][i], height_cm=d["height_cm"][i],
                                           age_y=d["age_y"][i], gfr_ml_min=d["gfr_ml_min"][i],
                                           haematocrit=d["haematocrit"][i])
        vt = d["tumour_volume_l"][i]
        if agent == "PSMA-617":
            m = pbpk.psma_model(agent, physiology=phys, lesion_volumes_l=(0.2 * vt,),
                                tumour_rest_volume_l=0.8 * vt)
        else:
            m = pbpk.sstr_model(agent, physiology=phys, tumour_volumes_l=(vt,))
        scaled += "flow-budget scaling" in m.sources["Q_rest"]
        for j, name in enumerate(prep.varying):
            if name not in prior:
                assert d["params"][i, j] == pytest.approx(m.parameters[name], rel=1e-9), name
        # 1 % of the cardiac plasma output left to the rest of the body (pbpk's rule), by hand
        assert m.parameters["Q_rest"] >= 0.01 * m.parameters["Q_lungs"] * (1 - 1e-12)
    assert scaled == 6  # every patient of this population is in the rescaled regime
