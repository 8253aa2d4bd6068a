"""Voxel S-value kernels: Lanconelli et al. 2012 tables and local-deposition kernels.

Units
-----
A kernel value ``S[i, j, k]`` is the mean absorbed dose in the voxel at offset ``(i, j, k)``
(in voxels, from the kernel centre) per unit time-integrated activity in the centre voxel, in
**Gy per MBq·h** (the tables print mGy/(MBq·s); 1 mGy/(MBq·s) = 3.6 Gy/(MBq·h)).

Data
----
Lanconelli N. et al., "A free database of radionuclide voxel S values for the dosimetry of
nonuniform activity distributions", Phys Med Biol 2012;57:517-533: one octant (i, j, k = 0..5)
of an 11x11x11 kernel for 13 cubic voxel sizes (2.21-9.28 mm), soft tissue and compact bone.
Shipped here for 177Lu, 90Y and 131I (``data/vsv_lanconelli2012``, see its PROVENANCE.md).
The tables imply a soft-tissue density of 1.04 g/cm3 (the 90Y kernel then returns the ICRP-107
mean beta energy, 0.933 MeV, within 0.3 %) and a compact-bone density of 1.85 g/cm3 (same
check, 0.933 MeV within 0.1 %); these are the reference densities used for voxel masses and
for the CT density correction. A 177Lu kernel holds 0.140-0.146 MeV per decay (2.21-9.28 mm)
against 0.148 MeV of ICRP-107 electrons (its photons, 0.035 MeV, mostly leave the 11^3 grid), so
the kernel dose inside a large uniform region is 1-5 % below local deposition; for 90Y the two
agree within 0.3 %.

Building a kernel for the patient's voxel size
----------------------------------------------
* **Table size** (within 0.5 um): the table itself.
* **Cubic voxel between two table sizes** ``l1 < l < l2``: for every (i, j, k) the energy-like
  quantity ``S * l**3`` (proportional to the fraction of the decay energy absorbed in that voxel)
  is interpolated linearly in ``l`` and divided by ``l**3``. Interpolating ``S`` itself (as some
  codes do) is badly biased because ``S`` falls like ``l**-3`` (up to +24 % on the self value
  in the check below). Accuracy, from a leave-one-out check in which each of the 11 inner table
  sizes is rebuilt from its two neighbouring tables (177Lu, 90Y, 131I): soft tissue -- self
  value within 1.5 %, face neighbour within 2.8 %, edge neighbour within 10 %, corner neighbour
  within 17 % (90Y at 6.8 mm, where that voxel lies beyond the beta range and receives only
  bremsstrahlung), total kernel energy within 0.5 %; compact bone -- self within 2.5 %, energy
  within 2.4 % (the 177Lu bone tables at 2.21-2.4 mm scatter by as much among themselves).
  A real interpolation spans at most half that gap, and the error of a linear interpolation
  falls with the square of the gap, so these are upper bounds.
* **Anisotropic voxels whose sides are whole multiples of one table-range cube** ``s``
  (e.g. 3x3x6 mm = 1x1x2 cubes of 3 mm, 2.4x2.4x4.8 mm; ``s`` down to 2.21 mm, sides within
  0.1 % of ``n s``): exact block construction. Such a voxel is a block of ``n = (nx, ny, nz)``
  cubes, so with the source spread evenly over its cubes and the dose averaged over the
  target's cubes, ``K(I) = sum_d k_s(n I + d) prod_a (n_a - |d_a|) / N**2`` with
  ``N = nx ny nz`` and ``k_s`` the cubic kernel at ``s``. It deposits exactly the energy of
  ``k_s`` and needs no fit; the test builds the 3x3x6 mm kernel both ways.
* **Other anisotropic voxels** ``(dx, dy, dz)``: a heuristic, with a :class:`KernelApproximationWarning`.
  The tables hold cubic voxels only. The kernel is
  built from the cubic kernel of the same voxel volume, ``l_eq = (dx dy dz)**(1/3)``: the self
  value is taken from it, and every other voxel gets the (log-linearly interpolated) radial
  profile of that kernel at its centre distance ``r / l_eq``; the off-centre values are finally
  rescaled so that the kernel deposits the same total energy as the cubic one. Check against an
  independent Monte Carlo value (DPM, 90Y, 4x4x3 mm voxels: S000 = 1.013 mGy/(MBq·s)): this
  method gives 1.052 (+3.9 %). Accepted when ``l_eq`` is inside the table range and the largest
  spacing is at most 3 times the smallest. Its neighbour values are only approximate: a
  centre distance does not say whether two voxels share a face, which is what decides the dose
  of short-range electrons. Against the exact block construction at 3x3x6 mm (177Lu) the face
  neighbour along the long axis came out about 65 times too low and the (1, 1, 0) neighbour 4
  times too high; mean doses of lesions and organs (many voxels) moved by about 1 %, but the
  dose just outside an active region along the long axis was 0.2 times the exact one.
  Resample to cubic voxels (or to sides that are whole multiples of one cube) where the dose
  near edges matters.
* Spacings equal to within 0.1 % (header rounding) are treated as cubic at their geometric mean.
* Outside the table range (``l < 2.21`` or ``l > 9.28`` mm) a :class:`VoxelSizeError` is raised;
  use :func:`local_deposition_kernel` there.

Local deposition
----------------
For nuclides without a kernel table (alpha emitters such as 225Ac, or 161Tb), and as a
conservative model for any nuclide, the non-penetrating energy per decay (ICRP-107: alphas,
recoils, betas, conversion and Auger electrons; for a chain, daughters in equilibrium) is
deposited in the source voxel: ``S = E * 1.602e-13 J/MeV * 3.6e9 decays/(MBq h) / m_voxel``.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pbpk._errors import InvalidInputError, UnknownNuclideError
from pbpk._nuclides import chain_nonpenetrating_mev, get_nuclide
from twin.dose._errors import UnknownTissueError, VoxelSizeError

__all__ = [
    "DECAYS_PER_MBQ_H",
    "KERNEL_NUCLIDES",
    "LANCONELLI_VOXEL_SIZES_MM",
    "MEV_TO_J",
    "TISSUE_DENSITY_G_CM3",
    "DoseKernel",
    "dose_kernel",
    "lanconelli_kernel",
    "lanconelli_table",
    "local_deposition_kernel",
]

#: Cubic voxel sizes of the Lanconelli et al. 2012 tables, mm.
LANCONELLI_VOXEL_SIZES_MM: tuple[float, ...] = (
    2.21,
    2.33,
    2.4,
    3.0,
    3.59,
    3.9,
    4.0,
    4.42,
    4.8,
    5.0,
    6.0,
    6.8,
    9.28,
)
#: Nuclides with shipped voxel S-value tables.
KERNEL_NUCLIDES: tuple[str, ...] = ("Lu-177", "Y-90", "I-131")
#: Reference densities of the kernel media, g/cm3 (inferred from energy conservation of the
#: 90Y tables, see the module docstring).
TISSUE_DENSITY_G_CM3: dict[str, float] = {"soft": 1.04, "bone": 1.85}

MEV_TO_J = 1.602176634e-13  # exact (SI 2019)
DECAYS_PER_MBQ_H = 3.6e9  # 1 MBq for 1 h
_MGY_PER_MBQ_S_TO_GY_PER_MBQ_H = 3.6
_TABLE_TOL_MM = 5e-4
_MAX_ANISOTROPY = 3.0
_CUBIC_RTOL = 1e-3  # spacings equal to within this are one cubic size (header rounding)
_OCTANT = 6  # i, j, k = 0..5
_TABLE_FILES = {"Lu-177": "177Lu", "Y-90": "90Y", "I-131": "131I"}
_TISSUE_ALIASES = {
    "soft": "soft",
    "soft tissue": "soft",
    "soft_tissue": "soft",
    "tissue": "soft",
    "bone": "bone",
    "compact bone": "bone",
    "cortical bone": "bone",
}


@dataclass(frozen=True, eq=False)
class DoseKernel:
    """A voxel S-value kernel on a (possibly anisotropic) voxel grid.

    Attributes
    ----------
    values_gy_per_mbq_h : numpy.ndarray
        Kernel values, float64, odd size along every axis, centre voxel in the middle; the
        mean dose in each voxel per MBq·h in the centre voxel. Read-only.
    spacing_mm : tuple of 3 floats
        Voxel size along the three array axes, mm.
    nuclide : str
        Canonical nuclide name (``"Lu-177"``), or ``"custom"``.
    tissue : str
        Kernel medium: ``"soft"`` or ``"bone"``.
    density_g_cm3 : float
        Density of the kernel medium; voxel masses and the CT density correction use it.
    method : str
        How the kernel was obtained (table, interpolation, anisotropic rule, local deposition),
        so that a result can say which model produced it.
    """

    values_gy_per_mbq_h: np.ndarray = field(repr=False)
    spacing_mm: tuple[float, float, float]
    nuclide: str
    tissue: str
    density_g_cm3: float
    method: str

    def __post_init__(self) -> None:
        values = np.array(self.values_gy_per_mbq_h, dtype=np.float64, copy=True)
        if values.ndim != 3 or any(n % 2 == 0 for n in values.shape):
            raise InvalidInputError(
                f"a dose kernel must be a 3-D array with an odd size along every axis (centre "
                f"voxel in the middle), got shape {values.shape}"
            )
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise InvalidInputError("dose kernel values must be finite and non-negative")
        spacing = _spacing3(self.spacing_mm)
        if not (math.isfinite(self.density_g_cm3) and self.density_g_cm3 > 0):
            raise InvalidInputError(
                f"kernel density must be a positive number of g/cm3, got {self.density_g_cm3!r}"
            )
        values.setflags(write=False)
        object.__setattr__(self, "values_gy_per_mbq_h", values)
        object.__setattr__(self, "spacing_mm", spacing)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Kernel size in voxels along each axis (odd)."""
        return tuple(int(n) for n in self.values_gy_per_mbq_h.shape)

    @property
    def half_size(self) -> tuple[int, int, int]:
        """Number of voxels from the centre to the kernel edge along each axis."""
        return tuple(n // 2 for n in self.shape)

    @property
    def voxel_volume_ml(self) -> float:
        """Voxel volume, mL (cm3)."""
        return math.prod(self.spacing_mm) * 1e-3

    @property
    def voxel_mass_kg(self) -> float:
        """Mass of one voxel of the kernel medium, kg."""
        return self.density_g_cm3 * self.voxel_volume_ml * 1e-3

    @property
    def self_value_gy_per_mbq_h(self) -> float:
        """S-value of the centre voxel onto itself, Gy/(MBq·h)."""
        return float(self.values_gy_per_mbq_h[self.half_size])

    @property
    def absorbed_energy_per_decay_mev(self) -> float:
        """Energy absorbed inside the kernel per decay, MeV: sum of S x voxel mass.

        For a pure beta emitter this equals the mean beta energy when the kernel extends past
        the electron range (an energy-conservation check of the kernel).
        """
        joule_per_mbq_h = float(np.sum(self.values_gy_per_mbq_h)) * self.voxel_mass_kg
        return joule_per_mbq_h / DECAYS_PER_MBQ_H / MEV_TO_J

    @property
    def is_symmetric(self) -> bool:
        """True if the kernel is mirror-symmetric along every axis (its spectrum is real)."""
        v = self.values_gy_per_mbq_h
        scale = float(np.max(np.abs(v))) or 1.0
        return all(
            np.allclose(v, np.flip(v, axis=a), rtol=0.0, atol=1e-12 * scale) for a in range(3)
        )


def _spacing3(spacing_mm: float | Sequence[float]) -> tuple[float, float, float]:
    """Voxel spacing (mm) as three positive finite floats: one value (also a 0-d array) for
    isotropic voxels, or three. The one spacing check of twin.dose."""
    try:
        sp = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"spacing_mm (voxel spacing) must be one number or three numbers in mm, got {spacing_mm!r}"
        ) from None
    if sp.size == 1:
        sp = np.repeat(sp, 3)
    if sp.size != 3 or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise VoxelSizeError(
            f"spacing_mm (voxel spacing) must be one or three positive, finite numbers in mm "
            f"(one for isotropic voxels), got {spacing_mm!r}"
        )
    return tuple(float(x) for x in sp)  # type: ignore[return-value]


