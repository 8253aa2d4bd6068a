"""Voxel S-value kernels against the published Lanconelli et al. 2012 values and ICRP-107.

Independent references:
- self / face / edge / corner values printed in research/dosimetry_reference.md section 1.1
  (read from the Lanconelli 2012 tables), typed in below;
- the ICRP-107 mean energies per decay (research/dosimetry_reference.md section 2 and
  reference/icrp107/icrp107_mean_energy_per_decay_MeV.csv): 90Y mean beta energy 0.93290 MeV;
- an independent Monte Carlo value for anisotropic voxels (DPM, 90Y, 4x4x3 mm: 1.013
  mGy/(MBq s)), quoted in research/dosimetry_reference.md section 1.1.
"""

from __future__ import annotations

import csv
import itertools
import pathlib

import numpy as np
import pytest

import pbpk
from twin.dose import (
    LANCONELLI_VOXEL_SIZES_MM,
    DoseKernel,
    KernelApproximationWarning,
    UnknownTissueError,
    VoxelSizeError,
    dose_kernel,
    lanconelli_kernel,
    lanconelli_table,
    local_deposition_kernel,
)

MGY_S = 3.6  # 1 mGy/(MBq s) = 3.6 Gy/(MBq h)
MEV_J = 1.602176634e-13

# nuclide, voxel mm, S000, S001, S011, S111 in mGy/(MBq s) (research notes section 1.1)
PUBLISHED = [
    ("Lu-177", 2.21, 1.66, 4.83e-2, 2.52e-3, 2.50e-4),
    ("Lu-177", 3.00, 6.93e-1, 1.51e-2, 6.17e-4, 7.98e-5),
    ("Lu-177", 3.59, 4.13e-1, 7.55e-3, 2.80e-4, 4.72e-5),
    ("Lu-177", 4.42, 2.26e-1, 3.39e-3, 1.19e-4, 2.82e-5),
    ("Lu-177", 4.80, 1.78e-1, 2.46e-3, 8.65e-5, 2.35e-5),
    ("Lu-177", 6.00, 9.25e-2, 1.04e-3, 3.94e-5, 1.46e-5),
    ("Lu-177", 9.28, 2.56e-2, 1.98e-4, 1.14e-5, 6.19e-6),
    ("Y-90", 3.00, 1.59, 2.75e-1, 9.50e-2, 4.29e-2),
    ("Y-90", 4.42, 6.89e-1, 9.73e-2, 2.48e-2, 7.78e-3),
    ("Y-90", 6.00, 3.42e-1, 3.80e-2, 6.86e-3, 1.45e-3),
    ("I-131", 3.00, 8.99e-1, 3.02e-2, 2.41e-3, 7.26e-4),
    ("I-131", 4.42, 3.00e-1, 7.33e-3, 6.73e-4, 3.05e-4),
    ("I-131", 6.00, 1.25e-1, 2.47e-3, 2.98e-4, 1.63e-4),
]
Y90_MEAN_BETA_MEV = 0.93290  # ICRP-107
SHARED_SUMMARY = (
    pathlib.Path(__file__).resolve().parents[3]
    / "shared"
    / "reference"
    / "vsv_lanconelli2012"
    / "summary_self_neighbours.csv"
)


def _values(kernel: DoseKernel, offset) -> float:
    c = np.array(kernel.half_size)
    return float(kernel.values_gy_per_mbq_h[tuple(c + np.array(offset))]) / MGY_S


@pytest.mark.parametrize(("nuclide", "size", "s000", "s001", "s011", "s111"), PUBLISHED)
def test_published_self_and_neighbours(nuclide, size, s000, s001, s011, s111):
    k = lanconelli_table(nuclide, size)
    assert k.shape == (11, 11, 11)
    for offset, ref in [((0, 0, 0), s000), ((0, 0, 1), s001), ((0, 1, 1), s011), ((1, 1, 1), s111)]:
        # every mirror image of the neighbour carries the same value
        for signs in itertools.product((-1, 1), repeat=3):
            for perm in set(itertools.permutations(offset)):
                o = tuple(s * p for s, p in zip(signs, perm))
                assert _values(k, o) == pytest.approx(ref, rel=5e-3)
    # lanconelli_kernel at a table size returns the table itself
    built = lanconelli_kernel(nuclide, size)
    np.testing.assert_array_equal(built.values_gy_per_mbq_h, k.values_gy_per_mbq_h)
    assert "table" in built.method


