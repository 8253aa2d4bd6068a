"""Synthetic PET images with known lesions for the twin.lesions tests (numpy only, fast)."""

import math

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from twin.patient import load_activity_image, load_masks

SPACING_MM = 4.0
WEIGHT_KG = 75.0
INJECTED_MBQ = 150.0
HOURS = 1.0
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

# virtual-patient lesions (mL): 12, 5, 2, 8 (touching the right kidney), 0.3 (below the 1 mL
# minimum volume of the tests); centres (x, y, z) mm in make_phantom's frame
PHANTOM_TUMOURS_ML = (12.0, 5.0, 2.0, 8.0, 0.3)
PHANTOM_CENTRES_MM = ((60.0, -40.0, 200.0), (-90.0, 20.0, 300.0), (0.0, -60.0, 150.0),
                      (-34.0, 55.0, 390.0), (100.0, -50.0, 450.0))


def grid(shape):
    """Voxel-centre coordinates (z, y, x) in mm for origin 0 and SPACING_MM."""
    z, y, x = (np.arange(n) * SPACING_MM for n in shape)
    return np.meshgrid(z, y, x, indexing="ij", sparse=True)


def sphere(shape, centre_xyz_mm, radius_mm):
    Z, Y, X = grid(shape)
    cx, cy, cz = centre_xyz_mm
    return (X - cx) ** 2 + (Y - cy) ** 2 + (Z - cz) ** 2 <= radius_mm**2


def radius_mm(volume_ml):
    return (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


def make_image(shape=(36, 40, 40), *, background_suv=1.0, spheres=(), organs=(), fwhm_mm=0.0,
               noise_sd_suv=0.0, seed=0, weight_kg=WEIGHT_KG, injected_mbq=INJECTED_MBQ):
    """SUV image with uniform spheres ``(centre_xyz_mm, volume_ml, suv)`` and organs
    ``(name, centre_xyz_mm, semi_axes_mm, suv)``; Gaussian blur then additive Gaussian noise.

    Returns (ActivityImage, Masks with 'body' + organs, list of true sphere voxel masks).
    The masks hold no lesion structure. Spheres are painted after organs (a sphere may not
    overlap an organ: checked).
    """
    Z, Y, X = grid(shape)
    suv = np.full(shape, float(background_suv))
    labels = np.ones(shape, np.int16)
    table = {1: "body"}
    for k, (name, c, ax, val) in enumerate(organs, start=2):
        inside = ((X - c[0]) / ax[0]) ** 2 + ((Y - c[1]) / ax[1]) ** 2 + ((Z - c[2]) / ax[2]) ** 2 <= 1
        suv[inside] = val
        labels[inside] = k
        table[k] = name
    truths = []
    for c, vol, val in spheres:
        inside = sphere(shape, c, radius_mm(vol))
        assert not (inside & (labels > 1)).any(), "test set-up: sphere overlaps an organ"
        suv[inside] = val
        truths.append(inside)
    if fwhm_mm > 0:
        suv = gaussian_filter(suv, fwhm_mm * FWHM_TO_SIGMA / SPACING_MM, mode="nearest")
    if noise_sd_suv > 0:
        suv = suv + np.random.default_rng(seed).normal(0.0, noise_sd_suv, shape)
    suv = np.clip(suv, 0.0, None).astype(np.float32)
    img = sitk.GetImageFromArray(suv)
    img.SetSpacing((SPACING_MM,) * 3)
    act = load_activity_image(img, nuclide="68Ga", unit="SUV", hours_after_injection=HOURS,
                              injected_activity_mbq=injected_mbq, weight_kg=weight_kg)
    lab = sitk.GetImageFromArray(labels)
    lab.SetSpacing((SPACING_MM,) * 3)
    masks = load_masks(lab, table, reference=act.geometry)
    return act, masks, truths


def blurred_sphere_radius_mm(radius, contrast_suv, background_suv, threshold_suv, fwhm_mm):
    """Analytic radius where a uniform sphere (contrast over background) convolved with an
    isotropic Gaussian PSF falls to ``threshold_suv`` (bisection on the closed-form profile)."""
    s = fwhm_mm * FWHM_TO_SIGMA

    def profile(r):
        a, b = (radius - r) / (math.sqrt(2) * s), (radius + r) / (math.sqrt(2) * s)
        inside = 0.5 * (math.erf(a) + math.erf(b)) - s / (r * math.sqrt(2 * math.pi)) * (
            math.exp(-a * a) - math.exp(-b * b))
        return background_suv + contrast_suv * inside

    lo, hi = 1e-6, radius + 10 * s
    assert profile(lo) > threshold_suv > profile(hi)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if profile(mid) > threshold_suv else (lo, mid)
    return 0.5 * (lo + hi)
