"""Review 11 fixes of the calibration package: observations at or before the administration,
non-finite likelihood gradients, the population prior of a new model, patient posteriors fitted
under their own prior, joint data sets of several agents, input checks, quantile labels.

References are analytic (the linear-Gaussian likelihood), hand computations (quantiles of
0..99, the default noise model, scale factors) or typed errors naming the problem."""

import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import pbpk
from calibration import (
    CalibrationError,
    ConvergenceWarning,
    LogNormal,
    NoiseModel,
    ObservationError,
    Observations,
    Prior,
    PriorError,
    calibrate,
    calibrate_population,
    log_posterior,
)
from calibration._inference import Prediction
from pbpk._errors import InvalidInputError


def _recs(rows, unit="MBq"):
    return [{"region": r, "time_h": t, "value": v, "unit": unit} for r, t, v in rows]


# ---------------------------------------------------------------- 1: observations before injection
@pytest.fixture(scope="module")
def psma():
    return pbpk.psma_model("PSMA-11")


def test_observation_at_injection_time_is_refused_by_name(psma):
    prior = Prior.default(psma, parameters=["R_kidney", "gfr_eff"])
    obs = Observations.from_records(_recs([("kidney", 0.0, 0.01), ("kidney", 1.0, 1.5), ("kidney", 4.0, 0.35)]))
    for method in ("laplace", "map"):
        with pytest.raises(ObservationError, match=r"kidney at 0 h .*at or before the schedule's first administration"):
            calibrate(psma, pbpk.Schedule.single(150.0), obs, prior, method=method, hessian="fd")
    with pytest.raises(ObservationError, match="kidney at 0 h"):
        log_posterior(psma, pbpk.Schedule.single(150.0), obs, prior)


def test_observation_before_a_late_administration_is_refused(psma):
    prior = Prior.default(psma, parameters=["R_kidney"])
    sched = pbpk.Schedule.single(150.0, time_h=2.0)
    obs = Observations.from_records(_recs([("kidney", 1.0, 1.5), ("kidney", 3.0, 0.35)]))
    with pytest.raises(ObservationError, match=r"kidney at 1 h .*\(2 h\).*schedule's clock"):
        log_posterior(psma, sched, obs, prior)
    # on the schedule's clock, after the injection: accepted (nothing is simulated here)
    later = Observations.from_records(_recs([("kidney", 3.0, 1.5), ("kidney", 6.0, 0.35)]))
    assert log_posterior(psma, sched, later, prior).names == ("R_kidney",)


def _zero_second(params):
    """A generic model whose second prediction is exactly 0 (as an organ before injection)."""
    return jnp.stack([params["a"], 0.0 * params["a"]])


ZERO_PRIOR = Prior((LogNormal("a", 1.0, 0.5),))
ZERO_OBS = Observations.from_records(_recs([("r0", 1.0, 2.0), ("r1", 2.0, 1.0)]), noise=NoiseModel(cv=0.1))


def test_nonfinite_likelihood_gradient_is_an_error_not_the_prior():
    # before: the gradient was zeroed, MAP stopped at the prior median (a = 1) and said "converged"
    with pytest.raises(CalibrationError, match=r"gradient of the log-likelihood is not finite.*r1 at 2 h"):
        calibrate(_zero_second, None, ZERO_OBS, ZERO_PRIOR, method="map")


def test_svi_reports_steps_with_a_nonfinite_gradient():
    with pytest.warns(ConvergenceWarning, match="non-finite gradient"):
        post = calibrate(_zero_second, None, ZERO_OBS, ZERO_PRIOR, method="svi", svi_steps=40, num_samples=20)
    assert post.diagnostics["svi_nonfinite_gradients"] == 40 and not post.diagnostics["converged"]