@pytest.mark.skipif(not SHARED_SUMMARY.exists(), reason="shared reference folder not present")
def test_all_tables_match_shared_summary():
    names = {"Lu-177", "Y-90", "I-131"}
    checked = 0
    with SHARED_SUMMARY.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["nuclide"] not in names:
                continue
            k = lanconelli_table(row["nuclide"], float(row["voxel_mm"]), row["tissue"])
            for offset, key in [
                ((0, 0, 0), "S000"),
                ((0, 0, 1), "S001_face"),
                ((0, 1, 1), "S011_edge"),
                ((1, 1, 1), "S111_corner"),
            ]:
                assert _values(k, offset) == pytest.approx(float(row[key]), rel=1e-9)
            checked += 1
    assert checked == 3 * 2 * len(LANCONELLI_VOXEL_SIZES_MM)


@pytest.mark.parametrize("nuclide", ["Lu-177", "Y-90", "I-131"])
@pytest.mark.parametrize("tissue", ["soft", "bone"])
def test_interpolated_kernel_lies_between_neighbouring_tables(nuclide, tissue):
    sizes = LANCONELLI_VOXEL_SIZES_MM
    for lo, hi in itertools.pairwise(sizes):
        mid = 0.5 * (lo + hi)
        k = lanconelli_kernel(nuclide, mid, tissue)
        a = lanconelli_table(nuclide, lo, tissue)
        b = lanconelli_table(nuclide, hi, tissue)
        assert "interpolated" in k.method
        for offset in [(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1), (0, 0, 2)]:
            v, va, vb = _values(k, offset), _values(a, offset), _values(b, offset)
            assert min(va, vb) <= v <= max(va, vb), (mid, offset, va, v, vb)


@pytest.mark.parametrize("size", [2.21, 3.0, 4.42, 6.8, 9.28, 4.6, 7.5])
def test_energy_conservation_y90(size):
    """Sum of S x voxel mass (1.04 g/cm3) = ICRP-107 mean beta energy of 90Y within 0.5 %."""
    k = lanconelli_kernel("Y-90", size)
    mass_kg = 1.04 * (size / 10.0) ** 3 * 1e-3
    energy_mev = float(np.sum(k.values_gy_per_mbq_h)) * mass_kg / 3.6e9 / MEV_J
    assert energy_mev == pytest.approx(Y90_MEAN_BETA_MEV, rel=5e-3)
    assert k.absorbed_energy_per_decay_mev == pytest.approx(energy_mev, rel=1e-12)
    # also against the nuclide data of the pbpk package
    beta = pbpk.get_nuclide("Y-90").energy_per_decay_mev["beta_minus"]
    assert energy_mev == pytest.approx(beta, rel=5e-3)


def test_energy_conservation_y90_compact_bone():
    """The bone tables conserve energy for compact bone at 1.85 g/cm3 (inferred density)."""
    for size in (2.21, 4.42, 9.28):
        k = lanconelli_kernel("Y-90", size, "bone")
        assert k.density_g_cm3 == 1.85
        assert k.absorbed_energy_per_decay_mev == pytest.approx(Y90_MEAN_BETA_MEV, rel=5e-3)


@pytest.mark.parametrize("nuclide, cube_mm, counts", [("Lu-177", 3.0, (1, 1, 2)), ("Y-90", 3.0, (1, 1, 2)),
                                                      ("Lu-177", 2.4, (2, 1, 3))])
