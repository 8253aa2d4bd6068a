"""Region dose statistics and cumulative dose-volume histograms.

Definitions (ICRU Report 83 convention, voxels weighted by volume, or by mass if weights are
given):

* ``D_x`` (``D2``, ``D50``, ``D98``): the largest dose ``d`` such that at least ``x`` % of the
  region receives ``d`` or more (the minimum dose of the hottest ``x`` %). With equal voxel
  weights this is the voxel dose of rank ``ceil(x/100 * n)`` in decreasing order.
* cumulative DVH ``V(d)``: fraction of the region receiving a dose ``>= d``.

Statistics are computed in float64 with numpy (they are reporting, not part of a gradient);
for a differentiable region mean use ``jnp.sum(dose * mask) / jnp.sum(mask)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from pbpk._errors import InvalidInputError
from twin.dose._errors import GridMismatchError
from twin.dose._kernels import _spacing3

__all__ = [
    "DoseStatistics",
    "cumulative_dvh",
    "dose_at_volume",
    "dose_statistics",
    "region_dose_statistics",
]


@dataclass(frozen=True)
class DoseStatistics:
    """Absorbed-dose statistics of one region (Gy)."""

    mean_gy: float
    max_gy: float
    min_gy: float
    d2_gy: float
    d50_gy: float
    d98_gy: float
    n_voxels: int
    volume_ml: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        """The statistics as a plain dict (for tables)."""
        return asdict(self)


def _region_values(dose_gy, mask, weights) -> tuple[np.ndarray, np.ndarray]:
    dose = np.asarray(dose_gy, dtype=np.float64)
    sel = np.asarray(mask)
    if sel.shape != dose.shape:
        raise GridMismatchError(
            f"mask shape {sel.shape} differs from dose map shape {dose.shape}; resample the "
            "mask onto the dose grid"
        )
    if sel.dtype != bool:
        if not np.all(np.isin(sel, (0, 1))):
            raise InvalidInputError("mask must be boolean (or 0/1)")
        sel = sel.astype(bool)
    if not sel.any():
        raise InvalidInputError("mask is empty: no voxel to compute dose statistics over")
    values = dose[sel]
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("dose map has NaN or infinite values inside the region")
    if weights is None:
        w = np.ones_like(values)
    else:
        wa = np.asarray(weights, dtype=np.float64)
        if wa.shape != dose.shape:
            raise GridMismatchError(
                f"weights shape {wa.shape} differs from dose map shape {dose.shape}"
            )
        w = wa[sel]
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.sum(w) > 0:
            raise InvalidInputError("weights must be finite, non-negative and not all zero")
    return values, w




def _dose_at_volume(values: np.ndarray, w: np.ndarray, percent: float) -> float:
    if not (0.0 < percent <= 100.0):
        raise InvalidInputError(f"volume percentage must be in (0, 100], got {percent!r}")
    order = np.argsort(-values, kind="stable")
    cum = np.cumsum(w[order])
    need = percent / 100.0 * cum[-1]
    # first rank whose cumulative volume reaches x % (tolerate rounding of the cumulative sum)
    idx = int(np.searchsorted(cum, need * (1.0 - 1e-12), side="left"))
    return float(values[order[min(idx, len(order) - 1)]])


def dose_at_volume(dose_gy, mask, percent: float, *, weights=None) -> float:
    """``D_x``: minimum dose received by the hottest ``percent`` % of the region, Gy."""
    values, w = _region_values(dose_gy, mask, weights)
    return _dose_at_volume(values, w, float(percent))


def dose_statistics(
    dose_gy,
    mask,
    *,
    spacing_mm: float | Sequence[float] | None = None,
    weights=None,
) -> DoseStatistics:
    """Mean, max, min, D2, D50 and D98 of a dose map over a region.

    Parameters
    ----------
    dose_gy : array
        Dose map, Gy.
    mask : bool array
        The region (same shape).
    spacing_mm : optional
        Voxel spacing (mm): one value (isotropic) or three, positive; to report the region
        volume in mL.
    weights : array, optional
        Voxel weights (e.g. density, for mass-weighted statistics); default equal volume.
    """
    values, w = _region_values(dose_gy, mask, weights)
    total = float(np.sum(w))
    volume = None
    if spacing_mm is not None:
        volume = values.size * math.prod(_spacing3(spacing_mm)) * 1e-3
    return DoseStatistics(
        mean_gy=float(np.sum(values * w) / total),
        max_gy=float(np.max(values)),
        min_gy=float(np.min(values)),
        d2_gy=_dose_at_volume(values, w, 2.0),
        d50_gy=_dose_at_volume(values, w, 50.0),
        d98_gy=_dose_at_volume(values, w, 98.0),
        n_voxels=int(values.size),
        volume_ml=volume,
    )


def region_dose_statistics(
    dose_gy,
    masks: Mapping[str, np.ndarray],
    *,
    spacing_mm: float | Sequence[float] | None = None,
    weights=None,
) -> dict[str, DoseStatistics]:
    """:func:`dose_statistics` for every region of a mapping name -> mask."""
    return {
        name: dose_statistics(dose_gy, m, spacing_mm=spacing_mm, weights=weights)
        for name, m in masks.items()
    }


def cumulative_dvh(
    dose_gy,
    mask,
    *,
    dose_grid_gy: Sequence[float] | None = None,
    n_points: int = 201,
    weights=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative dose-volume histogram of a region.

    Parameters
    ----------
    dose_gy, mask, weights
        As for :func:`dose_statistics`.
    dose_grid_gy : sequence, optional
        Dose values at which to evaluate ``V(d)``; default ``n_points`` values from 0 to the
        region maximum.

    Returns
    -------
    (dose_gy, volume_fraction) : two float64 arrays
        ``volume_fraction[i]`` = fraction of the region (volume or weight) with dose
        ``>= dose_gy[i]``; non-increasing, 1 at 0 Gy for non-negative doses.
    """
    values, w = _region_values(dose_gy, mask, weights)
    if dose_grid_gy is None:
        if int(n_points) < 2:
            raise InvalidInputError("n_points must be at least 2")
        grid = np.linspace(0.0, float(np.max(values)), int(n_points))
    else:
        grid = np.asarray(dose_grid_gy, dtype=np.float64)
        if grid.ndim != 1 or not np.all(np.isfinite(grid)):
            raise InvalidInputError("dose_grid_gy must be a 1-D sequence of finite doses")
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # weight of voxels with dose >= d = total - weight of voxels with dose < d
    cum = np.concatenate([[0.0], np.cumsum(w[order])])
    below = np.searchsorted(sorted_values, grid, side="left")
    fraction = (cum[-1] - cum[below]) / cum[-1]
    return grid, fraction