# ---------------------------------------------------------------- 2, 3: population
class _ScaledModel:
    """A generic model with model values (``parameters``) like a PBPKModel: y = (a, 1.5 a)."""

    def __init__(self, a):
        self.parameters = {"a": a}
        self.name = f"scaled({a})"

    def __call__(self, params):
        return jnp.stack([params["a"], 1.5 * params["a"]])


CV_OBS = 0.1


def _patients(n=4):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        a = 3.0 * math.exp(0.3 * rng.standard_normal())
        y = [a * math.exp(0.1 * rng.standard_normal()), 1.5 * a * math.exp(0.1 * rng.standard_normal())]
        out.append(Observations.from_records(_recs([(f"r{j}", 1.0, v) for j, v in enumerate(y)]),
                                             noise=NoiseModel(cv=CV_OBS)))
    return out


def test_population_prior_of_the_reference_model_equals_prior():
    model = _ScaledModel(1.5)
    prior = Prior((LogNormal("a", 3.0, 0.5),))      # median 2x the model value
    pop = calibrate_population(model, None, _patients(), prior, num_warmup=100, num_samples=100, num_chains=1)
    ref = pop.prior()
    assert pop.prior(model)["a"].median == pytest.approx(ref["a"].median, rel=1e-12)   # before: 2x lower
    assert pop.prior(model)["a"].cv == pytest.approx(ref["a"].cv, rel=1e-12)
    # a new patient whose covariate prediction is 2x the reference model's: 2x the median
    assert pop.prior(_ScaledModel(3.0))["a"].median == pytest.approx(2.0 * ref["a"].median, rel=1e-12)
    # prior() is the population median of the reference model, exp(E[log median])
    assert ref["a"].median == pytest.approx(pop.median["a"], rel=1e-12)
    assert pop.median["a"] == pytest.approx(math.exp(math.log(3.0) + pop.shift_draws[:, 0].mean()), rel=1e-12)


def test_patient_posteriors_divide_out_their_own_prior():
    obs = _patients()
    pop_prior = Prior((LogNormal("a", 2.0, 1.0),))
    other = Prior((LogNormal("a", 5.0, 0.2),))       # what the patients were fitted under
    model = _ScaledModel(2.0)
    fits = [calibrate(model, None, o, other, method="laplace", num_samples=50, key=i) for i, o in enumerate(obs)]
    pop = calibrate_population(model, None, obs, pop_prior, patient_posteriors=fits,
                               num_warmup=50, num_samples=50, num_chains=1)
    # exact likelihood of one patient in theta = log a: two observations of log a + (0, log 1.5)
    # with log-sd s: precision 2/s^2, eta = precision * mean(log y - (0, log 1.5))
    s2 = math.log1p(CV_OBS**2)
    L = np.asarray(pop._info["L"])[:, 0, 0]
    eta = np.asarray(pop._info["eta"])[:, 0]
    for i, o in enumerate(obs):
        assert L[i] == pytest.approx(2.0 / s2, rel=1e-4)                        # before: 225 vs 201
        assert eta[i] == pytest.approx(2.0 / s2 * np.mean(np.log(o.value) - np.log([1.0, 1.5])), rel=1e-4)


# ---------------------------------------------------------------- 4, 12: duplicates
def test_twin_joint_data_sets_may_share_an_hour():
    from twin._twin import _combine

    pet = Observations.from_records(_recs([("kidney", 1.0, 1.3), ("kidney", 4.0, 0.3)]), agent="PSMA-11")
    spect = Observations.from_records(_recs([("kidney", 4.0, 150.0)]), agent="PSMA-617")
    both = _combine([pet, spect])        # before: "duplicate observations ... average them first"
    assert len(both) == 3 and both.dataset == (0, 0, 1)
    assert list(both.value) == [1.3, 0.3, 150.0]