def _tissue(tissue: str) -> str:
    key = str(tissue).strip().lower()
    if key not in _TISSUE_ALIASES:
        raise UnknownTissueError(
            f"unknown kernel tissue {tissue!r}; the voxel S-value tables exist for "
            f"{sorted(set(_TISSUE_ALIASES.values()))} (aliases: {sorted(_TISSUE_ALIASES)})"
        )
    return _TISSUE_ALIASES[key]


def _kernel_nuclide(nuclide: str) -> str:
    name = get_nuclide(nuclide).name  # raises UnknownNuclideError with the known names
    if name not in _TABLE_FILES:
        raise UnknownNuclideError(
            f"no voxel S-value table for {name}; tables exist for {', '.join(KERNEL_NUCLIDES)}. "
            "Use local_deposition_kernel() (or dose_kernel(), which falls back to it) for "
            "other nuclides."
        )
    return name


@functools.cache
def _octant(nuclide: str, voxel_mm: float, tissue: str) -> np.ndarray:
    """Read one table octant (6x6x6), mGy/(MBq·s)."""
    fname = f"{_TABLE_FILES[nuclide]}{voxel_mm:g}mm{tissue}.txt"
    text = (
        importlib.resources.files("twin.dose")
        .joinpath("data", "vsv_lanconelli2012", fname)
        .read_text(encoding="latin-1")
    )
    lines = [line.split() for line in text.splitlines()[2:] if line.strip()]
    octant = np.full((_OCTANT,) * 3, np.nan)
    for i, j, k, s in lines:
        octant[int(i), int(j), int(k)] = float(s)
    if np.isnan(octant).any():
        raise RuntimeError(f"shipped table {fname} is incomplete (expected 216 rows)")
    octant.setflags(write=False)
    return octant