def test_block_voxels_dose_equals_the_fine_cubic_dose(nuclide, cube_mm, counts):
    """A 3x3x6 mm voxel is exactly two 3 mm cubes: a random activity map on the coarse grid,
    split evenly over its cubes, convolved with the published cubic table kernel on the fine
    grid (scipy, direct sum) and averaged back over each coarse voxel must give the dose of the
    coarse kernel (independent path: the fine table and scipy only)."""
    from scipy.signal import convolve

    spacing = tuple(cube_mm * n for n in counts)
    k = lanconelli_kernel(nuclide, spacing)
    assert "exact blocks" in k.method
    fine = lanconelli_table(nuclide, cube_mm).values_gy_per_mbq_h
    rng = np.random.default_rng(1)
    coarse_a = rng.uniform(0.0, 1.0, (7, 6, 5))
    coarse_a[2:5, 2:4, 1:4] += 20.0  # an active region with edges
    fine_a = coarse_a
    for axis, n in enumerate(counts):
        fine_a = np.repeat(fine_a, n, axis=axis) / n
    fine_d = convolve(fine_a, fine, mode="same", method="direct")
    back = fine_d
    for axis, n in enumerate(counts):
        shape = list(back.shape)
        back = back.reshape(shape[:axis] + [shape[axis] // n, n] + shape[axis + 1:]).mean(axis=axis + 1)
    ours = convolve(coarse_a, k.values_gy_per_mbq_h, mode="same", method="direct")
    np.testing.assert_allclose(ours, back, rtol=1e-10, atol=1e-12 * back.max())
    # and it deposits the energy of the fine kernel (same voxel mass per unit volume)
    assert k.absorbed_energy_per_decay_mev == pytest.approx(
        lanconelli_table(nuclide, cube_mm).absorbed_energy_per_decay_mev, rel=1e-12)


def test_nearly_cubic_spacing_is_cubic():
    # header rounding (1e-5 relative) must not switch to an anisotropic rule
    k = lanconelli_kernel("Lu-177", (4.42, 4.42, 4.42 * 1.00002))
    assert k.shape == (11, 11, 11) and "anisotropic" not in k.method


def test_anisotropic_kernel():
    with pytest.warns(KernelApproximationWarning, match="approximate"):
        k = lanconelli_kernel("Y-90", (4.0, 4.0, 3.0))
    assert k.spacing_mm == (4.0, 4.0, 3.0)
    assert all(n % 2 == 1 for n in k.shape)
    assert k.shape[2] > k.shape[0]  # finer axis: more voxels for the same physical extent
    assert k.is_symmetric
    # DPM Monte Carlo value for 90Y in 4x4x3 mm voxels: 1.013 mGy/(MBq s); documented +3.9 %
    assert _values(k, (0, 0, 0)) == pytest.approx(1.013, rel=0.05)
    # closer neighbour (3 mm axis) gets more dose than the 4 mm neighbour
    assert _values(k, (0, 0, 1)) > _values(k, (1, 0, 0))
    assert k.absorbed_energy_per_decay_mev == pytest.approx(Y90_MEAN_BETA_MEV, rel=5e-3)


def test_local_deposition_kernel_values():
    # 177Lu: 0.14792 MeV non-penetrating -> 0.085318 Gy kg / (GBq h) (research notes section 2)
    k = local_deposition_kernel("Lu-177", 4.0)
    mass_kg = 1.04 * 0.064 * 1e-3
    assert k.shape == (1, 1, 1)
    assert k.self_value_gy_per_mbq_h * mass_kg * 1e3 == pytest.approx(0.085318, rel=2e-4)
    # 225Ac with daughters in equilibrium: 28.68 MeV per parent decay (research notes)
    ac = local_deposition_kernel("Ac-225", 4.0)
    assert ac.absorbed_energy_per_decay_mev == pytest.approx(28.68, rel=1e-3)
    parent = local_deposition_kernel("Ac-225", 4.0, include_daughters=False)
    assert parent.absorbed_energy_per_decay_mev == pytest.approx(5.91676, rel=1e-4)
    custom = local_deposition_kernel(None, (2.0, 2.0, 3.0), energy_mev=1.0, density_g_cm3=1.0)
    assert custom.absorbed_energy_per_decay_mev == pytest.approx(1.0, rel=1e-12)
    # alpha emitters and nuclides without tables fall back to local deposition
    assert "local deposition" in dose_kernel("Ac-225", 4.0).method
    assert "local deposition" in dose_kernel("Tb-161", 4.0).method
    assert "Lanconelli" in dose_kernel("Lu-177", 4.0).method


@pytest.mark.parametrize("bad", [1.5, 2.0, 9.5, 12.0, (1.0, 1.0, 1.0), (9.5, 9.5, 12.7)])
def test_voxel_size_outside_tables_raises(bad):
    with pytest.raises(VoxelSizeError, match="outside"):
        lanconelli_kernel("Lu-177", bad)


def test_bad_kernel_inputs_raise():
    with pytest.raises(VoxelSizeError):
        lanconelli_kernel("Lu-177", (2.3, 2.3, 8.0))  # too anisotropic
    with pytest.raises(VoxelSizeError):
        lanconelli_table("Lu-177", 4.5)  # not a table size
    with pytest.raises(VoxelSizeError):
        lanconelli_kernel("Lu-177", -3.0)
    with pytest.raises(UnknownTissueError, match="soft"):
        lanconelli_kernel("Lu-177", 4.42, "lung")
    with pytest.raises(pbpk.UnknownNuclideError):
        lanconelli_kernel("Ac-225", 4.42)
    with pytest.raises(pbpk.UnknownNuclideError):
        lanconelli_kernel("Xx-999", 4.42)
    with pytest.raises(pbpk.InvalidInputError):
        DoseKernel(np.ones((2, 3, 3)), (1.0, 1.0, 1.0), "custom", "soft", 1.04, "x")
    with pytest.raises(pbpk.InvalidInputError):
        DoseKernel(-np.ones((3, 3, 3)), (1.0, 1.0, 1.0), "custom", "soft", 1.04, "x")


def test_kernel_is_immutable():
    k = lanconelli_table("Lu-177", 4.42)
    with pytest.raises(ValueError):
        k.values_gy_per_mbq_h[0, 0, 0] = 1.0