def test_same_scan_in_two_units_is_a_duplicate():
    a = Observations.from_records(_recs([("kidney", 1.0, 2.0)]))
    b = Observations.from_records(_recs([("kidney", 1.0, 1.4)], unit="%IA"))
    with pytest.raises(ObservationError, match=r"duplicate.*kidney at 1 h.*MBq"):
        a.concat(b)
    with pytest.raises(ObservationError, match="duplicate"):
        Observations.from_records(_recs([("kidney", 1.0, 2.0)]) + _recs([("kidney", 1.0, 1.4)], unit="%IA"))


def test_concat_refuses_other_types_by_name():
    a = Observations.from_records(_recs([("kidney", 1.0, 2.0)]))
    with pytest.raises(ObservationError, match="cannot concatenate a DataFrame"):
        a.concat(pd.DataFrame({"region": ["liver"]}))


# ---------------------------------------------------------------- 5, 6, 7: observations input
def _uptake():
    return pd.DataFrame({"region": ["kidney", "urine", "tumour1"], "activity_mbq": [2.0, 10.0, 0.5],
                         "recovery_coefficient": [1.0, 1.0, 0.5]})


def test_explicit_region_overrides_default_exclude():
    obs = Observations.from_uptake(_uptake(), time_h=2.0, regions=["kidney", "urine"])
    assert obs.regions == ("kidney", "urine") and list(obs.value) == [2.0, 10.0]
    assert Observations.from_uptake(_uptake(), time_h=2.0).regions == ("kidney", "tumour1")


def test_blank_optional_cells_take_the_noise_defaults():
    noise = NoiseModel(cv=0.2, floor=0.05, rc_cv=0.4)
    df = pd.DataFrame({"region": ["kidney", "liver", "spleen", "salivary"], "time_h": [1.0] * 4,
                       "value": [2.0, 5.0, 1.0, 0.5], "unit": ["MBq"] * 4,
                       "cv": [0.1, np.nan, None, 0.3], "floor": [np.nan, 0.01, np.nan, np.nan],
                       "recovery_coefficient": [np.nan, 0.5, np.nan, np.nan], "rc_cv": [np.nan] * 4})
    obs = Observations.from_records(df, noise=noise)
    assert list(obs.cv) == [0.1, 0.2, 0.2, 0.3]
    assert list(obs.floor) == [0.05, 0.01, 0.05, 0.05]
    assert list(obs.recovery_coefficient) == [1.0, 0.5, 1.0, 1.0]
    assert list(obs.rc_cv) == [0.4] * 4
    recs = [{"region": "kidney", "time_h": 1, "value": 2.0, "unit": "MBq", "cv": None},
            {"region": "liver", "time_h": 1, "value": 5.0, "unit": "MBq", "cv": ""}]
    assert list(Observations.from_records(recs).cv) == [0.15, 0.15]     # NoiseModel() default


@pytest.mark.parametrize("key", ["kidneys", "tumor", "Kidney"])
def test_noise_key_matching_no_region_is_refused(key):
    noise = {key: NoiseModel(cv=0.05)}
    with pytest.raises(ObservationError, match=rf"noise key.*'{key}'.*valid keys: kidney"):
        Observations.from_uptake(_uptake(), time_h=1.0, noise=noise)
    with pytest.raises(ObservationError, match=rf"'{key}'"):
        Observations.from_records(_recs([("kidney", 1.0, 2.0)]), noise=noise)
    with pytest.raises(ObservationError, match=rf"'{key}'"):
        Observations.from_records(_recs([("kidney", 1.0, 2.0)])).with_noise(noise)


def test_noise_keys_that_match_are_used():
    noise = {"kidney": NoiseModel(cv=0.05), "tumour": NoiseModel(cv=0.4), "urine": NoiseModel(cv=0.9)}
    obs = Observations.from_uptake(_uptake(), time_h=1.0, noise=noise)   # urine is in the table, left out
    assert dict(zip(obs.region, obs.cv)) == {"kidney": 0.05, "tumour1": 0.4}


