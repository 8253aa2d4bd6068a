"""twin.dose: dosimetry of the theranostic twin.

Organ level (MIRD S-values, patient mass scaling, local deposition, tumour sphere model), voxel
level (Lanconelli voxel S-value kernels, a jit-compiled, differentiable FFT convolution in
float32, CT density correction, voxel TIA maps, dose statistics and DVHs), radiobiology (BED /
EQD2 with organ alpha/beta and repair half-times, organ-at-risk limits) and the conventional
TIA baselines (exponential TAC fits with AIC selection, Hänscheid and Madsen single-time-point
methods).

Units are in the names: TIA in MBq·h, activity in MBq, time in h, dose in Gy, mass in kg,
spacing in mm, density in g/cm3. Importing this package imports :mod:`pbpk` (which turns on
JAX's 64-bit mode); voxel maps are kept in float32 explicitly.
"""

from __future__ import annotations

import pbpk as _pbpk  # noqa: F401  (x64 mode and nuclide data, see DESIGN.md)
from twin.dose._alpha import (
    ALPHA_RBE_DEFAULT,
    AlphaDoseResult,
    alpha_organ_dose,
    chain_dose,
    in_situ_alpha_dose,
    nuclide_energies_mev,
)
from twin.dose._baselines import TAC_MODELS, TACFit, fit_tac, tia_hanscheid, tia_madsen
from twin.dose._convolve import (
    VoxelDosePlan,
    hu_to_density,
    make_dose_plan,
    voxel_dose,
    voxel_dose_rate,
)
from twin.dose._dvh import (
    DoseStatistics,
    cumulative_dvh,
    dose_at_volume,
    dose_statistics,
    region_dose_statistics,
)
from twin.dose._errors import (
    DoseError,
    FitError,
    GridMismatchError,
    UnknownOrganError,
    UnknownTissueError,
    VoxelSizeError,
)
from twin.dose._kernels import (
    KERNEL_NUCLIDES,
    LANCONELLI_VOXEL_SIZES_MM,
    TISSUE_DENSITY_G_CM3,
    DoseKernel,
    KernelApproximationWarning,
    dose_kernel,
    lanconelli_kernel,
    lanconelli_table,
    local_deposition_kernel,
)
from twin.dose._organ import (
    NOT_MASS_SCALED,
    PBPK_SOURCE_REGIONS,
    PHANTOMS,
    REMAINDER_SOURCE,
    OrganDoseResult,
    local_deposition_dose_gy,
    opendose_s_values,
    organ_dose,
    organ_mass_kg,
    organ_s_values,
    reference_organ_masses_kg,
    sphere_dose_gy,
    sphere_s_value,
    tumour_mass_kg,
)
from twin.dose._radiobiology import (
    TissueRadiobiology,
    bed,
    bed_monoexponential,
    bed_multicycle,
    check_oar_limits,
    eqd2,
    g_factor_monoexponential,
    g_factor_multiexponential,
    g_factor_numerical,
    known_tissues,
    oar_limits,
    tissue_parameters,
)
from twin.dose._tia_map import TIADistribution, tia_distribution, voxel_tia_map

__all__ = [
    "PBPK_SOURCE_REGIONS",
    "ALPHA_RBE_DEFAULT",
    "KERNEL_NUCLIDES",
    "KernelApproximationWarning",
    "LANCONELLI_VOXEL_SIZES_MM",
    "NOT_MASS_SCALED",
    "PHANTOMS",
    "REMAINDER_SOURCE",
    "TAC_MODELS",
    "TISSUE_DENSITY_G_CM3",
    "AlphaDoseResult",
    "DoseError",
    "DoseKernel",
    "DoseStatistics",
    "FitError",
    "GridMismatchError",
    "OrganDoseResult",
    "TACFit",
    "TIADistribution",
    "TissueRadiobiology",
    "UnknownOrganError",
    "UnknownTissueError",
    "VoxelDosePlan",
    "VoxelSizeError",
    "alpha_organ_dose",
    "bed",
    "bed_monoexponential",
    "bed_multicycle",
    "chain_dose",
    "check_oar_limits",
    "cumulative_dvh",
    "dose_at_volume",
    "dose_kernel",
    "dose_statistics",
    "eqd2",
    "fit_tac",
    "g_factor_monoexponential",
    "g_factor_multiexponential",
    "g_factor_numerical",
    "hu_to_density",
    "in_situ_alpha_dose",
    "known_tissues",
    "lanconelli_kernel",
    "lanconelli_table",
    "local_deposition_dose_gy",
    "local_deposition_kernel",
    "make_dose_plan",
    "nuclide_energies_mev",
    "oar_limits",
    "opendose_s_values",
    "organ_dose",
    "organ_mass_kg",
    "organ_s_values",
    "reference_organ_masses_kg",
    "region_dose_statistics",
    "sphere_dose_gy",
    "sphere_s_value",
    "tumour_mass_kg",
    "tia_distribution",
    "tia_hanscheid",
    "tia_madsen",
    "tissue_parameters",
    "voxel_dose",
    "voxel_dose_rate",
    "voxel_tia_map",
]