def _mirror(octant: np.ndarray) -> np.ndarray:
    """Build the full (2n-1)^3 kernel from the octant with index 0 at the centre."""
    full = octant
    for axis in range(3):
        full = np.concatenate([np.flip(np.delete(full, 0, axis=axis), axis=axis), full], axis)
    return full


def _table_index(voxel_mm: float) -> int | None:
    for idx, size in enumerate(LANCONELLI_VOXEL_SIZES_MM):
        if abs(voxel_mm - size) <= _TABLE_TOL_MM:
            return idx
    return None


def _check_range(voxel_mm: float, what: str) -> None:
    lo, hi = LANCONELLI_VOXEL_SIZES_MM[0], LANCONELLI_VOXEL_SIZES_MM[-1]
    if not (lo - _TABLE_TOL_MM <= voxel_mm <= hi + _TABLE_TOL_MM):
        raise VoxelSizeError(
            f"{what} {voxel_mm:g} mm is outside the voxel S-value tables ({lo:g}-{hi:g} mm). "
            "Resample the images to a voxel size inside that range, or use "
            "local_deposition_kernel() for a local-deposition dose."
        )


def _cubic_values(nuclide: str, voxel_mm: float, tissue: str) -> tuple[np.ndarray, str]:
    """Full 11^3 kernel (Gy/(MBq·h)) for a cubic voxel inside the table range."""
    _check_range(voxel_mm, "voxel size")
    idx = _table_index(voxel_mm)
    if idx is not None:
        size = LANCONELLI_VOXEL_SIZES_MM[idx]
        values = _mirror(_octant(nuclide, size, tissue)) * _MGY_PER_MBQ_S_TO_GY_PER_MBQ_H
        return values, f"Lanconelli 2012 table, {size:g} mm"
    sizes = LANCONELLI_VOXEL_SIZES_MM
    upper = next(i for i, s in enumerate(sizes) if s > voxel_mm)
    l1, l2 = sizes[upper - 1], sizes[upper]
    weight = (voxel_mm - l1) / (l2 - l1)
    energy1 = _octant(nuclide, l1, tissue) * l1**3
    energy2 = _octant(nuclide, l2, tissue) * l2**3
    octant = ((1.0 - weight) * energy1 + weight * energy2) / voxel_mm**3
    values = _mirror(octant) * _MGY_PER_MBQ_S_TO_GY_PER_MBQ_H
    return values, (
        f"Lanconelli 2012 tables, S*l^3 interpolated linearly between {l1:g} and {l2:g} mm"
    )