# ---------------------------------------------------------------- 8: calibrate settings
@pytest.mark.parametrize("name, value", [
    ("learning_rate", float("nan")), ("learning_rate", 0.0), ("learning_rate", -0.01),
    ("target_accept_prob", 1.5), ("target_accept_prob", 0.0), ("target_accept_prob", float("nan")),
    ("informed_threshold", float("nan")), ("informed_threshold", -1.0),
    ("rhat_threshold", float("nan")), ("rhat_threshold", float("inf")),
    ("map_gtol", float("nan")), ("ess_threshold", -1.0),
])
def test_calibrate_settings_are_checked_at_entry(name, value):
    with pytest.raises(InvalidInputError, match=rf"{name} = .*must be a finite number"):
        calibrate(_ScaledModel(1.0), None, ZERO_OBS, ZERO_PRIOR, method="svi", **{name: value})


def test_simulate_options_tolerances_are_checked(psma):
    obs = Observations.from_records(_recs([("kidney", 1.0, 1.5)]))
    with pytest.raises(InvalidInputError, match=r"simulate_options\['rtol'\] = nan"):
        calibrate(psma, pbpk.Schedule.single(150.0), obs, Prior.default(psma, parameters=["R_kidney"]),
                  simulate_options={"rtol": float("nan")})


def test_population_rhat_threshold_is_checked():
    with pytest.raises(InvalidInputError, match="rhat_threshold"):
        calibrate_population(_ScaledModel(1.0), None, _patients(2), ZERO_PRIOR, rhat_threshold=float("nan"))


# ---------------------------------------------------------------- 9: quantile labels
def _prediction(quantiles=(0.05, 0.5, 0.95)):
    return Prediction(times_h=np.array([1.0]), regions=("kidney",), body_regions=("kidney",),
                      activity_mbq=np.arange(100.0).reshape(100, 1, 1), tia_mbq_h=np.arange(100.0).reshape(100, 1),
                      quantiles=quantiles, n_failed=0, model_name="x")


def test_prediction_quantile_columns_are_percent_labels():
    tq = _prediction().tia_quantiles()
    assert list(tq.columns) == ["mean", "q5", "q50", "q95"]
    # quantiles of 0..99 (linear interpolation): 0.05 * 99 = 4.95, 49.5, 94.05
    assert tq.loc["kidney", "q5"] == pytest.approx(4.95) and tq.loc["kidney", "q95"] == pytest.approx(94.05)
    aq = _prediction((0.025, 0.975)).activity_quantiles()
    assert list(aq.columns) == ["time_h", "region", "mean", "q2.5", "q97.5"]
    assert aq["q2.5"].iloc[0] == pytest.approx(0.025 * 99)


def test_predict_refuses_percent_quantiles_before_simulating():
    post = calibrate(_ScaledModel(1.0), None, ZERO_OBS, ZERO_PRIOR, method="map")
    with pytest.raises(InvalidInputError, match="give 0.05, not 5"):
        post.predict(pbpk.Schedule.single(7400.0), [1.0], quantiles=(5, 50, 95))
    with pytest.raises(InvalidInputError, match="probability in"):
        post.predict(pbpk.Schedule.single(7400.0), [1.0], quantiles=(-0.1, 0.5))


# ---------------------------------------------------------------- 10: numbers
def test_numpy_scalars_are_numbers_and_bools_are_not():
    assert NoiseModel(cv=np.float32(0.1)).cv == pytest.approx(0.1, rel=1e-6)
    assert NoiseModel(cv=np.float64(0.2), floor=np.int64(0)).floor == 0.0
    e = LogNormal("a", np.int64(2), np.float32(0.25))
    assert e.median == 2.0 and type(e.median) is float and e.cv == pytest.approx(0.25)
    with pytest.raises(ObservationError, match="not a bool"):
        NoiseModel(cv=True)
    with pytest.raises(PriorError, match="not a bool"):
        LogNormal("a", True, 0.3)
    with pytest.raises(PriorError, match="cv = True"):
        LogNormal("a", 2.0, True)
