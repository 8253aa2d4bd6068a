"""FFT voxel dose: scipy.signal.fftconvolve, finite differences, analytic uniform dose, CT density.

Independent references:
- scipy.signal.fftconvolve in float64 (the 'same' linear convolution);
- scipy.signal.correlate for the adjoint (gradient of a linear functional);
- finite differences of a quadratic loss (no truncation error: only float32 rounding);
- the local-deposition dose ``TIA * E / m`` with the ICRP-107 mean beta energy of 90Y
  (0.93290 MeV), for uniform activity far from the region edge;
- the Schneider 2000 table points typed in from the reference file.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

import pbpk
from twin.dose import (
    DoseKernel,
    GridMismatchError,
    hu_to_density,
    lanconelli_kernel,
    local_deposition_kernel,
    make_dose_plan,
    voxel_dose,
    voxel_dose_rate,
)

MEV_J = 1.602176634e-13
RNG = np.random.default_rng(20240521)


def _ref(x, kernel_values):
    return scipy.signal.fftconvolve(np.asarray(x, np.float64), kernel_values, mode="same")


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(
    ("kernel", "shape"),
    [
        (lanconelli_kernel("Lu-177", 4.42), (32, 32, 32)),
        (lanconelli_kernel("Lu-177", 4.42), (33, 20, 47)),
        (lanconelli_kernel("Y-90", (3.0, 3.0, 6.0)), (24, 30, 40)),
        (lanconelli_kernel("I-131", 3.3), (7, 9, 6)),  # grid smaller than the kernel
        (local_deposition_kernel("Ac-225", 4.0), (16, 16, 16)),
    ],
)
def test_matches_scipy_fftconvolve(kernel, shape):
    tia = RNG.gamma(2.0, 10.0, size=shape).astype(np.float32)
    plan = make_dose_plan(kernel, shape)
    dose = voxel_dose(tia, plan)
    assert dose.dtype == jnp.float32
    assert dose.shape == shape
    assert _rel(dose, _ref(tia, kernel.values_gy_per_mbq_h)) < 1e-5


def test_asymmetric_kernel_uses_complex_spectrum():
    values = RNG.random((5, 7, 3))
    kernel = DoseKernel(values, (3.0, 3.0, 3.0), "custom", "soft", 1.04, "random test kernel")
    assert not kernel.is_symmetric
    shape = (20, 18, 22)
    plan = make_dose_plan(kernel, shape)
    assert plan.spectrum.dtype == jnp.complex64
    tia = RNG.random(shape).astype(np.float32)
    assert _rel(voxel_dose(tia, plan), _ref(tia, values)) < 1e-5
    # gradient of a linear functional = correlation of the weights with the kernel
    w = RNG.random(shape)
    grad = jax.grad(lambda x: jnp.sum(voxel_dose(x, plan) * w))(jnp.asarray(tia))
    ref = scipy.signal.correlate(w, values, mode="same")
    assert _rel(grad, ref) < 1e-5


def test_symmetric_kernel_has_real_float32_spectrum():
    plan = make_dose_plan(lanconelli_kernel("Lu-177", 4.42), (40, 40, 40))
    assert plan.spectrum.dtype == jnp.float32
    assert all(f >= n + 5 for f, n in zip(plan.fft_shape, plan.shape))
    # one 2-D (y, z) spectrum per kernel x-plane
    assert plan.spectrum.shape == (11, plan.fft_shape[1], plan.fft_shape[2] // 2 + 1)


def _mirror_symmetric(values):
    for axis in range(3):
        values = values + np.flip(values, axis=axis)
    return values


@pytest.mark.parametrize(
    ("kernel_shape", "shape", "symmetric"),
    [
        # several 16-plane chunks in the loop, a ragged last chunk, chunks reading past the end
        ((11, 11, 11), (71, 20, 18), True),
        ((9, 5, 7), (64, 12, 10), False),
        # kernel half-width along x (20) larger than a chunk (16 planes)
        ((41, 3, 5), (50, 9, 11), True),
        ((41, 3, 5), (50, 9, 11), False),
        ((7, 7, 7), (16, 8, 8), True),  # exactly one chunk
    ],
)
def test_streamed_convolution_and_adjoint_match_scipy(kernel_shape, shape, symmetric):
    values = RNG.random(kernel_shape)
    if symmetric:
        values = _mirror_symmetric(values)
    kernel = DoseKernel(values, (3.0, 3.0, 3.0), "custom", "soft", 1.04, "random test kernel")
    assert kernel.is_symmetric == symmetric
    plan = make_dose_plan(kernel, shape)
    tia = RNG.gamma(2.0, 5.0, size=shape).astype(np.float32)
    assert _rel(voxel_dose(tia, plan), _ref(tia, values)) < 1e-5
    w = RNG.random(shape)
    grad = jax.grad(lambda x: jnp.sum(voxel_dose(x, plan) * w))(jnp.asarray(tia))
    assert _rel(grad, scipy.signal.correlate(w, values, mode="same")) < 1e-5


def test_float32_kept_under_x64():
    assert jax.config.jax_enable_x64
    plan = make_dose_plan(lanconelli_kernel("Lu-177", 4.42), (16, 16, 16))
    tia64 = np.ones((16, 16, 16), dtype=np.float64)
    dens = np.full((16, 16, 16), 1.1)
    assert voxel_dose(tia64, plan).dtype == jnp.float32
    assert voxel_dose(tia64, plan, density_g_cm3=dens).dtype == jnp.float32
    assert hu_to_density(np.zeros((2, 2, 2), np.int16)).dtype == jnp.float32


def test_gradient_matches_finite_differences():
    shape = (20, 22, 18)
    kernel = lanconelli_kernel("Y-90", 4.8)
    plan = make_dose_plan(kernel, shape)
    x0 = jnp.asarray(RNG.gamma(2.0, 5.0, size=shape).astype(np.float32))
    target = jnp.asarray(RNG.random(shape).astype(np.float32))
    density = jnp.asarray(RNG.uniform(0.9, 1.3, size=shape).astype(np.float32))

    @jax.jit  # traced: x0 - eps v may be negative, which an eager call would reject
    def loss(x):
        d = voxel_dose(x, plan, density_g_cm3=density)
        return 0.5 * jnp.sum((d.astype(jnp.float64) - target) ** 2)

    grad = jax.grad(loss)(x0)
    assert grad.shape == shape
    # exact adjoint in float64: grad = correlate(rho_ref / rho * (D - target), S)
    k = kernel.values_gy_per_mbq_h
    ratio = 1.04 / np.asarray(density, np.float64)
    d64 = _ref(x0, k) * ratio
    exact = scipy.signal.correlate((d64 - np.asarray(target, np.float64)) * ratio, k, mode="same")
    assert _rel(grad, exact) < 1e-5
    for _ in range(3):
        v = jnp.asarray(RNG.standard_normal(shape).astype(np.float32))
        # the loss is quadratic, so central differences have no truncation error whatever eps;
        # what remains is the float32 rounding of the FFT (~1e-6 of the largest dose)
        eps = 2.0
        fd = (loss(x0 + eps * v) - loss(x0 - eps * v)) / (2 * eps)
        ad = jnp.sum(grad.astype(jnp.float64) * v)
        assert float(ad) == pytest.approx(float(fd), rel=1e-3)


def test_gradient_inside_user_jit_and_plan_as_argument():
    shape = (12, 12, 12)
    plan = make_dose_plan(lanconelli_kernel("Lu-177", 4.0), shape)

    @jax.jit
    def mean_dose(x, p):
        return jnp.mean(voxel_dose(x, p))

    x = jnp.ones(shape, jnp.float32)
    g = jax.jit(jax.grad(mean_dose))(x, plan)
    # d(mean dose)/d(tia_j) = sum_i S(i - j) / n: the kernel sum for voxels far from the edge
    ref = scipy.signal.correlate(
        np.full(shape, 1.0 / x.size), plan.kernel.values_gy_per_mbq_h, mode="same"
    )
    assert _rel(g, ref) < 1e-5
    assert float(mean_dose(x, plan)) == pytest.approx(
        float(np.mean(_ref(x, plan.kernel.values_gy_per_mbq_h))), rel=1e-5
    )


def test_uniform_activity_equals_local_deposition():
    """Interior of a large uniform region: kernel dose = TIA E / m within 2 % (90Y, pure beta)."""
    spacing = 4.42
    kernel = lanconelli_kernel("Y-90", spacing)
    shape = (30, 30, 30)
    tia_per_voxel = 100.0  # MBq h
    plan = make_dose_plan(kernel, shape)
    dose = np.asarray(voxel_dose(np.full(shape, tia_per_voxel, np.float32), plan))
    mass_kg = 1.04 * (spacing / 10.0) ** 3 * 1e-3
    expected = tia_per_voxel * 3.6e9 * 0.93290 * MEV_J / mass_kg
    interior = dose[10:20, 10:20, 10:20]  # >= 10 voxels (44 mm) from the edge, > 90Y range
    assert np.max(np.abs(interior / expected - 1.0)) < 0.02
    # and the local-deposition kernel gives TIA E_np / m everywhere (90Y non-penetrating energy,
    # beta + conversion electrons: 0.93311 MeV, ICRP-107)
    ld = local_deposition_kernel("Y-90", spacing)
    ld_dose = voxel_dose(np.full(shape, tia_per_voxel, np.float32), make_dose_plan(ld, shape))
    expected_np = tia_per_voxel * 3.6e9 * 0.93311 * MEV_J / mass_kg
    assert float(jnp.max(jnp.abs(ld_dose / expected_np - 1))) < 1e-4


def test_density_correction():
    shape = (16, 16, 16)
    kernel = lanconelli_kernel("Lu-177", 4.42)
    plan = make_dose_plan(kernel, shape)
    tia = RNG.random(shape).astype(np.float32)
    base = np.asarray(voxel_dose(tia, plan), np.float64)
    rho = np.where(RNG.random(shape) > 0.5, 2.08, 1.04).astype(np.float32)
    corrected = np.asarray(voxel_dose(tia, plan, density_g_cm3=rho), np.float64)
    np.testing.assert_allclose(corrected, base * 1.04 / rho, rtol=1e-6)


def test_hu_to_density_table_points():
    # Schneider 2000 points (reference/hu_to_density_schneider2000.txt)
    hu = np.array([-1000, -98, 14, 23, 100, 101, 1600, 3000, -2000, 4000, 57])
    rho = np.asarray(hu_to_density(hu), np.float64)
    expected = [0.00121, 0.93, 1.03, 1.031, 1.1199, 1.0762, 1.9642, 2.8, 0.00121, 2.8]
    np.testing.assert_allclose(rho[:-1], expected, rtol=1e-6)
    # linear between 23 HU (1.031) and 100 HU (1.1199)
    assert rho[-1] == pytest.approx(1.031 + (57 - 23) / 77 * (1.1199 - 1.031), rel=1e-6)


def test_dose_rate_series_and_tia_consistency():
    shape = (14, 15, 16)
    plan = make_dose_plan(lanconelli_kernel("Lu-177", 4.8), shape)
    frames = RNG.random((3, *shape)).astype(np.float32)
    rates = voxel_dose_rate(frames, plan)
    assert rates.shape == (3, *shape)
    for i in range(3):
        np.testing.assert_allclose(
            np.asarray(rates[i]),
            _ref(frames[i], plan.kernel.values_gy_per_mbq_h),
            rtol=2e-5,
            atol=1e-6 * float(np.max(np.asarray(rates[i]))),
        )
    # activity A(t) = A0 exp(-lambda t): integral of the dose rate = dose of TIA = A0 / lambda
    lam = np.log(2) / 40.0
    a0 = frames[0]
    dose = np.asarray(voxel_dose(a0 / lam, plan), np.float64)
    rate0 = np.asarray(voxel_dose_rate(a0, plan), np.float64)
    np.testing.assert_allclose(rate0 / lam, dose, rtol=1e-5)


def test_bad_inputs_raise_typed_errors():
    shape = (16, 16, 16)
    plan = make_dose_plan(lanconelli_kernel("Lu-177", 4.42), shape)
    tia = np.ones(shape, np.float32)
    with pytest.raises(GridMismatchError, match="shape"):
        voxel_dose(np.ones((16, 16, 15), np.float32), plan)
    with pytest.raises(GridMismatchError, match="density"):  # TIA map and CT on different grids
        voxel_dose(tia, plan, density_g_cm3=np.ones((16, 16, 17), np.float32))
    with pytest.raises(GridMismatchError, match="spacing"):
        voxel_dose(tia, plan, spacing_mm=(4.0, 4.0, 4.0))
    with pytest.raises(GridMismatchError, match="spacing"):
        voxel_dose(tia, plan, density_g_cm3=np.ones(shape), density_spacing_mm=3.0)
    with pytest.raises(GridMismatchError):
        make_dose_plan(plan.kernel, shape, spacing_mm=(4.42, 4.42, 5.0))
    bad = tia.copy()
    bad[3, 4, 5] = -1.0
    with pytest.raises(pbpk.InvalidInputError, match="non-negative"):
        voxel_dose(bad, plan)
    bad[3, 4, 5] = np.nan
    with pytest.raises(pbpk.InvalidInputError):
        voxel_dose(bad, plan)
    with pytest.raises(pbpk.InvalidInputError, match="positive"):
        voxel_dose(tia, plan, density_g_cm3=np.zeros(shape))
    with pytest.raises(pbpk.InvalidInputError):
        voxel_dose_rate(-np.ones((2, *shape)), plan)
    with pytest.raises(pbpk.InvalidInputError):
        make_dose_plan("not a kernel", shape)