def lanconelli_table(nuclide: str, voxel_mm: float, tissue: str = "soft") -> DoseKernel:
    """Return one published Lanconelli et al. 2012 kernel (11x11x11) exactly as tabulated.

    Parameters
    ----------
    nuclide : str
        ``"Lu-177"``, ``"Y-90"`` or ``"I-131"`` (any spelling :func:`pbpk.get_nuclide` accepts).
    voxel_mm : float
        One of :data:`LANCONELLI_VOXEL_SIZES_MM`.
    tissue : str
        ``"soft"`` or ``"bone"``.

    Raises
    ------
    VoxelSizeError
        If ``voxel_mm`` is not a table size (use :func:`lanconelli_kernel` to interpolate).
    UnknownNuclideError, UnknownTissueError
        For a nuclide or tissue without a table.
    """
    name, medium = _kernel_nuclide(nuclide), _tissue(tissue)
    idx = _table_index(float(voxel_mm))
    if idx is None:
        raise VoxelSizeError(
            f"{voxel_mm!r} mm is not a table voxel size; table sizes are "
            f"{list(LANCONELLI_VOXEL_SIZES_MM)} mm (lanconelli_kernel() interpolates between them)"
        )
    values, method = _cubic_values(name, LANCONELLI_VOXEL_SIZES_MM[idx], medium)
    size = LANCONELLI_VOXEL_SIZES_MM[idx]
    return DoseKernel(
        values, (size, size, size), name, medium, TISSUE_DENSITY_G_CM3[medium], method
    )


