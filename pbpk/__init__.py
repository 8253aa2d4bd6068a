"""pbpk: physiologically based pharmacokinetic models of radioligands in JAX.

Importing ``pbpk`` switches JAX to 64-bit floats (``jax_enable_x64``). Kinetics need float64;
this is the one process-wide setting the project makes (see DESIGN.md). Voxel dose code keeps
its arrays in float32 by explicit dtype.

Quick start::

    import pbpk
    model = pbpk.psma_model()                       # 177Lu-PSMA-617, ICRP-89 reference male
    result = pbpk.simulate(model, pbpk.Schedule.single(7400.0), [1, 24, 168])
    result.tia_table()                               # MBq h per organ
"""

from __future__ import annotations

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from pbpk._compile import CompiledGraph, compile_graph  # noqa: E402
from pbpk._daughters import (  # noqa: E402
    ELEMENT_KINETICS,
    PB212_LIGANDS,
    ChainModel,
    ChainResult,
    FreeDaughter,
    ac225_psma_model,
    decay_transitions,
    free_ion_graph,
    pb212_sstr_model,
    simulate_chain,
)
from pbpk._dosing import Administration, Schedule  # noqa: E402
from pbpk._errors import (  # noqa: E402
    GraphError,
    InvalidInputError,
    PBPKError,
    SolverError,
    UnitError,
    UnknownNameError,
    UnknownNuclideError,
)
from pbpk._graph import (  # noqa: E402
    Compartment,
    ModelGraph,
    Process,
    binding,
    exchange,
    flow,
    transfer,
)
from pbpk._labs import (  # noqa: E402
    absolute_gfr_ml_min,
    bsa_dubois_m2,
    bsa_mosteller_m2,
    cockcroft_gault_ml_min,
    egfr_ckd_epi_2021,
)
from pbpk._ligands import LIGANDS, Ligand, get_ligand  # noqa: E402
from pbpk._model import PBPKModel, UnpredictedRegionWarning  # noqa: E402
from pbpk._models import RELEASE_MODES, psma_model, sstr_model, theranostic_pair  # noqa: E402
from pbpk._nuclides import (  # noqa: E402
    KNOWN_NUCLIDES,
    Nuclide,
    chain_nonpenetrating_mev,
    decay_chain,
    get_nuclide,
)
from pbpk._physiology import TISSUE_DENSITY_KG_PER_L, Physiology, model_volume_l  # noqa: E402
from pbpk._sbml import from_sbml, to_sbml  # noqa: E402
from pbpk._simulate import STATUS_MESSAGES, SimulationResult, simulate, simulate_cohort  # noqa: E402

__all__ = [
    "Administration", "CompiledGraph", "Compartment", "GraphError", "InvalidInputError",
    "KNOWN_NUCLIDES", "LIGANDS", "Ligand", "ModelGraph", "Nuclide", "PBPKError", "PBPKModel",
    "Physiology", "Process", "RELEASE_MODES", "STATUS_MESSAGES", "Schedule", "SimulationResult",
    "SolverError", "UnitError", "UnknownNameError", "UnknownNuclideError", "absolute_gfr_ml_min",
    "binding", "bsa_dubois_m2", "bsa_mosteller_m2", "chain_nonpenetrating_mev",
    "cockcroft_gault_ml_min", "compile_graph", "decay_chain", "egfr_ckd_epi_2021", "exchange",
    "flow", "get_ligand", "get_nuclide", "psma_model", "simulate", "simulate_cohort",
    "sstr_model", "theranostic_pair", "transfer", "to_sbml", "from_sbml",
    "TISSUE_DENSITY_KG_PER_L", "model_volume_l", "UnpredictedRegionWarning",
    # decay chains with daughter redistribution (alpha emitters)
    "ELEMENT_KINETICS", "PB212_LIGANDS", "ChainModel", "ChainResult", "FreeDaughter",
    "ac225_psma_model", "decay_transitions", "free_ion_graph", "pb212_sstr_model",
    "simulate_chain",
]
