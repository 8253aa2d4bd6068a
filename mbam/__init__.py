"""Manifold Boundary Approximation Method (MBAM), generic over any differentiable JAX model.

A model (:class:`Model`) maps log-parameters ``x = log(theta)`` to predictions on a fixed
observation design; ``residuals = predictions / sigma``. This package provides the Fisher metric
and its sloppiness spectrum, geodesics on the model manifold (forward-over-forward second
directional derivative, SVD least-squares solve, constant parameter speed, event stopping), the
identification of the limit a geodesic reaches, a least-squares refit, and a simple reduction
loop that applies limits numerically as log-linear reparameterisations.
Importing :mod:`mbam` imports :mod:`pbpk`, which switches JAX to float64.
"""

import pbpk  # noqa: F401  (float64, error hierarchy)

from . import _models as models
from ._fisher import FisherSpectrum, fisher_metric, fisher_spectrum, jacobian, plot_spectrum
from ._geodesic import (
    GeodesicResult,
    geodesic_acceleration,
    initial_velocity,
    integrate_geodesic,
    second_directional_derivative,
)
from ._limits import (
    Boundary,
    BoundarySearch,
    FiniteCombination,
    Fold,
    LimitReport,
    ParameterLimit,
    find_boundaries,
    identify_limit,
)
from ._model import GeodesicError, MBAMError, Model, relative_sigma
from ._pbpk import (
    GraphRewrite,
    apply_limit_to_model,
    combine_parameters,
    eliminate_transit,
    equilibrium_binding,
    instantaneous_transfer,
    lump_parallel,
    merge_exchange,
    parallel_groups,
    remove_process,
    transit_candidates,
)
from ._pbpk_reduce import (
    AGENT_PARAMETERS,
    DesignError,
    PBPKReduction,
    PBPKReductionStep,
    PopulationCheck,
    ReductionDesign,
    design_model,
    load_reduced,
    patient_parameters,
    prune_unreachable,
    reduce_pbpk,
    reducible_parameters,
)
from ._reduce import (
    LimitReparameterisation,
    ReductionResult,
    ReductionStep,
    apply_limit,
    reduce,
)
from ._refit import FitError, FitResult, refit

__all__ = [
    "AGENT_PARAMETERS",
    "Boundary",
    "BoundarySearch",
    "DesignError",
    "FiniteCombination",
    "FisherSpectrum",
    "FitError",
    "FitResult",
    "Fold",
    "GeodesicError",
    "GeodesicResult",
    "GraphRewrite",
    "LimitReparameterisation",
    "LimitReport",
    "MBAMError",
    "Model",
    "PBPKReduction",
    "PBPKReductionStep",
    "ParameterLimit",
    "PopulationCheck",
    "ReductionDesign",
    "ReductionResult",
    "ReductionStep",
    "apply_limit",
    "apply_limit_to_model",
    "combine_parameters",
    "design_model",
    "eliminate_transit",
    "equilibrium_binding",
    "find_boundaries",
    "fisher_metric",
    "fisher_spectrum",
    "geodesic_acceleration",
    "identify_limit",
    "initial_velocity",
    "instantaneous_transfer",
    "integrate_geodesic",
    "jacobian",
    "load_reduced",
    "lump_parallel",
    "merge_exchange",
    "models",
    "parallel_groups",
    "patient_parameters",
    "plot_spectrum",
    "prune_unreachable",
    "reduce",
    "reduce_pbpk",
    "reducible_parameters",
    "refit",
    "relative_sigma",
    "remove_process",
    "transit_candidates",
    "second_directional_derivative",
]