class KernelApproximationWarning(UserWarning):
    """A voxel kernel was built by an approximate rule (anisotropic voxels that are not whole
    multiples of one cube); see the :mod:`twin.dose` kernel notes for its accuracy."""


def _block_counts(spacing: tuple[float, float, float]) -> tuple[float, tuple[int, int, int]] | None:
    """``(s, n)`` with every side ``n_a * s`` (within 0.1 %) and ``s`` inside the table range,
    the largest such cube; ``None`` if there is none."""
    lo = LANCONELLI_VOXEL_SIZES_MM[0] - _TABLE_TOL_MM
    for m in range(1, 5):
        size = min(spacing) / m
        if size < lo:
            return None
        counts = [d / size for d in spacing]
        if size <= LANCONELLI_VOXEL_SIZES_MM[-1] + _TABLE_TOL_MM and all(abs(c - round(c)) <= _CUBIC_RTOL * c for c in counts):
            return size, tuple(int(round(c)) for c in counts)
    return None


def _block_values(
    nuclide: str, spacing: tuple[float, float, float], tissue: str, size: float, counts: tuple[int, int, int]
) -> tuple[np.ndarray, str]:
    """Exact kernel of voxels made of ``counts`` cubes of ``size`` mm (module docstring)."""
    fine, fine_method = _cubic_values(nuclide, size, tissue)
    h = fine.shape[0] // 2
    halves = [(h + n - 1) // n for n in counts]  # coarse offsets that reach the fine table
    out = np.zeros([2 * H + 1 for H in halves])
    n_total = math.prod(counts)
    # differences d between a source cube and a target cube, weighted by how many pairs have them
    diffs = [(d, math.prod(n - abs(x) for n, x in zip(counts, d)))
             for d in itertools.product(*[range(1 - n, n) for n in counts])]
    for coarse in itertools.product(*[range(-H, H + 1) for H in halves]):
        total = 0.0
        for d, w in diffs:
            o = [n * c + x for n, c, x in zip(counts, coarse, d)]
            if all(abs(x) <= h for x in o):
                total += w * fine[o[0] + h, o[1] + h, o[2] + h]
        out[tuple(c + H for c, H in zip(coarse, halves))] = total
    out /= n_total**2
    return out, (
        f"{fine_method}; anisotropic {spacing[0]:g}x{spacing[1]:g}x{spacing[2]:g} mm as exact blocks "
        f"of {counts[0]}x{counts[1]}x{counts[2]} cubes of {size:g} mm"
    )


def _anisotropic_values(
    nuclide: str, spacing: tuple[float, float, float], tissue: str
) -> tuple[np.ndarray, str]:
    l_eq = math.prod(spacing) ** (1.0 / 3.0)
    ratio = max(spacing) / min(spacing)
    if ratio > _MAX_ANISOTROPY:
        raise VoxelSizeError(
            f"voxel spacing {spacing} mm is too anisotropic (largest/smallest = {ratio:.2f} > "
            f"{_MAX_ANISOTROPY:g}); the anisotropic kernel rule is not validated there. Resample "
            "the images to a more isotropic grid."
        )
    _check_range(l_eq, "equivalent cubic voxel size (dx*dy*dz)^(1/3) =")
    warnings.warn(
        f"voxel spacing {spacing[0]:g}x{spacing[1]:g}x{spacing[2]:g} mm is anisotropic and not made of "
        "whole cubes of one size: the kernel is approximate (mean organ/lesion doses within about "
        "1 %, but the dose of voxels next to an active region can be off by large factors along "
        "the longest axis). Resample to cubic voxels where dose near edges matters.",
        KernelApproximationWarning, stacklevel=4)
    cubic, _ = _cubic_values(nuclide, l_eq, tissue)
    half = cubic.shape[0] // 2
    # radial profile of the cubic kernel: mean value per distinct centre distance (voxel units)
    offsets = np.indices(cubic.shape) - half
    radius = np.sqrt(np.sum(offsets.astype(np.float64) ** 2, axis=0))
    keys = np.round(radius, 9)
    radii = np.unique(keys)
    profile = np.array([cubic[keys == r].mean() for r in radii])
    # new grid: cover the same physical half-width (half * l_eq) along every axis
    halves = [math.floor(half * l_eq / d + 1e-9) for d in spacing]
    axes = [np.arange(-h, h + 1) * d for h, d in zip(halves, spacing)]
    grid = np.meshgrid(*axes, indexing="ij")
    rho = np.sqrt(sum(g**2 for g in grid)) / l_eq
    values = np.exp(np.interp(rho, radii, np.log(profile)))
    values[rho > radii[-1]] = 0.0
    centre = tuple(halves)
    cubic_mass = l_eq**3
    voxel_mass = math.prod(spacing)
    off_cubic = (np.sum(cubic) - cubic[(half,) * 3]) * cubic_mass
    off_new = (np.sum(values) - values[centre]) * voxel_mass
    values *= off_cubic / off_new
    values[centre] = cubic[(half,) * 3]
    return values, (
        f"Lanconelli 2012 tables, anisotropic {spacing[0]:g}x{spacing[1]:g}x{spacing[2]:g} mm: "
        f"cubic kernel of equal volume (l_eq = {l_eq:.3f} mm), radial profile, energy-normalised"
    )


def lanconelli_kernel(
    nuclide: str, spacing_mm: float | Sequence[float], tissue: str = "soft"
) -> DoseKernel:
    """Build a voxel S-value kernel for the patient's voxel size from the Lanconelli tables.

    Parameters
    ----------
    nuclide : str
        ``"Lu-177"``, ``"Y-90"`` or ``"I-131"``.
    spacing_mm : float or 3 floats
        Voxel size (cubic) or voxel spacing along the three array axes, mm.
    tissue : str
        ``"soft"`` (density 1.04 g/cm3) or ``"bone"`` (compact bone, 1.85 g/cm3).

    Returns
    -------
    DoseKernel
        Table kernel, interpolated cubic kernel or anisotropic kernel; ``method`` says which
        (the module docstring gives the rules and their accuracy).

    Raises
    ------
    VoxelSizeError
        Voxel size outside 2.21-9.28 mm, or anisotropy above 3.

    Warns
    -----
    KernelApproximationWarning
        Anisotropic voxels that are not whole multiples of one cube (approximate kernel).
    UnknownNuclideError, UnknownTissueError
        No table for this nuclide or tissue.
    """
    name, medium = _kernel_nuclide(nuclide), _tissue(tissue)
    spacing = _spacing3(spacing_mm)
    if max(spacing) - min(spacing) <= _CUBIC_RTOL * max(spacing):
        values, method = _cubic_values(name, math.prod(spacing) ** (1.0 / 3.0), medium)
    elif (block := _block_counts(spacing)) is not None:
        values, method = _block_values(name, spacing, medium, *block)
    else:
        values, method = _anisotropic_values(name, spacing, medium)
    return DoseKernel(values, spacing, name, medium, TISSUE_DENSITY_G_CM3[medium], method)


def _nonpenetrating_energy_mev(nuclide: str, include_daughters: bool) -> tuple[str, float, str]:
    nuc = get_nuclide(nuclide)
    if include_daughters:
        energy = chain_nonpenetrating_mev(nuc.name)
        what = "ICRP-107 non-penetrating energy, chain with daughters in equilibrium"
    else:
        energy = nuc.nonpenetrating_mev
        what = "ICRP-107 non-penetrating energy of the parent only"
    return nuc.name, energy, what


def local_deposition_kernel(
    nuclide: str | None,
    spacing_mm: float | Sequence[float],
    *,
    density_g_cm3: float = TISSUE_DENSITY_G_CM3["soft"],
    energy_mev: float | None = None,
    include_daughters: bool = True,
) -> DoseKernel:
    """Local-deposition kernel (1x1x1): all non-penetrating energy stays in the source voxel.

    Parameters
    ----------
    nuclide : str or None
        Nuclide whose ICRP-107 non-penetrating energy is used (alphas, recoils, betas,
        conversion and Auger electrons). ``None`` requires ``energy_mev``.
    spacing_mm : float or 3 floats
        Voxel spacing, mm (any size: no table is involved).
    density_g_cm3 : float
        Density of the medium (default soft tissue, 1.04 g/cm3).
    energy_mev : float, optional
        Energy deposited per decay of the parent, MeV. Overrides the nuclide data; use it when
        the PBPK model redistributes daughters (pass the fraction of daughter energy released
        at the parent's site).
    include_daughters : bool
        With ``energy_mev`` not given: add the daughters' energy per parent decay assuming they
        decay where the parent did (secular equilibrium; see
        :func:`pbpk._nuclides.chain_nonpenetrating_mev`). For 225Ac this gives 28.7 MeV.
    """
    spacing = _spacing3(spacing_mm)
    if energy_mev is None:
        if nuclide is None:
            raise InvalidInputError("give a nuclide or energy_mev for a local-deposition kernel")
        name, energy, what = _nonpenetrating_energy_mev(nuclide, include_daughters)
    else:
        energy = float(energy_mev)
        if not (math.isfinite(energy) and energy >= 0):
            raise InvalidInputError(f"energy_mev must be finite and >= 0, got {energy_mev!r}")
        name = get_nuclide(nuclide).name if nuclide is not None else "custom"
        what = "user-supplied energy per decay"
    if not (math.isfinite(density_g_cm3) and density_g_cm3 > 0):
        raise InvalidInputError(f"density_g_cm3 must be positive, got {density_g_cm3!r}")
    mass_kg = density_g_cm3 * math.prod(spacing) * 1e-6
    s_value = energy * MEV_TO_J * DECAYS_PER_MBQ_H / mass_kg
    tissue = "soft" if abs(density_g_cm3 - TISSUE_DENSITY_G_CM3["soft"]) < 1e-12 else "custom"
    return DoseKernel(
        np.full((1, 1, 1), s_value),
        spacing,
        name,
        tissue,
        float(density_g_cm3),
        f"local deposition of {energy:.6g} MeV per decay ({what})",
    )


def dose_kernel(
    nuclide: str,
    spacing_mm: float | Sequence[float],
    tissue: str = "soft",
    *,
    include_daughters: bool = True,
) -> DoseKernel:
    """The best available kernel: Lanconelli tables where they exist, else local deposition.

    Alpha emitters and nuclides without tables (225Ac, 212Pb, 161Tb, ...) get a
    local-deposition kernel of the chain's non-penetrating energy; the returned kernel's
    ``method`` says which model was used. Voxel sizes outside the tables raise
    :class:`VoxelSizeError` for table nuclides (no silent fallback).
    """
    name = get_nuclide(nuclide).name
    medium = _tissue(tissue)
    if name in _TABLE_FILES:
        return lanconelli_kernel(name, spacing_mm, medium)
    return local_deposition_kernel(
        name,
        spacing_mm,
        density_g_cm3=TISSUE_DENSITY_G_CM3[medium],
        include_daughters=include_daughters,
    )
