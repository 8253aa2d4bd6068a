"""calibration: Bayesian personalisation of ``pbpk`` models from PET uptake, blood and urine data.

Quick start::

    import pbpk
    from calibration import Observations, Prior, calibrate
    from twin import patient

    ph = patient.make_phantom(seed=1, agent="PSMA-11", times_h=(1.0,))
    table = patient.organ_uptake(ph.frames[0], ph.masks, fwhm_mm=5.0)
    obs = Observations.from_uptake(table, time_h=1.0, agent="PSMA-11",
                                   regions=["kidney", "salivary", "liver", "spleen", "tumour1"])
    model = pbpk.psma_model("PSMA-11", physiology=..., lesion_volumes_l=...)
    prior = Prior.default(model)                   # log-normal, centred on the model's values
    post = calibrate(model, pbpk.Schedule.single(150.0), obs, prior, method="laplace")
    post.summary()                                 # pandas table, with 'informed' flags
    therapy = pbpk.theranostic_pair(model, "PSMA-617")
    post.predict(pbpk.Schedule.single(7400.0), [1, 24, 168], model=therapy).tia_quantiles()

Population (hierarchical) calibration: ``calibrate_population(model, schedule, [obs_1, ...],
prior)`` learns population medians and log-normal spreads; ``.prior(new_model)`` is the prior
of a new patient.

Methods: ``"map"`` (optax L-BFGS), ``"laplace"`` (Hessian at the MAP), ``"laplace_is"`` (the
Laplace Gaussian corrected by Pareto-smoothed importance sampling), ``"svi"`` (Gaussian
guide, optax Adam) and ``"nuts"`` (numpyro). Errors subclass the ``pbpk`` error types; diagnostics failures and failed solves
are reported with :class:`ConvergenceWarning` and :class:`SolverFailureWarning`.
"""

from calibration._errors import (
    CalibrationError,
    CalibrationWarning,
    ChainProcessError,
    ConvergenceWarning,
    ObservationError,
    PriorError,
    SolverFailureWarning,
    UnknownParameterError,
)
from calibration._inference import (
    LIKELIHOOD_SIMULATE_OPTIONS,
    METHODS,
    LogPosterior,
    Posterior,
    Prediction,
    calibrate,
    log_posterior,
)
from calibration._observations import UNITS, NoiseModel, Observations
from calibration._population import (
    PopulationPosterior,
    calibrate_population,
    population_log_likelihood,
)
from calibration._priors import DEFAULT_CV, LogNormal, Prior

__all__ = [
    "DEFAULT_CV",
    "LIKELIHOOD_SIMULATE_OPTIONS",
    "METHODS",
    "UNITS",
    "CalibrationError",
    "CalibrationWarning",
    "ChainProcessError",
    "ConvergenceWarning",
    "LogNormal",
    "LogPosterior",
    "NoiseModel",
    "ObservationError",
    "Observations",
    "PopulationPosterior",
    "Posterior",
    "Prediction",
    "Prior",
    "PriorError",
    "SolverFailureWarning",
    "UnknownParameterError",
    "calibrate",
    "calibrate_population",
    "log_posterior",
    "population_log_likelihood",
]
